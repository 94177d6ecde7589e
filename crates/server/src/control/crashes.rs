//! Sandboxes that stop by themselves. A sandbox's agent is its PID 1: if it dies, the
//! kernel ends every process of the sandbox and the container stops. The log followers
//! report a sandbox whose journal stays unreachable as a suspect; here its container is
//! checked, and a sandbox whose container no longer runs is marked failed (reason
//! `crashed`), its resources are freed, and the why goes to its logs and the server's log.

use std::sync::Arc;

use alcove_runtime::SandboxId;
use alcove_runtime::network::Slot;
use alcove_runtime::runc::ContainerStatus;
use alcove_wire::journal::LogLevel;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;

use super::Control;
use super::lifecycle::Sandboxes;
use super::state::{self, Event, TerminationReason};
use crate::logs::Suspects;
use crate::shutdown::Shutdown;

impl Sandboxes {
    /// Checks a crash suspect: if it should run but its container does not, it failed.
    /// Returns whether it was marked failed.
    pub async fn check_crashed(&self, id: &SandboxId) -> bool {
        let lock = self.ctx.op_lock(id);
        // An operation under way (suspend, snapshot, delete) stops containers on purpose.
        let Ok(guard) = lock.try_lock() else {
            return false;
        };
        let Ok(Some(mut record)) = self.ctx.store.get(id).await else {
            return false;
        };
        if record.status != SandboxStatus::Running || self.ctx.handle_of(id).is_none() {
            return false;
        }
        let status = self.ctx.node.container_status(id).await;
        if matches!(
            status,
            Some(ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created)
        ) {
            return false;
        }
        let seen = match status {
            Some(ContainerStatus::Stopped) => "its container stopped",
            _ => "its container is gone",
        };
        let usage = self.ctx.usage(id).await;
        if state::apply(&mut record, Event::Crashed(TerminationReason::Crashed)).is_err() {
            return false;
        }
        record.mark_ended(now_millis());
        record.error_details = Some(
            "the sandbox's agent (its PID 1) exited unexpectedly, which stopped every process \
             in it; its logs (get_logs) hold what happened before"
                .to_string(),
        );
        let slot = record.slot.take();
        if let Err(e) = self.ctx.store.update(&record).await {
            tracing::error!(sandbox_id = %id, error = %e, "recording crashed sandbox");
            return false;
        }
        self.ctx.take_running(id);
        tracing::error!(sandbox_id = %id, %seen, memory_bytes = usage.map(|u| u.memory_bytes), "sandbox crashed: its agent exited; marked failed");
        self.ctx
            .logs
            .note(
                id,
                LogLevel::Fatal,
                format!(
                    "the sandbox failed: its agent (PID 1) exited unexpectedly and {seen}; \
                     every process in it ended"
                ),
            )
            .await;
        if let Some(slot) = slot.and_then(|s| u32::try_from(s).ok()) {
            self.ctx.node.destroy(id, Slot(slot)).await;
        }
        drop(guard);
        self.ctx.forget_op_lock(id);
        true
    }
}

/// Checks every crash suspect the log followers report, until shutdown.
pub fn spawn_crash_watch(
    control: Arc<Control>,
    mut suspects: Suspects,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let id = tokio::select! {
                id = suspects.recv() => match id {
                    Some(id) => id,
                    None => return,
                },
                _ = shutdown.wait() => return,
            };
            control.sandboxes.check_crashed(&id).await;
        }
    })
}
