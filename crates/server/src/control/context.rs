//! What every control-plane service shares: the store, the node, the settings,
//! the running sandboxes' handles, the per-sandbox op locks, the proxied
//! requests in flight and the secret box. One `Context` per server, held by
//! each service in an `Arc`, so the services agree on who holds which lock.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alcove_runtime::{SandboxHandle, SandboxId};

use super::validate::HostLimits;
use super::{ControlError, InFlight, SandboxNode};
use crate::secrets::SecretBox;
use crate::store::{SandboxRecord, Store};

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The proxy base URL handed to clients as `sandbox_url`.
    pub sandbox_url: String,
    /// Base of user-port URLs (`ingress_endpoint`).
    pub ingress_endpoint: String,
    /// Where snapshots are stored (`<data-dir>/snapshots`).
    pub snapshots_dir: std::path::PathBuf,
    /// Pack suspended sandboxes and snapshots idle this long (`None` = never).
    pub compress_after: Option<Duration>,
    /// How long ended sandboxes stay in the archive before they are purged.
    pub archive_ttl: Duration,
    /// Failed timeout suspends in a row before a named sandbox is ended instead (0 = never).
    pub timeout_suspend_attempts: u32,
    /// How long after a failed timeout suspend the next one is tried.
    pub timeout_suspend_retry: Duration,
    /// Host limits for validation.
    pub host: HostLimits,
    /// Where dumps and snapshots are copied so they outlive this machine
    /// (`--blob-store`); `None` keeps them on the local disk only.
    pub blobs: Option<alcove_blobs::BlobStore>,
}

/// The lock one operation on a sandbox (or a snapshot's files) holds.
pub(super) type OpLock = Arc<tokio::sync::Mutex<()>>;

/// The op-lock key of a snapshot (restores and packing never overlap).
pub(super) fn snapshot_lock_key(id: &str) -> String {
    format!("snapshot:{id}")
}

/// The state the control-plane services share.
#[derive(Debug)]
pub(super) struct Context {
    /// The durable state: every change is written here before it is acted on.
    pub(super) store: Store,
    /// The machine the sandboxes run on.
    pub(super) node: Arc<dyn SandboxNode>,
    /// Settings.
    pub(super) cfg: ControlConfig,
    /// Running sandboxes' handles, by id.
    running: RwLock<HashMap<String, SandboxHandle>>,
    /// One lock per sandbox so operations on it never interleave.
    ops: std::sync::Mutex<HashMap<String, OpLock>>,
    /// Proxied requests in flight, drained before a suspend.
    pub(super) inflight: InFlight,
    /// Seals and opens secret values.
    pub(super) secret_box: SecretBox,
    /// Counts requests and times operations for `/metrics`.
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    /// The sandboxes' logs; running sandboxes' journals are followed into them.
    pub(super) logs: Arc<crate::logs::Logs>,
    /// The images sandboxes are made from.
    pub(super) images: Arc<crate::images::Images>,
    /// This node is draining (`alcove node drain`): it takes no new sandboxes and
    /// resumes none. Set from the store at every lease renewal.
    pub(super) draining: std::sync::atomic::AtomicBool,
    /// This node does not hold its lease (see `node_loss`): it starts nothing.
    pub(super) fenced: std::sync::atomic::AtomicBool,
    /// What this node offers to sandboxes placed across nodes (set when it joins).
    pub(super) capacity: std::sync::OnceLock<super::NodeCapacity>,
    /// Admits one new sandbox at a time against that capacity.
    admission: tokio::sync::Mutex<()>,
    /// This server's node name, once it has joined (never, in tests).
    pub(super) local_node: std::sync::OnceLock<String>,
    /// This node's labels (`--node-label`), once it has joined: what sandboxes'
    /// `node_selector` must match to live here.
    pub(super) labels: std::sync::OnceLock<std::collections::BTreeMap<String, String>>,
    /// The cluster's relay token (see [`super::RELAY_TOKEN`]), once joined.
    pub(super) relay_token: std::sync::OnceLock<String>,
    /// How many other nodes the store knew at the last renewal: while none,
    /// requests are never checked for another owner.
    pub(super) peers: std::sync::atomic::AtomicUsize,
}

impl Context {
    /// A context over `store` and `node`, with nothing running yet.
    pub(super) fn new(
        store: Store,
        node: Arc<dyn SandboxNode>,
        cfg: ControlConfig,
        secret_box: SecretBox,
        logs: Arc<crate::logs::Logs>,
        images: Arc<crate::images::Images>,
    ) -> Self {
        Self {
            store,
            node,
            cfg,
            running: RwLock::new(HashMap::new()),
            ops: std::sync::Mutex::new(HashMap::new()),
            inflight: InFlight::default(),
            secret_box,
            metrics: Arc::default(),
            logs,
            images,
            draining: std::sync::atomic::AtomicBool::new(false),
            fenced: std::sync::atomic::AtomicBool::new(false),
            capacity: std::sync::OnceLock::new(),
            admission: tokio::sync::Mutex::new(()),
            local_node: std::sync::OnceLock::new(),
            labels: std::sync::OnceLock::new(),
            relay_token: std::sync::OnceLock::new(),
            peers: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// This server's node name, once it has joined.
    pub(super) fn local_node(&self) -> Option<&str> {
        self.local_node.get().map(String::as_str)
    }

    /// Whether a sandbox lives on this node (or on none: rows from before nodes).
    pub(super) fn is_local(&self, r: &SandboxRecord) -> bool {
        match (&r.node, self.local_node()) {
            (Some(theirs), Some(mine)) => theirs == mine,
            _ => true,
        }
    }

    /// The live sandboxes of this node: what its background work covers.
    pub(super) async fn local_live(&self) -> Result<Vec<SandboxRecord>, ControlError> {
        Ok(self.only_local(self.store.list_live().await?))
    }

    /// This node's live sandboxes whose deadline is at or before `now` (the timeout
    /// reaper's, every second: read through an index, not by listing every sandbox).
    pub(super) async fn local_due(&self, now: i64) -> Result<Vec<SandboxRecord>, ControlError> {
        Ok(self.only_local(self.store.list_live_due(now).await?))
    }

    /// This node's suspended sandboxes that no transition is moving (the compactor's
    /// and the blob uploader's).
    pub(super) async fn local_suspended_settled(&self) -> Result<Vec<SandboxRecord>, ControlError> {
        Ok(self.only_local(self.store.list_suspended_settled().await?))
    }

    /// This node's live warm sandboxes of pools (the pool refiller's).
    pub(super) async fn local_idle_pool_members(&self) -> Result<Vec<SandboxRecord>, ControlError> {
        Ok(self.only_local(self.store.list_live_idle_pool_members().await?))
    }

    fn only_local(&self, mut records: Vec<SandboxRecord>) -> Vec<SandboxRecord> {
        records.retain(|r| self.is_local(r));
        records
    }

    /// This node's name while other nodes share its store (placement, pool
    /// turns and routing matter only then); `None` for a server on its own.
    pub(super) fn clustered_node(&self) -> Option<&str> {
        self.local_node()
            .filter(|_| self.peers.load(std::sync::atomic::Ordering::Relaxed) > 0)
    }

    /// Stores a new sandbox of this node. When other nodes share the store
    /// this is where the node's room is checked: under one lock, against what
    /// its stored sandboxes reserve, so that however many nodes place creates
    /// here at once, it never promises more than it offers. `NoRoomHere` when
    /// it has no room (the placing node then tries another).
    pub(super) async fn insert_admitted(&self, record: &SandboxRecord) -> Result<(), ControlError> {
        self.matches_here(&record.node_selector)?;
        if self.clustered_node().is_none() {
            return Ok(self.store.insert(record).await?);
        }
        let _admitting = self.admission.lock().await;
        self.room_for(record).await?;
        Ok(self.store.insert(record).await?)
    }

    /// Stores a suspended sandbox of this node as resuming, from when it
    /// reserves its CPUs and memory again: checked under the same lock as
    /// [`Self::insert_admitted`] when other nodes share the store.
    pub(super) async fn update_admitted(&self, record: &SandboxRecord) -> Result<(), ControlError> {
        self.matches_here(&record.node_selector)?;
        if self.clustered_node().is_none() {
            return Ok(self.store.update(record).await?);
        }
        let _admitting = self.admission.lock().await;
        self.room_for(record).await?;
        Ok(self.store.update(record).await?)
    }

    /// `NotMatchedHere` unless this node's labels match `selector` (an empty
    /// selector matches every node).
    pub(super) fn matches_here(
        &self,
        selector: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ControlError> {
        let none = std::collections::BTreeMap::new();
        let labels = self.labels.get().unwrap_or(&none);
        if super::node_selector::matches(selector, labels) {
            return Ok(());
        }
        Err(ControlError::NotMatchedHere {
            node: self.local_node().unwrap_or_default().to_string(),
            labels: super::node_selector::describe(labels),
            selector: super::node_selector::describe(selector),
        })
    }

    /// `NoRoomHere` when what this node's stored sandboxes reserve leaves no
    /// room for `record` within the capacity it offers (always room when alone
    /// in the store). Binding only under the admission lock.
    pub(super) async fn room_for(&self, record: &SandboxRecord) -> Result<(), ControlError> {
        if self.has_room(record.cpus, record.memory_mb).await? {
            return Ok(());
        }
        Err(ControlError::NoRoomHere {
            node: self.local_node().unwrap_or_default().to_string(),
            cpus: record.cpus,
            memory_mb: record.memory_mb,
        })
    }

    /// Whether what this node's stored sandboxes reserve leaves room for
    /// `cpus` and `memory_mb` more (always when alone in the store). A guess
    /// outside the admission lock; see [`Self::room_for`].
    pub(super) async fn has_room(&self, cpus: f64, memory_mb: i64) -> Result<bool, ControlError> {
        let (Some(me), Some(cap)) = (self.clustered_node(), self.capacity.get()) else {
            return Ok(true);
        };
        let (used_cpus, used_memory_mb) = self.store.reserved_on(me).await?;
        let cpu_room = cap.cpus * cap.cpu_overcommit - used_cpus;
        let memory_room = (cap.memory_mb as f64 * cap.memory_overcommit) as i64 - used_memory_mb;
        Ok(cpus <= cpu_room + 1e-6 && memory_mb <= memory_room)
    }

    /// Refuses work that would start a sandbox on this node while it drains.
    pub(super) fn ensure_not_draining(&self) -> Result<(), ControlError> {
        if self.fenced.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ControlError::Fenced);
        }
        if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ControlError::Draining);
        }
        Ok(())
    }

    /// Runs a node operation and records how long it took and whether it worked.
    pub(super) async fn timed<T, E>(
        &self,
        op: crate::metrics::Operation,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = work.await;
        self.metrics
            .operation(op, result.is_ok(), started.elapsed());
        result
    }

    /// The op lock of `id` (a sandbox id, or a [`snapshot_lock_key`]).
    pub(super) fn op_lock(&self, id: &str) -> OpLock {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.entry(id.to_string()).or_default().clone()
    }

    /// Drops the op lock of a sandbox that has ended.
    pub(super) fn forget_op_lock(&self, id: &str) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.remove(id);
    }

    /// The handle of a running sandbox.
    pub(super) fn handle_of(&self, id: &str) -> Option<SandboxHandle> {
        self.running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Records that `id` runs (and is routable) with `handle`, and follows its journal.
    pub(super) fn set_running(&self, id: &str, handle: SandboxHandle) {
        self.logs.follow(&handle.id, super::Upstream::of(&handle));
        self.running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), handle);
    }

    /// Records that `id` no longer runs (the server is stopping it: its journal is no longer
    /// followed, so the stop is not taken for a crash); returns the handle it had.
    pub(super) fn take_running(&self, id: &str) -> Option<SandboxHandle> {
        self.logs.unfollow(id);
        self.running
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// What sandbox `id` uses now against its limits, read on the blocking pool (the node reads
    /// cgroup and disk files); `None` when it has no cgroup.
    pub(super) async fn usage(
        &self,
        id: &SandboxId,
    ) -> Option<alcove_runtime::usage::SandboxUsage> {
        let node = Arc::clone(&self.node);
        let id = id.clone();
        tokio::task::spawn_blocking(move || node.usage(&id))
            .await
            .ok()
            .flatten()
    }

    /// The handles of the sandboxes running now.
    pub(super) fn running_handles(&self) -> Vec<SandboxHandle> {
        self.running
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Number of sandboxes running now.
    pub(super) fn running_count(&self) -> usize {
        self.running.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The stored sandbox `ident` names: by id (any status) or by the name of a
    /// live one. No namespace or pool check (see [`Self::resolve`]).
    pub(super) async fn lookup(&self, ident: &str) -> Result<Option<SandboxRecord>, ControlError> {
        Ok(match SandboxId::parse(ident) {
            Ok(id) => self.store.get(&id).await?,
            Err(_) => self.store.get_live_by_name(ident).await?,
        })
    }

    /// Finds a sandbox by id (any status) or by the name of a live one.
    pub(super) async fn resolve(
        &self,
        namespace: Option<&str>,
        ident: &str,
    ) -> Result<SandboxRecord, ControlError> {
        let not_found = || ControlError::NotFound {
            kind: "sandbox",
            id: ident.to_string(),
        };
        let record = self.lookup(ident).await?.ok_or_else(not_found)?;
        // A pool's idle sandbox is the pool's until claimed: nobody may use or change it.
        if record.is_pool_reserve() || namespace.is_some_and(|ns| ns != record.namespace) {
            return Err(not_found());
        }
        Ok(record)
    }

    /// [`Self::resolve`] for acting on a sandbox: one that lives on another node
    /// is refused (this server does not forward requests yet), never touched.
    pub(super) async fn resolve_local(
        &self,
        namespace: Option<&str>,
        ident: &str,
    ) -> Result<SandboxRecord, ControlError> {
        let record = self.resolve(namespace, ident).await?;
        if record.status.is_live() && !self.is_local(&record) {
            // A node this one has not counted yet: check owners from now on.
            self.peers
                .fetch_max(1, std::sync::atomic::Ordering::Relaxed);
            let node = record.node.clone().unwrap_or_default();
            let live = self
                .store
                .get_node(&node)
                .await?
                .is_some_and(|n| n.is_live(alcove_wire::time::now_millis()));
            let id = record.id.to_string();
            return Err(if live {
                ControlError::OnOtherNode { id, node }
            } else {
                ControlError::NodeOffline { id, node }
            });
        }
        Ok(record)
    }

    /// Runs the node's orderly shutdown (sandboxes keep running) and closes the store.
    pub(super) async fn shutdown(&self) {
        self.node.shutdown(self.running_count()).await;
        self.store.close().await;
    }
}
