//! Create, get, list, update and delete of sandboxes, plus recovery after a
//! restart. Every change is written to the store before it is acted on.

use std::sync::Arc;
use std::time::Duration;

use alcove_runtime::network::Slot;
use alcove_runtime::{SandboxHandle, SandboxId, SandboxSpec};
use alcove_wire::sandbox::{CreateSandboxRequest, SandboxStatus, UpdateSandboxRequest};
use alcove_wire::time::now_millis;

use super::context::Context;
use super::secrets::Secrets;
use super::snapshots::Snapshots;
use super::state::{self, Event, TerminationReason};
use super::validate;
use super::{AgentClient, ControlError, Upstream};
use crate::metrics::Operation;
use crate::store::{SandboxRecord, StoreError};
use tracing::Instrument;

/// A sandbox resolved from an id or name, with what routing needs.
#[derive(Debug, Clone)]
pub struct Target {
    /// The stored record.
    pub record: SandboxRecord,
    /// Where it answers, when running.
    pub agent: Option<Upstream>,
}

/// How a new sandbox gets its contents.
#[derive(Debug, Clone)]
pub(super) enum Boot {
    /// A fresh boot of the image.
    Fresh,
    /// A restore from a snapshot directory (`memory`: processes too).
    Snapshot {
        /// The snapshot's directory.
        dir: std::path::PathBuf,
        /// Whether it holds a memory dump.
        memory: bool,
    },
    /// A restore from the memory dump of a copy (`control::copy`): its
    /// directory has no snapshot record, so no compactor packs it and the
    /// copies restore from it at once, without the snapshot's lock.
    Copy {
        /// The dump's directory.
        dir: std::path::PathBuf,
    },
}

/// What a create call answers.
#[derive(Debug, Clone)]
pub struct CreateOutcome {
    /// The sandbox as last stored.
    pub record: SandboxRecord,
    /// Whether creation was still going on when the answer was written.
    pub still_pending: bool,
}

/// A sandbox's start running in the background; it ends once the outcome is stored.
pub(super) type Starting = tokio::task::JoinHandle<()>;

/// Creates, finds, changes and ends sandboxes, and starts them on the node.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    pub(super) ctx: Arc<Context>,
    pub(super) secrets: Secrets,
    pub(super) snapshots: Snapshots,
    pub(super) agents: AgentClient,
}

impl Sandboxes {
    /// The sandbox service over `ctx`; it reads secrets and snapshots to boot.
    pub(super) fn new(
        ctx: Arc<Context>,
        secrets: Secrets,
        snapshots: Snapshots,
        agents: AgentClient,
    ) -> Self {
        Self {
            ctx,
            secrets,
            snapshots,
            agents,
        }
    }

    /// The pooled client to the sandboxes' agents.
    pub(super) fn agents(&self) -> &AgentClient {
        &self.agents
    }

    /// Validates and stores a new sandbox, then starts it in the background.
    /// With `wait`, waits up to `budget` for it to run.
    pub async fn create(
        &self,
        namespace: &str,
        req: CreateSandboxRequest,
        wait: bool,
        budget: Duration,
    ) -> Result<CreateOutcome, ControlError> {
        self.ctx.ensure_not_draining()?;
        let (record, boot) = self.prepare(namespace, &req).await?;
        let resolved = match self.resolve_image(&record.image).await {
            Err(ControlError::NotFound { kind: "image", .. })
                if req.pull_image == Some(true) && req.snapshot_id.is_none() =>
            {
                self.ctx
                    .images
                    .pull(alcove_images::pull::PullRequest {
                        reference: record.image.clone(),
                        ..Default::default()
                    })
                    .await?;
                self.resolve_image(&record.image).await?
            }
            other => other?,
        };
        self.create_resolved(record, boot, resolved, wait, budget)
            .await
    }

    /// Creates a sandbox of an image resolved by the caller (a build step's
    /// parent, which no reference names yet); otherwise as [`Sandboxes::create`].
    pub(super) async fn create_from_image(
        &self,
        namespace: &str,
        req: CreateSandboxRequest,
        resolved: crate::images::ResolvedImage,
        budget: Duration,
    ) -> Result<CreateOutcome, ControlError> {
        let (record, boot) = self.prepare(namespace, &req).await?;
        self.create_resolved(record, boot, resolved, true, budget)
            .await
    }

    /// Creates a sandbox of `pool`'s configuration, belonging to it in `state` (idle
    /// for a refill, claiming for a claim that found none idle).
    pub(super) async fn start_in_pool(
        &self,
        pool: &crate::store::PoolRecord,
        state: crate::store::PoolState,
    ) -> Result<(SandboxRecord, Starting), ControlError> {
        let req = CreateSandboxRequest {
            image: Some(pool.image.clone()),
            resources: Some(alcove_wire::sandbox::ResourcesRequest {
                cpus: Some(pool.cpus),
                memory_mb: Some(pool.memory_mb),
                disk_mb: Some(pool.disk_mb),
                ..Default::default()
            }),
            timeout_secs: Some(pool.timeout_secs),
            entrypoint: Some(pool.entrypoint.clone()),
            network: Some(pool.network_policy.clone()),
            node_selector: (!pool.node_selector.is_empty()).then(|| pool.node_selector.clone()),
            ..Default::default()
        };
        let (mut record, boot) = self.prepare(&pool.namespace, &req).await?;
        record.pool_id = Some(pool.id.clone());
        record.pool_state = Some(state);
        let resolved = self.resolve_image(&record.image).await?;
        self.start_resolved(record, boot, resolved).await
    }

    async fn create_resolved(
        &self,
        record: SandboxRecord,
        boot: Boot,
        resolved: crate::images::ResolvedImage,
        wait: bool,
        budget: Duration,
    ) -> Result<CreateOutcome, ControlError> {
        let (record, starting) = self.start_resolved(record, boot, resolved).await?;
        if !wait {
            return Ok(CreateOutcome {
                record,
                still_pending: true,
            });
        }
        self.wait_started(record, starting, budget).await
    }

    /// Waits up to `budget` for a start begun by [`Self::start_resolved`] and
    /// answers with the sandbox as it is then.
    pub(super) async fn wait_started(
        &self,
        record: SandboxRecord,
        mut starting: Starting,
        budget: Duration,
    ) -> Result<CreateOutcome, ControlError> {
        match tokio::time::timeout(budget, &mut starting).await {
            Ok(_) => {
                let record = self.ctx.store.get(&record.id).await?.unwrap_or(record);
                Ok(CreateOutcome {
                    still_pending: record.status == SandboxStatus::Pending,
                    record,
                })
            }
            Err(_) => Ok(CreateOutcome {
                record,
                still_pending: true,
            }),
        }
    }

    /// Admits and records a pending sandbox and starts booting it in the
    /// background; the returned task ends when the start has been recorded.
    async fn start_resolved(
        &self,
        record: SandboxRecord,
        boot: Boot,
        resolved: crate::images::ResolvedImage,
    ) -> Result<(SandboxRecord, Starting), ControlError> {
        let record = with_image_defaults(record, &resolved);
        let image = resolved.image;
        // Refused before anything is recorded: a full host is the caller's
        // answer (507), not a failed sandbox. The node checks again when it
        // boots, as others may have taken the room meanwhile.
        self.ctx
            .node
            .admit(u64::try_from(record.disk_mb).unwrap_or(0))
            .map_err(ControlError::from)?;
        {
            // Who holds a volume is decided and stored under one lock (file_systems.rs).
            let vlock = self.ctx.op_lock(super::file_systems::VOLUME_LOCK);
            let _vguard = vlock.lock().await;
            self.ctx
                .check_mounts(&record.namespace, &record.id, &[], &record.file_systems)
                .await?;
            match self.ctx.insert_admitted(&record).await {
                Err(ControlError::Store(StoreError::NameTaken(n))) => {
                    return Err(ControlError::NameTaken(n));
                }
                other => other?,
            }
        }
        tracing::info!(sandbox_id = %record.id, name = ?record.name, "sandbox pending");

        let this = self.clone();
        let id = record.id.clone();
        let lock = self.ctx.op_lock(&id);
        // Take the op lock before returning so a delete that races the start waits for it.
        let guard = lock.lock_owned().await;
        // Under the create request's span, so a start failure is logged with its request id.
        let task = tokio::spawn(
            async move {
                let _guard = guard;
                this.start(&id, image, boot).await
            }
            .instrument(tracing::Span::current()),
        );
        Ok((record, task))
    }

    /// Starts a stored pending sandbox; records the outcome.
    pub(super) async fn start(
        &self,
        id: &SandboxId,
        image: alcove_runtime::image::Image,
        boot: Boot,
    ) {
        let Ok(Some(record)) = self.ctx.store.get(id).await else {
            return;
        };
        if record.status != SandboxStatus::Pending {
            return; // deleted before it started
        }
        // Secrets become environment variables of every process in the sandbox.
        let env = match self
            .secrets
            .env(&record.namespace, &record.secret_names)
            .await
        {
            Ok(env) => env,
            Err(e) => {
                self.fail_start(record, e.to_string()).await;
                return;
            }
        };
        // Resolved now: the node puts it in force before any process of the sandbox runs.
        let egress = match super::network::egress_policy(&record.network_policy).await {
            Ok(egress) => egress,
            Err(e) => {
                self.fail_start(record, format!("applying the network policy: {e}"))
                    .await;
                return;
            }
        };
        let spec = spec_for(&record, image, env, egress);
        let services = spec.image.services.clone();
        let (started, run_entrypoint) = match &boot {
            Boot::Fresh => (
                self.ctx
                    .timed(Operation::Create, self.ctx.node.create(&spec))
                    .await,
                true,
            ),
            Boot::Snapshot { dir, memory } => {
                // Never unpack a snapshot the compactor is packing.
                let key = dir
                    .file_name()
                    .map(|n| super::context::snapshot_lock_key(&n.to_string_lossy()))
                    .unwrap_or_default();
                let lock = self.ctx.op_lock(&key);
                let _guard = lock.lock().await;
                let snapshot_id = dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // Not on this disk (taken on another node, or its files lost):
                // fetched from the blob store, checked against their digests.
                let started = match self.ctx.fetch_snapshot_blobs(&snapshot_id, dir).await {
                    Ok(()) => {
                        self.ctx
                            .timed(
                                Operation::Restore,
                                self.ctx.node.restore_snapshot(&spec, dir, *memory),
                            )
                            .await
                    }
                    Err(e) => Err(alcove_runtime::RuntimeError::Config(e)),
                };
                (started, !*memory)
            }
            Boot::Copy { dir } => (
                self.ctx
                    .timed(
                        Operation::Restore,
                        self.ctx.node.restore_snapshot(&spec, dir, true),
                    )
                    .await,
                false,
            ),
        };
        let result = match started {
            Ok(handle) => {
                // The node put the policy in force before the container started.
                let ready = if run_entrypoint {
                    self.start_boot_processes(&record, &services, &handle).await
                } else {
                    Ok(())
                };
                match ready {
                    Ok(()) => Ok(handle),
                    Err(e) => {
                        self.ctx.node.destroy(id, handle.slot).await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let mut record = record;
        match result {
            Ok(handle) => {
                if let Err(e) = state::apply(&mut record, Event::Started) {
                    tracing::error!(sandbox_id = %id, error = %e, "recording running sandbox");
                    self.ctx.node.destroy(id, handle.slot).await;
                    return;
                }
                record.slot = Some(i64::from(handle.slot.0));
                record.pending_reason = None;
                // A pool's idle sandbox starts its lifetime when it is claimed.
                let idle = record.pool_state == Some(crate::store::PoolState::Idle);
                if record.timeout_secs > 0 && !idle {
                    record.deadline_at =
                        Some(validate::deadline_after(now_millis(), record.timeout_secs));
                }
                if let Err(e) = self.ctx.store.update(&record).await {
                    tracing::error!(sandbox_id = %id, error = %e, "recording running sandbox");
                    self.ctx.node.destroy(id, handle.slot).await;
                    return;
                }
                self.ctx.set_running(id, handle);
                tracing::info!(sandbox_id = %id, "sandbox running");
            }
            Err(reason) => self.fail_start(record, reason).await,
        }
    }

    async fn fail_start(&self, mut record: SandboxRecord, reason: String) {
        let id = record.id.clone();
        tracing::warn!(sandbox_id = %id, error = %reason, "sandbox failed to start");
        if let Err(e) = state::apply(
            &mut record,
            Event::StartFailed(TerminationReason::StartupFailed),
        ) {
            tracing::error!(sandbox_id = %id, error = %e, "recording failed sandbox");
            return;
        }
        record.pending_reason = None;
        record.mark_ended(now_millis());
        // The full reason is in the log line above; clients get one without
        // host paths or command lines.
        record.error_details = Some(crate::redact::stored_details(
            crate::redact::Failure::Start,
            &reason,
        ));
        if let Err(e) = self.ctx.store.update(&record).await {
            tracing::error!(sandbox_id = %id, error = %e, "recording failed sandbox");
        }
    }

    /// Starts the image's services, then the sandbox's entrypoint, through
    /// the agent (a fresh boot only: a memory restore keeps its processes).
    async fn start_boot_processes(
        &self,
        record: &SandboxRecord,
        services: &[alcove_runtime::image::ImageService],
        handle: &SandboxHandle,
    ) -> Result<(), String> {
        for service in services {
            let Some((command, args)) = service.command.split_first() else {
                continue;
            };
            let body =
                serde_json::json!({ "command": command, "args": args, "name": service.name });
            self.start_process(handle, &body)
                .await
                .map_err(|e| format!("starting image service {}: {e}", service.name))?;
        }
        if let Some((command, args)) = record.entrypoint.split_first() {
            let body = serde_json::json!({ "command": command, "args": args });
            self.start_process(handle, &body)
                .await
                .map_err(|e| format!("starting entrypoint: {e}"))?;
        }
        Ok(())
    }

    async fn start_process(
        &self,
        handle: &SandboxHandle,
        body: &serde_json::Value,
    ) -> Result<(), String> {
        let (status, bytes) = self
            .agents
            .post_json(Upstream::of(handle), "/api/v1/processes", body)
            .await
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "agent answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            ))
        }
    }

    /// A sandbox and, if it runs, where its agent is.
    pub async fn target(&self, ident: &str) -> Result<Target, ControlError> {
        let record = self.ctx.resolve_local(None, ident).await?;
        let agent = self.ctx.handle_of(&record.id).map(|h| Upstream::of(&h));
        Ok(Target { record, agent })
    }

    /// One sandbox.
    pub async fn get(&self, namespace: &str, ident: &str) -> Result<SandboxRecord, ControlError> {
        self.ctx.resolve(Some(namespace), ident).await
    }

    /// The live sandboxes of a namespace (ended ones are in the archive).
    pub async fn list(&self, namespace: &str) -> Result<Vec<SandboxRecord>, ControlError> {
        Ok(self.ctx.store.list_live_in(namespace).await?)
    }

    /// Renames and changes flags of a sandbox, or resizes it (`resources`, alone).
    pub async fn update(
        &self,
        namespace: &str,
        ident: &str,
        req: UpdateSandboxRequest,
    ) -> Result<SandboxRecord, ControlError> {
        if let Some(resources) = req.resources {
            let others = req.name.is_some()
                || req.allow_unauthenticated_access.is_some()
                || req.exposed_ports.is_some()
                || req.auto_resume.is_some()
                || req.network.is_some();
            if others {
                return Err(ControlError::InvalidArgument {
                    field: "resources",
                    reason: "a resize cannot be combined with other changes".into(),
                });
            }
            return self.resize(namespace, ident, resources).await;
        }
        let network =
            match req.network {
                None => None,
                Some(serde_json::Value::Null) => Some(super::network::open_policy()),
                Some(value) => Some(serde_json::from_value(value).map_err(|e| {
                    ControlError::InvalidArgument {
                        field: "network",
                        reason: e.to_string(),
                    }
                })?),
            };
        let id = self.ctx.resolve_local(Some(namespace), ident).await?.id;
        let lock = self.ctx.op_lock(&id);
        let _guard = lock.lock().await;
        let mut record = self.ctx.resolve_local(Some(namespace), &id).await?;
        if !record.status.is_live() {
            return Err(ControlError::InvalidState {
                id: id.into(),
                status: record.status,
                op: "update",
            });
        }
        let original = record.clone();
        if let Some(name) = req.name {
            validate::name(&name)?;
            record.name = Some(name);
        }
        if let Some(ports) = req.exposed_ports {
            record.exposed_ports = validate::ports(&ports)?;
        }
        if let Some(flag) = req.allow_unauthenticated_access {
            record.allow_unauthenticated_access = flag;
        }
        if let Some(flag) = req.auto_resume {
            // As at create: only a named sandbox is suspended at its timeout, so only
            // for one does turning auto_resume off mean anything.
            if !flag && record.name.is_none() {
                return Err(ControlError::InvalidArgument {
                    field: "auto_resume",
                    reason: "turning auto_resume off needs a named sandbox".into(),
                });
            }
            record.auto_resume = flag;
        }
        let new_policy = network.is_some();
        if let Some(network) = network {
            super::network::egress_policy(&network).await?;
            record.network_policy = network;
        }
        // Stored first: a refused change (a name another sandbox holds) must change nothing,
        // the firewall included.
        match self.ctx.store.update(&record).await {
            Err(StoreError::NameTaken(n)) => return Err(ControlError::NameTaken(n)),
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
        // Running now: enforce at once. Suspended: enforced when it resumes.
        if new_policy
            && let Some(handle) = self.ctx.handle_of(&id)
            && let Err(e) = self.ctx.apply_network(&record, handle.slot).await
        {
            // Undone whole: the update failed, so it changes nothing.
            if let Err(undo) = self.ctx.store.update(&original).await {
                tracing::warn!(sandbox_id = %id, error = %undo, "restoring the sandbox's record");
            }
            if let Err(undo) = self.ctx.apply_network(&original, handle.slot).await {
                tracing::warn!(sandbox_id = %id, error = %undo, "enforcing the previous network policy again");
            }
            return Err(e);
        }
        Ok(record)
    }

    /// Terminates a sandbox and frees everything it had. Idempotent.
    pub async fn delete(
        &self,
        namespace: Option<&str>,
        ident: &str,
        reason: TerminationReason,
    ) -> Result<SandboxRecord, ControlError> {
        let id = self.ctx.resolve_local(namespace, ident).await?.id;
        self.end(&id, reason).await
    }

    /// Terminates sandbox `id`, which the caller has resolved (a pool's idle sandbox
    /// too, which the API cannot address), and frees everything it had. Idempotent.
    pub(super) async fn end(
        &self,
        id: &SandboxId,
        reason: TerminationReason,
    ) -> Result<SandboxRecord, ControlError> {
        let id = id.clone();
        let mut lap = alcove_runtime::Laps::new(std::time::Instant::now());
        let lock = self.ctx.op_lock(&id);
        let guard = lock.lock().await;
        let lock_ms = lap.split();
        let mut record = self
            .ctx
            .store
            .get(&id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                kind: "sandbox",
                id: id.to_string(),
            })?;
        if !record.status.is_live() {
            return Ok(record);
        }
        let reason = if record.status == SandboxStatus::Pending {
            TerminationReason::Cancelled
        } else {
            reason
        };
        state::apply(&mut record, Event::Terminate(reason)).map_err(|e| {
            ControlError::InvalidState {
                id: id.to_string(),
                status: e.status,
                op: "delete",
            }
        })?;
        record.mark_ended(now_millis());
        record.pending_reason = None;
        let slot = record.slot.take();
        self.ctx.store.update(&record).await?;
        let store_ms = lap.split();
        self.ctx.take_running(&id);
        if let Some(slot) = slot.and_then(|s| u32::try_from(s).ok()) {
            self.ctx.node.destroy(&id, Slot(slot)).await;
        } else if let Err(e) = self.ctx.node.remove_leftovers(&id).await {
            // No slot here: a suspended sandbox moved from another node, with whatever a
            // resume fetched of it. On failure the archive's purge tries again.
            tracing::warn!(sandbox_id = %id, error = %e, "removing an ended sandbox's files");
        }
        let node_ms = lap.split();
        self.ctx.forget_blobs(super::blobs::sandbox_owner(&id));
        drop(guard);
        self.ctx.forget_op_lock(&id);
        let why = record.termination_reason.as_deref().unwrap_or("");
        tracing::info!(sandbox_id = %id, reason = %why, "sandbox terminated");
        self.ctx
            .logs
            .note(
                &id,
                alcove_wire::journal::LogLevel::Info,
                format!("sandbox ended ({why})"),
            )
            .await;
        tracing::debug!(
            sandbox_id = %id,
            lock_ms,
            store_ms,
            node_ms,
            log_ms = lap.split(),
            "sandbox end timed"
        );
        Ok(record)
    }
}

impl Sandboxes {
    /// Resolves the image a record names (a create's reference, or a pinned
    /// one), reading the store on the blocking pool.
    pub(super) async fn resolve_image(
        &self,
        reference: &str,
    ) -> Result<crate::images::ResolvedImage, ControlError> {
        // Not on this node: shared through the blob store by another one?
        self.ctx
            .resolve_or_fetch(reference, || self.resolve_stored_image(reference))
            .await
    }

    /// Resolves `reference` in this node's image store.
    async fn resolve_stored_image(
        &self,
        reference: &str,
    ) -> Result<crate::images::ResolvedImage, ControlError> {
        let images = Arc::clone(&self.ctx.images);
        let reference = reference.to_string();
        let pinned = reference.contains("@sha256:");
        super::images::blocking(move || {
            if pinned {
                images.resolve_pinned(&reference)
            } else {
                images.resolve_for_create(Some(&reference))
            }
        })
        .await
    }
}

/// A new record with its image pinned and the image's defaults filled in:
/// with no entrypoint of its own a sandbox runs the image's `Entrypoint` +
/// `Cmd`, and the image's exposed ports are added to its own.
pub(super) fn with_image_defaults(
    mut record: SandboxRecord,
    resolved: &crate::images::ResolvedImage,
) -> SandboxRecord {
    record.image = resolved.pinned.clone();
    if record.entrypoint.is_empty() {
        record.entrypoint = resolved
            .run
            .entrypoint
            .iter()
            .chain(&resolved.run.cmd)
            .cloned()
            .collect();
    }
    for port in &resolved.run.exposed_ports {
        let port = i64::from(*port);
        // A port the API would refuse (the agent's own) is left out.
        if !record.exposed_ports.contains(&port) && validate::ports(&[port]).is_ok() {
            record.exposed_ports.push(port);
        }
    }
    record
}

/// What the node needs to start or restore the sandbox of `record`.
pub(super) fn spec_for(
    record: &SandboxRecord,
    image: alcove_runtime::image::Image,
    secret_env: Vec<(String, String)>,
    egress: alcove_runtime::network::EgressPolicy,
) -> SandboxSpec {
    let id = &record.id;
    // The image's defaults first; a secret of the same name replaces one.
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .filter(|(k, _)| !secret_env.iter().any(|(s, _)| s == k))
        .cloned()
        .collect();
    env.extend(secret_env);
    // The agent's defaults for processes that name no user or directory.
    if let Some(user) = &image.user {
        env.push(("ALCOVE_AGENT_USER".to_string(), user.clone()));
    }
    if let Some(dir) = &image.working_dir {
        env.push(("ALCOVE_AGENT_WORKDIR".to_string(), dir.clone()));
    }
    if !image.services.is_empty() {
        // Stopping every process keeps these (the agent reads it; its children never see it).
        let names: Vec<&str> = image.services.iter().map(|s| s.name.as_str()).collect();
        env.push(("ALCOVE_AGENT_KEEP".to_string(), names.join(",")));
    }
    SandboxSpec {
        id: id.clone(),
        hostname: record
            .name
            .clone()
            .unwrap_or_else(|| format!("sandbox-{}", id.short())),
        image,
        cpus: record.cpus,
        memory_mb: u64::try_from(record.memory_mb).unwrap_or(0),
        disk_mb: u64::try_from(record.disk_mb).unwrap_or(0),
        env,
        volumes: super::file_systems::node_mounts(&record.namespace, &record.file_systems),
        egress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_replace_the_image_environment_of_the_same_name() {
        let record = crate::store::sample_record("a", None);
        let image = alcove_runtime::image::Image {
            name: "alcove/desktop".into(),
            id: String::new(),
            layers: Vec::new(),
            working_dir: None,
            user: None,
            env: vec![
                ("DISPLAY".into(), ":1".into()),
                ("VNC_PASSWORD".into(), "tensorlake".into()),
            ],
            services: Vec::new(),
        };
        let spec = spec_for(
            &record,
            image,
            vec![("VNC_PASSWORD".into(), "s3cret".into())],
            alcove_runtime::network::EgressPolicy::default(),
        );
        assert_eq!(
            spec.env,
            vec![
                ("DISPLAY".to_string(), ":1".to_string()),
                ("VNC_PASSWORD".to_string(), "s3cret".to_string())
            ]
        );
        assert_eq!(spec.hostname, format!("sandbox-{}", record.id.short()));
    }

    #[test]
    fn a_sandbox_without_an_entrypoint_runs_the_images_entrypoint_and_cmd() {
        let resolved = |entrypoint: Vec<&str>, cmd: Vec<&str>| crate::images::ResolvedImage {
            image: alcove_runtime::image::Image {
                name: "x".into(),
                id: "sha256:0".into(),
                layers: Vec::new(),
                env: Vec::new(),
                services: Vec::new(),
                working_dir: None,
                user: None,
            },
            run: alcove_images::RunConfig {
                entrypoint: entrypoint.into_iter().map(String::from).collect(),
                cmd: cmd.into_iter().map(String::from).collect(),
                exposed_ports: vec![8080, 9501],
                ..Default::default()
            },
            pinned: "x@sha256:0".into(),
        };
        let record = SandboxRecord {
            entrypoint: Vec::new(),
            ..crate::store::sample_record("a", None)
        };
        let r = with_image_defaults(record.clone(), &resolved(vec!["/app"], vec!["--serve"]));
        assert_eq!(r.entrypoint, ["/app", "--serve"]);
        assert_eq!(r.image, "x@sha256:0");
        assert!(r.exposed_ports.contains(&8080));
        assert!(
            !r.exposed_ports.contains(&9501),
            "the agent's port is never exposed"
        );
        let own = SandboxRecord {
            entrypoint: vec!["/mine".into()],
            ..record
        };
        let r = with_image_defaults(own, &resolved(vec!["/app"], vec!["--serve"]));
        assert_eq!(r.entrypoint, ["/mine"], "create's entrypoint replaces both");
    }
}
