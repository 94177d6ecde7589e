//! Membership: this server as a node in the store. It registers at start
//! under a name and subnet no live node holds, renews its lease every third
//! of it with what its sandboxes use, and gives the lease back on a clean stop.
//! `GET /nodes` lists what the store knows; draining a node (`alcove node
//! drain`) makes it start and resume nothing and suspend its named sandboxes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alcove_wire::node::{NodeInfo, NodeList, NodeResources, NodeState};
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;

use super::context::Context;
use super::{Control, ControlError};
use crate::shutdown::Shutdown;
use crate::store::{NodeRecord, NodeUse, Registration};

/// Who this server is among the nodes.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// Unique name (`--node-name`).
    pub name: String,
    /// URL other nodes reach it at (`--advertise-url`).
    pub address: String,
    /// Its sandboxes' subnet.
    pub subnet: String,
    /// `--node-label key=value`.
    pub labels: BTreeMap<String, String>,
    /// How long a lease runs unless renewed.
    pub lease: Duration,
    /// The id of its data directory (`<data-dir>/node-id`).
    pub machine: String,
    /// What it offers to sandboxes placed across nodes.
    pub capacity: NodeCapacity,
}

/// What a node offers to sandboxes when creates are placed across nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeCapacity {
    /// CPUs (`--node-cpus`, default the machine's).
    pub cpus: f64,
    /// Memory in MiB (`--node-memory-mb`, default the machine's).
    pub memory_mb: i64,
    /// How many times its CPUs it may promise (`--cpu-overcommit`).
    pub cpu_overcommit: f64,
    /// How many times its memory it may promise (`--memory-overcommit`).
    pub memory_overcommit: f64,
}

/// This run's registration.
#[derive(Debug)]
pub(super) struct Membership {
    pub(super) me: NodeIdentity,
    /// Random id of this registration: only it renews the lease (a new one
    /// after the node was fenced and registered again).
    pub(super) instance: Mutex<String>,
    /// A drain pass (suspending named sandboxes) is under way.
    draining_pass: AtomicBool,
    /// When the last renewal that held was sent: the lease runs from then.
    pub(super) renewed_at: Mutex<Instant>,
    /// Since when every renewal has held (the join, or the last failure): a
    /// node declares others lost only once its own lease has held for a full
    /// term, so that after an outage of the store the first node back does not
    /// declare the others lost before they could renew.
    pub(super) steady_since: Mutex<Instant>,
    /// Sandboxes frozen while the lease could not be renewed.
    pub(super) frozen: Mutex<Vec<alcove_runtime::SandboxHandle>>,
}

impl Membership {
    pub(super) fn instance(&self) -> String {
        self.instance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub(super) fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// Where a new sandbox goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On this node.
    Here,
    /// On another node: relay the create there.
    There {
        /// Its name.
        node: String,
        /// Its address.
        address: String,
    },
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Renewal {
    /// The lease holds for another term.
    Held,
    /// The store could not be reached (or answered too late).
    Failed,
    /// The other nodes declared this one lost: it must fence itself.
    Lost,
    /// A newer run of the server on this data directory holds the name.
    Superseded,
}

impl Control {
    /// Registers this server as node `me`. A live node (its lease still runs)
    /// holding the name or the subnet is a conflict: two servers must never
    /// hand out the same addresses or answer for the same node.
    pub async fn join(&self, me: NodeIdentity) -> Result<(), ControlError> {
        let sent = Instant::now();
        let instance = self.register(&me).await?;
        let _ = self.ctx.local_node.set(me.name.clone());
        let candidate =
            uuid::Uuid::new_v4().simple().to_string() + &uuid::Uuid::new_v4().simple().to_string();
        let token = self.ctx.store.relay_token(&candidate).await?;
        let _ = self.ctx.relay_token.set(token);
        let _ = self.ctx.capacity.set(me.capacity);
        let _ = self.ctx.labels.set(me.labels.clone());
        self.count_peers(&me.name).await;
        let adopted = self.ctx.store.adopt_unowned(&me.name).await?;
        if adopted > 0 {
            tracing::info!(node = %me.name, sandboxes = adopted, "took the sandboxes no node owned");
        }
        let _ = self.membership.set(Membership {
            me,
            instance: Mutex::new(instance),
            draining_pass: AtomicBool::new(false),
            renewed_at: Mutex::new(sent),
            steady_since: Mutex::new(sent),
            frozen: Mutex::new(Vec::new()),
        });
        Ok(())
    }

    /// Registers `me` under a new instance id, which it returns. A node that
    /// was declared lost waits until the node that declared it has settled
    /// its sandboxes (a minute at most).
    pub(super) async fn register(&self, me: &NodeIdentity) -> Result<String, ControlError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(instance) = self.register_once(me).await? {
                return Ok(instance);
            }
            if Instant::now() >= deadline {
                return Err(ControlError::Conflict(format!(
                    "node {:?} was declared lost and another node is settling its sandboxes; \
                     start it again in a minute",
                    me.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One try: the new instance id, or `None` while the node's loss is
    /// still being settled.
    async fn register_once(&self, me: &NodeIdentity) -> Result<Option<String>, ControlError> {
        let now = now_millis();
        let instance = uuid::Uuid::new_v4().to_string();
        let record = NodeRecord {
            name: me.name.clone(),
            machine: me.machine.clone(),
            instance: instance.clone(),
            address: me.address.clone(),
            subnet: me.subnet.clone(),
            labels: serde_json::to_string(&me.labels).unwrap_or_else(|_| "{}".into()),
            state: NodeState::Active.as_str().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            cpus: me.capacity.cpus,
            memory_mb: me.capacity.memory_mb,
            cpu_overcommit: me.capacity.cpu_overcommit,
            memory_overcommit: me.capacity.memory_overcommit,
            used_cpus: 0.0,
            used_memory_mb: 0,
            running: 0,
            suspended: 0,
            started_at: now,
            lease_expires_at: now + lease_ms(me.lease),
            updated_at: now,
            stopped_at: None,
            lost_at: None,
            reaped_at: None,
        };
        match self.ctx.store.register_node(&record, now).await? {
            Registration::Registered { state } => {
                let draining = state == NodeState::Draining.as_str();
                self.ctx.draining.store(draining, Ordering::Relaxed);
                tracing::info!(node = %me.name, address = %me.address, draining, "node registered");
            }
            Registration::NameHeld { address, until } => {
                return Err(ControlError::Conflict(format!(
                    "node name {:?} is held by a running node at {address} (its lease runs for \
                     {} more ms); give each server its own --node-name",
                    me.name,
                    (until - now).max(0)
                )));
            }
            Registration::SubnetHeld { by } => {
                return Err(ControlError::Conflict(format!(
                    "subnet {} is used by node {by:?}; give each server its own --subnet",
                    me.subnet
                )));
            }
            Registration::BeingReaped => return Ok(None),
        }
        Ok(Some(instance))
    }

    /// What this node's sandboxes use, from the store.
    async fn node_use(&self) -> Result<NodeUse, ControlError> {
        let mut used = NodeUse::default();
        for r in self.ctx.local_live().await? {
            match r.status {
                SandboxStatus::Suspended => used.suspended += 1,
                SandboxStatus::Terminated | SandboxStatus::Failed | SandboxStatus::Timeout => {}
                _ => {
                    used.running += 1;
                    used.cpus += r.cpus;
                    used.memory_mb += r.memory_mb;
                }
            }
        }
        Ok(used)
    }

    /// One renewal: the lease extended, the use recorded, the state read back.
    pub(super) async fn renew_once(self: &Arc<Self>) -> Renewal {
        let Some(m) = self.membership.get() else {
            return Renewal::Failed;
        };
        let sent = Instant::now();
        let used = match self.node_use().await {
            Ok(used) => used,
            Err(e) => {
                tracing::warn!(error = %e, "reading this node's use");
                return Renewal::Failed;
            }
        };
        let now = now_millis();
        let until = now + lease_ms(m.me.lease);
        let instance = m.instance();
        match self
            .ctx
            .store
            .renew_node(&m.me.name, &instance, until, now, used)
            .await
        {
            Ok(Some(state)) => {
                *m.renewed_at.lock().unwrap_or_else(|p| p.into_inner()) = sent;
                self.count_peers(&m.me.name).await;
                let draining = state == NodeState::Draining.as_str();
                let was = self.ctx.draining.swap(draining, Ordering::Relaxed);
                if draining != was {
                    tracing::info!(node = %m.me.name, draining, "node state changed");
                }
                if draining {
                    self.spawn_drain_pass();
                }
                Renewal::Held
            }
            Ok(None) => match self.ctx.store.get_node(&m.me.name).await {
                Ok(Some(row)) if row.instance == instance && row.lost_at.is_some() => Renewal::Lost,
                Ok(Some(row)) if row.instance != instance => {
                    tracing::error!(
                        node = %m.me.name,
                        "another run of the server registered under this node's name after \
                         this one's lease ran out; this run no longer holds it"
                    );
                    Renewal::Superseded
                }
                _ => Renewal::Failed,
            },
            Err(e) => {
                tracing::warn!(node = %m.me.name, error = %e, "renewing this node's lease");
                Renewal::Failed
            }
        }
    }

    /// Records how many other nodes the store knows, live or not (a node that
    /// stops and comes back changes nothing; only a new name does).
    async fn count_peers(&self, me: &str) {
        if let Ok(nodes) = self.ctx.store.list_nodes().await {
            let others = nodes.iter().filter(|n| n.name != me).count();
            self.ctx.peers.store(others, Ordering::Relaxed);
        }
    }

    /// Where a request for sandbox `ident` must go when it lives on another
    /// node: that node's name and address. `None` when it is this node's (or
    /// unknown, or ended: answered here). A live sandbox on a node whose lease
    /// ran out is [`ControlError::NodeOffline`].
    pub async fn owner_elsewhere(
        &self,
        ident: &str,
    ) -> Result<Option<(String, String)>, ControlError> {
        let Some(me) = self.ctx.clustered_node() else {
            return Ok(None);
        };
        let record = self.ctx.lookup(ident).await?;
        let Some(record) = record.filter(|r| r.status.is_live()) else {
            return Ok(None);
        };
        let Some(owner) = record.node.filter(|n| n != me) else {
            return Ok(None);
        };
        let node = self.ctx.store.get_node(&owner).await?;
        match node {
            Some(n) if n.is_live(now_millis()) => Ok(Some((owner, n.address))),
            _ => Err(ControlError::NodeOffline {
                id: record.id.to_string(),
                node: owner,
            }),
        }
    }

    /// Where to try a new sandbox, in order, when several nodes share the
    /// store: this node first (no relay, and later requests reach it
    /// directly), then the other live active nodes by the memory they have
    /// left to promise (as their renewals last reported it). Each node checks
    /// its own room when it stores the sandbox (`insert_admitted`), so the
    /// order is only a guess and never overbooks. Only nodes whose labels
    /// match `selector` are listed. Empty: create it here (alone in the store,
    /// or no node is active or matches; this node then says why it refuses).
    pub async fn placement_order(
        &self,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Placement>, ControlError> {
        self.ctx.placement_order(selector).await
    }

    /// What to answer when no node took a create of `cpus` and `memory_mb`
    /// with `selector`.
    pub fn no_room(selector: &BTreeMap<String, String>, cpus: f64, memory_mb: i64) -> ControlError {
        super::context::Context::no_room(selector, cpus, memory_mb)
    }

    /// Where a claim on pool `pool_id` must go when the pool's warm sandboxes
    /// live on another node (the live node whose turn it is to refill it), or,
    /// when no live node holds its turn and this node's labels do not match
    /// the pool's `node_selector`, the matching node with the most room (the
    /// claim starts a sandbox there): that node's name and address. `None`:
    /// claim here.
    pub async fn pool_home_elsewhere(
        &self,
        pool_id: &str,
    ) -> Result<Option<(String, String)>, ControlError> {
        let Some(me) = self.ctx.local_node() else {
            return Ok(None);
        };
        if let Some(home) = self.ctx.store.pool_refill_node(pool_id).await? {
            if home == me {
                return Ok(None);
            }
            let live = self
                .ctx
                .store
                .get_node(&home)
                .await?
                .filter(|n| n.is_live(now_millis()));
            if let Some(n) = live {
                return Ok(Some((n.name, n.address)));
            }
        }
        let Some(pool) = self.ctx.store.get_pool(pool_id).await? else {
            return Ok(None);
        };
        if self.ctx.matches_here(&pool.node_selector).is_ok() {
            return Ok(None);
        }
        Ok(self
            .ctx
            .placement_order(&pool.node_selector)
            .await?
            .into_iter()
            .find_map(|p| match p {
                Placement::There { node, address } => Some((node, address)),
                Placement::Here => None,
            }))
    }

    /// Whether `headers` carry this cluster's relay token: a request relayed
    /// by a node, whose relay headers may be trusted.
    pub fn is_relayed_by_a_node(&self, headers: &http::HeaderMap) -> bool {
        let (Some(token), Some(sent)) =
            (self.ctx.relay_token.get(), headers.get(super::RELAY_TOKEN))
        else {
            return false;
        };
        crate::auth::constant_time_eq(token.as_bytes(), sent.as_bytes())
    }

    /// The cluster's relay token, once joined: added to every request one
    /// node relays to another.
    pub fn relay_token(&self) -> Option<&str> {
        self.ctx.relay_token.get().map(String::as_str)
    }

    /// Whether the store knows another node (placement and routing matter).
    pub fn has_peers(&self) -> bool {
        self.ctx.clustered_node().is_some()
    }

    /// Whether this node is draining (as of its last renewal).
    pub fn is_draining(&self) -> bool {
        self.ctx.draining.load(Ordering::Relaxed)
    }

    /// This server's node name, once it has joined.
    pub fn node_name(&self) -> Option<&str> {
        self.ctx.local_node()
    }

    /// Suspends the named running sandboxes of a draining node, one at a time,
    /// off the renewal loop.
    fn spawn_drain_pass(self: &Arc<Self>) {
        let Some(m) = self.membership.get() else {
            return;
        };
        if m.draining_pass.swap(true, Ordering::AcqRel) {
            return;
        }
        let control = Arc::clone(self);
        tokio::spawn(async move {
            if let Ok(live) = control.ctx.local_live().await {
                for r in live.into_iter().filter(|r| {
                    r.status == SandboxStatus::Running
                        && r.name.is_some()
                        && r.transition.is_none()
                        && r.pool_id.is_none()
                }) {
                    if !control.ctx.draining.load(Ordering::Relaxed) {
                        break;
                    }
                    control.suspension.suspend_for_drain(&r.id).await;
                }
            }
            if let Some(m) = control.membership.get() {
                m.draining_pass.store(false, Ordering::Release);
            }
        });
    }

    /// Gives the lease back (a clean stop): the name and subnet are free at once.
    pub async fn leave(&self) {
        if let Some(m) = self.membership.get()
            && let Err(e) = self
                .ctx
                .store
                .release_node(&m.me.name, &m.instance(), now_millis())
                .await
        {
            tracing::warn!(error = %e, "giving back this node's lease");
        }
    }

    /// Every node the store knows (`GET /nodes`).
    pub async fn nodes(&self) -> Result<NodeList, ControlError> {
        let now = now_millis();
        let nodes = self.ctx.store.list_nodes().await?;
        Ok(NodeList {
            nodes: nodes.into_iter().map(|n| node_info(n, now)).collect(),
        })
    }

    /// Sets a node draining or active again; the node acts on it at its next
    /// renewal (this one at once).
    pub async fn set_node_state(
        self: &Arc<Self>,
        name: &str,
        state: NodeState,
    ) -> Result<NodeInfo, ControlError> {
        if state == NodeState::Offline {
            return Err(ControlError::InvalidArgument {
                field: "state",
                reason: "a node goes offline by stopping, not by request".into(),
            });
        }
        if !self.ctx.store.set_node_state(name, state.as_str()).await? {
            return Err(ControlError::NotFound {
                kind: "node",
                id: name.to_string(),
            });
        }
        if self.membership.get().is_some_and(|m| m.me.name == name) {
            let _ = self.renew_once().await;
        }
        let node = self
            .ctx
            .store
            .get_node(name)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                kind: "node",
                id: name.to_string(),
            })?;
        Ok(node_info(node, now_millis()))
    }
}

fn node_info(n: NodeRecord, now: i64) -> NodeInfo {
    let state = if !n.is_live(now) {
        NodeState::Offline
    } else if n.state == NodeState::Draining.as_str() {
        NodeState::Draining
    } else {
        NodeState::Active
    };
    NodeInfo {
        labels: serde_json::from_str(&n.labels).unwrap_or_default(),
        name: n.name,
        address: n.address,
        state,
        subnet: n.subnet,
        capacity: NodeResources {
            cpus: n.cpus,
            memory_mb: n.memory_mb,
        },
        used: NodeResources {
            cpus: n.used_cpus,
            memory_mb: n.used_memory_mb,
        },
        running_sandboxes: n.running,
        suspended_sandboxes: n.suspended,
        version: n.version,
        started_at: n.started_at,
        lease_expires_at: n.lease_expires_at,
        lost_at: n.lost_at,
    }
}

/// Renews this node's lease every third of it until shutdown, then gives it back.
pub fn spawn_membership(control: Arc<Control>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(lease) = control.membership.get().map(|m| m.me.lease) else {
            return;
        };
        let term = (lease / 3).max(Duration::from_millis(500));
        let mut tick = tokio::time::interval(term);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            // A store that does not answer counts as a failed renewal: the
            // lease runs out all the same.
            let renewal = tokio::time::timeout(term, control.renew_once())
                .await
                .unwrap_or(Renewal::Failed);
            control.after_renewal(renewal).await;
        }
    })
}

impl Context {
    /// Whether another live active node reported room for `cpus` and
    /// `memory_mb` more at its last renewal (a guess: it checks for itself).
    pub(super) async fn room_elsewhere(
        &self,
        cpus: f64,
        memory_mb: i64,
        selector: &BTreeMap<String, String>,
    ) -> Result<bool, ControlError> {
        let Some(me) = self.clustered_node() else {
            return Ok(false);
        };
        let now = now_millis();
        Ok(self.store.list_nodes().await?.iter().any(|n| {
            n.name != me
                && n.takes_work(now)
                && n.matches(selector)
                && n.memory_room() >= memory_mb
                && n.cpu_room() + 1e-6 >= cpus
        }))
    }

    /// What to answer when no node takes a sandbox of `cpus` and `memory_mb`
    /// with `selector`: `NoMatchingNode` when it has a selector, else `NoRoom`.
    pub(super) fn no_room(
        selector: &BTreeMap<String, String>,
        cpus: f64,
        memory_mb: i64,
    ) -> ControlError {
        if selector.is_empty() {
            return ControlError::NoRoom { cpus, memory_mb };
        }
        ControlError::NoMatchingNode {
            selector: super::node_selector::describe(selector),
            cpus,
            memory_mb,
        }
    }

    /// See [`Control::placement_order`].
    pub(super) async fn placement_order(
        &self,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Placement>, ControlError> {
        let Some(me) = self.clustered_node() else {
            return Ok(Vec::new());
        };
        let now = now_millis();
        let mut candidates: Vec<NodeRecord> = self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .filter(|n| n.takes_work(now) && n.matches(selector))
            .collect();
        candidates.sort_by(|a, b| {
            (b.name == me)
                .cmp(&(a.name == me))
                .then_with(|| b.memory_room().cmp(&a.memory_room()))
        });
        Ok(candidates
            .into_iter()
            .map(|n| {
                if n.name == me {
                    Placement::Here
                } else {
                    Placement::There {
                        node: n.name,
                        address: n.address,
                    }
                }
            })
            .collect())
    }
}
