//! `alcove sandbox ports|desktop|stats`: how to reach a sandbox from outside, and what it uses.

use alcove_client::wire::sandbox::{SandboxInfo, UpdateSandboxRequest};
use anyhow::{Context, bail};

use crate::commands::connection::Connection;
use crate::commands::output;

/// The agent's port: never exposed.
const AGENT_PORT: u16 = 9501;

/// `alcove sandbox ports`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove sandbox ports ls dev
  alcove sandbox ports expose dev 8080 3000
  curl \"$(alcove sandbox ports url dev 8080)\"
  alcove sandbox ports unexpose dev 3000")]
pub struct PortsArgs {
    #[command(subcommand)]
    action: PortsAction,
}

#[derive(Debug, clap::Subcommand)]
enum PortsAction {
    /// List the exposed ports and their URLs.
    #[command(visible_alias = "list")]
    Ls {
        /// Sandbox id or name.
        sandbox: String,
        /// Print `[{"port", "url"}]` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Expose ports through the ingress.
    Expose {
        /// Sandbox id or name.
        sandbox: String,
        /// Ports.
        #[arg(required = true, value_parser = clap::value_parser!(u16).range(1..))]
        ports: Vec<u16>,
    },
    /// Stop exposing ports.
    Unexpose {
        /// Sandbox id or name.
        sandbox: String,
        /// Ports.
        #[arg(required = true, value_parser = clap::value_parser!(u16).range(1..))]
        ports: Vec<u16>,
    },
    /// Print the URL at which a port is reached.
    Url {
        /// Sandbox id or name.
        sandbox: String,
        /// Port.
        #[arg(value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,
    },
}

/// The URL of a user port: `<scheme>://<port>-<id>.<ingress domain>[:<server port>]`.
fn port_url(info: &SandboxInfo, port: u16) -> Option<String> {
    let endpoint = info.ingress_endpoint.as_deref()?;
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("http", endpoint));
    Some(format!(
        "{scheme}://{port}-{}.{}",
        info.id,
        rest.trim_end_matches('/')
    ))
}

/// Runs `alcove sandbox ports …`.
pub async fn ports(c: &Connection, args: PortsArgs) -> anyhow::Result<()> {
    match args.action {
        PortsAction::Ls { sandbox, json } => {
            let info = c.client.get(&sandbox).await.map_err(|e| c.explain(e))?;
            let rows: Vec<(i64, String)> = info
                .exposed_ports
                .iter()
                .map(|p| {
                    let url = u16::try_from(*p)
                        .ok()
                        .and_then(|p| port_url(&info, p))
                        .unwrap_or_default();
                    (*p, url)
                })
                .collect();
            if json {
                let list: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(port, url)| serde_json::json!({"port": port, "url": url}))
                    .collect();
                return output::json(&list);
            }
            output::table(
                ["PORT", "URL"],
                rows.into_iter().map(|(port, url)| [port.to_string(), url]),
            );
            Ok(())
        }
        PortsAction::Expose { sandbox, ports } => change(c, &sandbox, &ports, true).await,
        PortsAction::Unexpose { sandbox, ports } => change(c, &sandbox, &ports, false).await,
        PortsAction::Url { sandbox, port } => {
            let info = c.client.get(&sandbox).await.map_err(|e| c.explain(e))?;
            if !info.exposed_ports.contains(&i64::from(port)) {
                bail!(
                    "port {port} is not exposed: `alcove sandbox ports expose {sandbox} {port}` first"
                );
            }
            let url = port_url(&info, port).context("the server announced no ingress endpoint")?;
            println!("{url}");
            Ok(())
        }
    }
}

async fn change(c: &Connection, sandbox: &str, ports: &[u16], expose: bool) -> anyhow::Result<()> {
    if expose && ports.contains(&AGENT_PORT) {
        bail!("port {AGENT_PORT} is the sandbox agent's and is never exposed");
    }
    let info = c.client.get(sandbox).await.map_err(|e| c.explain(e))?;
    let mut exposed = info.exposed_ports.clone();
    for port in ports.iter().map(|p| i64::from(*p)) {
        if expose && !exposed.contains(&port) {
            exposed.push(port);
        }
        if !expose {
            exposed.retain(|p| *p != port);
        }
    }
    exposed.sort_unstable();
    let patch = UpdateSandboxRequest {
        exposed_ports: Some(exposed),
        ..UpdateSandboxRequest::default()
    };
    let info = c
        .client
        .update(&info.id, &patch)
        .await
        .map_err(|e| c.explain(e))?;
    let list: Vec<String> = info.exposed_ports.iter().map(i64::to_string).collect();
    println!(
        "exposed: {}",
        if list.is_empty() {
            "none".into()
        } else {
            list.join(", ")
        }
    );
    Ok(())
}

/// `alcove sandbox desktop`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The URL carries a token valid for an hour; anyone with it sees and \
drives the desktop.

Examples:
  alcove sandbox desktop desk
  alcove sandbox desktop desk --open"
)]
pub struct DesktopArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// The sandbox's VNC port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Open the URL in the browser (xdg-open) instead of printing it.
    #[arg(long)]
    open: bool,
}

/// Runs `alcove sandbox desktop`.
pub async fn desktop(c: &Connection, args: DesktopArgs) -> anyhow::Result<()> {
    let desktop = c
        .client
        .desktop_url(&args.sandbox, args.port)
        .await
        .map_err(|e| c.explain(e))?;
    if args.open {
        let status = std::process::Command::new("xdg-open")
            .arg(&desktop.url)
            .status()
            .context("running xdg-open (print the URL without --open)")?;
        if !status.success() {
            bail!("xdg-open failed ({status}); the URL: {}", desktop.url);
        }
        return Ok(());
    }
    println!("{}", desktop.url);
    Ok(())
}

/// `alcove sandbox stats`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  alcove sandbox stats dev\n  alcove sandbox stats dev --json")]
pub struct StatsArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// Print the figures as JSON (SandboxMetrics).
    #[arg(long)]
    json: bool,
}

/// Runs `alcove sandbox stats`.
pub async fn stats(c: &Connection, args: StatsArgs) -> anyhow::Result<()> {
    let m = c
        .client
        .metrics(&args.sandbox)
        .await
        .map_err(|e| c.explain(e))?;
    if args.json {
        return output::json(&m);
    }
    let limit =
        |n: Option<u64>, show: fn(u64) -> String| n.map(show).unwrap_or_else(|| "none".into());
    output::table(
        [
            "CPU TIME",
            "CPUS",
            "MEMORY",
            "MEMORY LIMIT",
            "TASKS",
            "TASK LIMIT",
            "DISK",
            "DISK SIZE",
        ],
        [[
            format!("{:.2} s", m.cpu_seconds),
            m.cpus.to_string(),
            output::bytes(m.memory_bytes),
            limit(m.memory_limit_bytes, output::bytes),
            m.pids.to_string(),
            limit(m.pids_limit, |n| n.to_string()),
            output::bytes(m.disk_used_bytes),
            output::bytes(m.disk_limit_bytes),
        ]],
    );
    Ok(())
}
