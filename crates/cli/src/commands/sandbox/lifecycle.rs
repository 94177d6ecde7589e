//! `alcove sandbox rm|rename|suspend|resume|snapshot|restore`.

use alcove_client::wire::sandbox::SandboxInfo;
use alcove_client::wire::snapshot::SnapshotType;
use alcove_client::{ClientError, CreateOptions};
use anyhow::bail;

use crate::commands::connection::Connection;
use crate::commands::output;

/// One sandbox, by id or name.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// Print the sandbox as JSON afterwards.
    #[arg(long)]
    json: bool,
}

/// `alcove sandbox rm`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove rm dev
  alcove rm 5f3c… 9a1b…
  alcove ls -q | xargs -r alcove rm")]
pub struct RmArgs {
    /// Sandbox ids or names.
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

/// `alcove sandbox rename`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  alcove sandbox rename 5f3c… dev")]
pub struct RenameArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// The new name (a DNS label).
    name: String,
}

/// `alcove sandbox snapshot`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove sandbox snapshot dev
  alcove sandbox snapshot dev --type filesystem -q")]
pub struct SnapshotArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// What the snapshot keeps: memory (processes too) or filesystem.
    #[arg(long = "type", value_enum, default_value_t = Kind::Memory)]
    kind: Kind,
    /// Print the snapshot as JSON.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print only the snapshot's id.
    #[arg(short, long)]
    quiet: bool,
}

/// Snapshot types as flags spell them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Kind {
    Memory,
    Filesystem,
}

/// `alcove sandbox restore`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove sandbox restore 8c2e…
  alcove sandbox restore 8c2e… --name dev-copy -q")]
pub struct RestoreArgs {
    /// Snapshot id.
    snapshot: String,
    /// Name of the new sandbox.
    #[arg(long)]
    name: Option<String>,
    /// Print the new sandbox as JSON.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print only the new sandbox's id.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `alcove sandbox rm`: every sandbox is tried; fails if any failed.
pub async fn rm(c: &Connection, args: RmArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    for sandbox in &args.sandboxes {
        match c.client.delete(sandbox).await {
            Ok(()) => println!("{sandbox}"),
            Err(e) => {
                eprintln!("error: {sandbox}: {:#}", c.explain(e));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} sandboxes not deleted", args.sandboxes.len());
    }
    Ok(())
}

/// Runs `alcove sandbox rename`.
pub async fn rename(c: &Connection, args: RenameArgs) -> anyhow::Result<()> {
    let info = c
        .client
        .rename(&args.sandbox, &args.name)
        .await
        .map_err(|e| c.explain(e))?;
    println!("{} renamed to {}", info.id, args.name);
    Ok(())
}

/// Runs `alcove sandbox suspend`.
pub async fn suspend(c: &Connection, args: TargetArgs) -> anyhow::Result<()> {
    let bar = output::spinner(format!("suspending {}", args.sandbox));
    let info = c.client.suspend(&args.sandbox).await;
    bar.finish_and_clear();
    show_state(c, info, args.json)
}

/// Runs `alcove sandbox resume`.
pub async fn resume(c: &Connection, args: TargetArgs) -> anyhow::Result<()> {
    let bar = output::spinner(format!("resuming {}", args.sandbox));
    let info = c.client.resume(&args.sandbox).await;
    bar.finish_and_clear();
    show_state(c, info, args.json)
}

/// Prints where a suspend or resume left the sandbox.
fn show_state(
    c: &Connection,
    info: Result<SandboxInfo, ClientError>,
    as_json: bool,
) -> anyhow::Result<()> {
    let info = info.map_err(|e| c.explain(e))?;
    if as_json {
        return output::json(&info);
    }
    println!("{} {}", info.id, info.status);
    Ok(())
}

/// Runs `alcove sandbox snapshot`: waits until the snapshot is usable.
pub async fn snapshot(c: &Connection, args: SnapshotArgs) -> anyhow::Result<()> {
    let kind = match args.kind {
        Kind::Memory => SnapshotType::Memory,
        Kind::Filesystem => SnapshotType::Filesystem,
    };
    let bar = output::spinner(format!("snapshotting {}", args.sandbox));
    let snapshot = c.client.snapshot_and_wait(&args.sandbox, Some(kind)).await;
    bar.finish_and_clear();
    let snapshot = snapshot.map_err(|e| c.explain(e))?;
    if args.json {
        output::json(&snapshot)
    } else if args.quiet {
        println!("{}", snapshot.id);
        Ok(())
    } else {
        let size = snapshot.size_bytes.map(output::bytes).unwrap_or_default();
        println!("{} {} {size}", snapshot.id, snapshot.snapshot_type.as_str());
        Ok(())
    }
}

/// Runs `alcove sandbox restore`: a new sandbox from a snapshot, once it runs.
pub async fn restore(c: &Connection, args: RestoreArgs) -> anyhow::Result<()> {
    let mut options = CreateOptions::from_snapshot(&args.snapshot);
    options.name = args.name;
    let bar = output::spinner(format!("restoring {}", args.snapshot));
    let info = c.client.create(options).await;
    bar.finish_and_clear();
    let info = info.map_err(|e| c.explain(e))?;
    output::new_sandbox(&info, args.json, args.quiet)
}
