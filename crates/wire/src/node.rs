//! Nodes: the Alcove servers of a deployment (`GET /nodes`). Each registers
//! itself in the store at start and renews a lease while it runs, reporting
//! what its running sandboxes reserve.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::{EpochMillis, EpochMillisSchema};

/// Whether a node takes work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Serving, and taking new sandboxes.
    Active,
    /// Serving the sandboxes it has, taking no new ones, and suspending its
    /// named running sandboxes (`alcove node drain`).
    Draining,
    /// Its lease ran out: stopped, or cut off from the store.
    Offline,
}

impl NodeState {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Offline => "offline",
        }
    }
}

/// CPUs and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeResources {
    /// CPUs.
    pub cpus: f64,
    /// Memory in MiB.
    pub memory_mb: i64,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// Its name (`--node-name`), unique among live nodes.
    pub name: String,
    /// The URL other nodes reach it at (`--advertise-url`).
    pub address: String,
    /// Whether it takes work.
    pub state: NodeState,
    /// Its labels (`--node-label key=value`).
    pub labels: BTreeMap<String, String>,
    /// Its sandboxes' subnet, unique among live nodes.
    pub subnet: String,
    /// What the machine has.
    pub capacity: NodeResources,
    /// What its running sandboxes reserve.
    pub used: NodeResources,
    /// Sandboxes running there.
    pub running_sandboxes: i64,
    /// Suspended sandboxes whose dumps are there.
    pub suspended_sandboxes: i64,
    /// The server's version.
    pub version: String,
    /// When this run of the server registered.
    #[schema(value_type = EpochMillisSchema)]
    pub started_at: EpochMillis,
    /// Until when its lease holds unless renewed (every few seconds).
    #[schema(value_type = EpochMillisSchema)]
    pub lease_expires_at: EpochMillis,
    /// When the other nodes declared it lost (its lease ran out): its running
    /// sandboxes were marked lost and its suspended sandboxes that are in the
    /// blob store moved to the node that declared it. `null` while it is not.
    #[serde(default)]
    #[schema(value_type = Option<EpochMillisSchema>, required = true)]
    pub lost_at: Option<EpochMillis>,
}

/// Answer of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// Every node the store knows, by name.
    pub nodes: Vec<NodeInfo>,
}
