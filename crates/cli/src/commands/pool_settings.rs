//! What `alcove pool create` and `pool update` set: a pool's image, size, counts, lifetime,
//! network and node labels.

use std::collections::BTreeMap;

use alcove_client::wire::pool::{SandboxPoolInfo, SandboxPoolRequest};
use alcove_client::wire::sandbox::ResourcesRequest;

use super::sandbox::{NetworkArgs, ResourceArgs, parse_env, parse_secs};

/// A pool's settings as flags; on an update, those not given keep their value.
#[derive(Debug, clap::Args)]
pub struct PoolSettings {
    /// Image of its sandboxes [default at create: the server's].
    #[arg(long)]
    image: Option<String>,
    /// Size of each sandbox.
    #[command(flatten)]
    resources: ResourceArgs,
    /// Idle sandboxes kept started (1 to 64).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=64))]
    warm: Option<i64>,
    /// Most sandboxes at once, idle and claimed (1 to 1000).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=1000))]
    max: Option<i64>,
    /// Lifetime of a claimed sandbox, counted from the claim (0: none).
    #[arg(long, value_parser = parse_secs)]
    timeout: Option<i64>,
    /// Outbound policy of its sandboxes (a claim may replace it; on an update, any of these
    /// flags replaces the pool's whole policy).
    #[command(flatten)]
    network: NetworkArgs,
    /// Start its sandboxes only on a node with this label (repeatable: every one must match;
    /// in a cluster, the nodes' `--node-label`s; on an update, they replace the pool's).
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_env)]
    node_labels: Vec<(String, String)>,
}

impl PoolSettings {
    /// The body of a create: what was not given is left to the server's defaults.
    pub fn create_request(self) -> anyhow::Result<SandboxPoolRequest> {
        Ok(SandboxPoolRequest {
            image: self.image,
            resources: self.resources.given().then(|| self.resources.request()),
            timeout_secs: self.timeout,
            warm_containers: self.warm,
            max_containers: self.max,
            network: self.network.policy_json()?,
            node_selector: (!self.node_labels.is_empty())
                .then(|| self.node_labels.into_iter().collect::<BTreeMap<_, _>>()),
            ..SandboxPoolRequest::default()
        })
    }

    /// The body of an update of the pool `now`: a PUT replaces the whole configuration (an
    /// absent image is the default one), so what is not changed is sent as it is; a policy
    /// left out stays.
    pub fn update_request(self, now: SandboxPoolInfo) -> anyhow::Result<SandboxPoolRequest> {
        let size = &self.resources;
        Ok(SandboxPoolRequest {
            image: Some(self.image.unwrap_or(now.image)),
            resources: Some(ResourcesRequest {
                cpus: Some(size.cpus.unwrap_or(now.resources.cpus)),
                memory_mb: Some(size.memory.unwrap_or(now.resources.memory_mb)),
                disk_mb: Some(size.disk.unwrap_or(now.resources.disk_mb)),
                ..ResourcesRequest::default()
            }),
            timeout_secs: Some(self.timeout.unwrap_or(now.timeout_secs)),
            entrypoint: Some(now.entrypoint),
            max_containers: self.max.or(now.max_containers),
            warm_containers: Some(self.warm.unwrap_or(now.warm_containers)),
            network: self.network.policy_json()?,
            node_selector: Some(if self.node_labels.is_empty() {
                now.node_selector
            } else {
                self.node_labels.into_iter().collect()
            }),
        })
    }
}
