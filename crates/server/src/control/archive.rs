//! The archive of ended sandboxes: pages of it, one archived sandbox, and the purge that
//! deletes what was archived longer ago than the retention (`--archive-ttl`), with any
//! files it left on the node (docs/protocol/control-plane.md, Archived sandboxes).

use std::sync::Arc;
use std::time::Duration;

use alcove_runtime::SandboxId;
use alcove_wire::time::{EpochMillis, now_millis};

use super::context::Context;
use super::{Control, ControlError};
use crate::shutdown::Shutdown;
use crate::store::{ArchiveKey, ArchivePage, Direction, PageRequest, SandboxRecord};

/// Rows the purge deletes per query, so one pass never holds the store for long.
const PURGE_BATCH: u32 = 256;

/// Reads and purges the archive.
#[derive(Debug, Clone)]
pub struct Archive {
    ctx: Arc<Context>,
}

impl Archive {
    /// The archive service over `ctx`.
    pub(super) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// How long an ended sandbox stays in the archive.
    pub fn ttl(&self) -> Duration {
        self.ctx.cfg.archive_ttl
    }

    /// Rows archived at or before this time have expired at `now`.
    fn expired_by(&self, now: EpochMillis) -> EpochMillis {
        let ttl = i64::try_from(self.ttl().as_millis()).unwrap_or(i64::MAX);
        now.saturating_sub(ttl)
    }

    /// One page of the namespace's archive, newest first.
    pub async fn page(
        &self,
        namespace: &str,
        cursor: Option<&ArchiveKey>,
        direction: Direction,
        limit: u32,
    ) -> Result<ArchivePage, ControlError> {
        Ok(self
            .ctx
            .store
            .archive_page(&PageRequest {
                namespace,
                cursor,
                direction,
                limit,
                expired_by: self.expired_by(now_millis()),
            })
            .await?)
    }

    /// One archived sandbox of the namespace, by id (names of ended sandboxes no longer
    /// resolve). Unknown, live and expired ones are not found alike.
    pub async fn get(&self, namespace: &str, ident: &str) -> Result<SandboxRecord, ControlError> {
        let not_found = || ControlError::NotFound {
            kind: "archived sandbox",
            id: ident.to_string(),
        };
        let id = SandboxId::parse(ident).map_err(|_| not_found())?;
        self.ctx
            .store
            .get_archived(namespace, &id, self.expired_by(now_millis()))
            .await?
            .ok_or_else(not_found)
    }

    /// Deletes every archived sandbox that expired by `now`, after removing any files it
    /// left on the node; returns how many. One whose files cannot be removed, or that an
    /// operation still holds, is kept (already hidden) for the next pass.
    pub(crate) async fn purge_once(&self, now: EpochMillis) -> usize {
        let expired_by = self.expired_by(now);
        let mut purged = 0;
        loop {
            let ids = match self
                .ctx
                .store
                .expired_archived(expired_by, PURGE_BATCH, self.ctx.local_node())
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "listing expired archived sandboxes");
                    return purged;
                }
            };
            let mut this_batch = 0;
            for id in &ids {
                if self.purge_one(id, expired_by).await {
                    this_batch += 1;
                }
            }
            purged += this_batch;
            // A short batch was the last; one where nothing could go would come back whole.
            if ids.len() < PURGE_BATCH as usize || this_batch == 0 {
                return purged;
            }
        }
    }

    async fn purge_one(&self, id: &SandboxId, expired_by: EpochMillis) -> bool {
        let lock = self.ctx.op_lock(id);
        // A delete still destroying it holds the lock: its files are not leftovers yet.
        let Ok(guard) = lock.try_lock() else {
            return false;
        };
        match self.ctx.node.remove_leftovers(id).await {
            Ok(true) => tracing::info!(sandbox_id = %id, "removed files left by an ended sandbox"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(sandbox_id = %id, error = %e, "removing files left by an archived sandbox; kept for the next pass");
                return false;
            }
        }
        let deleted = match self.ctx.store.delete_archived(id, expired_by).await {
            Ok(deleted) => deleted,
            Err(e) => {
                tracing::warn!(sandbox_id = %id, error = %e, "purging archived sandbox");
                false
            }
        };
        if deleted {
            self.ctx.logs.remove(id).await;
        }
        drop(guard);
        self.ctx.forget_op_lock(id);
        if deleted {
            tracing::info!(sandbox_id = %id, "archived sandbox purged");
        }
        deleted
    }
}

/// How often the purge runs: a tenth of the retention, between 1 s and 60 s, so a short
/// retention is kept to within a second or so and a long one costs a query a minute.
pub fn purge_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs the archive's purge, and that of old image deletions, every
/// [`purge_interval`] until shutdown.
pub fn spawn_archive_purger(
    control: Arc<Control>,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(purge_interval(control.archive.ttl()));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let now = now_millis();
            control.archive.purge_once(now).await;
            control.purge_image_deletions(now).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_runs_often_enough_for_its_retention() {
        let secs = Duration::from_secs;
        assert_eq!(purge_interval(secs(3)), secs(1));
        assert_eq!(purge_interval(secs(100)), secs(10));
        assert_eq!(purge_interval(secs(7 * 86_400)), secs(60));
    }
}
