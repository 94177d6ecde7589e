//! Copying a running sandbox N ways: one memory dump of the source, which keeps
//! running (frozen only while it is dumped), restored into N new sandboxes in
//! parallel. Each copy is a sandbox of its own (record, id, address, cgroup and
//! its own copy of the writable layer) that starts with the source's memory,
//! processes and files.
//!
//! Crash safety: the copies are stored `pending` before they are restored, so a
//! restart fails them and sweeps whatever their restore had made on the node;
//! the dump lives under the snapshots directory with no snapshot record, so the
//! restart's snapshot recovery removes it too.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use alcove_runtime::{SandboxId, blocking};
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::ControlError;
use super::context::Context;
use super::lifecycle::{Boot, Sandboxes};
use super::state::{self, Event};
use crate::metrics::Operation;
use crate::store::SandboxRecord;

/// Most copies one request may ask for: each is a full sandbox (memory, CPU
/// share, layer), and they all restore from one dump within one request.
pub const MAX_COPIES: u32 = 16;

/// Name prefix of a copy's dump directory under the snapshots directory.
const DUMP_PREFIX: &str = "copy-";

/// Restores of copies running at once on this server, whatever the request. A
/// restore spends much of its time waiting (on runc, CRIU's page reads and the
/// agent's first answer), so two per host CPU keep the CPUs busy; more only queue.
static RESTORES: OnceLock<Arc<Semaphore>> = OnceLock::new();

/// Restores at once per host CPU (see [`RESTORES`]).
const RESTORES_PER_CPU: f64 = 2.0;

/// What a copy produced.
#[derive(Debug, Clone)]
pub struct CopyOutcome {
    /// The sandbox copied.
    pub source_id: SandboxId,
    /// The copies as last stored: `running`, or `failed` with `error_details`.
    pub copies: Vec<SandboxRecord>,
}

impl CopyOutcome {
    /// Whether every copy runs.
    pub fn all_running(&self) -> bool {
        self.copies
            .iter()
            .all(|c| c.status == SandboxStatus::Running)
    }
}

/// Checks the number of copies asked for.
pub fn validate_times(times: u32) -> Result<(), ControlError> {
    if (1..=MAX_COPIES).contains(&times) {
        Ok(())
    } else {
        Err(ControlError::InvalidArgument {
            field: "times",
            reason: format!("must be between 1 and {MAX_COPIES}, got {times}"),
        })
    }
}

impl Sandboxes {
    /// Copies the running sandbox `ident` `times` ways and waits for every
    /// copy to run or fail. Refused (nothing made) unless the source runs.
    pub async fn copy(
        &self,
        namespace: &str,
        ident: &str,
        times: u32,
        auth: Option<String>,
    ) -> Result<CopyOutcome, ControlError> {
        validate_times(times)?;
        self.ctx.ensure_not_draining()?;
        let source = self.ctx.resolve_local(Some(namespace), ident).await?;
        ensure_copyable(&source)?;
        let resolved = self.resolve_image(&source.image).await?;
        // A full host is the caller's answer (507) before anything is dumped;
        // each restore checks again, as others may take the room meanwhile.
        self.ctx
            .node
            .admit(u64::try_from(source.disk_mb).unwrap_or(0))
            .map_err(ControlError::from)?;
        self.ensure_room_for_a_copy(&source).await?;
        let this = self.clone();
        // A client that hangs up must not cut a dump short (the source would
        // stay `snapshotting`) nor leave the dump.
        detached(ident, async move {
            this.run_copy(source.id, resolved.image, times, auth.as_deref())
                .await
        })
        .await
    }

    async fn run_copy(
        &self,
        source_id: SandboxId,
        image: alcove_runtime::image::Image,
        times: u32,
        auth: Option<&str>,
    ) -> Result<CopyOutcome, ControlError> {
        let dir = self
            .ctx
            .cfg
            .snapshots_dir
            .join(format!("{DUMP_PREFIX}{}", uuid::Uuid::new_v4()));
        let source = match self.dump(&source_id, &dir).await {
            Ok(source) => source,
            Err(e) => {
                let _ = blocking::remove_dir_all(dir).await;
                return Err(e);
            }
        };
        let restored = self.place_copies(&source, image, &dir, times, auth).await;
        if let Err(e) = blocking::remove_dir_all(dir.clone()).await {
            tracing::warn!(path = %dir.display(), error = %e, "removing a copy's dump");
        }
        let copies = restored?;
        let failed = copies
            .iter()
            .filter(|c| c.status != SandboxStatus::Running)
            .count();
        tracing::info!(sandbox_id = %source_id, copies = copies.len(), failed, "sandbox copied");
        Ok(CopyOutcome { source_id, copies })
    }

    /// Dumps the source into `dir` under its op lock (a delete or suspend
    /// waits for the dump), `snapshotting` meanwhile so a crash thaws it.
    async fn dump(
        &self,
        id: &SandboxId,
        dir: &std::path::Path,
    ) -> Result<SandboxRecord, ControlError> {
        let lock = self.ctx.op_lock(id);
        let _guard = lock.lock().await;
        let mut record = self.ctx.resolve_local(None, id).await?;
        ensure_copyable(&record)?;
        state::apply(&mut record, Event::SnapshotBegun).map_err(|e| {
            ControlError::InvalidState {
                id: id.to_string(),
                status: e.status,
                op: "copy",
            }
        })?;
        self.ctx.store.update(&record).await?;
        let dumped = self
            .ctx
            .timed(Operation::CopyDump, self.ctx.node.snapshot(id, dir, true))
            .await;
        if let Err(e) = state::apply(&mut record, Event::SnapshotEnded) {
            tracing::error!(sandbox_id = %id, error = %e, "ending a copy's dump");
        }
        self.ctx.store.update(&record).await?;
        match dumped {
            Ok(bytes) => {
                tracing::info!(sandbox_id = %id, bytes, "sandbox dumped for a copy");
                Ok(record)
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %id, error = %e, "dumping a sandbox to copy it");
                if let Some(reason) = e.sandbox_refusal() {
                    return Err(ControlError::OperationRefused {
                        id: id.to_string(),
                        op: "copy",
                        reason: reason.to_string(),
                    });
                }
                Err(ControlError::OperationFailed {
                    id: id.to_string(),
                    op: "copy",
                    reason: crate::redact::stored_details(
                        crate::redact::Failure::Snapshot,
                        &e.to_string(),
                    ),
                })
            }
        }
    }

    /// Places `times` copies of `source`, dumped into `dir`: as many as this
    /// node has room for here, the rest (in a cluster with a blob store) on
    /// other nodes with room, which restore them from the dump through the
    /// blob store; a copy no node has room for is stored `failed` with the
    /// reason. Refused, with nothing made, when none fits anywhere.
    async fn place_copies(
        &self,
        source: &SandboxRecord,
        image: alcove_runtime::image::Image,
        dir: &std::path::Path,
        times: u32,
        auth: Option<&str>,
    ) -> Result<Vec<SandboxRecord>, ControlError> {
        let here = self.admit_copies(source, times).await?;
        let rest = times.saturating_sub(u32::try_from(here.len()).unwrap_or(times));
        let mut unplaced_reason = format!(
            "no node had room for this copy ({} CPUs, {} MiB)",
            source.cpus, source.memory_mb
        );
        let shared = match rest {
            0 => None,
            _ => self
                .share_copy_dump(source, dir)
                .await
                .unwrap_or_else(|why| {
                    unplaced_reason = format!("no room on the source's node, and {why}");
                    None
                }),
        };
        // The local restores and those on other nodes run side by side.
        let ((), elsewhere) = tokio::join!(
            self.restore_copies(&here, image, dir),
            self.copy_elsewhere(source, shared, rest, auth)
        );
        let mut ids = here;
        ids.extend(elsewhere);
        if ids.is_empty() {
            return Err(Context::no_room(
                &source.node_selector,
                source.cpus,
                source.memory_mb,
            ));
        }
        let unplaced = usize::try_from(times)
            .unwrap_or(0)
            .saturating_sub(ids.len());
        for _ in 0..unplaced {
            ids.push(self.store_unplaced_copy(source, &unplaced_reason).await?);
        }
        let mut copies = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(record) = self.ctx.store.get(id).await? {
                copies.push(record);
            }
        }
        Ok(copies)
    }

    /// In a cluster, refuses a copy before the source is frozen for its dump
    /// when neither this node nor (with a blob store) any other reported room
    /// for a single copy. A guess from the last renewals: placing each copy
    /// checks again.
    async fn ensure_room_for_a_copy(&self, source: &SandboxRecord) -> Result<(), ControlError> {
        let (cpus, memory_mb, selector) = (source.cpus, source.memory_mb, &source.node_selector);
        if (self.ctx.matches_here(selector).is_ok() && self.ctx.has_room(cpus, memory_mb).await?)
            || (self.ctx.cfg.blobs.is_some()
                && self.ctx.room_elsewhere(cpus, memory_mb, selector).await?)
        {
            return Ok(());
        }
        Err(Context::no_room(selector, cpus, memory_mb))
    }

    /// Stores up to `times` pending copies of `source` on this node, as many
    /// as its room allows (all of them when it is alone in the store).
    pub(super) async fn admit_copies(
        &self,
        source: &SandboxRecord,
        times: u32,
    ) -> Result<Vec<SandboxId>, ControlError> {
        let mut ids: Vec<SandboxId> = Vec::new();
        for _ in 0..times {
            let record = copy_record(source, self.ctx.local_node());
            match self.ctx.insert_admitted(&record).await {
                Ok(()) => {}
                // Copies are all the same size: none of the rest fits either
                // (nor does any when this node's labels do not match).
                Err(ControlError::NoRoomHere { .. } | ControlError::NotMatchedHere { .. }) => break,
                Err(e) => {
                    // No copy is left pending for a caller who is told the copy failed.
                    self.cancel_copies(&ids).await;
                    return Err(e);
                }
            }
            tracing::info!(sandbox_id = %record.id, source = %source.id, "copy pending");
            ids.push(record.id);
        }
        Ok(ids)
    }

    /// Ends copies stored but not restored.
    pub(super) async fn cancel_copies(&self, ids: &[SandboxId]) {
        for id in ids {
            let cancelled = self
                .delete(
                    None,
                    id.as_str(),
                    super::state::TerminationReason::Cancelled,
                )
                .await;
            if let Err(e) = cancelled {
                tracing::error!(sandbox_id = %id, error = %e, "cancelling a copy");
            }
        }
    }

    /// Stores a copy no node took, as failed with `reason`.
    async fn store_unplaced_copy(
        &self,
        source: &SandboxRecord,
        reason: &str,
    ) -> Result<SandboxId, ControlError> {
        let mut record = copy_record(source, self.ctx.local_node());
        state::apply(
            &mut record,
            Event::StartFailed(super::state::TerminationReason::StartupFailed),
        )
        .map_err(|e| ControlError::InvalidState {
            id: record.id.to_string(),
            status: e.status,
            op: "copy",
        })?;
        record.pending_reason = None;
        record.mark_ended(now_millis());
        record.error_details = Some(reason.to_string());
        self.ctx.store.insert(&record).await?;
        tracing::warn!(sandbox_id = %record.id, source = %source.id, "no room for a copy");
        Ok(record.id)
    }

    /// Restores the stored pending copies `ids` from `dir` in parallel
    /// (bounded by [`RESTORES`]); each ends `running` or `failed`.
    pub(super) async fn restore_copies(
        &self,
        ids: &[SandboxId],
        image: alcove_runtime::image::Image,
        dir: &std::path::Path,
    ) {
        let permits = Arc::clone(RESTORES.get_or_init(|| {
            // At least one per CPU counted whole: a fraction of a CPU still restores.
            let cpus = self.ctx.cfg.host.cpus.floor().max(1.0);
            Arc::new(Semaphore::new((cpus * RESTORES_PER_CPU) as usize))
        }));
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let this = self.clone();
            let id = id.clone();
            let image = image.clone();
            let boot = Boot::Copy {
                dir: PathBuf::from(dir),
            };
            let permits = Arc::clone(&permits);
            // Taken before any wait, so a delete of a pending copy waits for its restore.
            let guard = self.ctx.op_lock(&id).lock_owned().await;
            tasks.spawn(
                async move {
                    let _guard = guard;
                    let _permit = permits.acquire_owned().await;
                    this.start(&id, image, boot).await;
                }
                .instrument(tracing::Span::current()),
            );
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "a copy's restore task ended abnormally");
            }
        }
    }
}

/// Runs a copy's work (of sandbox `ident`) in its own task, so that it runs
/// to its end whether or not the caller still waits for it.
pub(super) async fn detached<T: Send + 'static>(
    ident: &str,
    work: impl std::future::Future<Output = Result<T, ControlError>> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::spawn(work.instrument(tracing::Span::current()))
        .await
        .map_err(|e| ControlError::OperationFailed {
            id: ident.to_string(),
            op: "copy",
            reason: e.to_string(),
        })?
}

/// A copy is only of a running sandbox (a suspended one has no processes to
/// dump while it runs: resume it first; a pending one nothing yet) with no
/// read-write volume.
fn ensure_copyable(record: &SandboxRecord) -> Result<(), ControlError> {
    if record.status != SandboxStatus::Running {
        return Err(ControlError::InvalidState {
            id: record.id.to_string(),
            status: record.status,
            op: "copy",
        });
    }
    // Every copy mounts the source's volumes as the source does: a read-write one would be
    // written by the source and each copy at once.
    if let Some(m) = record.file_systems.iter().find(|m| !m.read_only) {
        return Err(ControlError::FileSystemInUse(format!(
            "sandbox {} has file system {} mounted read-write at {}, and a volume is mounted \
             read-write in one sandbox at a time: detach it, or attach it read-only, to copy \
             the sandbox",
            record.id, m.file_system_id, m.mount_path
        )));
    }
    Ok(())
}

/// The pending record of one copy: the source's image, resources, secrets,
/// network policy, ports, entrypoint and timeout (counted from the copy's
/// start), under a new id and no name (names are unique among live sandboxes),
/// on `node` (the node that restores it).
fn copy_record(source: &SandboxRecord, node: Option<&str>) -> SandboxRecord {
    SandboxRecord {
        id: SandboxId::random(),
        node: node.map(str::to_string),
        name: None,
        status: SandboxStatus::Pending,
        // Turning auto_resume off needs a name (see `prepare`): an unnamed copy keeps it on.
        auto_resume: true,
        slot: None,
        created_at: now_millis(),
        terminated_at: None,
        deadline_at: None,
        pending_reason: Some("scheduling".into()),
        termination_reason: None,
        error_details: None,
        timeout_remaining_ms: None,
        transition: None,
        suspended_at: None,
        archived_at: None,
        resource_resize: None,
        ..source.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_is_checked_against_its_bounds() {
        assert!(validate_times(0).is_err());
        assert!(validate_times(1).is_ok());
        assert!(validate_times(MAX_COPIES).is_ok());
        let err = validate_times(MAX_COPIES + 1).expect_err("above the cap");
        assert!(err.to_string().contains("times"), "{err}");
    }

    #[test]
    fn a_copy_keeps_the_sources_settings_under_a_new_id_and_no_name() {
        let mut source = crate::store::sample_record("a", Some("named"));
        source.status = SandboxStatus::Running;
        source.slot = Some(3);
        source.deadline_at = Some(42);
        source.auto_resume = false;
        source.secret_names = vec!["TOKEN".into()];
        source.node = Some("n1".into());
        let copy = copy_record(&source, Some("n2"));
        assert_ne!(copy.id, source.id);
        assert_eq!(
            copy.node.as_deref(),
            Some("n2"),
            "a copy lives where it is restored"
        );
        assert_eq!(copy.name, None);
        assert_eq!(copy.status, SandboxStatus::Pending);
        assert_eq!(copy.slot, None);
        assert_eq!(copy.deadline_at, None);
        assert!(copy.auto_resume);
        assert_eq!(copy.image, source.image);
        assert_eq!(copy.cpus, source.cpus);
        assert_eq!(copy.memory_mb, source.memory_mb);
        assert_eq!(copy.disk_mb, source.disk_mb);
        assert_eq!(copy.secret_names, source.secret_names);
        assert_eq!(copy.network_policy, source.network_policy);
        assert_eq!(copy.entrypoint, source.entrypoint);
        assert_eq!(copy.timeout_secs, source.timeout_secs);
        assert_eq!(copy.namespace, source.namespace);
    }
}
