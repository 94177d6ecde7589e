//! Warm pools (docs/protocol/control-plane.md, Pools): a pool keeps idle sandboxes
//! of one configuration started, and a claim hands one out with the caller's own
//! name, environment, secrets, network policy and file systems applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::sandbox::{NetworkConfig, ResourcesInfo, ResourcesRequest};
use crate::time::{EpochMillis, EpochMillisSchema};

/// Most idle sandboxes one pool keeps started.
pub const MAX_WARM_CONTAINERS: i64 = 64;

/// Most sandboxes one pool may have at once (idle and claimed).
pub const MAX_POOL_CONTAINERS: i64 = 1000;

/// Body of `POST {B}/sandbox-pools` and `PUT {B}/sandbox-pools/{pool}`. Unknown
/// fields are tolerated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxPoolRequest {
    /// Image of the pool's sandboxes (absent = the image `default`).
    #[serde(default)]
    pub image: Option<String>,
    /// Resources of each sandbox.
    #[serde(default)]
    pub resources: Option<ResourcesRequest>,
    /// Lifetime of a claimed sandbox in seconds, counted from the claim (0 = none).
    #[serde(default)]
    pub timeout_secs: Option<i64>,
    /// Entrypoint each sandbox runs from the moment it is started (before a claim).
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Most sandboxes the pool may have at once, idle and claimed (absent = no limit
    /// but the host's capacity).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_containers: Option<i64>,
    /// Idle sandboxes kept started (absent = 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 64)]
    pub warm_containers: Option<i64>,
    /// Outbound policy of the pool's sandboxes. On `PUT`: absent keeps the current
    /// policy, `null` clears it (kept as raw JSON to tell `null` from absent).
    #[serde(
        default,
        deserialize_with = "crate::sandbox::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<NetworkConfig>)]
    pub network: Option<serde_json::Value>,
    /// Alcove: start the pool's sandboxes only on nodes whose labels
    /// (`--node-label key=value`) include every one of these pairs; the claimed
    /// sandboxes keep it (docs/cluster.md). On `PUT`: absent = any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_network_is_told_from_an_absent_one() {
        let absent: SandboxPoolRequest = serde_json::from_str("{}").expect("parse");
        assert_eq!(absent.network, None);
        let null: SandboxPoolRequest = serde_json::from_str(r#"{"network": null}"#).expect("parse");
        assert_eq!(null.network, Some(serde_json::Value::Null));
        // And it goes out as it came in: a PUT that keeps the policy sends no `network`.
        let kept = serde_json::to_value(&absent).expect("serialize");
        assert!(kept.get("network").is_none(), "{kept}");
        let cleared = serde_json::to_value(&null).expect("serialize");
        assert_eq!(cleared.get("network"), Some(&serde_json::Value::Null));
    }
}

/// Answer of `POST {B}/sandbox-pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateSandboxPoolResponse {
    /// The new pool's id.
    pub pool_id: String,
    /// Its namespace.
    pub namespace: String,
}

/// Whether a pool's sandbox waits for a claim or has been claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PoolContainerState {
    /// Started and waiting for a claim.
    Idle,
    /// Claimed and running.
    Running,
}

/// One sandbox of a pool, as `GET {B}/sandbox-pools/{pool}` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolContainerInfo {
    /// Container id (the sandbox's id).
    pub id: String,
    /// Idle or claimed.
    pub state: PoolContainerState,
    /// The sandbox's id.
    pub sandbox_id: String,
    /// The node it runs on.
    pub executor_id: String,
}

/// A pool (`GET`/`PUT {B}/sandbox-pools/{pool}`, and each item of the list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxPoolInfo {
    /// Pool id.
    pub id: String,
    /// Owning namespace.
    pub namespace: String,
    /// Image of its sandboxes.
    pub image: String,
    /// Resources of each sandbox.
    pub resources: ResourcesInfo,
    /// Lifetime of a claimed sandbox in seconds (0 = none).
    pub timeout_secs: i64,
    /// Entrypoint of its sandboxes.
    pub entrypoint: Vec<String>,
    /// Most sandboxes at once, idle and claimed (null = no limit).
    #[schema(required = true)]
    pub max_containers: Option<i64>,
    /// Idle sandboxes kept started.
    pub warm_containers: i64,
    /// Outbound policy of its sandboxes.
    pub network_policy: NetworkConfig,
    /// Alcove: the labels the nodes of its sandboxes must have (absent when none were asked for).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Its sandboxes: idle ones and claimed live ones (`GET` of one pool only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub containers: Option<Vec<PoolContainerInfo>>,
    /// Creation time.
    #[schema(value_type = EpochMillisSchema)]
    pub created_at: EpochMillis,
    /// Last change.
    #[schema(value_type = EpochMillisSchema)]
    pub updated_at: EpochMillis,
}

/// Answer of `GET {B}/sandbox-pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListSandboxPoolsResponse {
    /// The namespace's pools, oldest first.
    pub pools: Vec<SandboxPoolInfo>,
}

/// Body of a claim, `POST {B}/sandbox-pools/{pool}/sandboxes` (may be empty): what is
/// bound to the sandbox at the claim. Unknown fields are tolerated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClaimSandboxRequest {
    /// Name of the claimed sandbox (a DNS label, unique among live sandboxes).
    #[serde(default)]
    pub name: Option<String>,
    /// Environment variables every later process of the sandbox gets.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Secrets added as environment variables of every later process.
    #[serde(default)]
    pub secret_names: Option<Vec<String>>,
    /// Outbound policy, replacing the pool's.
    #[serde(default)]
    pub network: Option<NetworkConfig>,
    /// Volumes to mount (each `{"file_system_id", "mount_path", "read_only"?}`).
    #[serde(default)]
    pub file_systems: Option<Vec<crate::file_system::FileSystemMount>>,
}
