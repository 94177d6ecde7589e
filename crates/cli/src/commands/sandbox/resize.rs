//! `alcove sandbox resize`: new CPU, memory and disk limits for a live sandbox.

use alcove_client::wire::sandbox::{ResizeStatus, UpdateSandboxRequest};
use anyhow::bail;

use crate::commands::connection::Connection;
use crate::commands::output;

use super::create::ResourceArgs;

/// `alcove sandbox resize`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("size").required(true).multiple(true).args(["cpus", "memory", "disk"])),
    after_help = "Nothing restarts: CPU and memory change through the cgroups at once, the disk grows \
online (it never shrinks). Memory below what the sandbox uses now is refused with the figures. \
A suspended sandbox gets the new limits when it resumes.

Examples:
  alcove sandbox resize dev --memory 4G
  alcove sandbox resize dev --cpus 2 --disk 20G"
)]
pub struct ResizeArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// The new limits (those not given keep their value).
    #[command(flatten)]
    resources: ResourceArgs,
    /// Print the sandbox as JSON afterwards.
    #[arg(long)]
    json: bool,
}

/// Runs `alcove sandbox resize`: fails when the server admitted the resize but could not
/// apply it (the sandbox keeps its previous limits then).
pub async fn run(c: &Connection, args: ResizeArgs) -> anyhow::Result<()> {
    let patch = UpdateSandboxRequest {
        resources: Some(args.resources.request()),
        ..UpdateSandboxRequest::default()
    };
    let bar = output::spinner(format!("resizing {}", args.sandbox));
    let info = c.client.update(&args.sandbox, &patch).await;
    bar.finish_and_clear();
    let info = info.map_err(|e| c.explain(e))?;
    if let Some(resize) = &info.resource_resize
        && resize.status == ResizeStatus::Failed
    {
        bail!(
            "resizing {} failed; its limits are unchanged: {}",
            args.sandbox,
            resize.error_message.as_deref().unwrap_or("no reason given")
        );
    }
    if args.json {
        return output::json(&info);
    }
    let r = &info.resources;
    println!(
        "{} cpus={} memory={}M disk={}M",
        info.id, r.cpus, r.memory_mb, r.disk_mb
    );
    Ok(())
}
