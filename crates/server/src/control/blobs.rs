//! Copies of dumps and snapshots in the blob store (`--blob-store`), so they
//! outlive this machine's disk and can be restored elsewhere.
//!
//! - A snapshot is uploaded before it is marked completed: `completed` means
//!   it is in the blob store.
//! - A suspended sandbox's dump and layer are uploaded in the background (the
//!   compactor's loop), so a suspend answers as fast as without a blob store.
//!   The upload holds no lock: a resume meanwhile wins, and the upload is
//!   recorded only if the sandbox is still in the suspension it copied.
//! - A restore or resume whose files are not on this disk downloads them,
//!   each checked against the sha256 recorded at upload. A mismatch fails the
//!   operation with a clear error and leaves the object in the store, so it
//!   can be retried.
//!
//! Objects are `<member>.tar.zst` archives (the local packed form, see
//! `alcove_runtime::archive`) under `snapshots/<id>/` and `sandboxes/<id>/`,
//! and rows of the store's `blobs` table name them with their digests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alcove_blobs::{BlobDigest, BlobStore};
use alcove_runtime::SandboxId;
use alcove_runtime::archive;
use alcove_runtime::checkpoint::{SNAPSHOT_MEMBERS, SUSPENDED_MEMBERS};
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;

use super::Control;
use super::context::Context;
use crate::store::BlobRecord;

/// How long a failed background upload waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The owner name of a snapshot's objects.
pub(super) fn snapshot_owner(id: &str) -> String {
    format!("snapshot:{id}")
}

/// The owner name of the dump of copy `dump` of sandbox `source`: the source
/// is part of it, so a node asked to restore such a copy checks the dump is
/// of the sandbox it was named with.
pub(super) fn copy_owner(source: &str, dump: &str) -> String {
    format!("copy:{source}:{dump}")
}

/// The owner name of a suspended sandbox's objects.
pub(super) fn sandbox_owner(id: &str) -> String {
    format!("sandbox:{id}")
}

/// Whether `records` hold an object of each of `members` (keys end in
/// `/<member>.tar.zst`): a dump missing one cannot be restored from them.
fn holds_every_member(records: &[BlobRecord], members: &[&str]) -> bool {
    members.iter().all(|m| {
        let name = format!("/{m}.tar.zst");
        records.iter().any(|r| r.key.ends_with(&name))
    })
}

/// Background uploads that failed, and when to try each again.
#[derive(Debug, Default)]
pub(super) struct UploadBackoff(Mutex<HashMap<String, Instant>>);

impl UploadBackoff {
    fn due(&self, id: &str) -> bool {
        self.0
            .lock()
            .map(|m| m.get(id).is_none_or(|at| Instant::now() >= *at))
            .unwrap_or(true)
    }
    fn failed(&self, id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id.to_string(), Instant::now() + RETRY_AFTER);
        }
    }
    fn clear(&self, id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(id);
        }
    }
}

impl Context {
    /// Whether suspended sandbox `id`'s dump is in the blob store (so another
    /// node can resume it).
    pub(super) async fn dump_in_blob_store(&self, id: &str) -> Result<bool, super::ControlError> {
        if self.cfg.blobs.is_none() {
            return Ok(false);
        }
        let records = self.store.blobs_of(&sandbox_owner(id)).await?;
        Ok(holds_every_member(&records, &SUSPENDED_MEMBERS))
    }

    /// Uploads the members of `dir` that exist (raw or packed) under
    /// `<prefix>/<member>.tar.zst`; returns the records to store.
    async fn upload_members(
        &self,
        blobs: &BlobStore,
        dir: &Path,
        members: &[&str],
        prefix: &str,
        owner: &str,
    ) -> Result<Vec<BlobRecord>, String> {
        let mut records = Vec::new();
        for member in members.iter().filter(|m| archive::has_member(dir, m)) {
            let key = format!("{prefix}/{member}.tar.zst");
            let mut reader = archive::open_packed(dir, member)
                .await
                .map_err(|e| e.to_string())?;
            let uploaded = blobs.upload(&key, &mut reader).await;
            let finished = reader.finish().await;
            let digest = uploaded.map_err(|e| e.to_string())?;
            // tar failing half-way (a file vanished) means the object is partial.
            finished.map_err(|e| format!("packing {member}: {e}"))?;
            records.push(BlobRecord {
                key,
                owner: owner.to_string(),
                sha256: digest.sha256,
                size: i64::try_from(digest.size).unwrap_or(i64::MAX),
                created_at: now_millis(),
            });
        }
        if records.is_empty() {
            return Err("there are no files to upload".into());
        }
        Ok(records)
    }

    /// Puts the archives of `owner`'s objects into `dir` where neither the
    /// member nor its archive is there yet; how many were downloaded.
    async fn download_members(
        &self,
        blobs: &BlobStore,
        dir: &Path,
        owner: &str,
    ) -> Result<usize, String> {
        let records = self
            .store
            .blobs_of(owner)
            .await
            .map_err(|e| e.to_string())?;
        let mut fetched = 0;
        let started = Instant::now();
        for rec in records {
            let Some(member) = rec
                .key
                .rsplit('/')
                .next()
                .and_then(|name| name.strip_suffix(".tar.zst"))
            else {
                continue;
            };
            if archive::has_member(dir, member) {
                continue;
            }
            alcove_runtime::layer::create_private_dir(dir).map_err(|e| e.to_string())?;
            let expected = BlobDigest {
                sha256: rec.sha256.clone(),
                size: u64::try_from(rec.size).unwrap_or(0),
            };
            let got = blobs
                .download_file(&rec.key, &archive::archive_of(dir, member), &expected)
                .await;
            if let Err(e) = got {
                self.metrics.operation(
                    crate::metrics::Operation::BlobDownload,
                    false,
                    started.elapsed(),
                );
                return Err(format!("fetching from the blob store: {e}"));
            }
            fetched += 1;
        }
        if fetched > 0 {
            self.metrics.operation(
                crate::metrics::Operation::BlobDownload,
                true,
                started.elapsed(),
            );
        }
        Ok(fetched)
    }

    /// Uploads a dump's files (`dir`, as a snapshot or a copy writes them)
    /// under `<prefix>/`, recorded for `owner`; how many objects.
    async fn store_dump_blobs(
        &self,
        dir: &Path,
        prefix: &str,
        owner: &str,
    ) -> Result<usize, String> {
        let Some(blobs) = &self.cfg.blobs else {
            return Err("no blob store is configured".into());
        };
        let started = Instant::now();
        let stored = async {
            self.share_agent_build_of(blobs, dir).await?;
            let records = self
                .upload_members(blobs, dir, &SNAPSHOT_MEMBERS, prefix, owner)
                .await?;
            self.store
                .put_blobs(&records)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(records.len())
        }
        .await;
        // Counted once stored and recorded: what another node can fetch.
        self.metrics.operation(
            crate::metrics::Operation::BlobUpload,
            stored.is_ok(),
            started.elapsed(),
        );
        stored
    }

    /// Uploads a finished snapshot's files; a snapshot is completed only once
    /// this succeeds.
    pub(super) async fn store_snapshot_blobs(
        &self,
        snapshot_id: &str,
        dir: &Path,
    ) -> Result<(), String> {
        if self.cfg.blobs.is_none() {
            return Ok(());
        }
        let objects = self
            .store_dump_blobs(
                dir,
                &format!("snapshots/{snapshot_id}"),
                &snapshot_owner(snapshot_id),
            )
            .await
            .map_err(|e| format!("storing the snapshot in the blob store: {e}"))?;
        tracing::info!(snapshot_id, objects, "snapshot stored in the blob store");
        Ok(())
    }

    /// Makes sure a snapshot's files are in `dir`, downloading what is missing.
    pub(super) async fn fetch_snapshot_blobs(
        &self,
        snapshot_id: &str,
        dir: &Path,
    ) -> Result<(), String> {
        let Some(blobs) = &self.cfg.blobs else {
            return Ok(());
        };
        let n = self
            .download_members(blobs, dir, &snapshot_owner(snapshot_id))
            .await?;
        if n > 0 {
            self.fetch_agent_builds(blobs).await?;
            tracing::info!(
                snapshot_id,
                objects = n,
                "snapshot fetched from the blob store"
            );
        }
        Ok(())
    }

    /// Uploads a copy's dump (`dir`, as written for a copy) under
    /// `copies/<dump>/`, recorded for `owner`, so other nodes can restore
    /// copies from it.
    pub(super) async fn store_copy_blobs(
        &self,
        dump: &str,
        owner: &str,
        dir: &Path,
    ) -> Result<(), String> {
        self.store_dump_blobs(dir, &format!("copies/{dump}"), owner)
            .await
            .map(|_| ())
            .map_err(|e| format!("storing a copy's dump: {e}"))
    }

    /// Downloads the dump recorded for `owner` into `dir` and unpacks it, so
    /// that copies can be restored from it side by side. `Ok(false)` when no
    /// such dump is recorded.
    pub(super) async fn fetch_copy_blobs(&self, owner: &str, dir: &Path) -> Result<bool, String> {
        let Some(blobs) = &self.cfg.blobs else {
            return Ok(false);
        };
        if self
            .store
            .blobs_of(owner)
            .await
            .map_err(|e| e.to_string())?
            .is_empty()
        {
            return Ok(false);
        }
        self.download_members(blobs, dir, owner).await?;
        self.fetch_agent_builds(blobs).await?;
        for member in SNAPSHOT_MEMBERS {
            archive::unpack(dir, member)
                .await
                .map_err(|e| format!("unpacking a copy's dump: {e}"))?;
        }
        Ok(true)
    }

    /// Makes sure a suspended sandbox's dump is on this disk, downloading it
    /// when it is only in the blob store.
    pub(super) async fn fetch_suspended_blobs(&self, id: &SandboxId) -> Result<(), String> {
        let Some(blobs) = &self.cfg.blobs else {
            return Ok(());
        };
        if self.node.has_checkpoint(id) {
            return Ok(());
        }
        let Some(dir) = self.node.suspended_dir(id) else {
            return Ok(());
        };
        let n = self
            .download_members(blobs, &dir, &sandbox_owner(id))
            .await?;
        if n > 0 {
            self.fetch_agent_builds(blobs).await?;
            self.node
                .mark_checkpoint_complete(id)
                .map_err(|e| e.to_string())?;
            tracing::info!(sandbox_id = %id, objects = n, "dump fetched from the blob store");
        }
        Ok(())
    }

    /// Deletes `owner`'s objects and their records, in the background; a
    /// failure is logged and leaves the records, so nothing is forgotten that
    /// still takes room.
    pub(super) fn forget_blobs(self: &std::sync::Arc<Self>, owner: String) {
        let Some(blobs) = self.cfg.blobs.clone() else {
            return;
        };
        let ctx = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let Ok(records) = ctx.store.blobs_of(&owner).await else {
                return;
            };
            // Record by record: an upload of a later suspension, under other
            // keys, may be recorded meanwhile and must stay.
            for rec in &records {
                if let Err(e) = blobs.delete(&rec.key).await {
                    tracing::warn!(%owner, key = %rec.key, error = %e, "deleting from the blob store");
                    return;
                }
                if let Err(e) = ctx.store.delete_blob(&rec.key).await {
                    tracing::warn!(%owner, key = %rec.key, error = %e, "forgetting a blob record");
                }
            }
        });
    }
}

impl Control {
    /// One pass: uploads the dumps of suspended sandboxes that are not in the
    /// blob store yet.
    pub(super) async fn upload_suspended_once(&self) {
        let Some(blobs) = &self.ctx.cfg.blobs else {
            return;
        };
        let Ok(suspended) = self.ctx.local_suspended_settled().await else {
            return;
        };
        for record in suspended {
            let id = record.id.clone();
            let owner = sandbox_owner(&id);
            if !self.upload_backoff.due(&id)
                || !self.ctx.node.has_checkpoint(&id)
                || self
                    .ctx
                    .store
                    .blobs_of(&owner)
                    .await
                    .map_or(true, |b| !b.is_empty())
            {
                continue;
            }
            let Some(dir) = self.ctx.node.suspended_dir(&id) else {
                continue;
            };
            // Each suspension has its own keys, so deleting the objects of an
            // earlier one never touches a later one's.
            let prefix = format!("sandboxes/{id}/{}", record.suspended_at.unwrap_or_default());
            let started = Instant::now();
            let uploaded = async {
                self.ctx
                    .node
                    .settle_suspended(&id)
                    .map_err(|e| e.to_string())?;
                // The sandbox's directory names the build that made its dump.
                self.ctx.share_agent_build_of(blobs, &dir).await?;
                self.ctx
                    .upload_members(blobs, &dir, &SUSPENDED_MEMBERS, &prefix, &owner)
                    .await
            }
            .await;
            let records = match uploaded {
                Ok(records) => records,
                Err(e) => {
                    self.ctx.metrics.operation(
                        crate::metrics::Operation::BlobUpload,
                        false,
                        started.elapsed(),
                    );
                    tracing::warn!(sandbox_id = %id, error = %e, "uploading a suspended sandbox; will retry");
                    self.upload_backoff.failed(&id);
                    continue;
                }
            };
            // Record it only if the sandbox is still in the suspension it copied.
            let lock = self.ctx.op_lock(&id);
            let guard = lock.lock().await;
            let same = matches!(
                self.ctx.store.get(&id).await,
                Ok(Some(r)) if r.status == SandboxStatus::Suspended
                    && r.transition.is_none()
                    && r.suspended_at == record.suspended_at
            );
            let mut kept = same;
            if same && let Err(e) = self.ctx.store.put_blobs(&records).await {
                tracing::warn!(sandbox_id = %id, error = %e, "recording an upload");
                kept = false;
            }
            drop(guard);
            // Counted once recorded: from then on another node can resume it.
            self.ctx.metrics.operation(
                crate::metrics::Operation::BlobUpload,
                kept,
                started.elapsed(),
            );
            if kept {
                self.upload_backoff.clear(&id);
                let bytes: i64 = records.iter().map(|r| r.size).sum();
                tracing::info!(sandbox_id = %id, bytes, "suspended sandbox stored in the blob store");
            } else {
                for rec in &records {
                    let _ = blobs.delete(&rec.key).await;
                    let _ = self.ctx.store.delete_blob(&rec.key).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str) -> BlobRecord {
        BlobRecord {
            key: key.into(),
            owner: "sandbox:x".into(),
            sha256: String::new(),
            size: 1,
            created_at: 0,
        }
    }

    #[test]
    fn a_dump_is_in_the_blob_store_only_with_every_member() {
        let members = ["checkpoint", "disk.img"];
        let both = [
            rec("sandboxes/x/7/checkpoint.tar.zst"),
            rec("sandboxes/x/7/disk.img.tar.zst"),
        ];
        assert!(holds_every_member(&both, &members));
        assert!(!holds_every_member(&both[..1], &members));
        assert!(!holds_every_member(&[], &members));
        // A name that only ends like a member is not one.
        assert!(!holds_every_member(
            &[
                rec("sandboxes/x/7/checkpoint.tar.zst"),
                rec("sandboxes/x/7/old-disk.img.tar.zst")
            ],
            &members
        ));
    }
}
