//! One stored sandbox and its mapping to the wire's `SandboxInfo`.

use alcove_runtime::SandboxId;
use alcove_wire::sandbox::{
    NetworkConfig, ResourceResize, ResourcesInfo, SandboxInfo, SandboxStatus,
};
use alcove_wire::time::EpochMillis;

/// A sandbox as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxRecord {
    /// Id.
    pub id: SandboxId,
    /// Owning namespace.
    pub namespace: String,
    /// Name (live names are unique).
    pub name: Option<String>,
    /// Current status.
    pub status: SandboxStatus,
    /// Canonical image name.
    pub image: String,
    /// CPUs.
    pub cpus: f64,
    /// Memory in MiB.
    pub memory_mb: i64,
    /// Writable layer in MiB.
    pub disk_mb: i64,
    /// Lifetime in seconds (0 = none).
    pub timeout_secs: i64,
    /// Custom entrypoint started beside the agent.
    pub entrypoint: Vec<String>,
    /// Outbound policy.
    pub network_policy: NetworkConfig,
    /// Secrets injected as environment variables.
    pub secret_names: Vec<String>,
    /// Publicly routed ports.
    pub exposed_ports: Vec<i64>,
    /// Whether exposed ports accept unauthenticated traffic.
    pub allow_unauthenticated_access: bool,
    /// Whether proxy traffic wakes it.
    pub auto_resume: bool,
    /// Network slot while it has one.
    pub slot: Option<i64>,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Termination time.
    pub terminated_at: Option<EpochMillis>,
    /// When `timeout_secs` runs out.
    pub deadline_at: Option<EpochMillis>,
    /// Why pending.
    pub pending_reason: Option<String>,
    /// Why it ended.
    pub termination_reason: Option<String>,
    /// Failure details.
    pub error_details: Option<String>,
    /// Timeout left while suspended (suspended time does not count).
    pub timeout_remaining_ms: Option<i64>,
    /// Operation in flight that the status does not show (`resuming`).
    pub transition: Option<String>,
    /// When it was last suspended.
    pub suspended_at: Option<EpochMillis>,
    /// When it entered the archive (set once it has ended; `--archive-ttl` counts from it).
    pub archived_at: Option<EpochMillis>,
    /// The latest live resize.
    pub resource_resize: Option<ResourceResize>,
    /// The volumes mounted in it (docs/volumes.md); a live sandbox holds them.
    pub file_systems: Vec<alcove_wire::file_system::FileSystemMount>,
    /// The node it lives on (`None`: written before nodes existed, or by a
    /// server that has not joined, as in tests).
    pub node: Option<String>,
    /// The pool it belongs to (a warm sandbox) or was claimed from.
    pub pool_id: Option<String>,
    /// Where it stands in its pool; `None` for a sandbox of no pool.
    pub pool_state: Option<PoolState>,
    /// The labels its node must have (`node_selector` of its create); empty: any node.
    pub node_selector: std::collections::BTreeMap<String, String>,
}

/// Where a pool's sandbox stands. Idle and claiming sandboxes belong to the pool:
/// the API lists and routes only claimed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    /// Started (or starting) and waiting for a claim.
    Idle,
    /// Being handed to a claim; a restart ends it (half-applied configuration).
    Claiming,
    /// Handed out: an ordinary sandbox from now on.
    Claimed,
}

impl PoolState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Claiming => "claiming",
            Self::Claimed => "claimed",
        }
    }

    /// From its stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "idle" => Some(Self::Idle),
            "claiming" => Some(Self::Claiming),
            "claimed" => Some(Self::Claimed),
            _ => None,
        }
    }
}

impl SandboxRecord {
    /// Whether the sandbox still belongs to its pool (live, idle or being claimed): such
    /// a sandbox is not listed, routed or addressable through the sandbox API. Once ended
    /// (a failed claim, a drained pool) it is an archived sandbox like any other, answered
    /// by id as `/archived-sandboxes` answers it.
    pub fn is_pool_reserve(&self) -> bool {
        self.status.is_live()
            && matches!(self.pool_state, Some(PoolState::Idle | PoolState::Claiming))
    }
}

impl SandboxRecord {
    /// Records that the sandbox ended at `now`: its end time, and its entry into the
    /// archive. Callers change the status through `state::apply` first.
    pub fn mark_ended(&mut self, now: EpochMillis) {
        self.terminated_at = Some(now);
        self.archived_at = Some(now);
    }

    /// The wire form; `sandbox_url` and `ingress_endpoint` are given for routable states.
    pub fn to_info(&self, sandbox_url: &str, ingress_endpoint: &str) -> SandboxInfo {
        let routable = !matches!(
            self.status,
            SandboxStatus::Pending
                | SandboxStatus::Terminated
                | SandboxStatus::Failed
                | SandboxStatus::Timeout
        );
        SandboxInfo {
            id: self.id.to_string(),
            namespace: self.namespace.clone(),
            status: self.status,
            name: self.name.clone(),
            image: crate::images::display_name(&self.image).to_string(),
            resources: ResourcesInfo {
                cpus: self.cpus,
                memory_mb: self.memory_mb,
                disk_mb: self.disk_mb,
                ephemeral_disk_mb: self.disk_mb,
            },
            sandbox_url: routable.then(|| sandbox_url.to_string()),
            secret_names: self.secret_names.clone(),
            timeout_secs: self.timeout_secs,
            entrypoint: self.entrypoint.clone(),
            network_policy: self.network_policy.clone(),
            allow_unauthenticated_access: self.allow_unauthenticated_access,
            exposed_ports: self.exposed_ports.clone(),
            auto_resume: self.auto_resume,
            created_at: self.created_at,
            terminated_at: self.terminated_at,
            pending_reason: self.pending_reason.clone(),
            termination_reason: self.termination_reason.clone(),
            error_details: self.error_details.clone(),
            ingress_endpoint: routable.then(|| ingress_endpoint.to_string()),
            runtime: "runc".into(),
            file_systems: self.file_systems.clone(),
            resource_resize: self.resource_resize.clone(),
            pool_id: self.pool_id.clone(),
            node_selector: self.node_selector.clone(),
        }
    }
}
