//! `alcove pool ls|create|update|get|rm|claim`: warm pools, sandboxes started ahead of need and handed
//! out by a claim in milliseconds.

use std::collections::BTreeMap;

use alcove_client::wire::pool::ClaimSandboxRequest;

use super::connection::ServerArgs;
use super::output;
use super::pool_settings::PoolSettings;
use super::sandbox::{NetworkArgs, VolumeArgs, parse_env};

/// `alcove pool …`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove pool create --image alcove/debian --cpus 1 --memory 1G --warm 4 --max 20
  alcove pool create --warm 2 --node-label gpu=a100
  alcove pool ls
  alcove pool claim 3b1f… --name job-7 --env TASK=7
  alcove pool claim 3b1f… --volume data:/data --no-internet --allow-out pypi.org
  alcove pool update 3b1f… --warm 8 --max 40
  alcove pool get 3b1f…
  alcove pool rm 3b1f…")]
pub struct PoolArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List pools.
    #[command(visible_alias = "list")]
    Ls {
        /// Print the pools as a JSON array (of SandboxPoolInfo).
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a pool (prints its id).
    Create {
        #[command(flatten)]
        settings: PoolSettings,
    },
    /// Change a pool: the options given replace its settings, the others stay. Idle sandboxes
    /// of the old settings are replaced in the background; claimed ones are not touched.
    Update {
        /// Pool id.
        pool: String,
        #[command(flatten)]
        settings: PoolSettings,
    },
    /// Show a pool and its sandboxes as JSON.
    #[command(visible_alias = "inspect")]
    Get {
        /// Pool id.
        pool: String,
    },
    /// Delete a pool and its idle sandboxes (refused while claimed ones run).
    #[command(visible_alias = "delete")]
    Rm {
        /// Pool id.
        pool: String,
    },
    /// Claim a running sandbox from a pool (prints its id and status; -q the id only).
    Claim {
        /// Pool id.
        pool: String,
        /// Name of the claimed sandbox.
        #[arg(long)]
        name: Option<String>,
        /// An environment variable for its later processes (repeatable).
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// A stored secret injected as an environment variable (repeatable).
        #[arg(long = "secret", value_name = "NAME")]
        secrets: Vec<String>,
        /// Outbound policy of the claimed sandbox, replacing the pool's.
        #[command(flatten)]
        network: NetworkArgs,
        #[command(flatten)]
        volumes: VolumeArgs,
        /// Print the sandbox as JSON.
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print only the id.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// Runs `alcove pool …`.
pub async fn run(args: PoolArgs) -> anyhow::Result<()> {
    let c = args.server.connect()?;
    let explain = |e| c.explain(e);
    match args.action {
        Action::Ls { json, quiet } => {
            let pools = c.client.list_pools().await.map_err(explain)?;
            if json {
                return output::json(&pools);
            }
            if quiet {
                return output::ids(pools.iter().map(|p| &p.id));
            }
            output::table(
                ["ID", "IMAGE", "CPUS", "MEMORY", "WARM", "MAX", "CREATED"],
                pools.iter().map(|p| {
                    [
                        p.id.clone(),
                        p.image.clone(),
                        p.resources.cpus.to_string(),
                        format!("{} MiB", p.resources.memory_mb),
                        p.warm_containers.to_string(),
                        p.max_containers.map(|m| m.to_string()).unwrap_or_default(),
                        output::ago(p.created_at),
                    ]
                }),
            );
            Ok(())
        }
        Action::Create { settings } => {
            let request = settings.create_request()?;
            let created = c.client.create_pool(&request).await.map_err(explain)?;
            println!("{}", created.pool_id);
            Ok(())
        }
        Action::Update { pool, settings } => {
            let now = c.client.get_pool(&pool).await.map_err(explain)?;
            let request = settings.update_request(now)?;
            let updated = c
                .client
                .update_pool(&pool, &request)
                .await
                .map_err(explain)?;
            let max = updated.max_containers.map(|m| m.to_string());
            println!(
                "{} warm={} max={} cpus={} memory={}M",
                updated.id,
                updated.warm_containers,
                max.as_deref().unwrap_or("-"),
                updated.resources.cpus,
                updated.resources.memory_mb
            );
            Ok(())
        }
        Action::Get { pool } => output::json(&c.client.get_pool(&pool).await.map_err(explain)?),
        Action::Rm { pool } => {
            c.client.delete_pool(&pool).await.map_err(explain)?;
            println!("{pool}");
            Ok(())
        }
        Action::Claim {
            pool,
            name,
            env,
            secrets,
            network,
            volumes,
            json,
            quiet,
        } => {
            let request = ClaimSandboxRequest {
                name,
                env: (!env.is_empty()).then(|| env.into_iter().collect::<BTreeMap<_, _>>()),
                secret_names: (!secrets.is_empty()).then_some(secrets),
                network: network.policy(),
                file_systems: volumes.mounts(),
            };
            let info = c.client.claim(&pool, &request).await.map_err(explain)?;
            output::new_sandbox(&info, json, quiet)
        }
    }
}
