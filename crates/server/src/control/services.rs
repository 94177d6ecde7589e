//! The control plane: one service per job over one shared [`Context`].
//!
//! `sandboxes` creates, finds, changes and ends sandboxes; `suspension` moves
//! them to disk and back; `snapshots` captures them and restores captures into
//! new sandboxes; `secrets` keeps sealed values; `archive` reads and purges ended
//! sandboxes. What they share (the store,
//! the node, the running handles and the per-sandbox op locks) lives in the
//! context, so two services never disagree on who holds a sandbox.

use std::sync::Arc;

use super::archive::Archive;
use super::context::{Context, ControlConfig};
use super::lifecycle::Sandboxes;
use super::secrets::Secrets;
use super::snapshots::Snapshots;
use super::suspend::Suspension;
use super::{AgentClient, ControlError, InFlightGuard, SandboxNode};
use crate::store::{SandboxRecord, Store};

/// The control plane: its services, and what the server asks of all of them.
#[derive(Debug)]
pub struct Control {
    pub(super) ctx: Arc<Context>,
    /// Create, get, list, update, delete and route to sandboxes.
    pub sandboxes: Sandboxes,
    /// Suspend and resume.
    pub suspension: Suspension,
    /// Take, list, delete and restore snapshots.
    pub snapshots: Snapshots,
    /// Set, list and delete secrets.
    pub secrets: Secrets,
    /// Read ended sandboxes and purge them once the retention runs out.
    pub archive: Archive,
    /// Warm pools and their claims.
    pub pools: super::Pools,
    /// Create, list, get and delete volumes (their mounts are on `sandboxes`).
    pub file_systems: super::FileSystems,
    /// Background uploads to the blob store that failed, and when to retry.
    pub(super) upload_backoff: super::blobs::UploadBackoff,
    /// This server as a node of the store, once it has joined.
    pub(super) membership: std::sync::OnceLock<super::membership::Membership>,
}

impl Control {
    /// The control plane over `store` and `node`.
    pub fn new(
        store: Store,
        node: Arc<dyn SandboxNode>,
        cfg: ControlConfig,
        agents: AgentClient,
        secret_box: crate::secrets::SecretBox,
        logs: Arc<crate::logs::Logs>,
        images: Arc<crate::images::Images>,
    ) -> Self {
        let ctx = Arc::new(Context::new(store, node, cfg, secret_box, logs, images));
        let secrets = Secrets::new(Arc::clone(&ctx));
        let snapshots = Snapshots::new(Arc::clone(&ctx));
        let sandboxes =
            Sandboxes::new(Arc::clone(&ctx), secrets.clone(), snapshots.clone(), agents);
        Self {
            pools: super::Pools::new(Arc::clone(&ctx), sandboxes.clone()),
            sandboxes,
            suspension: Suspension::new(Arc::clone(&ctx)),
            snapshots,
            secrets,
            archive: Archive::new(Arc::clone(&ctx)),
            file_systems: super::FileSystems::new(Arc::clone(&ctx)),
            upload_backoff: Default::default(),
            membership: std::sync::OnceLock::new(),
            ctx,
        }
    }

    /// Marks a proxied request to sandbox `id` in flight until the guard drops.
    pub fn enter_request(&self, id: &str) -> InFlightGuard {
        self.ctx.inflight.enter(id)
    }

    /// The proxy base URL given to clients.
    pub fn sandbox_url(&self) -> &str {
        &self.ctx.cfg.sandbox_url
    }

    /// The wire form of a sandbox.
    pub fn info(&self, record: &SandboxRecord) -> alcove_wire::sandbox::SandboxInfo {
        record.to_info(&self.ctx.cfg.sandbox_url, &self.ctx.cfg.ingress_endpoint)
    }

    /// The sandboxes' logs.
    pub fn logs(&self) -> &crate::logs::Logs {
        &self.ctx.logs
    }

    /// The pooled client to the sandboxes' agents.
    pub(super) fn sandboxes_agents(&self) -> &AgentClient {
        self.sandboxes.agents()
    }

    /// The images sandboxes are made from.
    pub fn images(&self) -> &Arc<crate::images::Images> {
        &self.ctx.images
    }

    /// The store (for the timeout reaper).
    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// What the server counted (requests, operation times).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.ctx.metrics
    }

    /// What a `/metrics` scrape reads now: sandboxes by status, the host's
    /// capacity, and each running sandbox's use (read on the blocking pool).
    pub async fn scrape_data(&self) -> Result<crate::metrics::ScrapeData, ControlError> {
        use alcove_wire::sandbox::SandboxStatus as S;
        let counted = self.ctx.store.count_by_status().await?;
        let by_status = [
            S::Pending,
            S::Running,
            S::Snapshotting,
            S::Suspending,
            S::Suspended,
            S::Terminated,
            S::Failed,
        ]
        .iter()
        .map(|s| {
            let n = counted
                .iter()
                .find(|(status, _)| status == s.as_str())
                .map_or(0, |(_, n)| *n);
            (s.as_str().to_string(), n)
        })
        .collect();
        let running: Vec<SandboxRecord> = self
            .ctx
            .local_live()
            .await?
            .into_iter()
            .filter(|record| self.ctx.handle_of(&record.id).is_some())
            .collect();
        let node = Arc::clone(&self.ctx.node);
        let data_dir = self
            .ctx
            .cfg
            .snapshots_dir
            .parent()
            .map(std::path::Path::to_path_buf);
        let read = move || {
            let sandboxes = running
                .into_iter()
                .filter_map(|record| {
                    node.usage(&record.id)
                        .map(|usage| crate::metrics::SandboxFigures {
                            id: record.id.to_string(),
                            namespace: record.namespace.clone(),
                            usage,
                        })
                })
                .collect();
            (sandboxes, host_figures(data_dir.as_deref()))
        };
        let (sandboxes, host) =
            tokio::task::spawn_blocking(read)
                .await
                .map_err(|e| ControlError::OperationFailed {
                    id: String::new(),
                    op: "read the metrics of",
                    reason: e.to_string(),
                })?;
        Ok(crate::metrics::ScrapeData {
            by_status,
            host,
            sandboxes,
        })
    }

    /// A sandbox and what it uses now against its limits (409 when it is not running).
    pub async fn usage(
        &self,
        namespace: &str,
        ident: &str,
    ) -> Result<(SandboxRecord, alcove_runtime::usage::SandboxUsage), ControlError> {
        let record = self.ctx.resolve_local(Some(namespace), ident).await?;
        let not_running = |record: &SandboxRecord| ControlError::InvalidState {
            id: record.id.to_string(),
            status: record.status,
            op: "read the metrics of",
        };
        if self.ctx.handle_of(&record.id).is_none() {
            return Err(not_running(&record));
        }
        match self.ctx.usage(&record.id).await {
            Some(usage) => Ok((record, usage)),
            None => Err(not_running(&record)),
        }
    }

    /// Number of sandboxes running now.
    pub fn running_count(&self) -> usize {
        self.ctx.running_count()
    }

    /// Runs the node's orderly shutdown (sandboxes keep running) and closes the store.
    pub async fn shutdown(&self) {
        self.ctx.shutdown().await;
    }
}

/// The host's capacity: CPUs, pids, memory, and the disk under the data directory.
fn host_figures(data_dir: Option<&std::path::Path>) -> crate::metrics::HostFigures {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
            .saturating_mul(1024)
    };
    let (disk_used, disk_total) = data_dir
        .and_then(alcove_runtime::usage::disk_use)
        .unwrap_or((0, 0));
    let disk_free = data_dir
        .and_then(|d| alcove_runtime::host::disk_space_mb(d).ok())
        .map_or(disk_total.saturating_sub(disk_used), |(free, _)| free << 20);
    crate::metrics::HostFigures {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get() as u64),
        pid_max: alcove_runtime::host::pid_max(),
        memory_total_bytes: kib("MemTotal:"),
        memory_available_bytes: kib("MemAvailable:"),
        disk_free_bytes: disk_free,
        disk_total_bytes: disk_total,
    }
}
