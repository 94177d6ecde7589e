//! Ends sandboxes whose `timeout_secs` has run out.

use std::sync::Arc;
use std::time::Duration;

use alcove_runtime::SandboxId;
use alcove_wire::journal::LogLevel;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::snapshot::{SnapshotStatus, SnapshotType};
use alcove_wire::time::now_millis;

use super::Control;
use super::state::TerminationReason;
use crate::shutdown::Shutdown;

/// How long an ending sandbox's filesystem snapshot is waited for before the sandbox's end
/// is recorded; a snapshot still being taken then goes on (the end waits for it anyway).
const KEEP_FILES_WAIT: Duration = Duration::from_secs(600);

/// Checks once a second for sandboxes past their deadline and terminates them.
///
/// Named sandboxes are suspended instead, and suspended time does not count.
pub fn spawn_timeout_reaper(
    control: Arc<Control>,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            reap_once(&control, now_millis()).await;
        }
    })
}

/// Ends (or, named, suspends) every live sandbox whose deadline is at or
/// before `now` (epoch milliseconds).
pub(crate) async fn reap_once(control: &Arc<Control>, now: i64) {
    forget_ended(control).await;
    let Ok(due) = control.ctx.local_due(now).await else {
        return;
    };
    let attempts = control.ctx.cfg.timeout_suspend_attempts;
    for record in due {
        // Named sandboxes are suspended (and keep their state); ephemeral ones end.
        if record.name.is_some() {
            if attempts > 0 && control.suspension.timeout_failures(&record.id) >= attempts {
                // Being ended by `give_up_suspending`.
                continue;
            }
            let failed = control.suspension.suspend_for_timeout(&record.id).await;
            if let Some(failed) = failed
                && attempts > 0
                && failed >= attempts
            {
                tokio::spawn(give_up_suspending(
                    Arc::clone(control),
                    record.id.clone(),
                    failed,
                ));
            }
        } else if let Err(e) = control
            .sandboxes
            .delete(None, &record.id, TerminationReason::Timeout)
            .await
        {
            tracing::warn!(sandbox_id = %record.id, error = %e, "ending timed-out sandbox");
        }
    }
}

/// Ends a named sandbox whose timeout's suspends failed `failed` times in a row: what runs
/// in a sandbox can make its own dump fail, and it must not run past its timeout for that.
/// Its files are kept first as a filesystem snapshot (a copy of its disk, no dump), which
/// the error on its archived record and its log name; when they cannot be, it is not ended.
async fn give_up_suspending(control: Arc<Control>, id: SandboxId, failed: u32) {
    let kept = match control
        .snapshots
        .create(None, &id, Some(SnapshotType::Filesystem), KEEP_FILES_WAIT)
        .await
    {
        Ok(snap) if snap.status != SnapshotStatus::Failed => Some(snap.id),
        Ok(snap) => {
            tracing::warn!(sandbox_id = %id, snapshot_id = %snap.id, "keeping the files of a sandbox its timeout ends failed");
            None
        }
        Err(e) => {
            tracing::warn!(sandbox_id = %id, error = %e, "keeping the files of a sandbox its timeout ends");
            None
        }
    };
    let record = match control.ctx.store.get(&id).await {
        Ok(Some(record)) if record.status == SandboxStatus::Running => record,
        Ok(Some(record)) => {
            // Suspended or ended meanwhile (by its user, say): nothing is left to end.
            tracing::info!(sandbox_id = %id, status = %record.status, "a sandbox its timeout was ending is not running any more");
            control.suspension.forget_timeout_failures(&id);
            return;
        }
        Ok(None) => {
            control.suspension.forget_timeout_failures(&id);
            return;
        }
        Err(e) => {
            // The count stays, so the reaper leaves it alone; a restart tries again.
            tracing::error!(sandbox_id = %id, error = %e, "reading a sandbox its timeout ends");
            return;
        }
    };
    let why = record
        .error_details
        .as_deref()
        .unwrap_or("the sandbox could not be dumped");
    let Some(snapshot) = kept else {
        // Its files are not ended with it (the host's disk is full, say, which is not the
        // sandbox's doing): it runs on and is tried again after the next failed suspend.
        let what = format!(
            "its timeout's suspend failed {failed} times in a row ({why}), and its files could \
             not be kept to end it; it keeps running and is tried again"
        );
        control.ctx.logs.note(&id, LogLevel::Warn, what).await;
        control.suspension.retry_timeout_give_up(&id);
        return;
    };
    let details = format!(
        "its timeout's suspend failed {failed} times in a row ({why}); it was ended, and its \
         files were kept as filesystem snapshot {snapshot}"
    );
    tracing::warn!(sandbox_id = %id, failed, %snapshot, "ending a sandbox its timeout could not suspend");
    control
        .ctx
        .logs
        .note(&id, LogLevel::Warn, details.clone())
        .await;
    let mut noted = record;
    noted.error_details = Some(details);
    if let Err(e) = control.ctx.store.update(&noted).await {
        tracing::error!(sandbox_id = %id, error = %e, "recording why a sandbox ends");
    }
    if let Err(e) = control.sandboxes.end(&id, TerminationReason::Timeout).await {
        tracing::warn!(sandbox_id = %id, error = %e, "ending a sandbox its timeout could not suspend");
    }
    control.suspension.forget_timeout_failures(&id);
}

/// Drops the failure counts of sandboxes that ended some other way (a suspend that
/// succeeds drops its own).
async fn forget_ended(control: &Control) {
    for id in control.suspension.counted_timeout_failures() {
        let live = matches!(
            control.ctx.store.get(&id).await,
            Ok(Some(record)) if record.status.is_live()
        );
        if !live {
            control.suspension.forget_timeout_failures(&id);
        }
    }
}
