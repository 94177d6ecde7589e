//! `alcove`: the command line. Thin: parses, calls a library, prints.
//!
//! Exit codes: 0 success; 1 the command failed; 2 a usage error (bad flags or arguments);
//! `exec` and `shell` exit with the sandboxed command's own code.

mod commands;

use clap::{CommandFactory, Parser, Subcommand};

use commands::sandbox::{self, CommandExit, CommandNotStarted, Shortcut, entry};

/// Alcove: self-hosted sandboxes.
#[derive(Debug, Parser)]
#[command(
    name = "alcove",
    version,
    about,
    after_help = "Sandbox commands also take --api-url, --api-key and --namespace (or \
ALCOVE_API_URL and ALCOVE_API_KEY, or what `alcove login` saved).

Exit codes: 0 success, 1 the command failed, 2 usage error; `exec` and `shell` exit with the \
command's own code (126 when it cannot be executed, 127 when it does not exist).

Examples:
  alcove serve
  alcove create --name dev --wait
  alcove exec dev -- uname -a
  alcove shell dev
  alcove cp ./data dev:/data
  alcove rm dev"
)]
struct Cli {
    /// Log filter (overrides RUST_LOG), e.g. `info` or `alcove_server=debug`.
    #[arg(long, global = true, env = "ALCOVE_LOG")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (API, proxy, node and web console) in the foreground.
    Serve(Box<alcove_server::Config>),
    /// Save the server's URL and API key for the other commands.
    Login(commands::login::LoginArgs),
    /// Forget what `alcove login` saved.
    Logout,
    /// Sandboxes: create, list, exec, shell, cp, logs, suspend, resume, snapshot, …
    #[command(visible_alias = "sbx")]
    Sandbox(sandbox::SandboxArgs),
    /// Create a sandbox (`alcove sandbox create`).
    Create(Shortcut<sandbox::CreateArgs>),
    /// List sandboxes (`alcove sandbox ls`).
    Ls(Shortcut<sandbox::LsArgs>),
    /// Delete sandboxes (`alcove sandbox rm`).
    Rm(Shortcut<sandbox::RmArgs>),
    /// Run a command in a sandbox (`alcove sandbox exec`).
    Exec(Shortcut<sandbox::ExecArgs>),
    /// Open a terminal in a sandbox (`alcove sandbox shell`).
    Shell(Shortcut<sandbox::ShellArgs>),
    /// Copy files to or from a sandbox (`alcove sandbox cp`).
    Cp(Shortcut<sandbox::CpArgs>),
    /// Show a sandbox's logs (`alcove sandbox logs`).
    Logs(Shortcut<sandbox::LogsArgs>),
    /// List a sandbox's processes (`alcove sandbox ps`).
    Ps(Shortcut<sandbox::PsArgs>),
    /// Snapshots: list, show, delete.
    Snapshot(commands::snapshot::SnapshotArgs),
    /// Warm pools: create, list, update, claim, delete.
    Pool(commands::pool::PoolArgs),
    /// Nodes: list them, drain one for maintenance, activate it again.
    Node(commands::node::NodeArgs),
    /// Persistent volumes: create, list, attach, detach, delete.
    Volume(commands::volume::VolumeArgs),
    /// Manage secrets injected into sandboxes as environment variables.
    Secrets(commands::secrets::SecretsArgs),
    /// Manage the server's images: list, pull, import, build, inspect, remove.
    Image(commands::image::ImageArgs),
    /// Print a shell completion script.
    Completions(commands::completions::CompletionsArgs),
    /// Print the man page (or write one per command).
    Man(commands::completions::ManArgs),
}

/// Exit codes of the CLI.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum ExitCode {
    /// Everything went well.
    Ok = 0,
    /// The command failed at run time.
    Failed = 1,
}

fn main() -> std::process::ExitCode {
    // runc runs this binary as a restored sandbox's hook (see alcove_runtime::hook)
    // where alcove-hook is not installed:
    // handled before anything else, single-threaded, with no async runtime.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(alcove_runtime::hook::HOOK_COMMAND) {
        return alcove_runtime::hook::process_main(&args[2..]);
    }
    // clap exits with 2 on a usage error, 0 for --help and --version.
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    if serving {
        // Before the server opens anything: low descriptor numbers that every child it
        // starts takes its stdio from (see alcove_runtime::spawn_slots). Without them
        // children are only slower to start.
        if let Err(e) = alcove_runtime::spawn_slots::reserve() {
            eprintln!("warning: reserving descriptors for child stdio: {e}");
        }
    }
    // The server logs its work; a client command only what went wrong.
    let level = cli
        .log_level
        .clone()
        .or_else(|| (!serving).then(|| "warn".to_string()));
    commands::init_logging(level.as_deref());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::from(ExitCode::Failed as u8);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => commands::serve::run(*config).await,
            Command::Login(args) => commands::login::login(args).await,
            Command::Logout => commands::login::logout(),
            Command::Sandbox(args) => sandbox::run(args).await,
            Command::Create(s) => sandbox::shortcut(s, entry::create).await,
            Command::Ls(s) => sandbox::shortcut(s, entry::ls).await,
            Command::Rm(s) => sandbox::shortcut(s, entry::rm).await,
            Command::Exec(s) => sandbox::shortcut(s, entry::exec).await,
            Command::Shell(s) => sandbox::shortcut(s, entry::shell).await,
            Command::Cp(s) => sandbox::shortcut(s, entry::cp).await,
            Command::Logs(s) => sandbox::shortcut(s, entry::logs).await,
            Command::Ps(s) => sandbox::shortcut(s, entry::ps).await,
            Command::Snapshot(args) => commands::snapshot::run(args).await,
            Command::Pool(args) => commands::pool::run(args).await,
            Command::Node(args) => commands::node::run(args).await,
            Command::Volume(args) => commands::volume::run(args).await,
            Command::Secrets(args) => commands::secrets::run(args).await,
            Command::Image(args) => commands::image::run(args).await,
            Command::Completions(args) => commands::completions::completions(args, Cli::command()),
            Command::Man(args) => commands::completions::man(args, Cli::command()),
        }
    });
    // Output may be cut short by a closed pipe (`alcove ls | head`): not worth a panic.
    drop(runtime);
    match result {
        Ok(()) => std::process::ExitCode::from(ExitCode::Ok as u8),
        Err(e) => match e.downcast_ref::<CommandExit>() {
            Some(CommandExit(code)) => std::process::ExitCode::from(*code),
            None => {
                // The reason may quote a sandbox's names and paths.
                eprintln!("error: {}", commands::output::printable(&format!("{e:#}")));
                // A command that could not start exits as a shell would say so.
                let code = e
                    .downcast_ref::<CommandNotStarted>()
                    .map_or(ExitCode::Failed as u8, |refused| refused.code);
                std::process::ExitCode::from(code)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shortcuts_parse_like_their_sandbox_commands() {
        for args in [
            vec!["alcove", "exec", "dev", "--", "ls", "-la"],
            vec!["alcove", "sandbox", "exec", "dev", "--", "ls", "-la"],
            vec![
                "alcove",
                "sbx",
                "exec",
                "--api-url",
                "http://h:1",
                "dev",
                "--",
                "ls",
            ],
        ] {
            Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
    }

    #[test]
    fn usage_errors_exit_with_two() {
        for args in [
            vec!["alcove", "create", "--memory", "lots"],
            vec!["alcove", "exec", "dev"],
            vec!["alcove", "cp", "only-one"],
            vec!["alcove", "sandbox", "snapshot", "dev", "--type", "disk"],
            vec!["alcove", "logs", "dev", "--tail", "0"],
            vec!["alcove", "nonsense"],
        ] {
            let err = Cli::try_parse_from(&args).expect_err("a usage error");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
