//! Moving on demand, when a suspended sandbox's node cannot resume it:
//!
//! - **Its node stopped cleanly.** A resume asked of any node moves the
//!   sandbox to the node asked, which resumes it from the blob store. Without
//!   this the sandbox would wait until its node came back, or until the others
//!   declared that node lost (ten minutes after a clean stop).
//! - **Its node is full, or draining.** Its node hands it to the live active
//!   node with the most room (as the nodes last reported it) and relays the
//!   resume there: a draining node's suspended sandboxes move as soon as they
//!   are asked to resume (or, for one that wakes on traffic, on traffic).
//!
//! Only a clean stop qualifies: the stopped node's process has exited, so
//! nothing of the sandbox runs and nothing can start it there. A node whose
//! lease merely ran out may be stalled rather than gone; its sandboxes move
//! only once it is declared lost (`node_loss.rs`), after it has had the time
//! to fence itself.

use alcove_wire::journal::LogLevel;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;

use super::context::Context;
use super::membership::lease_ms;
use super::{Control, ControlError};
use crate::store::{NodeRecord, SandboxRecord};

/// Longest wait of a resume for the upload that lets it move the sandbox.
const UPLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How often that wait looks at the store.
const UPLOAD_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Where [`Control::take_over_suspended`] moved a suspended sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakeOver {
    /// Nowhere: answer as before (`NODE_OFFLINE`).
    No,
    /// To this node: resume it here.
    Here,
    /// To another node, whose labels match it: relay the request there.
    There {
        /// The node's name.
        node: String,
        /// Its address.
        address: String,
    },
}

impl Control {
    /// Moves suspended sandbox `ident` here if its node stopped cleanly more
    /// than a third of a lease ago and its dump is in the blob store; for
    /// traffic (not an explicit resume), only if it wakes on traffic
    /// (`auto_resume`). When this node's labels do not match the sandbox's
    /// `node_selector`, it moves to the matching node with the most room
    /// instead. [`TakeOver::No`] leaves the caller's answer as it was
    /// (`NODE_OFFLINE`).
    pub async fn take_over_suspended(
        &self,
        ident: &str,
        by_traffic: bool,
    ) -> Result<TakeOver, ControlError> {
        let (Some(me), Some(m)) = (self.ctx.clustered_node(), self.membership.get()) else {
            return Ok(TakeOver::No);
        };
        if self.ctx.cfg.blobs.is_none() {
            return Ok(TakeOver::No);
        }
        let record = self.ctx.lookup(ident).await?;
        let Some(r) = record.filter(|r| {
            r.status == SandboxStatus::Suspended
                && r.transition.is_none()
                && (r.auto_resume || !by_traffic)
                && r.node.as_deref().is_some_and(|n| n != me)
        }) else {
            return Ok(TakeOver::No);
        };
        let from = r.node.clone().unwrap_or_default();
        if !self.ctx.dump_in_blob_store(&r.id).await? {
            return Ok(TakeOver::No);
        }
        // A node that may not start sandboxes, or whose labels do not match,
        // does not take them: the matching node with the most room does.
        let here = self.ctx.ensure_not_draining().is_ok()
            && self.ctx.matches_here(&r.node_selector).is_ok();
        let to = if here {
            None
        } else {
            match self.roomiest_other_node(&r, &[me, &from]).await? {
                Some(there) => Some(there),
                None => return Ok(TakeOver::No),
            }
        };
        let to_name = to.as_ref().map_or(me, |(node, _)| node.as_str());
        // A grace after the stop: a request the stopping node was still
        // finishing has recorded its transition by then.
        let stopped_before = now_millis() - lease_ms(m.me.lease) / 3;
        let moved = self
            .ctx
            .store
            .take_over_suspended(r.id.as_str(), &from, to_name, stopped_before)
            .await?;
        if !moved {
            return Ok(TakeOver::No);
        }
        tracing::info!(sandbox_id = %r.id, from = %from, to = %to_name, "suspended sandbox of a stopped node moved to resume");
        self.ctx
            .logs
            .note(
                &r.id,
                LogLevel::Info,
                format!(
                    "node {from:?} is stopped; the suspended sandbox moved to node {to_name:?}"
                ),
            )
            .await;
        Ok(match to {
            None => TakeOver::Here,
            Some((node, address)) => TakeOver::There { node, address },
        })
    }

    /// For a resume asked of this node (`by_traffic`: traffic that wakes it):
    /// when the suspended sandbox `ident` is this node's and this node has no
    /// room for it, its labels do not match, or it is draining, hands it to
    /// the live active node with the most room for it and returns that node's
    /// name and address (relay the request there). `None`: serve it here (it
    /// can resume here, it is not a suspended sandbox of this node, or traffic
    /// does not wake it). A dump not in the blob store yet is waited for (a
    /// minute at most); refused with why it cannot resume here when it does not
    /// get there, and with `NoRoom` when no node has room.
    pub async fn hand_over_when_unable(
        &self,
        ident: &str,
        by_traffic: bool,
    ) -> Result<Option<(String, String)>, ControlError> {
        let Some(me) = self.ctx.clustered_node() else {
            return Ok(None);
        };
        let Some(record) = self
            .local_suspended(ident, me)
            .await?
            .filter(|r| r.auto_resume || !by_traffic)
        else {
            return Ok(None);
        };
        let here = match self.ctx.ensure_not_draining() {
            Ok(()) => match self.ctx.matches_here(&record.node_selector) {
                Ok(()) => self.ctx.room_for(&record).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let cannot_here = match here {
            Ok(()) => return Ok(None),
            Err(
                e @ (ControlError::NoRoomHere { .. }
                | ControlError::NotMatchedHere { .. }
                | ControlError::Draining),
            ) => e,
            // Fenced: this node may not be sure of anything, moves included.
            Err(e) => return Err(e),
        };
        let why = if matches!(cannot_here, ControlError::Draining) {
            "is draining"
        } else {
            "had no room to resume it"
        };
        if !self.upload_awaited(&record.id).await? {
            return Err(cannot_here);
        }
        let Some((node, address)) = self.roomiest_other_node(&record, &[me]).await? else {
            return Err(Context::no_room(
                &record.node_selector,
                record.cpus,
                record.memory_mb,
            ));
        };
        // Under its op lock: no resume of it here can begin meanwhile.
        let lock = self.ctx.op_lock(&record.id);
        let _guard = lock.lock().await;
        if !self
            .ctx
            .store
            .hand_over_suspended(record.id.as_str(), me, &node)
            .await?
        {
            // It began resuming, moved or ended meanwhile: answered here.
            return Ok(None);
        }
        // Its dump is in the blob store; what this disk holds of it goes, and
        // its address here is free again.
        if let Some(slot) = record.slot.and_then(|s| u32::try_from(s).ok()) {
            self.ctx
                .node
                .destroy(&record.id, alcove_runtime::network::Slot(slot))
                .await;
        }
        tracing::info!(sandbox_id = %record.id, to = %node, why, "cannot resume here: suspended sandbox handed to another node");
        self.ctx
            .logs
            .note(
                &record.id,
                LogLevel::Info,
                format!("node {me:?} {why}; the suspended sandbox moved to node {node:?}"),
            )
            .await;
        Ok(Some((node, address)))
    }

    /// Whether suspended sandbox `id`'s dump is in the blob store, waiting up
    /// to [`UPLOAD_WAIT`] for the background upload of a fresh suspension (a
    /// drain's, say) rather than refusing a resume that could move it soon.
    async fn upload_awaited(&self, id: &alcove_runtime::SandboxId) -> Result<bool, ControlError> {
        if self.ctx.cfg.blobs.is_none() {
            return Ok(false);
        }
        let started = tokio::time::Instant::now();
        let deadline = started + UPLOAD_WAIT;
        loop {
            if self.ctx.dump_in_blob_store(id).await? {
                if started.elapsed() >= UPLOAD_POLL {
                    let waited_ms =
                        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(sandbox_id = %id, waited_ms, "a resume waited for the upload of the suspended sandbox to move it");
                }
                return Ok(true);
            }
            // Only a dump on this disk, of a suspension still going, will be uploaded.
            let waiting = self.ctx.node.has_checkpoint(id)
                && matches!(self.ctx.store.get(id).await?, Some(r)
                    if r.status == SandboxStatus::Suspended && r.transition.is_none());
            if !waiting || tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(UPLOAD_POLL).await;
        }
    }

    /// Suspended sandbox `ident` when it is `me`'s, with no transition going on.
    async fn local_suspended(
        &self,
        ident: &str,
        me: &str,
    ) -> Result<Option<SandboxRecord>, ControlError> {
        let record = self.ctx.lookup(ident).await?;
        Ok(record.filter(|r| {
            r.status == SandboxStatus::Suspended
                && r.transition.is_none()
                && r.node.as_deref() == Some(me)
        }))
    }

    /// The live active node, none of `not`, whose labels match `record`'s
    /// selector, with the most memory left to promise, if it reports room for
    /// `record`.
    async fn roomiest_other_node(
        &self,
        record: &SandboxRecord,
        not: &[&str],
    ) -> Result<Option<(String, String)>, ControlError> {
        let now = now_millis();
        let best = self
            .ctx
            .store
            .list_nodes()
            .await?
            .into_iter()
            .filter(|n| !not.contains(&n.name.as_str()) && n.takes_work(now))
            .filter(|n| n.matches(&record.node_selector))
            .filter(|n| n.memory_room() >= record.memory_mb && n.cpu_room() + 1e-6 >= record.cpus)
            .max_by_key(NodeRecord::memory_room);
        Ok(best.map(|n| (n.name, n.address)))
    }
}
