//! The control plane: the sandbox lifecycle and its rules. Handlers call in
//! here; this module decides, writes the store first, then acts on the node.

mod agent_client;
mod agent_share;
mod archive;
mod attach;
mod blobs;
mod build;
mod compactor;
mod context;
mod copy;
mod copy_elsewhere;
mod crashes;
#[cfg(test)]
mod fake_node;
pub mod file_systems;
#[cfg(test)]
mod file_systems_tests;
mod image_share;
mod images;
mod inflight;
mod lifecycle;
mod membership;
mod network;
pub mod node;
mod node_loss;
pub mod node_selector;
mod pools;
mod prepare;
mod recovery;
mod resize;
pub mod secrets;
mod services;
mod snapshots;
pub mod state;
mod suspend;
mod take_over;
// Its harness also serves the API's tests (a control plane on the in-memory node).
#[cfg(test)]
pub(crate) mod tests;
mod timeouts;
pub mod validate;

pub use agent_client::{AgentBody, AgentClient, Upstream};
pub use archive::{Archive, spawn_archive_purger};
pub use build::BuildOptions;
pub use compactor::spawn_compactor;
pub use context::ControlConfig;
pub use copy::{CopyOutcome, MAX_COPIES};
pub use copy_elsewhere::{COPY_DUMP, FORWARDED_BY, RELAY_TOKEN};
pub use crashes::spawn_crash_watch;
pub use file_systems::FileSystems;
pub use inflight::{InFlight, InFlightGuard};
pub use lifecycle::{CreateOutcome, Sandboxes, Target};
pub use membership::{NodeCapacity, NodeIdentity, Placement, spawn_membership};
pub use node::SandboxNode;
pub use pools::{Pools, spawn_pool_refiller};
pub use secrets::Secrets;
pub use services::Control;
pub use snapshots::Snapshots;
pub use suspend::Suspension;
pub use take_over::TakeOver;
pub use timeouts::spawn_timeout_reaper;

use alcove_wire::sandbox::SandboxStatus;

use crate::store::StoreError;

/// Errors of the control plane; `api::error` maps them to HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such sandbox (or image, or snapshot).
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What was looked for.
        kind: &'static str,
        /// The identifier given.
        id: String,
    },
    /// A live sandbox already has the name.
    #[error("a live sandbox is already named {0:?}")]
    NameTaken(String),
    /// A field of the request is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The operation does not fit the sandbox's status.
    #[error("cannot {op} sandbox {id}: it is {status}")]
    InvalidState {
        /// Sandbox id.
        id: String,
        /// Its status.
        status: SandboxStatus,
        /// The operation refused.
        op: &'static str,
    },
    /// The request conflicts with the sandbox's present state (e.g. a memory limit below
    /// what it uses); the message has the figures.
    #[error("{0}")]
    Conflict(String),
    /// A volume is held where the request needs it free, or files are open on it.
    #[error("{0}")]
    FileSystemInUse(String),
    /// The sandbox lives on another node, which alone acts on it.
    #[error(
        "sandbox {id} lives on node {node:?}, which alone acts on it: retry (this server \
         forwards requests for it there from now on) or send the request to that node \
         (GET /nodes lists their addresses)"
    )]
    OnOtherNode {
        /// Sandbox id.
        id: String,
        /// The node it lives on.
        node: String,
    },
    /// The sandbox lives on a node whose lease ran out (stopped, or cut off).
    #[error(
        "sandbox {id} lives on node {node:?}, which is offline (its lease in the store ran out); \
         retry once it is back"
    )]
    NodeOffline {
        /// Sandbox id.
        id: String,
        /// The node it lives on.
        node: String,
    },
    /// This node is draining: it starts and resumes no sandboxes until it is
    /// made active again.
    #[error(
        "this node is draining (alcove node drain): it starts and resumes no sandboxes until `alcove node activate`"
    )]
    Draining,
    /// This node could not renew its lease in the store in time, or was
    /// declared lost: it starts nothing until it holds a lease again.
    #[error(
        "this node cannot hold its lease in the store (cut off from the database, or declared \
         lost by the other nodes): it starts no sandboxes until it holds one again; retry"
    )]
    Fenced,
    /// This node has no room for the sandbox (another node may).
    #[error(
        "node {node:?} has no room for a sandbox of {cpus} CPUs and {memory_mb} MiB (it has \
         promised its CPUs and memory within its overcommit)"
    )]
    NoRoomHere {
        /// This node.
        node: String,
        /// CPUs asked for.
        cpus: f64,
        /// Memory asked for, MiB.
        memory_mb: i64,
    },
    /// This node's labels do not match the sandbox's `node_selector` (another node's may).
    #[error(
        "node {node:?} (labels: {labels}) does not match the sandbox's node_selector \
         ({selector})"
    )]
    NotMatchedHere {
        /// This node.
        node: String,
        /// Its labels, described.
        labels: String,
        /// The selector, described.
        selector: String,
    },
    /// No live active node whose labels match the sandbox's `node_selector` has room for it.
    #[error(
        "no live active node whose labels match node_selector ({selector}) has room for a \
         sandbox of {cpus} CPUs and {memory_mb} MiB (see the nodes' labels and use in \
         GET /nodes)"
    )]
    NoMatchingNode {
        /// The selector, described.
        selector: String,
        /// CPUs asked for.
        cpus: f64,
        /// Memory asked for, MiB.
        memory_mb: i64,
    },
    /// No node of the cluster has room for the sandbox.
    #[error(
        "no node has room for a sandbox of {cpus} CPUs and {memory_mb} MiB (every live active \
         node has promised its CPUs and memory within its overcommit, see GET /nodes); retry \
         once sandboxes end, or ask for less"
    )]
    NoRoom {
        /// CPUs asked for.
        cpus: f64,
        /// Memory asked for, MiB.
        memory_mb: i64,
    },
    /// The feature exists in the API but not in this server yet.
    #[error("{0} is not implemented by this server yet")]
    NotImplemented(&'static str),
    /// The sandbox is not running (yet); the request did not reach it.
    #[error("sandbox {id} is {status}, not running")]
    NotReady {
        /// Sandbox id.
        id: String,
        /// Its status.
        status: SandboxStatus,
    },
    /// An operation on the sandbox ran and failed; the sandbox is unchanged.
    #[error("{op} of sandbox {id} failed: {reason}")]
    OperationFailed {
        /// Sandbox id.
        id: String,
        /// The operation.
        op: &'static str,
        /// Why (the runtime's error).
        reason: String,
    },
    /// What runs in the sandbox makes the operation impossible right now (a process
    /// CRIU cannot dump in its state); the sandbox runs on, unchanged.
    #[error("{op} of sandbox {id} refused: {reason}")]
    OperationRefused {
        /// Sandbox id.
        id: String,
        /// The operation.
        op: &'static str,
        /// What in the sandbox stands in the way, and what to do about it.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node runtime failed.
    #[error(transparent)]
    Runtime(#[from] alcove_runtime::RuntimeError),
    /// The image store, a pull, an import or a build failed (a missing image
    /// converts to [`ControlError::NotFound`] instead).
    #[error(transparent)]
    Image(alcove_images::ImageStoreError),
    /// A build step ran and failed (the message has its exit and output).
    #[error("build failed: {0}")]
    BuildFailed(String),
    /// A claim found no idle sandbox and the pool is at its `max_containers`.
    #[error("pool {pool} is at capacity: {members} of max_containers {max} sandboxes, none idle")]
    PoolAtCapacity {
        /// Pool id.
        pool: String,
        /// Its live sandboxes.
        members: usize,
        /// Its `max_containers`.
        max: i64,
    },
    /// A pool cannot be deleted while sandboxes claimed from it run.
    #[error("pool {pool} has claimed sandboxes that have not ended: {ids}")]
    PoolInUse {
        /// Pool id.
        pool: String,
        /// The claimed sandboxes, comma-separated.
        ids: String,
    },
}

impl From<alcove_images::ImageStoreError> for ControlError {
    /// A missing image is a `NotFound` of kind `image`, like a missing
    /// sandbox or snapshot; everything else stays an image error.
    fn from(e: alcove_images::ImageStoreError) -> Self {
        match e {
            alcove_images::ImageStoreError::NotFound(id) => Self::NotFound { kind: "image", id },
            other => Self::Image(other),
        }
    }
}
