//! `alcove snapshot ls|get|rm`: the namespace's snapshots (take one with
//! `alcove sandbox snapshot`, restore with `alcove sandbox restore`).

use anyhow::bail;

use super::connection::ServerArgs;
use super::output;

/// `alcove snapshot …`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove snapshot ls
  alcove snapshot ls --sandbox dev
  alcove snapshot get 8c2e…
  alcove snapshot rm 8c2e…")]
pub struct SnapshotArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List snapshots, newest first.
    #[command(visible_alias = "list")]
    Ls {
        /// Only this sandbox's (id or name).
        #[arg(long)]
        sandbox: Option<String>,
        /// Print the snapshots as a JSON array (of SnapshotInfo).
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show one snapshot as JSON.
    #[command(visible_alias = "inspect")]
    Get {
        /// Snapshot id.
        snapshot: String,
    },
    /// Delete snapshots.
    #[command(visible_alias = "delete")]
    Rm {
        /// Snapshot ids.
        #[arg(required = true)]
        snapshots: Vec<String>,
    },
}

/// Runs `alcove snapshot …`.
pub async fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let c = args.server.connect()?;
    match args.action {
        Action::Ls {
            sandbox,
            json,
            quiet,
        } => {
            let mut snapshots = match &sandbox {
                Some(s) => c.client.list_sandbox_snapshots(s).await,
                None => c.client.list_snapshots().await,
            }
            .map_err(|e| c.explain(e))?;
            snapshots.sort_by_key(|s| std::cmp::Reverse(s.created_at));
            if json {
                return output::json(&snapshots);
            }
            if quiet {
                for s in &snapshots {
                    println!("{}", s.id);
                }
                return Ok(());
            }
            output::table(
                [
                    "ID", "SANDBOX", "TYPE", "STATUS", "SIZE", "IMAGE", "CREATED",
                ],
                snapshots.iter().map(|s| {
                    [
                        s.id.clone(),
                        s.sandbox_id.clone(),
                        s.snapshot_type.as_str().to_string(),
                        output::wire_name(&s.status),
                        s.size_bytes.map(output::bytes).unwrap_or_default(),
                        short_digest(&s.base_image),
                        output::ago(s.created_at),
                    ]
                }),
            );
            Ok(())
        }
        Action::Get { snapshot } => {
            let info = c
                .client
                .get_snapshot(&snapshot)
                .await
                .map_err(|e| c.explain(e))?;
            output::json(&info)
        }
        Action::Rm { snapshots } => {
            let mut failed = 0;
            for id in &snapshots {
                match c.client.delete_snapshot(id).await {
                    Ok(()) => println!("{id}"),
                    Err(e) => {
                        eprintln!("error: {id}: {:#}", c.explain(e));
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} snapshots not deleted", snapshots.len());
            }
            Ok(())
        }
    }
}

/// `name@sha256:<64 hex>` with the digest cut to its first 12 digits, as image ids are shown
/// (`snapshot get` has it whole).
fn short_digest(reference: &str) -> String {
    match reference.split_once("@sha256:") {
        Some((name, digest)) if digest.len() > 12 => format!("{name}@sha256:{}", &digest[..12]),
        _ => reference.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_images_show_a_short_digest() {
        let pinned = format!("alcove/debian@sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(short_digest(&pinned), "alcove/debian@sha256:0123456789ab");
        assert_eq!(short_digest("alcove/debian:latest"), "alcove/debian:latest");
    }
}
