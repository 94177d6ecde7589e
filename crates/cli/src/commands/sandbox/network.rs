//! `alcove sandbox network`: a running sandbox's outbound policy, changed live.

use alcove_client::wire::sandbox::{NetworkConfig, UpdateSandboxRequest};

use crate::commands::connection::Connection;
use crate::commands::output;

use super::binding_args::NetworkArgs;

/// `alcove sandbox network`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("policy").required(true).multiple(true).args(["no_internet", "allow_out", "deny_out", "open"])),
    after_help = "The flags replace the whole policy, at once for a running sandbox (open \
connections included) and at resume for a suspended one.

Examples:
  alcove sandbox network dev --no-internet --allow-out pypi.org
  alcove sandbox network dev --deny-out 10.0.0.0/8
  alcove sandbox network dev --open"
)]
pub struct NetworkCmdArgs {
    /// Sandbox id or name.
    sandbox: String,
    #[command(flatten)]
    network: NetworkArgs,
    /// Back to the open default: every destination reachable.
    #[arg(long, conflicts_with_all = ["no_internet", "allow_out", "deny_out"])]
    open: bool,
    /// Print the sandbox as JSON afterwards.
    #[arg(long)]
    json: bool,
}

/// Runs `alcove sandbox network`: prints the policy now in force.
pub async fn run(c: &Connection, args: NetworkCmdArgs) -> anyhow::Result<()> {
    // `null` (`--open`) resets the policy to the open default.
    let network = args
        .network
        .policy_json()?
        .unwrap_or(serde_json::Value::Null);
    let patch = UpdateSandboxRequest {
        network: Some(network),
        ..UpdateSandboxRequest::default()
    };
    let info = c
        .client
        .update(&args.sandbox, &patch)
        .await
        .map_err(|e| c.explain(e))?;
    if args.json {
        return output::json(&info);
    }
    println!("{} {}", info.id, describe(&info.network_policy));
    Ok(())
}

/// `internet=blocked allow-out=a,b deny-out=c`.
fn describe(policy: &NetworkConfig) -> String {
    let mut text = if policy.allow_internet_access {
        "internet=allowed".to_string()
    } else {
        "internet=blocked".to_string()
    };
    if !policy.allow_out.is_empty() {
        text += &format!(" allow-out={}", policy.allow_out.join(","));
    }
    if !policy.deny_out.is_empty() {
        text += &format!(" deny-out={}", policy.deny_out.join(","));
    }
    text
}
