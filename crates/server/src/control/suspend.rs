//! Suspend and resume: a named sandbox is dumped to disk with CRIU (memory,
//! processes, open files) and later restored under the same id, name, address
//! and cgroup.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alcove_runtime::SandboxId;
use alcove_wire::journal::LogLevel;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::now_millis;

use tracing::Instrument;

use super::ControlError;
use super::context::Context;
use super::lifecycle::spec_for;
use super::state::{self, Event};
use crate::metrics::Operation;
use crate::redact::{self, Failure};
use crate::store::SandboxRecord;

/// The two operations that move a sandbox between running and suspended.
#[derive(Debug, Clone, Copy)]
enum Transition {
    Suspend,
    Resume,
}

/// How long a suspend waits for proxied requests under way to finish.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The deadline of a sandbox resumed with `left` ms of its timeout: what was left, or, when
/// its timeout ran out (it was suspended for it), a whole `timeout_secs` again; a resume
/// that gave nothing would be suspended again at once.
fn deadline_on_resume(left: i64, timeout_secs: i64, now: i64) -> i64 {
    if left > 0 {
        now.saturating_add(left)
    } else {
        super::validate::deadline_after(now, timeout_secs)
    }
}

/// Applies an event whose precondition the caller has checked; a refusal is
/// a bug, logged, and leaves the record as it was.
fn apply_or_log(record: &mut SandboxRecord, event: Event) {
    if let Err(e) = state::apply(record, event) {
        tracing::error!(sandbox_id = %record.id, error = %e, "state change refused");
    }
}

/// Suspends sandboxes to disk and resumes them, on request and on timeout.
#[derive(Debug, Clone)]
pub struct Suspension {
    ctx: Arc<Context>,
    /// Sandboxes whose suspend (requested or by timeout) has not finished: a requested one is
    /// answered at once (202) and may not have begun, so the sandbox still reads `running`; a
    /// resume asked meanwhile follows it instead of finding nothing to do and being undone by
    /// the suspend.
    suspends: Arc<Mutex<HashSet<SandboxId>>>,
    /// Suspends asked by each sandbox's timeout that failed in a row; a suspend that succeeds
    /// (asked by anyone) clears its count. Held in memory: a restart of the server starts the
    /// count again, which a sandbox cannot cause.
    timeout_failures: Arc<Mutex<HashMap<SandboxId, u32>>>,
}

/// Takes a sandbox out of [`Suspension::suspends`] when its suspend job ends, however it ends.
struct SuspendQueued {
    suspends: Arc<Mutex<HashSet<SandboxId>>>,
    id: SandboxId,
}

impl Drop for SuspendQueued {
    fn drop(&mut self) {
        self.suspends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.id);
    }
}

impl Suspension {
    /// The service over the shared context.
    pub(super) fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            suspends: Arc::default(),
            timeout_failures: Arc::default(),
        }
    }

    /// Whether a suspend asked of `id` has not finished.
    pub(super) fn suspend_queued(&self, id: &SandboxId) -> bool {
        self.suspends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(id)
    }

    fn queue_suspend(&self, id: &SandboxId) -> SuspendQueued {
        self.suspends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.clone());
        SuspendQueued {
            suspends: Arc::clone(&self.suspends),
            id: id.clone(),
        }
    }
    /// Suspends a named running sandbox. With `wait`, waits up to that long;
    /// returns the sandbox and whether it is suspended now.
    pub async fn suspend(
        &self,
        namespace: Option<&str>,
        ident: &str,
        wait: Option<Duration>,
    ) -> Result<(SandboxRecord, bool), ControlError> {
        let record = self.ctx.resolve_local(namespace, ident).await?;
        if record.name.is_none() {
            return Err(ControlError::InvalidArgument {
                field: "sandbox",
                reason: format!(
                    "sandbox {} is ephemeral and cannot be suspended; name it first \
                     (update_sandbox) to make it suspendable",
                    record.id
                ),
            });
        }
        match (record.status, record.transition.as_deref()) {
            (SandboxStatus::Suspended, None) => return Ok((record, true)),
            (
                SandboxStatus::Running | SandboxStatus::Suspending | SandboxStatus::Snapshotting,
                _,
            ) => {}
            (status, _) => {
                return Err(ControlError::InvalidState {
                    id: record.id.into(),
                    status,
                    op: "suspend",
                });
            }
        }
        self.run_transition(record.id, Transition::Suspend, wait)
            .await
    }

    /// Resumes a suspended sandbox (waiting for a suspend in flight first).
    pub async fn resume(
        &self,
        namespace: Option<&str>,
        ident: &str,
        wait: Option<Duration>,
    ) -> Result<(SandboxRecord, bool), ControlError> {
        let record = self.ctx.resolve_local(namespace, ident).await?;
        if record.status != SandboxStatus::Running {
            self.ctx.ensure_not_draining()?;
        }
        let after_a_suspend = self.suspend_queued(&record.id);
        match record.status {
            SandboxStatus::Running if !after_a_suspend => return Ok((record, true)),
            // A suspend asked before this resume has not begun: the resume follows it.
            SandboxStatus::Running => {}
            // Refused at once when this node has no room for it (checked again,
            // binding, when the resume begins).
            SandboxStatus::Suspended if record.transition.is_none() => {
                self.ctx.room_for(&record).await?;
            }
            SandboxStatus::Suspended | SandboxStatus::Suspending => {}
            status => {
                return Err(ControlError::InvalidState {
                    id: record.id.into(),
                    status,
                    op: "resume",
                });
            }
        }
        self.run_transition(record.id, Transition::Resume, wait)
            .await
    }

    /// Runs a suspend or resume as a job holding the sandbox's op lock (it
    /// outlives the request), waiting for it up to `wait`; returns the sandbox
    /// and whether it reached the target state.
    async fn run_transition(
        &self,
        id: SandboxId,
        transition: Transition,
        wait: Option<Duration>,
    ) -> Result<(SandboxRecord, bool), ControlError> {
        let this = self.clone();
        let job_id = id.clone();
        let queued = matches!(transition, Transition::Suspend).then(|| self.queue_suspend(&id));
        // The job keeps the request's span: its log lines (the full error of a
        // failure included) carry the request id the client was given.
        let job = tokio::spawn(
            async move {
                let _queued = queued;
                if matches!(transition, Transition::Resume) {
                    // After a suspend asked before it, which may not hold the lock yet.
                    while this.suspend_queued(&job_id) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                let lock = this.ctx.op_lock(&job_id);
                let _guard = lock.lock().await;
                match transition {
                    Transition::Suspend => this.suspend_now(&job_id, "requested").await,
                    Transition::Resume => {
                        this.resume_now(&job_id).await;
                        None
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        let target = match transition {
            Transition::Suspend => SandboxStatus::Suspended,
            Transition::Resume => SandboxStatus::Running,
        };
        let id = id.as_str();
        // Whether the job ended within the wait, and the sandbox's refusal if it was refused.
        let (finished, refusal) = match wait {
            Some(wait) => match tokio::time::timeout(wait, job).await {
                Ok(ended) => (true, ended.ok().flatten()),
                Err(_) => (false, None),
            },
            None => (false, None),
        };
        let record = self.ctx.resolve_local(None, id).await?;
        // Running with a suspend still to come is not resumed yet.
        let reached = record.status == target
            && record.transition.is_none()
            && !(matches!(transition, Transition::Resume) && self.suspend_queued(&record.id));
        if finished && !reached {
            // The operation ended without reaching its target: say why instead of
            // letting the client poll for a state that will not come. What runs in the
            // sandbox stopping it is the caller's to change, not a failure of the server.
            if let Some(reason) = refusal {
                return Err(ControlError::OperationRefused {
                    id: id.to_string(),
                    op: "suspend",
                    reason,
                });
            }
            return Err(ControlError::OperationFailed {
                id: id.to_string(),
                op: match transition {
                    Transition::Suspend => "suspend",
                    Transition::Resume => "resume",
                },
                reason: record
                    .error_details
                    .unwrap_or_else(|| format!("the sandbox is {}", record.status)),
            });
        }
        Ok((record, reached))
    }

    /// Dumps a running sandbox now (the caller holds its op lock). Failures
    /// leave it running and are logged: a suspend never loses a sandbox. Returns
    /// why the sandbox itself refused the dump, when it did (see
    /// [`alcove_runtime::RuntimeError::sandbox_refusal`]).
    pub(super) async fn suspend_now(&self, id: &SandboxId, why: &str) -> Option<String> {
        let Ok(Some(mut record)) = self.ctx.store.get(id).await else {
            return None;
        };
        if record.status != SandboxStatus::Running
            || state::apply(&mut record, Event::SuspendBegun).is_err()
        {
            return None;
        }
        if let Some(deadline) = record.deadline_at.take() {
            record.timeout_remaining_ms = Some((deadline - now_millis()).max(0));
        }
        if let Err(e) = self.ctx.store.update(&record).await {
            tracing::error!(sandbox_id = %id, error = %e, "recording suspending");
            return None;
        }
        let handle = self.ctx.take_running(id);
        // New requests now get 503 SANDBOX_NOT_READY (clients retry); let the ones
        // under way finish. Long streams still open after the grace are closed by
        // the dump (CRIU tcp-close), which never fails on them.
        let left = self.ctx.inflight.drain(id, DRAIN_GRACE).await;
        if left > 0 {
            tracing::info!(sandbox_id = %id, open = left, "closing proxied connections for suspend");
        }
        let refusal = match self
            .ctx
            .timed(Operation::Suspend, self.ctx.node.suspend(id))
            .await
        {
            Ok(bytes) => {
                apply_or_log(&mut record, Event::SuspendDone);
                record.suspended_at = Some(now_millis());
                record.error_details = None;
                self.forget_timeout_failures(id);
                tracing::info!(sandbox_id = %id, bytes, reason = why, "sandbox suspended");
                self.ctx
                    .logs
                    .note(id, LogLevel::Info, format!("sandbox suspended ({why})"))
                    .await;
                None
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %id, error = %e, "suspend failed; sandbox keeps running");
                apply_or_log(&mut record, Event::SuspendFailed);
                // The full error (command line, host paths) stays in the log above.
                let details = redact::stored_details(Failure::Suspend, &e.to_string());
                // The sandbox's own log says it too: the user's window on what went wrong.
                self.ctx
                    .logs
                    .note(
                        id,
                        LogLevel::Warn,
                        format!("{details} (the sandbox keeps running)"),
                    )
                    .await;
                record.error_details = Some(details);
                if let Some(left) = record.timeout_remaining_ms.take() {
                    // Not at the next tick: every try freezes the sandbox for a dump.
                    let retry = i64::try_from(self.ctx.cfg.timeout_suspend_retry.as_millis())
                        .unwrap_or(i64::MAX);
                    record.deadline_at = Some(now_millis().saturating_add(left.max(retry)));
                }
                if let Some(handle) = handle {
                    self.ctx.set_running(id, handle);
                }
                e.sandbox_refusal().map(str::to_owned)
            }
        };
        if let Err(e) = self.ctx.store.update(&record).await {
            tracing::error!(sandbox_id = %id, error = %e, "recording suspend outcome");
        }
        refusal
    }

    /// Restores a suspended sandbox now (the caller holds its op lock). On
    /// failure it stays suspended with a public reason in `error_details`.
    pub(super) async fn resume_now(&self, id: &SandboxId) {
        let Ok(Some(mut record)) = self.ctx.store.get(id).await else {
            return;
        };
        if record.status != SandboxStatus::Suspended {
            return;
        }
        // No slot: it was suspended on another node and moved here; it gets
        // an address of this node's subnet.
        let slot = record
            .slot
            .and_then(|s| u32::try_from(s).ok())
            .map(alcove_runtime::network::Slot);
        if let Err(e) = state::apply(&mut record, Event::ResumeBegun) {
            tracing::error!(sandbox_id = %id, error = %e, "starting a resume");
            return;
        }
        match self.ctx.update_admitted(&record).await {
            Ok(()) => {}
            Err(e @ ControlError::NoRoomHere { .. }) => {
                // Others took the room since the request was checked: it stays
                // suspended, and the request says why.
                tracing::info!(sandbox_id = %id, error = %e, "no room to resume");
                if let Ok(Some(mut stored)) = self.ctx.store.get(id).await {
                    stored.error_details = Some(e.to_string());
                    let _ = self.ctx.store.update(&stored).await;
                }
                return;
            }
            Err(e) => {
                tracing::error!(sandbox_id = %id, error = %e, "recording resuming");
                return;
            }
        }
        let outcome = match self.ctx.images.resolve_pinned(&record.image) {
            Ok(crate::images::ResolvedImage { image, .. }) => {
                // The restored processes keep the environment they had; a restore
                // does not start a process from the bundle's env. Its network policy is in
                // force before CRIU restores a process (a policy that cannot be resolved
                // now keeps it suspended).
                let egress = super::network::egress_policy(&record.network_policy).await;
                // A dump that is not on this disk comes from the blob store.
                match egress.map_err(|e| format!("applying the network policy: {e}")) {
                    Err(e) => Err(e),
                    Ok(egress) => match self.ctx.fetch_suspended_blobs(id).await {
                        Ok(()) => {
                            let spec = spec_for(&record, image, Vec::new(), egress);
                            self.ctx
                                .timed(Operation::Resume, self.ctx.node.resume(&spec, slot))
                                .await
                                .map_err(|e| e.to_string())
                        }
                        Err(e) => Err(e),
                    },
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(handle) => {
                apply_or_log(&mut record, Event::ResumeDone);
                record.slot = Some(i64::from(handle.slot.0));
                record.error_details = None;
                if let Some(left) = record.timeout_remaining_ms.take() {
                    record.deadline_at =
                        Some(deadline_on_resume(left, record.timeout_secs, now_millis()));
                }
                self.ctx.set_running(id, handle);
                // Its copy in the blob store is of a state it has left.
                self.ctx.forget_blobs(super::blobs::sandbox_owner(id));
                tracing::info!(sandbox_id = %id, "sandbox resumed");
                self.ctx
                    .logs
                    .note(id, LogLevel::Info, "sandbox resumed")
                    .await;
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %id, error = %e, "resume failed; sandbox stays suspended");
                apply_or_log(&mut record, Event::ResumeFailed);
                // The full error (command line, host paths) stays in the log above.
                record.error_details = Some(redact::stored_details(Failure::Resume, &e));
            }
        }
        if let Err(e) = self.ctx.store.update(&record).await {
            tracing::error!(sandbox_id = %id, error = %e, "recording resume outcome");
        }
    }

    /// Suspends a sandbox of a draining node.
    pub(super) async fn suspend_for_drain(&self, id: &SandboxId) {
        let lock = self.ctx.op_lock(id);
        let _guard = lock.lock().await;
        // A refusal is noted on the sandbox and in its log; there is no caller to tell.
        let _ = self.suspend_now(id, "node draining").await;
    }

    /// Suspends a sandbox whose timeout ran out (named sandboxes) without waiting. Returns
    /// how many of these have failed in a row when this one failed too.
    pub(super) async fn suspend_for_timeout(&self, id: &SandboxId) -> Option<u32> {
        // Marked while it waits for the lock, as a requested suspend is: a resume asked
        // meanwhile follows it instead of finding the sandbox running and doing nothing.
        let _queued = self.queue_suspend(id);
        let lock = self.ctx.op_lock(id);
        let _guard = lock.lock().await;
        let _ = self.suspend_now(id, "timeout").await;
        match self.ctx.store.get(id).await {
            Ok(Some(record)) if record.status == SandboxStatus::Running => {
                let mut failures = self
                    .timeout_failures
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let count = failures.entry(id.clone()).or_insert(0);
                *count = count.saturating_add(1);
                Some(*count)
            }
            _ => {
                self.forget_timeout_failures(id);
                None
            }
        }
    }

    /// The sandboxes with failed timeout suspends counted (few: see `timeout_failures`).
    pub(super) fn counted_timeout_failures(&self) -> Vec<SandboxId> {
        self.timeout_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// How many suspends asked by `id`'s timeout have failed in a row.
    pub(super) fn timeout_failures(&self, id: &SandboxId) -> u32 {
        self.timeout_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Counts `id`'s failed timeout suspends one short of giving up, so that the next one
    /// that fails tries to end it again.
    pub(super) fn retry_timeout_give_up(&self, id: &SandboxId) {
        let attempts = self.ctx.cfg.timeout_suspend_attempts;
        self.timeout_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.clone(), attempts.saturating_sub(1));
    }

    /// Clears `id`'s count of failed timeout suspends.
    pub(super) fn forget_timeout_failures(&self, id: &SandboxId) {
        self.timeout_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id);
    }
}
