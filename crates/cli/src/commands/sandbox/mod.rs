//! `alcove sandbox …` (and the top-level shortcuts `alcove create|ls|rm|exec|shell|cp|logs|ps`):
//! sandboxes and what runs in them, through `alcove-client`.

mod background;
mod binding_args;
mod copy;
mod cp;
mod create;
mod exec;
mod lifecycle;
mod list;
mod logs;
mod network;
mod observe;
mod processes;
mod resize;
mod shell;
mod stdin;

use super::connection::{Connection, ServerArgs};

pub use cp::CpArgs;
pub use create::CreateArgs;
pub use exec::ExecArgs;
pub use list::LsArgs;
pub use logs::LogsArgs;
pub use processes::PsArgs;
pub use shell::ShellArgs;

/// `alcove sandbox …`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove sandbox create --name dev --cpus 2 --memory 2G --wait
  alcove sandbox exec dev -- python3 -c 'print(1)'
  alcove sandbox shell dev
  alcove sandbox cp ./src dev:/work/src
  alcove sandbox suspend dev && alcove sandbox resume dev
  alcove sandbox rm dev")]
pub struct SandboxArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: Action,
}

/// A top-level shortcut: the same arguments as its `alcove sandbox …` command, plus where the
/// server is.
#[derive(Debug, clap::Args)]
pub struct Shortcut<T: clap::Args> {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    args: T,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a sandbox (prints its id, name and status; -q the id only).
    Create(CreateArgs),
    /// List live sandboxes (`--all` adds ended ones from the archive).
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show one sandbox (live or archived) in detail.
    #[command(visible_alias = "inspect")]
    Get(list::GetArgs),
    /// Delete sandboxes (ends them; their logs stay readable while archived).
    #[command(visible_alias = "delete")]
    Rm(lifecycle::RmArgs),
    /// Rename a sandbox (a named sandbox can be suspended).
    Rename(lifecycle::RenameArgs),
    /// Suspend a named sandbox: memory and processes saved, resources freed.
    Suspend(lifecycle::TargetArgs),
    /// Resume a suspended sandbox where it stopped.
    Resume(lifecycle::TargetArgs),
    /// Snapshot a sandbox (`--type memory` keeps processes, `filesystem` only files).
    Snapshot(lifecycle::SnapshotArgs),
    /// Create a new sandbox from a snapshot.
    Restore(lifecycle::RestoreArgs),
    /// Copy a running sandbox N ways: new running sandboxes with its memory, processes and files.
    Copy(copy::CopyArgs),
    /// Change a sandbox's CPUs, memory or disk without restarting it.
    Resize(resize::ResizeArgs),
    /// Run a command in a sandbox: output live, stdin forwarded, its exit code returned.
    Exec(ExecArgs),
    /// Open an interactive terminal in a sandbox (like `docker exec -it … bash`).
    Shell(ShellArgs),
    /// Copy files and directories between the local machine and a sandbox.
    Cp(CpArgs),
    /// List a sandbox's processes.
    Ps(PsArgs),
    /// Send a signal to a process of a sandbox (SIGKILL unless told).
    Kill(processes::KillArgs),
    /// Stop a process and start it again with the same command and supervision.
    RestartProcess(processes::RestartArgs),
    /// Show a sandbox's logs (`-f` to follow).
    Logs(LogsArgs),
    /// Show or change the ports a sandbox exposes through the ingress.
    Ports(observe::PortsArgs),
    /// Change a sandbox's outbound network policy, live.
    Network(network::NetworkCmdArgs),
    /// Print (or open) the URL of a sandbox's desktop in the browser.
    Desktop(observe::DesktopArgs),
    /// Show a sandbox's CPU, memory, task and disk use against its limits.
    Stats(observe::StatsArgs),
}

/// Runs `alcove sandbox …`.
pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let connection = args.server.connect()?;
    let c = &connection;
    match args.action {
        Action::Create(a) => create::run(c, a).await,
        Action::Ls(a) => list::ls(c, a).await,
        Action::Get(a) => list::get(c, a).await,
        Action::Rm(a) => lifecycle::rm(c, a).await,
        Action::Rename(a) => lifecycle::rename(c, a).await,
        Action::Suspend(a) => lifecycle::suspend(c, a).await,
        Action::Resume(a) => lifecycle::resume(c, a).await,
        Action::Snapshot(a) => lifecycle::snapshot(c, a).await,
        Action::Restore(a) => lifecycle::restore(c, a).await,
        Action::Copy(a) => copy::run(c, a).await,
        Action::Resize(a) => resize::run(c, a).await,
        Action::Exec(a) => exec::run(c, a).await,
        Action::Shell(a) => shell::run(c, a).await,
        Action::Cp(a) => cp::run(c, a).await,
        Action::Ps(a) => processes::ps(c, a).await,
        Action::Kill(a) => processes::kill(c, a).await,
        Action::RestartProcess(a) => processes::restart(c, a).await,
        Action::Logs(a) => logs::run(c, a).await,
        Action::Ports(a) => observe::ports(c, a).await,
        Action::Network(a) => network::run(c, a).await,
        Action::Desktop(a) => observe::desktop(c, a).await,
        Action::Stats(a) => observe::stats(c, a).await,
    }
}

/// Runs a top-level shortcut.
pub async fn shortcut<T, F, Fut>(shortcut: Shortcut<T>, run: F) -> anyhow::Result<()>
where
    T: clap::Args,
    F: FnOnce(Connection, T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let connection = shortcut.server.connect()?;
    run(connection, shortcut.args).await
}

/// The shortcuts' entry points, each taking its connection by value.
pub mod entry {
    use super::*;

    /// `alcove create`.
    pub async fn create(c: Connection, a: CreateArgs) -> anyhow::Result<()> {
        super::create::run(&c, a).await
    }
    /// `alcove ls`.
    pub async fn ls(c: Connection, a: LsArgs) -> anyhow::Result<()> {
        super::list::ls(&c, a).await
    }
    /// `alcove rm`.
    pub async fn rm(c: Connection, a: lifecycle::RmArgs) -> anyhow::Result<()> {
        super::lifecycle::rm(&c, a).await
    }
    /// `alcove exec`.
    pub async fn exec(c: Connection, a: ExecArgs) -> anyhow::Result<()> {
        super::exec::run(&c, a).await
    }
    /// `alcove shell`.
    pub async fn shell(c: Connection, a: ShellArgs) -> anyhow::Result<()> {
        super::shell::run(&c, a).await
    }
    /// `alcove cp`.
    pub async fn cp(c: Connection, a: CpArgs) -> anyhow::Result<()> {
        super::cp::run(&c, a).await
    }
    /// `alcove logs`.
    pub async fn logs(c: Connection, a: LogsArgs) -> anyhow::Result<()> {
        super::logs::run(&c, a).await
    }
    /// `alcove ps`.
    pub async fn ps(c: Connection, a: PsArgs) -> anyhow::Result<()> {
        super::processes::ps(&c, a).await
    }
}

pub use binding_args::{NetworkArgs, VolumeArgs};
pub use create::{ResourceArgs, parse_env, parse_mib, parse_secs};
pub use lifecycle::RmArgs;

/// A command's own exit code (`alcove exec`): `main` exits with it and prints nothing more.
#[derive(Debug, thiserror::Error)]
#[error("the command exited with code {0}")]
pub struct CommandExit(pub u8);

/// A command the sandbox could not start (`alcove exec`, `shell`): `main` prints the reason and
/// exits with the code a shell gives the same failure, so scripts can tell it from the
/// command's own failure.
#[derive(Debug, thiserror::Error)]
#[error("{reason:#}")]
pub struct CommandNotStarted {
    /// 127 when the program does not exist, 126 when it cannot be executed.
    pub code: u8,
    /// What the server said.
    pub reason: anyhow::Error,
}

/// The error for a command that did not start: a [`CommandNotStarted`] with the shell's code
/// when the sandbox found no such program (127) or could not execute it (126), the server's
/// answer as any other failure otherwise.
pub fn not_started(c: &Connection, err: alcove_client::ClientError) -> anyhow::Error {
    let code = match err.code() {
        Some("COMMAND_NOT_FOUND") => 127,
        Some("NOT_EXECUTABLE") => 126,
        _ => return c.explain(err),
    };
    CommandNotStarted {
        code,
        reason: c.explain(err),
    }
    .into()
}
