//! Moving on demand: a resume asked of any node, for a suspended sandbox whose
//! node stopped cleanly, moves the sandbox to the node asked, which resumes it
//! from the blob store. Without this the sandbox would wait until its node
//! came back, or until the others declared that node lost (ten minutes after a
//! clean stop).
//!
//! Only a clean stop qualifies: the stopped node's process has exited, so
//! nothing of the sandbox runs and nothing can start it there. A node whose
//! lease merely ran out may be stalled rather than gone; its sandboxes move
//! only once it is declared lost (`node_loss.rs`), after it has had the time
//! to fence itself.

use alcove_runtime::SandboxId;
use alcove_wire::journal::LogLevel;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;

use super::membership::lease_ms;
use super::{Control, ControlError};

impl Control {
    /// Moves suspended sandbox `ident` here if its node stopped cleanly more
    /// than a third of a lease ago and its dump is in the blob store. Whether it
    /// moved; `false` leaves the caller's answer as it was (`NODE_OFFLINE`).
    pub async fn take_over_suspended(&self, ident: &str) -> Result<bool, ControlError> {
        let (Some(me), Some(m)) = (self.ctx.clustered_node(), self.membership.get()) else {
            return Ok(false);
        };
        // A node that may not start sandboxes does not take them either.
        if self.ctx.cfg.blobs.is_none() || self.ctx.ensure_not_draining().is_err() {
            return Ok(false);
        }
        let record = match SandboxId::parse(ident) {
            Ok(id) => self.ctx.store.get(&id).await?,
            Err(_) => self.ctx.store.get_live_by_name(ident).await?,
        };
        let Some(r) = record.filter(|r| {
            r.status == SandboxStatus::Suspended
                && r.transition.is_none()
                && r.node.as_deref().is_some_and(|n| n != me)
        }) else {
            return Ok(false);
        };
        let from = r.node.clone().unwrap_or_default();
        let stored = !self
            .ctx
            .store
            .blobs_of(&super::blobs::sandbox_owner(&r.id))
            .await?
            .is_empty();
        if !stored {
            return Ok(false);
        }
        // A grace after the stop: a request the stopping node was still
        // finishing has recorded its transition by then.
        let stopped_before = now_millis() - lease_ms(m.me.lease) / 3;
        let moved = self
            .ctx
            .store
            .take_over_suspended(r.id.as_str(), &from, me, stopped_before)
            .await?;
        if moved {
            tracing::info!(sandbox_id = %r.id, from = %from, "suspended sandbox of a stopped node moved here to resume");
            self.ctx
                .logs
                .note(
                    &r.id,
                    LogLevel::Info,
                    format!("node {from:?} is stopped; the suspended sandbox moved to node {me:?}"),
                )
                .await;
        }
        Ok(moved)
    }
}
