//! `alcove`: the command line. Thin: parses, calls a library, prints.

mod commands;

use clap::{Parser, Subcommand};

/// Alcove: self-hosted sandboxes.
#[derive(Debug, Parser)]
#[command(name = "alcove", version, about)]
struct Cli {
    /// Log filter (overrides RUST_LOG), e.g. `info` or `alcove_server=debug`.
    #[arg(long, global = true, env = "ALCOVE_LOG")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (API, proxy and node) in the foreground.
    Serve(Box<alcove_server::Config>),
    /// Manage secrets injected into sandboxes as environment variables.
    Secrets(commands::secrets::SecretsArgs),
    /// Manage the server's images: list, pull, import, build, inspect, remove.
    Image(commands::image::ImageArgs),
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
    // runc runs this binary as every sandbox's hook (see alcove_runtime::hook):
    // handled before anything else, single-threaded, with no async runtime.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(alcove_runtime::hook::HOOK_COMMAND) {
        return commands::hook::run(&args[2..]);
    }
    let cli = Cli::parse();
    commands::init_logging(cli.log_level.as_deref());
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
            Command::Secrets(args) => commands::secrets::run(args).await,
            Command::Image(args) => commands::image::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::from(ExitCode::Ok as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(ExitCode::Failed as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
