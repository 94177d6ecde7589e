//! `alcove node ls|drain|activate`: the servers sharing the store, and taking one out of
//! service for maintenance.

use alcove_client::wire::node::NodeInfo;

use super::connection::ServerArgs;
use super::output;

/// `alcove node …`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove node ls
  alcove node drain node-2      # start and resume nothing there; suspend its named sandboxes
  alcove node activate node-2")]
pub struct NodeArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the nodes with their state, capacity and use.
    #[command(visible_alias = "list")]
    Ls {
        /// Print the nodes as a JSON array (of NodeInfo).
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print only the names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Take a node out of service: it starts and resumes no sandboxes, and suspends its
    /// named running ones (kept across its restarts until `activate`).
    Drain {
        /// Node name.
        node: String,
        /// Print the node as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a drained node back in service.
    Activate {
        /// Node name.
        node: String,
        /// Print the node as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn print_node(node: &NodeInfo, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(node);
    }
    println!("{} {}", node.name, node.state.as_str());
    Ok(())
}

/// Runs `alcove node …`.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let c = args.server.connect()?;
    let explain = |e| c.explain(e);
    match args.action {
        Action::Ls { json, quiet } => {
            let nodes = c.client.list_nodes().await.map_err(explain)?;
            if json {
                return output::json(&nodes);
            }
            if quiet {
                return output::ids(nodes.iter().map(|n| &n.name));
            }
            output::table(
                [
                    "NAME",
                    "STATE",
                    "ADDRESS",
                    "CPUS",
                    "MEMORY",
                    "RUNNING",
                    "SUSPENDED",
                    "STARTED",
                ],
                nodes.iter().map(|n| {
                    [
                        n.name.clone(),
                        n.state.as_str().to_string(),
                        n.address.clone(),
                        format!("{}/{}", n.used.cpus, n.capacity.cpus),
                        format!("{}/{} MiB", n.used.memory_mb, n.capacity.memory_mb),
                        n.running_sandboxes.to_string(),
                        n.suspended_sandboxes.to_string(),
                        output::ago(n.started_at),
                    ]
                }),
            );
            Ok(())
        }
        Action::Drain { node, json } => {
            print_node(&c.client.drain_node(&node).await.map_err(explain)?, json)
        }
        Action::Activate { node, json } => {
            print_node(&c.client.activate_node(&node).await.map_err(explain)?, json)
        }
    }
}
