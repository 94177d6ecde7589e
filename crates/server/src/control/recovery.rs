//! Recovery after a restart of the server (or of the machine): every sandbox
//! ends up running, suspended or ended — never stuck half-way — and every
//! leftover of this instance is swept.

use std::time::{Duration, Instant};

use alcove_runtime::network::Slot;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;

use super::state::{self, Event, TerminationReason, Transition};
use super::{Control, ControlError};
use crate::store::SandboxRecord;
use alcove_runtime::runc::ContainerStatus;

/// What recovery decided for one sandbox.
enum Verdict {
    Running(Slot),
    /// Kept suspended; no slot when it moved here from a lost node and has
    /// not run here yet.
    Suspended(Option<Slot>),
    Failed(&'static str),
    Lost,
}

impl Control {
    /// Adopts sandboxes that still run, keeps suspended ones, settles the ones
    /// caught in the middle of an operation, ends the rest, and sweeps.
    pub async fn recover(&self) -> Result<(), ControlError> {
        let live = self.ctx.local_live().await?;
        let mut running = Vec::new();
        let mut suspended = Vec::new();
        let mut settled = Vec::new();
        for record in live {
            let verdict = self.settle(&record).await;
            match &verdict {
                Verdict::Running(slot) => running.push((record.id.clone(), *slot)),
                Verdict::Suspended(Some(slot)) => suspended.push((record.id.clone(), *slot)),
                Verdict::Suspended(None) => {}
                Verdict::Failed(_) | Verdict::Lost => {}
            }
            settled.push((record, verdict));
        }
        let report = self.ctx.node.recover(&running, &suspended).await;
        for (mut record, verdict) in settled {
            let id = record.id.clone();
            match verdict {
                Verdict::Running(_) => match report.adopted.iter().find(|h| h.id == id) {
                    Some(handle) => {
                        tracing::info!(sandbox_id = %id, "sandbox adopted after restart");
                        self.enforce_network(&record, handle.slot).await;
                        self.ctx.set_running(&id, handle.clone());
                        self.settle_volumes(&mut record).await?;
                        if let Some(event) = settling_event(&record, SandboxStatus::Running) {
                            apply_or_log(&mut record, event);
                            if let Some(left) = record.timeout_remaining_ms.take() {
                                record.deadline_at = Some(now_millis() + left);
                            }
                            self.ctx.store.update(&record).await?;
                        }
                    }
                    None => self.mark_lost(record).await?,
                },
                Verdict::Suspended(_) => {
                    if let Some(event) = settling_event(&record, SandboxStatus::Suspended) {
                        apply_or_log(&mut record, event);
                        self.ctx.store.update(&record).await?;
                    }
                    tracing::info!(sandbox_id = %id, "suspended sandbox kept");
                }
                Verdict::Failed(reason) => {
                    apply_or_log(
                        &mut record,
                        Event::StartFailed(TerminationReason::ServerRestarted),
                    );
                    record.mark_ended(now_millis());
                    record.error_details = Some(reason.into());
                    record.pending_reason = None;
                    record.slot = None;
                    self.ctx.store.update(&record).await?;
                }
                Verdict::Lost => self.mark_lost(record).await?,
            }
        }
        for item in report.swept {
            tracing::warn!(leftover = %item, "removed leftover");
        }
        let known: Vec<String> = self
            .ctx
            .store
            .list_file_systems(None)
            .await?
            .iter()
            .map(|f| super::file_systems::volume_key(&f.namespace, &f.name))
            .collect();
        for item in self.ctx.node.sweep_volumes(&known).await {
            tracing::warn!(leftover = %item, "removed leftover");
        }
        // Logs of sandboxes no longer stored (a purge cut short by a crash).
        let known = self.ctx.store.all_ids().await?.into_iter().collect();
        let swept = self.ctx.logs.sweep(known).await;
        if swept > 0 {
            tracing::warn!(count = swept, "removed logs of purged sandboxes");
        }
        self.snapshots.recover().await
    }

    /// Puts an adopted sandbox's network policy in force again: the firewall kept its rules
    /// over the restart, but they may be of an older policy (a change the crash cut short)
    /// or gone (a table made anew). A policy that cannot be resolved now (a host name that
    /// no longer resolves) leaves the sandbox with no way out at all, never an open one.
    async fn enforce_network(&self, record: &SandboxRecord, slot: Slot) {
        let Err(e) = self.ctx.apply_network(record, slot).await else {
            return;
        };
        tracing::warn!(sandbox_id = %record.id, error = %e, "applying an adopted sandbox's network policy; closing its network");
        let closed = alcove_runtime::network::EgressPolicy::default();
        if let Err(e) = self.ctx.node.apply_egress(slot, &closed).await {
            tracing::error!(sandbox_id = %record.id, error = %e, "closing an adopted sandbox's network");
        }
        let what = format!(
            "its network policy could not be applied after a restart of the server ({e}); \
             it has no network until its policy is set again"
        );
        self.ctx
            .logs
            .note(&record.id, alcove_wire::journal::LogLevel::Warn, what)
            .await;
    }

    /// Completes the volume mounts of an adopted sandbox that a crash cut short
    /// (the store lists an attachment before the node mounts it); one that
    /// cannot be mounted any more is dropped from the record.
    async fn settle_volumes(&self, record: &mut SandboxRecord) -> Result<(), ControlError> {
        if record.file_systems.is_empty() {
            return Ok(());
        }
        let mounts = super::file_systems::node_mounts(&record.namespace, &record.file_systems);
        let failed = self.ctx.node.ensure_volumes(&record.id, &mounts).await;
        if failed.is_empty() {
            return Ok(());
        }
        for (m, e) in &failed {
            tracing::warn!(sandbox_id = %record.id, mount_path = %m.mount_path, error = %e, "dropping a volume mount that could not be restored");
        }
        record
            .file_systems
            .retain(|fs| !failed.iter().any(|(m, _)| m.mount_path == fs.mount_path));
        self.ctx.store.update(record).await?;
        Ok(())
    }

    async fn mark_lost(&self, mut record: SandboxRecord) -> Result<(), ControlError> {
        tracing::warn!(sandbox_id = %record.id, "sandbox lost while the server was down");
        apply_or_log(&mut record, Event::Terminate(TerminationReason::Lost));
        record.mark_ended(now_millis());
        record.error_details =
            Some("the sandbox was neither running nor dumped when the server restarted".into());
        record.slot = None;
        self.ctx.store.update(&record).await?;
        Ok(())
    }

    /// Decides what a stored live sandbox is now, finishing or undoing what a
    /// crash interrupted.
    async fn settle(&self, record: &SandboxRecord) -> Verdict {
        let id = &record.id;
        // A dump or restore the dead server started outlives it: let it finish
        // before looking, or we would judge (and thaw) a sandbox mid-operation,
        // or sweep a pending one (a copy, a restore) whose container then appears.
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.ctx.node.checkpoint_in_progress(id) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Some(slot) = record.slot.and_then(|s| u32::try_from(s).ok()).map(Slot) else {
            if record.status == SandboxStatus::Suspended {
                // Moved here from a lost node: its dump is in the blob store.
                self.ctx.node.stop_keeping_files(id).await;
                return Verdict::Suspended(None);
            }
            return Verdict::Failed("the server restarted while the sandbox was being created");
        };
        match record.status {
            SandboxStatus::Pending => {
                Verdict::Failed("the server restarted while the sandbox was being created")
            }
            SandboxStatus::Running | SandboxStatus::Snapshotting => {
                // Only a snapshot freezes a running sandbox; a crash must not leave it frozen.
                if self.ctx.node.container_status(id).await == Some(ContainerStatus::Paused) {
                    let _ = self.ctx.node.thaw(id).await;
                }
                Verdict::Running(slot)
            }
            SandboxStatus::Suspending => match self.ctx.node.container_status(id).await {
                Some(ContainerStatus::Paused) => {
                    let _ = self.ctx.node.thaw(id).await;
                    Verdict::Running(slot)
                }
                Some(ContainerStatus::Running) => Verdict::Running(slot),
                _ if self.ctx.node.has_checkpoint(id) => Verdict::Suspended(Some(slot)),
                _ => Verdict::Lost,
            },
            SandboxStatus::Suspended => {
                let resuming =
                    Transition::parse(record.transition.as_deref()) == Some(Transition::Resuming);
                match self.ctx.node.container_status(id).await {
                    Some(ContainerStatus::Running) if resuming => {
                        self.ctx.node.discard_checkpoint(id).await;
                        Verdict::Running(slot)
                    }
                    Some(_) => {
                        // A half-done restore: back to the dump.
                        self.ctx.node.stop_keeping_files(id).await;
                        if self.ctx.node.has_checkpoint(id) {
                            Verdict::Suspended(Some(slot))
                        } else {
                            Verdict::Lost
                        }
                    }
                    None if self.ctx.node.has_checkpoint(id) => Verdict::Suspended(Some(slot)),
                    None => Verdict::Lost,
                }
            }
            SandboxStatus::Terminated | SandboxStatus::Failed | SandboxStatus::Timeout => {
                Verdict::Lost
            }
        }
    }
}

/// The event that takes a sandbox caught mid-operation by a crash to `target`
/// (running or suspended), or `None` when it is there already.
fn settling_event(record: &SandboxRecord, target: SandboxStatus) -> Option<Event> {
    let resuming = Transition::parse(record.transition.as_deref()) == Some(Transition::Resuming);
    match (record.status, resuming, target) {
        (SandboxStatus::Snapshotting, _, SandboxStatus::Running) => Some(Event::SnapshotEnded),
        (SandboxStatus::Suspending, _, SandboxStatus::Running) => Some(Event::SuspendFailed),
        (SandboxStatus::Suspending, _, SandboxStatus::Suspended) => Some(Event::SuspendDone),
        (SandboxStatus::Suspended, true, SandboxStatus::Running) => Some(Event::ResumeDone),
        (SandboxStatus::Suspended, true, SandboxStatus::Suspended) => Some(Event::ResumeFailed),
        _ => None,
    }
}

/// Applies a recovery decision; one the state machine refuses (a state no
/// code path writes) is logged and leaves the record as it was.
fn apply_or_log(record: &mut SandboxRecord, event: Event) {
    if let Err(e) = state::apply(record, event) {
        tracing::error!(sandbox_id = %record.id, error = %e, "recovery decision refused");
    }
}
