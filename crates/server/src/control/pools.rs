//! Warm pools: each keeps `warm_containers` idle sandboxes of one configuration
//! started, and a claim hands one out in milliseconds, binding the claimer's own
//! name, environment, secrets and network policy to it (late binding).
//!
//! A pool's sandboxes are ordinary sandbox records with a `pool_id` and a
//! `pool_state`. Idle ones belong to the pool: the sandbox API neither lists nor
//! routes them, so nobody can touch a sandbox before it is handed out. A claim
//! takes one in a single store statement (`idle` → `claiming`), binds what the
//! claim asks for, and records it `claimed`; from then on it is an ordinary
//! sandbox. A claim that fails half-way, or is cut by a restart, ends the sandbox
//! rather than hand out one with half of someone's configuration.
//!
//! The refiller starts sandboxes until each pool has its idle count again, within
//! `max_containers`; it wakes after every claim and change, and every few seconds
//! (a warm sandbox may also crash, or the host be full for a while).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alcove_runtime::SandboxId;
use alcove_wire::pool::{
    ClaimSandboxRequest, MAX_POOL_CONTAINERS, MAX_WARM_CONTAINERS, SandboxPoolRequest,
};
use alcove_wire::sandbox::{NetworkConfig, SandboxStatus};
use alcove_wire::time::now_millis;
use tokio::sync::Notify;

use super::context::Context;
use super::lifecycle::{CreateOutcome, Sandboxes};
use super::state::TerminationReason;
use super::{Control, ControlError, validate};
use crate::shutdown::Shutdown;
use crate::store::{PoolRecord, PoolState, SandboxRecord, StoreError};

/// How often the refiller looks at every pool even when nothing woke it.
const REFILL_EVERY: Duration = Duration::from_secs(3);

/// How long a node's turn to refill a pool runs unless renewed (each pass
/// renews it); a node that stops refilling hands the pool on after this.
const REFILL_TURN_MS: i64 = 10 * REFILL_EVERY.as_millis() as i64;

/// How often a claim that waits for a booting idle sandbox looks again.
const BOOT_POLL: Duration = Duration::from_millis(20);

/// Most idle sandboxes one refill pass starts per pool: the rest follow in the next
/// passes, so one large pool does not hold the host's start capacity for long.
const STARTS_PER_PASS: usize = 4;

/// Creates, changes and deletes pools, hands out their sandboxes, and refills them.
#[derive(Debug, Clone)]
pub struct Pools {
    ctx: Arc<Context>,
    sandboxes: Sandboxes,
    wake: Arc<Notify>,
    /// Held by a refill pass, and by a change or delete of a pool while it changes
    /// the row and reads the members: a pass never starts a sandbox for a pool that
    /// is being deleted (which would leave an idle sandbox of no pool behind).
    refill: Arc<tokio::sync::Mutex<()>>,
}

/// What a claim binds, checked before any sandbox is taken.
#[derive(Debug, Default)]
struct Binding {
    name: Option<String>,
    /// The claim's variables, then its secrets' (a secret wins over a variable).
    env: BTreeMap<String, String>,
    secret_names: Vec<String>,
    network: Option<NetworkConfig>,
    file_systems: Vec<alcove_wire::file_system::FileSystemMount>,
}

impl Binding {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.env.is_empty()
            && self.network.is_none()
            && self.file_systems.is_empty()
    }
}

impl Pools {
    /// The pool service over `ctx`; `sandboxes` starts and ends the pools' sandboxes.
    pub(super) fn new(ctx: Arc<Context>, sandboxes: Sandboxes) -> Self {
        Self {
            ctx,
            sandboxes,
            wake: Arc::new(Notify::new()),
            refill: Arc::default(),
        }
    }

    /// Asks the refiller for a pass now.
    fn wake_refiller(&self) {
        self.wake.notify_one();
    }

    /// Validates and stores a new pool; its sandboxes start in the background.
    pub async fn create(
        &self,
        namespace: &str,
        req: SandboxPoolRequest,
    ) -> Result<PoolRecord, ControlError> {
        let now = now_millis();
        let pool = self.configure(namespace, &req, None, now).await?;
        self.ctx.store.put_pool(&pool).await?;
        tracing::info!(pool_id = %pool.id, warm = pool.warm_containers, "pool created");
        self.wake_refiller();
        Ok(pool)
    }

    /// A pool of `namespace`.
    pub async fn get(&self, namespace: &str, id: &str) -> Result<PoolRecord, ControlError> {
        match self.ctx.store.get_pool(id).await? {
            Some(pool) if pool.namespace == namespace => Ok(pool),
            _ => Err(ControlError::NotFound {
                kind: "pool",
                id: id.to_string(),
            }),
        }
    }

    /// The live sandboxes of a pool: idle ones, and claimed ones that have not ended.
    pub async fn members(&self, pool: &PoolRecord) -> Result<Vec<SandboxRecord>, ControlError> {
        Ok(self.ctx.store.pool_members(&pool.id).await?)
    }

    /// The pools of `namespace`, oldest first.
    pub async fn list(&self, namespace: &str) -> Result<Vec<PoolRecord>, ControlError> {
        Ok(self.ctx.store.list_pools(Some(namespace)).await?)
    }

    /// Replaces a pool's configuration (`network` absent keeps the policy, `null`
    /// opens it). Idle sandboxes made from the old configuration are ended and
    /// replaced; claimed ones are not touched.
    pub async fn update(
        &self,
        namespace: &str,
        id: &str,
        req: SandboxPoolRequest,
    ) -> Result<PoolRecord, ControlError> {
        let old = self.get(namespace, id).await?;
        let pool = self
            .configure(namespace, &req, Some(&old), now_millis())
            .await?;
        let pinned = self.sandboxes.resolve_image(&pool.image).await?.pinned;
        let refill = self.refill.lock().await;
        self.ctx.store.put_pool(&pool).await?;
        let members = self.members(&pool).await?;
        drop(refill);
        for member in members {
            if member.pool_state == Some(PoolState::Idle) && !pool.made(&member, &pinned) {
                self.drain_one(&member.id).await;
            }
        }
        tracing::info!(pool_id = %pool.id, "pool updated");
        self.wake_refiller();
        Ok(pool)
    }

    /// Deletes a pool and ends its idle sandboxes; refused while sandboxes claimed
    /// from it have not ended.
    pub async fn delete(&self, namespace: &str, id: &str) -> Result<(), ControlError> {
        let pool = self.get(namespace, id).await?;
        let refill = self.refill.lock().await;
        let members = self.members(&pool).await?;
        let claimed: Vec<String> = members
            .iter()
            .filter(|m| !m.is_pool_reserve())
            .map(|m| m.id.to_string())
            .collect();
        if !claimed.is_empty() {
            return Err(ControlError::PoolInUse {
                pool: pool.id,
                ids: claimed.join(", "),
            });
        }
        self.ctx.store.delete_pool(&pool.id).await?;
        drop(refill);
        // Listed again: another node's refiller may have added one meanwhile
        // (one it adds after this sees the pool gone, and ends it itself).
        // Another node's idle sandboxes are ended by that node's next refill
        // pass, which sweeps the idle sandboxes of deleted pools.
        let members = self.members(&pool).await?;
        for member in members.iter().filter(|m| self.ctx.is_local(m)) {
            self.drain_one(&member.id).await;
        }
        tracing::info!(pool_id = %pool.id, "pool deleted");
        Ok(())
    }

    /// Ends one idle sandbox of a pool, logging a failure (the refiller or the
    /// next start sweeps what is left).
    async fn drain_one(&self, id: &SandboxId) {
        if let Err(e) = self.sandboxes.end(id, TerminationReason::PoolDrained).await {
            tracing::warn!(sandbox_id = %id, error = %e, "ending a pool's idle sandbox");
        }
    }

    /// Hands out one of the pool's sandboxes with the claim's configuration bound
    /// to it: an idle one if the pool has one running, else a new one within
    /// `max_containers` (429 past it).
    pub async fn claim(
        &self,
        namespace: &str,
        pool_id: &str,
        req: ClaimSandboxRequest,
        budget: Duration,
    ) -> Result<CreateOutcome, ControlError> {
        let pool = self.get(namespace, pool_id).await?;
        let binding = self.check_claim(namespace, &req).await?;
        let started = std::time::Instant::now();
        let outcome = self.claim_checked(&pool, &binding, budget).await;
        self.ctx.metrics.operation(
            crate::metrics::Operation::Claim,
            outcome.is_ok(),
            started.elapsed(),
        );
        self.wake_refiller();
        outcome
    }

    async fn claim_checked(
        &self,
        pool: &PoolRecord,
        binding: &Binding,
        budget: Duration,
    ) -> Result<CreateOutcome, ControlError> {
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            // An idle sandbox can end between the take and the bind (it crashed):
            // try the next one.
            for _ in 0..4 {
                let Some(id) = self.take_idle_or_wait(pool, deadline).await? else {
                    break;
                };
                let id = SandboxId::parse(&id).map_err(|e| StoreError::Corrupt {
                    id: id.clone(),
                    reason: e.to_string(),
                })?;
                if let Some(record) = self.bind(pool, &id, binding).await? {
                    return Ok(CreateOutcome {
                        record,
                        still_pending: false,
                    });
                }
            }
            // None idle: start one now, within the pool's limit. Counting and
            // recording happen under the refill lock, so neither racing claims
            // nor the refiller take the pool past `max_containers`.
            let refill = self.refill.lock().await;
            let members = self.members(pool).await?;
            if let Some(max) = pool.max_containers
                && i64::try_from(members.len()).unwrap_or(i64::MAX) >= max
            {
                drop(refill);
                // The refiller started one since we looked: wait for it rather
                // than refuse.
                let booting = members
                    .iter()
                    .any(|m| m.pool_state == Some(PoolState::Idle));
                if booting && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(BOOT_POLL).await;
                    continue;
                }
                return Err(ControlError::PoolAtCapacity {
                    pool: pool.id.clone(),
                    members: members.len(),
                    max,
                });
            }
            let (record, starting) = self
                .sandboxes
                .start_in_pool(pool, PoolState::Claiming)
                .await?;
            drop(refill);
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let outcome = self.sandboxes.wait_started(record, starting, left).await?;
            return self.bind_started(pool, outcome, binding).await;
        }
    }

    /// Binds the claim to a sandbox the claim itself started, once it runs.
    async fn bind_started(
        &self,
        pool: &PoolRecord,
        outcome: CreateOutcome,
        binding: &Binding,
    ) -> Result<CreateOutcome, ControlError> {
        let id = outcome.record.id.clone();
        if outcome.record.status != SandboxStatus::Running {
            if outcome.still_pending {
                // Its configuration cannot be bound before it runs, and the claimer
                // is gone by then: do not leave it behind.
                self.sandboxes
                    .end(&id, TerminationReason::ClaimFailed)
                    .await?;
                return Err(ControlError::OperationFailed {
                    id: id.to_string(),
                    op: "claim",
                    reason: "no sandbox of the pool was ready in the request's time".into(),
                });
            }
            // It failed to start: answered as create answers a failed start.
            return Ok(outcome);
        }
        match self.bind(pool, &id, binding).await? {
            Some(record) => Ok(CreateOutcome {
                record,
                still_pending: false,
            }),
            None => Err(ControlError::OperationFailed {
                id: id.to_string(),
                op: "claim",
                reason: "the sandbox stopped before it was handed out".into(),
            }),
        }
    }

    /// Takes a running idle sandbox of `pool`; when none runs but some are still
    /// booting, waits for one of them (until `deadline`) rather than start another.
    /// `None` when the pool has no idle sandbox at all.
    async fn take_idle_or_wait(
        &self,
        pool: &PoolRecord,
        deadline: tokio::time::Instant,
    ) -> Result<Option<String>, ControlError> {
        loop {
            if let Some(id) = self
                .ctx
                .store
                .take_idle(&pool.id, self.ctx.local_node())
                .await?
            {
                return Ok(Some(id));
            }
            let booting = self.members(pool).await?.iter().any(|m| {
                m.pool_state == Some(PoolState::Idle) && m.status == SandboxStatus::Pending
            });
            if !booting || tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(BOOT_POLL).await;
        }
    }

    /// Validates what a claim binds, before any sandbox is taken: a bad claim
    /// costs the pool nothing.
    async fn check_claim(
        &self,
        namespace: &str,
        req: &ClaimSandboxRequest,
    ) -> Result<Binding, ControlError> {
        let mut binding = Binding::default();
        let mounts = req.file_systems.clone().unwrap_or_default();
        if !mounts.is_empty() {
            // Unknown volumes, bad paths and volumes held read-write elsewhere are
            // refused now; the mount itself checks again under the volume lock.
            let nobody = SandboxId::random();
            self.ctx
                .check_mounts(namespace, &nobody, &[], &mounts)
                .await?;
            binding.file_systems = mounts;
        }
        if let Some(name) = &req.name {
            validate::name(name)?;
            if self.ctx.store.get_live_by_name(name).await?.is_some() {
                return Err(ControlError::NameTaken(name.clone()));
            }
            binding.name = Some(name.clone());
        }
        for (key, value) in req.env.iter().flatten() {
            validate::env_var(key, value)?;
            binding.env.insert(key.clone(), value.clone());
        }
        for name in req.secret_names.iter().flatten() {
            super::secrets::validate_name(name)?;
            if !binding.secret_names.contains(name) {
                binding.secret_names.push(name.clone());
            }
        }
        // Unknown secrets are a 400 now, before a sandbox is taken.
        self.sandboxes
            .secrets
            .sealed(namespace, &binding.secret_names)
            .await?;
        for (key, value) in self
            .sandboxes
            .secrets
            .env(namespace, &binding.secret_names)
            .await?
        {
            binding.env.insert(key, value);
        }
        if let Some(network) = &req.network {
            super::network::egress_policy(network).await?;
            binding.network = Some(network.clone());
        }
        Ok(binding)
    }

    /// Binds the claim to sandbox `id`, which the caller has marked `claiming`, and
    /// records it claimed. `None` when it is no longer running (it is left to the
    /// crash watch). A failure after something was bound ends the sandbox.
    async fn bind(
        &self,
        pool: &PoolRecord,
        id: &SandboxId,
        binding: &Binding,
    ) -> Result<Option<SandboxRecord>, ControlError> {
        let lock = self.ctx.op_lock(id);
        let guard = lock.lock().await;
        let Some(mut record) = self.ctx.store.get(id).await? else {
            return Ok(None);
        };
        let handle = self.ctx.handle_of(id);
        let (SandboxStatus::Running, Some(handle)) = (record.status, handle) else {
            return Ok(None);
        };
        let bound = self.apply(&mut record, &handle, binding).await;
        let stored = match bound {
            Ok(()) => {
                record.pool_state = Some(PoolState::Claimed);
                record.secret_names = binding.secret_names.clone();
                // The pool's current lifetime (an update may have changed it).
                record.timeout_secs = pool.timeout_secs;
                if record.timeout_secs > 0 {
                    record.deadline_at =
                        Some(validate::deadline_after(now_millis(), record.timeout_secs));
                }
                match self.ctx.store.update(&record).await {
                    Err(StoreError::NameTaken(n)) => Err(ControlError::NameTaken(n)),
                    other => other.map_err(ControlError::from),
                }
            }
            Err(e) => Err(e),
        };
        drop(guard);
        match stored {
            Ok(()) => {
                tracing::info!(sandbox_id = %id, pool_id = %pool.id, "sandbox claimed");
                Ok(Some(record))
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %id, pool_id = %pool.id, error = %e, "claim failed");
                if let Err(end) = self.sandboxes.end(id, TerminationReason::ClaimFailed).await {
                    tracing::warn!(sandbox_id = %id, error = %end, "ending a half-claimed sandbox");
                }
                Err(e)
            }
        }
    }

    /// Binds the environment (through the agent) and the network policy, and sets
    /// the name on `record` (stored by the caller).
    async fn apply(
        &self,
        record: &mut SandboxRecord,
        handle: &alcove_runtime::SandboxHandle,
        binding: &Binding,
    ) -> Result<(), ControlError> {
        if binding.is_empty() {
            return Ok(());
        }
        if !binding.env.is_empty() {
            let body = serde_json::json!({ "env": binding.env });
            let (status, bytes) = self
                .sandboxes
                .agents()
                .send_json(
                    http::Method::PUT,
                    super::Upstream::of(handle),
                    "/api/v1/environment",
                    &body,
                )
                .await
                .map_err(|e| claim_failed(record, format!("setting the environment: {e}")))?;
            if !status.is_success() {
                let answer = String::from_utf8_lossy(&bytes);
                return Err(claim_failed(
                    record,
                    format!("setting the environment: the agent answered {status}: {answer}"),
                ));
            }
        }
        if let Some(network) = &binding.network {
            record.network_policy = network.clone();
            self.ctx.apply_network(record, handle.slot).await?;
        }
        if !binding.file_systems.is_empty() {
            self.sandboxes
                .attach_locked(record, &binding.file_systems)
                .await?;
        }
        // Last: the name is stored with the claim (a race for it is a 409 there).
        record.name = binding.name.clone();
        Ok(())
    }

    /// One refill pass: starts idle sandboxes where a pool has fewer than its
    /// `warm_containers`, within `max_containers`.
    pub(super) async fn refill_once(&self) {
        if self.ctx.ensure_not_draining().is_err() {
            return;
        }
        let _refill = self.refill.lock().await;
        let pools = match self.ctx.store.list_pools(None).await {
            Ok(pools) => pools,
            Err(e) => {
                tracing::warn!(error = %e, "listing pools to refill");
                return;
            }
        };
        self.sweep_orphans(&pools).await;
        // With other nodes on the store, one node at a time refills a pool.
        let node = self.ctx.clustered_node().map(str::to_string);
        for pool in pools {
            // Only nodes whose labels match hold a pool's sandboxes.
            if self.ctx.matches_here(&pool.node_selector).is_err() {
                self.leave_unmatched(&pool, node.as_deref()).await;
                continue;
            }
            if let Some(node) = &node {
                if !self.may_refill(&pool, node).await {
                    continue;
                }
                let now = alcove_wire::time::now_millis();
                match self
                    .ctx
                    .store
                    .take_refill_turn(&pool.id, node, now, now + REFILL_TURN_MS)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(pool_id = %pool.id, error = %e, "taking a pool's refill turn");
                        continue;
                    }
                }
            }
            let members = match self.ctx.store.pool_members(&pool.id).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(pool_id = %pool.id, error = %e, "reading a pool's sandboxes");
                    continue;
                }
            };
            let idle = members
                .iter()
                .filter(|m| m.pool_state == Some(PoolState::Idle))
                .count();
            let room = pool.max_containers.map_or(usize::MAX, |max| {
                usize::try_from(max)
                    .unwrap_or(0)
                    .saturating_sub(members.len())
            });
            let want = usize::try_from(pool.warm_containers)
                .unwrap_or(0)
                .saturating_sub(idle)
                .min(room)
                .min(STARTS_PER_PASS);
            for _ in 0..want {
                match self.sandboxes.start_in_pool(&pool, PoolState::Idle).await {
                    Ok((record, _starting)) => {
                        tracing::debug!(pool_id = %pool.id, sandbox_id = %record.id, "warm sandbox starting");
                        // The pool may have been deleted through another node
                        // since this pass listed it: nobody would drain this one.
                        if matches!(self.ctx.store.get_pool(&pool.id).await, Ok(None)) {
                            self.drain_one(&record.id).await;
                            break;
                        }
                    }
                    Err(e) => {
                        // A full host, a deleted image: tried again on the next pass.
                        tracing::warn!(pool_id = %pool.id, error = %e, "starting a warm sandbox");
                        break;
                    }
                }
            }
        }
    }

    /// Ends this node's idle sandboxes of pools that are gone (deleted
    /// through another node, which cannot stop a sandbox on this one).
    async fn sweep_orphans(&self, pools: &[PoolRecord]) {
        let Ok(warm) = self.ctx.local_idle_pool_members().await else {
            return;
        };
        for record in warm {
            let Some(pool_id) = record.pool_id.as_deref() else {
                continue;
            };
            if pools.iter().any(|p| p.id == pool_id) {
                continue;
            }
            // Listed before this pass's list of pools was read? Check again.
            if matches!(self.ctx.store.get_pool(pool_id).await, Ok(None)) {
                self.drain_one(&record.id).await;
            }
        }
    }

    /// Leaves a pool whose `node_selector` this node's labels do not match
    /// (they changed since, or the pool did): gives up its turn, if it holds
    /// it, and ends its idle sandboxes here, so that a matching node takes the
    /// pool on its next pass.
    async fn leave_unmatched(&self, pool: &PoolRecord, node: Option<&str>) {
        if let Some(node) = node {
            self.release_turn(
                pool,
                node,
                "this node's labels do not match the pool's node_selector: its turn is left to a matching node",
            )
            .await;
        }
        let members = match self.ctx.store.pool_members(&pool.id).await {
            Ok(members) => members,
            Err(e) => {
                tracing::warn!(pool_id = %pool.id, error = %e, "reading a pool's sandboxes");
                return;
            }
        };
        for member in members {
            if member.pool_state == Some(PoolState::Idle) && self.ctx.is_local(&member) {
                self.drain_one(&member.id).await;
            }
        }
    }

    /// Whether node `node` may refill `pool` (in a cluster): yes while it has
    /// room for one more of the pool's sandboxes, or still holds warm ones
    /// (claims go where they are). A full node with none lets the pool's turn
    /// go, so that a node with room takes the pool on its next pass.
    async fn may_refill(&self, pool: &PoolRecord, node: &str) -> bool {
        match self.ctx.has_room(pool.cpus, pool.memory_mb).await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(pool_id = %pool.id, error = %e, "checking room for a pool");
                return false;
            }
        }
        let holds_warm = match self.ctx.store.pool_members(&pool.id).await {
            Ok(members) => members
                .iter()
                .any(|m| m.pool_state == Some(PoolState::Idle) && m.node.as_deref() == Some(node)),
            Err(e) => {
                tracing::warn!(pool_id = %pool.id, error = %e, "reading a pool's sandboxes");
                return false;
            }
        };
        if holds_warm {
            return true;
        }
        self.release_turn(
            pool,
            node,
            "no room here for the pool: its turn is left to a node with room",
        )
        .await;
        false
    }

    /// Gives up `node`'s turn at refilling `pool`, if it holds it, logging
    /// `why` when it did.
    async fn release_turn(&self, pool: &PoolRecord, node: &str, why: &str) {
        match self.ctx.store.release_refill_turn(&pool.id, node).await {
            Ok(true) => tracing::info!(pool_id = %pool.id, "{why}"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(pool_id = %pool.id, error = %e, "leaving a pool's refill turn")
            }
        }
    }

    /// Turns a pool request into a pool record (a new one, or `old` changed),
    /// or says what is wrong with it.
    async fn configure(
        &self,
        namespace: &str,
        req: &SandboxPoolRequest,
        old: Option<&PoolRecord>,
        now: i64,
    ) -> Result<PoolRecord, ControlError> {
        let (cpus, memory_mb, disk_mb) =
            validate::requested_resources(req.resources.as_ref(), self.ctx.cfg.host)?;
        let timeout_secs = req.timeout_secs.unwrap_or(0);
        validate::timeout_secs(timeout_secs)?;
        let entrypoint = req.entrypoint.clone().unwrap_or_default();
        validate::entrypoint(&entrypoint)?;
        let warm = req.warm_containers.unwrap_or(1);
        if !(1..=MAX_WARM_CONTAINERS).contains(&warm) {
            return Err(ControlError::InvalidArgument {
                field: "warm_containers",
                reason: format!("{warm} is not between 1 and {MAX_WARM_CONTAINERS}"),
            });
        }
        if let Some(max) = req.max_containers {
            if !(1..=MAX_POOL_CONTAINERS).contains(&max) {
                return Err(ControlError::InvalidArgument {
                    field: "max_containers",
                    reason: format!("{max} is not between 1 and {MAX_POOL_CONTAINERS}"),
                });
            }
            if warm > max {
                return Err(ControlError::InvalidArgument {
                    field: "warm_containers",
                    reason: format!("{warm} is more than max_containers ({max})"),
                });
            }
        }
        let network_policy =
            match (&req.network, old) {
                (None, Some(old)) => old.network_policy.clone(),
                (None | Some(serde_json::Value::Null), _) => super::network::open_policy(),
                (Some(value), _) => serde_json::from_value::<NetworkConfig>(value.clone())
                    .map_err(|e| ControlError::InvalidArgument {
                        field: "network",
                        reason: e.to_string(),
                    })?,
            };
        super::network::egress_policy(&network_policy).await?;
        let node_selector = req.node_selector.clone().unwrap_or_default();
        super::node_selector::validate(&node_selector)?;
        let image = req.image.clone().unwrap_or_else(|| "default".into());
        // An unknown image is a 404 now, not a pool that never fills.
        self.sandboxes.resolve_image(&image).await?;
        Ok(PoolRecord {
            id: old.map_or_else(new_pool_id, |o| o.id.clone()),
            namespace: namespace.to_string(),
            image,
            cpus,
            memory_mb,
            disk_mb,
            timeout_secs,
            entrypoint,
            network_policy,
            max_containers: req.max_containers,
            warm_containers: warm,
            node_selector,
            created_at: old.map_or(now, |o| o.created_at),
            updated_at: now,
        })
    }
}

/// The error of a claim that failed after it started binding (the sandbox is ended).
fn claim_failed(record: &SandboxRecord, reason: String) -> ControlError {
    ControlError::OperationFailed {
        id: record.id.to_string(),
        op: "claim",
        reason,
    }
}

/// A new pool id: `pool-` and 16 hex digits of a random UUID.
fn new_pool_id() -> String {
    let id = SandboxId::random();
    let hex: String = id
        .as_str()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    format!("pool-{hex}")
}

impl Control {
    /// Ends the sandboxes a restart caught in the middle of a claim (what the claim
    /// had bound may be incomplete): run at start, after recovery.
    pub async fn end_interrupted_claims(&self) -> Result<(), ControlError> {
        for record in self.ctx.local_live().await? {
            if record.pool_state == Some(PoolState::Claiming) {
                tracing::warn!(sandbox_id = %record.id, "ending a sandbox whose claim a restart cut");
                self.sandboxes
                    .end(&record.id, TerminationReason::ClaimFailed)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Refills the pools until shutdown: after every claim and change, and every
/// [`REFILL_EVERY`].
pub fn spawn_pool_refiller(
    control: Arc<Control>,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pools = control.pools.clone();
        loop {
            pools.refill_once().await;
            tokio::select! {
                _ = pools.wake.notified() => {}
                _ = tokio::time::sleep(REFILL_EVERY) => {}
                _ = shutdown.wait() => return,
            }
        }
    })
}
