//! A running sandbox's use of the machine against its limits
//! (docs/protocol/control-plane.md, Metrics).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `GET {B}/sandboxes/{id}/metrics`: figures read from the sandbox's
/// cgroups and its writable layer when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxMetrics {
    /// The sandbox's id.
    pub sandbox_id: String,
    /// When the figures were read (epoch ms).
    pub timestamp: i64,
    /// CPU time used since the sandbox started (user and system), in seconds.
    pub cpu_seconds: f64,
    /// CPUs the sandbox may use (its `cpus`).
    pub cpus: f64,
    /// Memory in use, without the page cache the kernel can drop, in bytes.
    pub memory_bytes: u64,
    /// Memory limit in bytes (`null` when none).
    #[schema(required = true)]
    pub memory_limit_bytes: Option<u64>,
    /// Tasks (processes and threads) now.
    pub pids: u64,
    /// Task limit (`null` when none).
    #[schema(required = true)]
    pub pids_limit: Option<u64>,
    /// Bytes written to the writable layer.
    pub disk_used_bytes: u64,
    /// Size of the writable layer in bytes.
    pub disk_limit_bytes: u64,
}
