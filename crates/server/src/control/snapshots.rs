//! Snapshots: a reusable capture of a running sandbox (its writable layer, and
//! for memory snapshots its processes), restored into new sandboxes.

use std::path::PathBuf;
use std::sync::Arc;

use alcove_wire::journal::LogLevel;
use alcove_wire::sandbox::{CreateSandboxRequest, ResourcesRequest, SandboxStatus};
use alcove_wire::snapshot::{SnapshotStatus, SnapshotType};
use alcove_wire::time::now_millis;

use tracing::Instrument;

use super::ControlError;
use super::context::Context;
use super::lifecycle::Boot;
use super::state::{self, Event};
use crate::redact::{self, Failure};
use crate::store::SnapshotRecord;
use alcove_runtime::blocking;

/// Takes, lists and deletes snapshots, and turns one into a sandbox to restore.
#[derive(Debug, Clone)]
pub struct Snapshots {
    ctx: Arc<Context>,
}

impl Snapshots {
    /// The service over the shared context.
    pub(super) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
    fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.ctx.cfg.snapshots_dir.join(id)
    }

    /// Starts a snapshot of a running sandbox and waits up to `wait` for it to end; answers
    /// with it as it is then (`in_progress` if it is still being taken: it goes on).
    pub async fn create(
        &self,
        namespace: Option<&str>,
        ident: &str,
        kind: Option<SnapshotType>,
        wait: std::time::Duration,
    ) -> Result<SnapshotRecord, ControlError> {
        let record = self.ctx.resolve_local(namespace, ident).await?;
        if !matches!(
            record.status,
            SandboxStatus::Running | SandboxStatus::Snapshotting
        ) {
            return Err(ControlError::InvalidState {
                id: record.id.into(),
                status: record.status,
                op: "snapshot",
            });
        }
        let kind = kind.unwrap_or(SnapshotType::Memory);
        let memory_mb =
            (kind == SnapshotType::Memory).then(|| u64::try_from(record.memory_mb).unwrap_or(0));
        self.ctx.node.admit_snapshot(&record.id, memory_mb)?;
        let snap = SnapshotRecord {
            id: uuid::Uuid::new_v4().to_string(),
            namespace: record.namespace.clone(),
            sandbox_id: record.id.clone(),
            status: SnapshotStatus::InProgress,
            snapshot_type: kind,
            image: record.image.clone(),
            cpus: record.cpus,
            memory_mb: record.memory_mb,
            disk_mb: record.disk_mb,
            entrypoint: record.entrypoint.clone(),
            size_bytes: None,
            created_at: now_millis(),
            completed_at: None,
            error: None,
            file_systems: record.file_systems.clone(),
            network_policy: Some(record.network_policy.clone()),
        };
        self.ctx.store.put_snapshot(&snap).await?;
        let this = self.clone();
        let job = snap.clone();
        // The job keeps the request's span, so its failure is logged under the request id.
        // It goes on if the wait below ends first or its request is dropped.
        let mut taken = tokio::spawn(
            async move {
                let lock = this.ctx.op_lock(&job.sandbox_id);
                let _guard = lock.lock().await;
                this.take_snapshot(job).await;
            }
            .instrument(tracing::Span::current()),
        );
        if wait.is_zero() || tokio::time::timeout(wait, &mut taken).await.is_err() {
            return Ok(snap);
        }
        // Ended within the wait: its outcome is in the store.
        Ok(self.ctx.store.get_snapshot(&snap.id).await?.unwrap_or(snap))
    }

    async fn take_snapshot(&self, mut snap: SnapshotRecord) {
        let id = snap.sandbox_id.clone();
        let dir = self.snapshot_dir(&snap.id);
        let outcome = match self.ctx.store.get(&id).await {
            Ok(Some(mut record)) if record.status == SandboxStatus::Running => {
                let marked = match state::apply(&mut record, Event::SnapshotBegun) {
                    Ok(()) => self
                        .ctx
                        .store
                        .update(&record)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let result = match marked {
                    Ok(()) => self
                        .ctx
                        .timed(
                            crate::metrics::Operation::Snapshot,
                            self.ctx.node.snapshot(
                                &id,
                                &dir,
                                snap.snapshot_type == SnapshotType::Memory,
                            ),
                        )
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                if let Err(e) = state::apply(&mut record, Event::SnapshotEnded) {
                    tracing::error!(sandbox_id = %id, error = %e, "ending a snapshot");
                }
                if let Err(e) = self.ctx.store.update(&record).await {
                    tracing::error!(sandbox_id = %id, error = %e, "recording end of snapshot");
                }
                result
            }
            Ok(Some(record)) => Err(format!("sandbox {id} is {}", record.status)),
            Ok(None) => Err(format!("sandbox {id} not found")),
            Err(e) => Err(e.to_string()),
        };
        // With a blob store, `completed` means stored there: restorable anywhere.
        let outcome = match outcome {
            Ok(bytes) => self
                .ctx
                .store_snapshot_blobs(&snap.id, &dir)
                .await
                .map(|()| bytes),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(bytes) => {
                snap.status = SnapshotStatus::Completed;
                snap.size_bytes = i64::try_from(bytes).ok();
                snap.completed_at = Some(now_millis());
                if let Err(e) = write_manifest(&dir, &snap) {
                    tracing::warn!(snapshot_id = %snap.id, error = %e, "writing snapshot manifest");
                }
                tracing::info!(snapshot_id = %snap.id, sandbox_id = %id, bytes, "snapshot completed");
                let what = format!("{} snapshot {} taken", snap.snapshot_type.as_str(), snap.id);
                self.ctx.logs.note(&id, LogLevel::Info, what).await;
            }
            Err(e) => {
                tracing::warn!(snapshot_id = %snap.id, sandbox_id = %id, error = %e, "snapshot failed");
                snap.status = SnapshotStatus::Failed;
                // Clients read `error`: the full one (command line, host paths) stays in the log.
                let details = redact::stored_details(Failure::Snapshot, &e);
                let what = format!("snapshot {}: {details}", snap.id);
                self.ctx.logs.note(&id, LogLevel::Warn, what).await;
                snap.error = Some(details);
                let _ = blocking::remove_dir_all(dir).await;
            }
        }
        if let Err(e) = self.ctx.store.put_snapshot(&snap).await {
            tracing::error!(snapshot_id = %snap.id, error = %e, "recording snapshot outcome");
        }
    }

    /// One snapshot.
    pub async fn get(
        &self,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<SnapshotRecord, ControlError> {
        self.ctx
            .store
            .get_snapshot(id)
            .await?
            .filter(|s| namespace.is_none_or(|ns| ns == s.namespace))
            .ok_or_else(|| ControlError::NotFound {
                kind: "snapshot",
                id: id.to_string(),
            })
    }

    /// Snapshots of a namespace, or of one sandbox.
    pub async fn list(
        &self,
        namespace: &str,
        sandbox: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, ControlError> {
        let sandbox_id = match sandbox {
            Some(ident) => Some(self.ctx.resolve(Some(namespace), ident).await?.id),
            None => None,
        };
        Ok(self
            .ctx
            .store
            .list_snapshots(Some(namespace), sandbox_id.as_deref())
            .await?)
    }

    /// Deletes a snapshot and its files. One still being taken is a conflict.
    pub async fn delete(&self, namespace: Option<&str>, id: &str) -> Result<(), ControlError> {
        let snap = self.get(namespace, id).await?;
        if snap.status == SnapshotStatus::InProgress {
            return Err(ControlError::InvalidArgument {
                field: "snapshot_id",
                reason: format!("snapshot {id} is still being taken"),
            });
        }
        let lock = self.ctx.op_lock(&super::context::snapshot_lock_key(id));
        let _guard = lock.lock().await;
        self.ctx.store.delete_snapshot(id).await?;
        if let Err(e) = blocking::remove_dir_all(self.snapshot_dir(id)).await {
            tracing::warn!(snapshot_id = %id, error = %e, "removing snapshot files");
        }
        self.ctx.forget_blobs(super::blobs::snapshot_owner(id));
        Ok(())
    }

    /// Turns a create-from-snapshot request into a plain create request (image
    /// and resources of the snapshot) and how to boot it.
    pub(super) async fn restore_request(
        &self,
        namespace: &str,
        snapshot_id: &str,
        req: &CreateSandboxRequest,
    ) -> Result<(CreateSandboxRequest, Boot), ControlError> {
        let snap = self.get(Some(namespace), snapshot_id).await?;
        if snap.status != SnapshotStatus::Completed {
            return Err(ControlError::InvalidArgument {
                field: "snapshot_id",
                reason: format!(
                    "snapshot {snapshot_id} is {}, not completed",
                    snap.status.as_str()
                ),
            });
        }
        let asked = req.resources.clone().unwrap_or_default();
        let memory = snap.snapshot_type == SnapshotType::Memory;
        if memory {
            // A memory image only fits the resources it was taken with.
            let differs = asked.cpus.is_some_and(|c| c != snap.cpus)
                || asked.memory_mb.is_some_and(|m| m != snap.memory_mb)
                || asked.disk().is_some_and(|d| d != snap.disk_mb);
            if differs {
                return Err(ControlError::InvalidArgument {
                    field: "resources",
                    reason: format!(
                        "a memory snapshot restores with its own resources \
                         ({} CPUs, {} MB memory, {} MB disk); take a filesystem snapshot to change them",
                        snap.cpus, snap.memory_mb, snap.disk_mb
                    ),
                });
            }
            if req.entrypoint.as_ref().is_some_and(|e| !e.is_empty()) {
                return Err(ControlError::InvalidArgument {
                    field: "entrypoint",
                    reason: "a memory snapshot restores its processes; no entrypoint is started \
                             (take a filesystem snapshot to boot with one)"
                        .into(),
                });
            }
        }
        // Either kind: the files a snapshot holds were written over its image's layers. The
        // image may be named, by any of its names or its id, but not changed.
        let own = crate::images::display_name(&snap.image);
        if let Some(asked) = req.image.clone().filter(|i| i != own && *i != snap.image)
            && !self.is_image(&asked, &snap.image).await
        {
            return Err(ControlError::InvalidArgument {
                field: "image",
                reason: format!(
                    "a snapshot restores on its own image {own}, over whose layers its files were \
                     written; leave image out"
                ),
            });
        }
        // The layer is a copy of the snapshot's: it can grow (before it is mounted, as a disk
        // resized while suspended does), never shrink.
        let disk_mb = asked.disk().unwrap_or(snap.disk_mb);
        if disk_mb < snap.disk_mb {
            return Err(ControlError::InvalidArgument {
                field: "resources.disk_mb",
                reason: format!(
                    "{disk_mb} MB is smaller than the snapshot's disk ({} MB); a disk only grows",
                    snap.disk_mb
                ),
            });
        }
        let mut plain = req.clone();
        plain.snapshot_id = None;
        plain.image = Some(snap.image.clone());
        plain.resources = Some(ResourcesRequest {
            cpus: asked.cpus.or(Some(snap.cpus)),
            memory_mb: asked.memory_mb.or(Some(snap.memory_mb)),
            disk_mb: Some(disk_mb),
            ephemeral_disk_mb: None,
            gpus: asked.gpus,
        });
        if memory && !snap.file_systems.is_empty() {
            // The processes of a memory image may hold files on its volumes, and CRIU
            // restores their mounts by path: the same volumes at the same paths, or none.
            let asked = req.file_systems.as_deref().unwrap_or(&[]);
            if !asked.is_empty() && asked != snap.file_systems.as_slice() {
                return Err(ControlError::InvalidArgument {
                    field: "file_systems",
                    reason: "a memory snapshot restores with the volumes its sandbox had mounted; leave file_systems out"
                        .into(),
                });
            }
            plain.file_systems = Some(snap.file_systems.clone());
        }
        // A sandbox kept from the internet does not come back with it: a restore that names
        // no policy gets its source's (a memory snapshot's processes run at once).
        if plain.network.is_none() {
            plain.network = snap.network_policy.clone();
        }
        if plain.entrypoint.is_none() && !memory {
            plain.entrypoint = Some(snap.entrypoint.clone());
        }
        Ok((
            plain,
            Boot::Snapshot {
                dir: self.snapshot_dir(&snap.id),
                memory,
            },
        ))
    }

    /// Whether `asked` (a name or id) resolves to the image `pinned` (`name@sha256:…`) names.
    async fn is_image(&self, asked: &str, pinned: &str) -> bool {
        let Some(id) = super::images::pinned_id(pinned).map(str::to_string) else {
            return false;
        };
        let images = self.ctx.images.clone();
        let asked = asked.to_string();
        super::images::blocking(move || images.store().resolve(&asked))
            .await
            .is_ok_and(|record| record.id.to_string() == id)
    }

    /// After a restart: snapshots left `in_progress` failed; files of snapshots
    /// that no row knows are removed.
    pub(super) async fn recover(&self) -> Result<(), ControlError> {
        let all = self.ctx.store.list_snapshots(None, None).await?;
        for mut snap in all
            .iter()
            .filter(|s| s.status == SnapshotStatus::InProgress)
            .cloned()
        {
            snap.status = SnapshotStatus::Failed;
            snap.error = Some("the server restarted while the snapshot was being taken".into());
            let _ = blocking::remove_dir_all(self.snapshot_dir(&snap.id)).await;
            self.ctx.store.put_snapshot(&snap).await?;
            tracing::warn!(snapshot_id = %snap.id, "snapshot interrupted by a restart marked failed");
        }
        if let Ok(entries) = std::fs::read_dir(&self.ctx.cfg.snapshots_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !all.iter().any(|s| s.id == name) {
                    let _ = blocking::remove_dir_all(entry.path()).await;
                    tracing::warn!(path = %entry.path().display(), "removed unknown snapshot files");
                }
            }
        }
        Ok(())
    }
}

/// `manifest.json` beside a snapshot's files, so the store on disk describes itself.
fn write_manifest(dir: &std::path::Path, snap: &SnapshotRecord) -> alcove_runtime::Result<()> {
    let manifest = serde_json::json!({
        "format_version": 1,
        "id": snap.id,
        "namespace": snap.namespace,
        "sandbox_id": snap.sandbox_id,
        "snapshot_type": snap.snapshot_type.as_str(),
        "image": crate::images::display_name(&snap.image),
        "cpus": snap.cpus,
        "memory_mb": snap.memory_mb,
        "disk_mb": snap.disk_mb,
        "entrypoint": snap.entrypoint,
        "size_bytes": snap.size_bytes,
        "created_at": snap.created_at,
        "completed_at": snap.completed_at,
    });
    let tmp = dir.join("manifest.json.tmp");
    // Root-only, as the rest of the data directory.
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    alcove_runtime::perms::write_file(&tmp, &bytes, 0o600)?;
    std::fs::rename(&tmp, dir.join("manifest.json"))
        .map_err(alcove_runtime::RuntimeError::io("renaming", &tmp))
}
