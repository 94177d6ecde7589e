//! Ends sandboxes whose `timeout_secs` has run out.

use std::sync::Arc;
use std::time::Duration;

use alcove_wire::time::now_millis;

use super::Control;
use crate::shutdown::Shutdown;

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
    let Ok(due) = control.ctx.local_due(now).await else {
        return;
    };
    for record in due {
        // Named sandboxes are suspended (and keep their state); ephemeral ones end.
        if record.name.is_some() {
            control.suspension.suspend_for_timeout(&record.id).await;
        } else if let Err(e) = control
            .sandboxes
            .delete(None, &record.id, super::state::TerminationReason::Timeout)
            .await
        {
            tracing::warn!(sandbox_id = %record.id, error = %e, "ending timed-out sandbox");
        }
    }
}
