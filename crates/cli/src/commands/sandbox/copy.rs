//! `alcove sandbox copy`: new running sandboxes made from one live dump of a running one.

use alcove_client::MAX_COPIES;
use alcove_client::wire::sandbox::SandboxStatus;
use anyhow::bail;

use crate::commands::connection::Connection;
use crate::commands::output;

/// `alcove sandbox copy`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each copy has the source's memory, processes and files, its own id, \
address and writable layer, and no name. The source is frozen only while the dump is taken.

Examples:
  alcove sandbox copy dev
  alcove sandbox copy dev --times 4 -q | xargs -I{} alcove exec {} -- ./explore.sh"
)]
pub struct CopyArgs {
    /// Sandbox id or name (running).
    sandbox: String,
    /// How many copies to make.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_COPIES as i64))]
    times: u32,
    /// Print the answer as JSON (the copies, failed ones included).
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print only the ids of the copies that run.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `alcove sandbox copy`: prints a line per copy; fails when any copy failed (the others
/// run and are printed all the same).
pub async fn run(c: &Connection, args: CopyArgs) -> anyhow::Result<()> {
    let bar = output::spinner(format!("copying {}", args.sandbox));
    let answer = c.client.copy(&args.sandbox, args.times).await;
    bar.finish_and_clear();
    let answer = answer.map_err(|e| c.explain(e))?;
    if args.json {
        output::json(&answer)?;
    }
    let mut failed = 0;
    for copy in &answer.sandboxes {
        if copy.status == SandboxStatus::Running {
            if args.quiet {
                println!("{}", copy.sandbox_id);
            } else if !args.json {
                println!("{} {}", copy.sandbox_id, copy.status);
            }
        } else {
            failed += 1;
            if !args.json {
                let reason = copy.reason.as_deref().unwrap_or("no reason given");
                eprintln!("error: copy {} {}: {reason}", copy.sandbox_id, copy.status);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} copies failed", answer.sandboxes.len());
    }
    Ok(())
}
