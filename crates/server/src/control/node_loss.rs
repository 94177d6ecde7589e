//! Node loss and fencing: what the nodes sharing a store do when one of them
//! stops renewing its lease, and what that node does about it.
//!
//! - **Declaring a node lost.** After each renewal that held, a node looks for
//!   others whose lease ran out more than a third of a lease ago (or, for a node
//!   that stopped cleanly and whose sandboxes wait for it, ten minutes ago). It
//!   claims the loss with one conditional update, so exactly one node settles
//!   it: the lost node's running sandboxes are marked lost (terminated, with
//!   the reason), and its suspended sandboxes whose dump is in the blob store
//!   move to the claiming node, where they resume with a new address. Those
//!   whose dump is only on the lost node's disk wait for it.
//! - **Fencing.** A node that could not renew for two thirds of its lease
//!   (the store is cut off, or the process stalled) freezes its sandboxes and
//!   starts nothing: before its lease runs out, nothing of it runs. If the next
//!   renewal holds, it thaws them. If it was declared lost meanwhile, it stops
//!   them, registers again once the loss is settled, and reconciles its disk
//!   with the store (what moved away is swept). A sandbox never runs on two
//!   nodes: the cluster declares a node lost only after the node itself has
//!   frozen, and the lease and the claim are one row, updated atomically.
//! - **After an outage of the store** every renewal fails at once. A node
//!   declares others lost only once its own lease has held for a full term
//!   again, so the first node back does not declare the others lost before
//!   they could renew.
//!
//! The margins assume the nodes' clocks agree to within a third of a lease.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alcove_wire::journal::LogLevel;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;

use super::membership::{Renewal, lease_ms};
use super::state::{self, Event, TerminationReason};
use super::{Control, ControlError};

/// How long the nodes wait for a node that stopped cleanly (its sandboxes
/// keep running on its machine) before declaring it lost.
const STOPPED_NODE_WAIT_MS: i64 = 10 * 60 * 1000;

/// A claimed loss not settled within this time (its claimer died) is claimed anew.
const STALE_CLAIM_MS: i64 = 60 * 1000;

impl Control {
    /// Acts on a renewal's outcome: settles other nodes' losses while the lease
    /// holds, freezes this node's sandboxes once it may not, fences when lost.
    pub(super) async fn after_renewal(self: &Arc<Self>, renewal: Renewal) {
        let Some(m) = self.membership.get() else {
            return;
        };
        match renewal {
            Renewal::Held => {
                self.thaw_frozen().await;
                self.reap_lost_nodes().await;
            }
            Renewal::Failed => {
                *m.steady_since.lock().unwrap_or_else(|p| p.into_inner()) =
                    std::time::Instant::now();
                let since = m
                    .renewed_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .elapsed();
                // Alone, nobody can take this node's sandboxes over: keep them.
                if since > m.me.lease * 2 / 3 && self.ctx.clustered_node().is_some() {
                    self.freeze_all().await;
                }
            }
            Renewal::Lost => self.fence().await,
            Renewal::Superseded => {}
        }
    }

    /// Freezes every running sandbox and refuses new work: this node may no
    /// longer hold its lease.
    async fn freeze_all(&self) {
        let Some(m) = self.membership.get() else {
            return;
        };
        if self.ctx.fenced.swap(true, Ordering::AcqRel) {
            return;
        }
        let handles = self.ctx.running_handles();
        tracing::error!(
            node = %m.me.name,
            sandboxes = handles.len(),
            "this node could not renew its lease in time: freezing its sandboxes until it can"
        );
        let mut frozen = Vec::new();
        for h in handles {
            match self.ctx.node.freeze(&h.id).await {
                Ok(()) => frozen.push(h),
                Err(e) => tracing::warn!(sandbox_id = %h.id, error = %e, "freezing"),
            }
        }
        *m.frozen.lock().unwrap_or_else(|p| p.into_inner()) = frozen;
    }

    /// Thaws what [`Control::freeze_all`] froze: the lease holds again.
    async fn thaw_frozen(&self) {
        let Some(m) = self.membership.get() else {
            return;
        };
        if !self.ctx.fenced.load(Ordering::Acquire) {
            return;
        }
        let frozen = std::mem::take(&mut *m.frozen.lock().unwrap_or_else(|p| p.into_inner()));
        for h in &frozen {
            if let Err(e) = self.ctx.node.thaw(&h.id).await {
                tracing::warn!(sandbox_id = %h.id, error = %e, "thawing");
            }
        }
        self.ctx.fenced.store(false, Ordering::Release);
        tracing::info!(node = %m.me.name, sandboxes = frozen.len(), "lease renewed again: sandboxes thawed");
    }

    /// This node was declared lost: stops every sandbox it runs (the cluster
    /// has marked them lost), registers again once the loss is settled, and
    /// reconciles its disk with the store.
    async fn fence(self: &Arc<Self>) {
        let Some(m) = self.membership.get() else {
            return;
        };
        self.ctx.fenced.store(true, Ordering::Release);
        m.frozen.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let handles = self.ctx.running_handles();
        tracing::error!(
            node = %m.me.name,
            sandboxes = handles.len(),
            "the other nodes declared this node lost: stopping its sandboxes and registering again"
        );
        for h in handles {
            self.ctx.take_running(&h.id);
            // Killed while still frozen: thawing first would let it run on for
            // a moment after the cluster declared it lost.
            if let Err(e) = self.ctx.node.kill_all(&h.id).await {
                tracing::warn!(sandbox_id = %h.id, error = %e, "killing a fenced sandbox");
            }
            self.ctx.node.destroy(&h.id, h.slot).await;
        }
        loop {
            match self.register(&m.me).await {
                Ok(instance) => {
                    *m.instance.lock().unwrap_or_else(|p| p.into_inner()) = instance;
                    let now = std::time::Instant::now();
                    *m.renewed_at.lock().unwrap_or_else(|p| p.into_inner()) = now;
                    *m.steady_since.lock().unwrap_or_else(|p| p.into_inner()) = now;
                    break;
                }
                Err(e) => {
                    tracing::warn!(node = %m.me.name, error = %e, "registering again after being declared lost");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if let Err(e) = self.recover().await {
            tracing::error!(node = %m.me.name, error = %e, "reconciling with the store after fencing");
        }
        self.ctx.fenced.store(false, Ordering::Release);
        tracing::info!(node = %m.me.name, "registered again after being declared lost");
    }

    /// Declares lost the nodes whose lease ran out, and settles each one this
    /// node claims.
    async fn reap_lost_nodes(&self) {
        let Some(m) = self.membership.get() else {
            return;
        };
        let steady = m
            .steady_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if steady < m.me.lease * 4 / 3 {
            return;
        }
        let Ok(nodes) = self.ctx.store.list_nodes().await else {
            return;
        };
        let now = now_millis();
        let crashed_before = now - lease_ms(m.me.lease) / 3;
        let stopped_before = now - STOPPED_NODE_WAIT_MS;
        let stale_before = now - STALE_CLAIM_MS;
        for n in nodes.into_iter().filter(|n| n.name != m.me.name) {
            // Filtered here first so that a healthy cluster writes nothing.
            let due = match (n.lost_at, n.reaped_at, n.stopped_at) {
                (Some(lost), None, _) => lost < stale_before,
                (Some(_), Some(_), _) => false,
                (None, _, None) => n.lease_expires_at < crashed_before,
                (None, _, Some(stopped)) => {
                    stopped < stopped_before && n.lease_expires_at < stopped_before
                }
            };
            if !due {
                continue;
            }
            match self
                .ctx
                .store
                .claim_lost_node(&n.name, now, crashed_before, stopped_before, stale_before)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(node = %n.name, error = %e, "declaring a node lost");
                    continue;
                }
            }
            match self.settle_lost_node(&n.name, &m.me.name).await {
                Ok((lost, moved, waiting)) => {
                    tracing::warn!(
                        node = %n.name,
                        lost, moved, waiting,
                        "node declared lost: its running sandboxes are lost, its suspended \
                         sandboxes in the blob store moved here"
                    );
                    if let Err(e) = self
                        .ctx
                        .store
                        .finish_reaping(&n.name, now, now_millis())
                        .await
                    {
                        tracing::warn!(node = %n.name, error = %e, "recording a settled loss");
                    }
                }
                // Left claimed: it is claimed anew once the claim is stale.
                Err(e) => tracing::warn!(node = %n.name, error = %e, "settling a lost node"),
            }
        }
    }

    /// Marks the live sandboxes of lost node `node` lost, except suspended
    /// ones: those in the blob store move to `me`, the others wait for their
    /// node. Returns how many were lost, moved and left waiting.
    async fn settle_lost_node(
        &self,
        node: &str,
        me: &str,
    ) -> Result<(usize, usize, usize), ControlError> {
        let (mut lost, mut moved, mut waiting) = (0, 0, 0);
        let live = self.ctx.store.list_live().await?;
        for mut r in live.into_iter().filter(|r| r.node.as_deref() == Some(node)) {
            if r.status == SandboxStatus::Suspended && r.transition.is_none() {
                if !self.ctx.dump_in_blob_store(&r.id).await? {
                    waiting += 1;
                    continue;
                }
                r.node = Some(me.to_string());
                // Its address was of the lost node's subnet: it gets one here.
                r.slot = None;
                self.ctx.store.update(&r).await?;
                self.ctx
                    .logs
                    .note(
                        &r.id,
                        LogLevel::Warn,
                        format!(
                            "node {node:?} was lost; the suspended sandbox moved to node {me:?}"
                        ),
                    )
                    .await;
                moved += 1;
                continue;
            }
            if let Err(e) = state::apply(&mut r, Event::Terminate(TerminationReason::Lost)) {
                tracing::warn!(sandbox_id = %r.id, error = %e, "marking a sandbox of a lost node");
                continue;
            }
            r.mark_ended(now_millis());
            r.error_details = Some(format!(
                "node {node:?} stopped renewing its lease while the sandbox was there; the \
                 sandbox was lost"
            ));
            r.pending_reason = None;
            r.slot = None;
            // Its archived row is purged by this node from now on.
            r.node = Some(me.to_string());
            self.ctx.store.update(&r).await?;
            lost += 1;
        }
        Ok((lost, moved, waiting))
    }
}
