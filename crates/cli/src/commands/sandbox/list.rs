//! `alcove sandbox ls` and `alcove sandbox get`.

use alcove_client::wire::sandbox::SandboxInfo;
use alcove_client::{ArchiveDirection, ArchivedPageRequest, ClientError};

use crate::commands::connection::Connection;
use crate::commands::output;

/// Archived sandboxes `ls --all` reads at most (newest first).
const ARCHIVE_LIMIT: usize = 1000;

/// `alcove sandbox ls`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove ls
  alcove ls --all
  alcove ls --json | jq -r '.[] | select(.status == \"running\") | .id'
  alcove ls -q | xargs -r alcove rm")]
pub struct LsArgs {
    /// Include ended sandboxes from the archive (newest first, up to 1000).
    #[arg(short, long)]
    all: bool,
    /// Print the sandboxes as a JSON array (of SandboxInfo).
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print only the ids.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `alcove sandbox ls`.
pub async fn ls(c: &Connection, args: LsArgs) -> anyhow::Result<()> {
    let mut sandboxes = c.client.list().await.map_err(|e| c.explain(e))?;
    sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    if args.all {
        sandboxes.extend(archived(c).await?);
    }
    if args.json {
        return output::json(&sandboxes);
    }
    if args.quiet {
        for s in &sandboxes {
            println!("{}", s.id);
        }
        return Ok(());
    }
    output::table(
        ["ID", "NAME", "STATUS", "IMAGE", "CPUS", "MEMORY", "CREATED"],
        sandboxes.iter().map(|s| {
            [
                s.id.clone(),
                s.name.clone().unwrap_or_default(),
                status(s),
                s.image.clone(),
                format!("{}", s.resources.cpus),
                format!("{} MiB", s.resources.memory_mb),
                output::ago(s.created_at),
            ]
        }),
    );
    Ok(())
}

/// The archive, newest first, up to [`ARCHIVE_LIMIT`].
async fn archived(c: &Connection) -> anyhow::Result<Vec<SandboxInfo>> {
    let mut found = Vec::new();
    let mut request = ArchivedPageRequest::first(100);
    while found.len() < ARCHIVE_LIMIT {
        let page = c
            .client
            .list_archived(&request)
            .await
            .map_err(|e| c.explain(e))?;
        found.extend(page.sandboxes.into_iter().map(|a| a.sandbox));
        match page.next_cursor {
            Some(cursor) => {
                request = ArchivedPageRequest::from_cursor(100, &cursor, ArchiveDirection::Forward)
            }
            None => break,
        }
    }
    found.truncate(ARCHIVE_LIMIT);
    Ok(found)
}

/// The status, with why it ended or waits when the server says.
fn status(s: &SandboxInfo) -> String {
    match (&s.termination_reason, &s.pending_reason) {
        (Some(reason), _) => format!("{} ({reason})", s.status),
        (None, Some(reason)) => format!("{} ({reason})", s.status),
        _ => s.status.to_string(),
    }
}

/// `alcove sandbox get`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove sandbox get dev
  alcove sandbox get 5f3c… --json | jq .resources")]
pub struct GetArgs {
    /// Sandbox id or name (an ended sandbox: its id).
    sandbox: String,
    /// Print the sandbox as JSON (SandboxInfo).
    #[arg(long)]
    json: bool,
}

/// Runs `alcove sandbox get`: a live sandbox, else an archived one.
pub async fn get(c: &Connection, args: GetArgs) -> anyhow::Result<()> {
    let info = match c.client.get(&args.sandbox).await {
        Ok(info) => info,
        Err(ClientError::SandboxNotFound { .. }) => {
            c.client
                .get_archived(&args.sandbox)
                .await
                .map_err(|e| c.explain(e))?
                .sandbox
        }
        Err(e) => return Err(c.explain(e)),
    };
    if args.json {
        return output::json(&info);
    }
    let mut rows: Vec<(&str, String)> = vec![
        ("id", info.id.clone()),
        ("name", info.name.clone().unwrap_or_default()),
        ("status", status(&info)),
        ("image", info.image.clone()),
        ("cpus", info.resources.cpus.to_string()),
        ("memory", format!("{} MiB", info.resources.memory_mb)),
        ("disk", format!("{} MiB", info.resources.disk_mb)),
        ("created", output::time(info.created_at)),
    ];
    if let Some(pool) = &info.pool_id {
        rows.push(("pool", pool.clone()));
    }
    if let Some(ended) = info.terminated_at {
        rows.push(("ended", output::time(ended)));
    }
    if info.timeout_secs > 0 {
        rows.push(("timeout", format!("{} s", info.timeout_secs)));
    }
    if !info.exposed_ports.is_empty() {
        let ports: Vec<String> = info.exposed_ports.iter().map(i64::to_string).collect();
        rows.push(("ports", ports.join(", ")));
    }
    if !info.secret_names.is_empty() {
        rows.push(("secrets", info.secret_names.join(", ")));
    }
    rows.push((
        "internet",
        if info.network_policy.allow_internet_access {
            "allowed".into()
        } else {
            "blocked".into()
        },
    ));
    let policy = &info.network_policy;
    if !policy.allow_out.is_empty() {
        rows.push(("allow out", policy.allow_out.join(", ")));
    }
    if !policy.deny_out.is_empty() {
        rows.push(("deny out", policy.deny_out.join(", ")));
    }
    for mount in &info.file_systems {
        let mode = if mount.read_only { " (read-only)" } else { "" };
        rows.push((
            "volume",
            format!("{} at {}{mode}", mount.file_system_id, mount.mount_path),
        ));
    }
    if let Some(details) = &info.error_details {
        rows.push(("error", details.clone()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
    Ok(())
}
