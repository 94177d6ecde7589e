//! Packs idle suspended sandboxes and snapshots into zstd archives (see
//! `alcove_runtime::archive`) once they have sat unused for a while, and
//! copies suspended sandboxes to the blob store (`blobs.rs`); with a blob store,
//! it also applies image deletions made through other nodes (`images.rs`).

use std::sync::Arc;
use std::time::Duration;

use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::snapshot::SnapshotStatus;
use alcove_wire::time::now_millis;

use super::Control;
use super::context::snapshot_lock_key;
use crate::shutdown::Shutdown;

/// Runs the compactor every few seconds until shutdown.
pub fn spawn_compactor(control: Arc<Control>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            control.compact_once().await;
            control.upload_suspended_once().await;
            control.sweep_deleted_images().await;
        }
    })
}

impl Control {
    /// One pass: pack what has been idle longer than `compress_after`.
    pub(super) async fn compact_once(&self) {
        let Some(after) = self.ctx.cfg.compress_after else {
            return;
        };
        let idle_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let now = now_millis();
        if let Ok(suspended) = self.ctx.local_suspended_settled().await {
            for record in suspended {
                let suspended_at = record.suspended_at.unwrap_or(now);
                if now - suspended_at < idle_ms || self.ctx.node.is_suspended_packed(&record.id) {
                    continue;
                }
                let lock = self.ctx.op_lock(&record.id);
                let Ok(_guard) = lock.try_lock() else {
                    continue; // busy: a resume or delete is on its way
                };
                // Re-check under the lock: it may have been resumed meanwhile.
                match self.ctx.store.get(&record.id).await {
                    Ok(Some(r))
                        if r.status == SandboxStatus::Suspended && r.transition.is_none() => {}
                    _ => continue,
                }
                match self.ctx.node.pack_suspended(&record.id).await {
                    Ok(()) => tracing::info!(sandbox_id = %record.id, "suspended sandbox packed"),
                    Err(e) => {
                        tracing::warn!(sandbox_id = %record.id, error = %e, "packing suspended sandbox")
                    }
                }
            }
        }
        if let Ok(snaps) = self.ctx.store.list_snapshots(None, None).await {
            for snap in snaps
                .into_iter()
                .filter(|s| s.status == SnapshotStatus::Completed)
            {
                let done_at = snap.completed_at.unwrap_or(snap.created_at);
                let dir = self.ctx.cfg.snapshots_dir.join(&snap.id);
                if now - done_at < idle_ms || self.ctx.node.is_snapshot_packed(&dir) {
                    continue;
                }
                let lock = self.ctx.op_lock(&snapshot_lock_key(&snap.id));
                let Ok(_guard) = lock.try_lock() else {
                    continue;
                };
                if !dir.exists() {
                    continue; // deleted meanwhile
                }
                match self.ctx.node.pack_snapshot(&dir).await {
                    Ok(()) => tracing::info!(snapshot_id = %snap.id, "snapshot packed"),
                    Err(e) => {
                        tracing::warn!(snapshot_id = %snap.id, error = %e, "packing snapshot")
                    }
                }
            }
        }
    }
}
