//! The sandbox state machine: every status change goes through [`apply`], which
//! asks the pure function [`next`] whether the event fits the current state.
//!
//! A sandbox's state is its status plus, while suspended, whether a resume is
//! under way ([`Transition::Resuming`]: it is still suspended until the restore
//! has worked, so a crash during it leaves the dump to resume from).

use alcove_wire::sandbox::SandboxStatus;

use crate::store::SandboxRecord;

/// An operation under way that the status alone does not show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A suspended sandbox is being restored.
    Resuming,
}

impl Transition {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Resuming => "resuming",
        }
    }

    /// Reads the stored form (unknown text is no transition).
    pub fn parse(text: Option<&str>) -> Option<Self> {
        (text == Some("resuming")).then_some(Transition::Resuming)
    }
}

/// Why a sandbox ended, as stored and served (`termination_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationReason {
    /// A user deleted it.
    Deleted,
    /// Its timeout ran out (ephemeral sandboxes).
    Timeout,
    /// It was deleted before it started.
    Cancelled,
    /// Its container did not start.
    StartupFailed,
    /// The server restarted while it was being created.
    ServerRestarted,
    /// It was gone when the server came back.
    Lost,
    /// Its agent (the sandbox's PID 1) died while it ran, so the sandbox stopped.
    Crashed,
    /// It was a pool's idle sandbox, removed when the pool was deleted or changed.
    PoolDrained,
    /// A claim of it failed half-way (or the server restarted during one): what
    /// the claim had bound to it may not be complete, so it is not handed out again.
    ClaimFailed,
}

impl TerminationReason {
    /// The wire and stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationReason::Deleted => "deleted",
            TerminationReason::Timeout => "timeout",
            TerminationReason::Cancelled => "cancelled",
            TerminationReason::StartupFailed => "startup_failed",
            TerminationReason::ServerRestarted => "server_restarted",
            TerminationReason::Lost => "lost",
            TerminationReason::Crashed => "crashed",
            TerminationReason::PoolDrained => "pool_drained",
            TerminationReason::ClaimFailed => "claim_failed",
        }
    }
}

/// Something that happens to a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Its container started and the agent answers.
    Started,
    /// Starting failed, or the server restarted while it started.
    StartFailed(TerminationReason),
    /// A suspend began (its proxied requests drain, then it is dumped).
    SuspendBegun,
    /// The dump is complete; the container is gone.
    SuspendDone,
    /// The dump failed; it runs on.
    SuspendFailed,
    /// A resume began.
    ResumeBegun,
    /// The restore worked; it runs.
    ResumeDone,
    /// The restore failed; it stays suspended with its dump.
    ResumeFailed,
    /// A snapshot began (it is briefly frozen).
    SnapshotBegun,
    /// The snapshot ended, one way or the other; it runs.
    SnapshotEnded,
    /// It ends: deleted, timed out, or found gone after a restart.
    Terminate(TerminationReason),
    /// It stopped by itself while it ran (its agent died): it failed.
    Crashed(TerminationReason),
}

/// An event that does not apply to the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event:?} a sandbox that is {status}")]
pub struct InvalidTransition {
    /// Status at the time.
    pub status: SandboxStatus,
    /// The event refused.
    pub event: Event,
}

/// A sandbox's state: its status and the operation under way, if any.
pub type State = (SandboxStatus, Option<Transition>);

/// The state after `event`, or why it cannot happen.
pub fn next(state: State, event: Event) -> Result<State, InvalidTransition> {
    use Event as E;
    use SandboxStatus as S;
    const RESUMING: Option<Transition> = Some(Transition::Resuming);
    let (status, transition) = state;
    let to = match (status, transition, event) {
        (S::Pending, None, E::Started) => (S::Running, None),
        (S::Pending, None, E::StartFailed(_)) => (S::Failed, None),
        (S::Running | S::Snapshotting, None, E::SuspendBegun) => (S::Suspending, None),
        (S::Suspending, None, E::SuspendDone) => (S::Suspended, None),
        (S::Suspending, None, E::SuspendFailed) => (S::Running, None),
        (S::Suspended, None, E::ResumeBegun) => (S::Suspended, RESUMING),
        (S::Suspended, RESUMING, E::ResumeDone) => (S::Running, None),
        (S::Suspended, RESUMING, E::ResumeFailed) => (S::Suspended, None),
        (S::Running, None, E::SnapshotBegun) => (S::Snapshotting, None),
        (S::Snapshotting, None, E::SnapshotEnded) => (S::Running, None),
        (S::Running | S::Snapshotting, None, E::Crashed(_)) => (S::Failed, None),
        (
            S::Pending | S::Running | S::Suspending | S::Suspended | S::Snapshotting,
            _,
            E::Terminate(_),
        ) => (S::Terminated, None),
        _ => return Err(InvalidTransition { status, event }),
    };
    Ok(to)
}

/// Applies `event` to a stored sandbox: its status, transition and (when it
/// ends) termination reason. The caller writes the record to the store.
pub fn apply(record: &mut SandboxRecord, event: Event) -> Result<(), InvalidTransition> {
    let state = (
        record.status,
        Transition::parse(record.transition.as_deref()),
    );
    let (status, transition) = next(state, event)?;
    record.status = status;
    record.transition = transition.map(|t| t.as_str().to_string());
    match event {
        Event::Terminate(reason) | Event::StartFailed(reason) | Event::Crashed(reason) => {
            record.termination_reason = Some(reason.as_str().to_string());
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use SandboxStatus as S;

    const STATUSES: [SandboxStatus; 8] = [
        S::Pending,
        S::Running,
        S::Suspending,
        S::Suspended,
        S::Snapshotting,
        S::Terminated,
        S::Failed,
        S::Timeout,
    ];

    fn events() -> Vec<Event> {
        use TerminationReason as R;
        let mut all = vec![
            Event::Started,
            Event::SuspendBegun,
            Event::SuspendDone,
            Event::SuspendFailed,
            Event::ResumeBegun,
            Event::ResumeDone,
            Event::ResumeFailed,
            Event::SnapshotBegun,
            Event::SnapshotEnded,
        ];
        for r in [
            R::Deleted,
            R::Timeout,
            R::Cancelled,
            R::StartupFailed,
            R::ServerRestarted,
            R::Lost,
            R::Crashed,
        ] {
            all.push(Event::Terminate(r));
            all.push(Event::StartFailed(r));
            all.push(Event::Crashed(r));
        }
        all
    }

    /// Every allowed (state, event) pair, with its result: the whole table.
    fn allowed(state: State, event: Event) -> Option<State> {
        use Event as E;
        let resuming = Some(Transition::Resuming);
        match (state, event) {
            ((S::Pending, None), E::Started) => Some((S::Running, None)),
            ((S::Pending, None), E::StartFailed(_)) => Some((S::Failed, None)),
            ((S::Running | S::Snapshotting, None), E::SuspendBegun) => Some((S::Suspending, None)),
            ((S::Suspending, None), E::SuspendDone) => Some((S::Suspended, None)),
            ((S::Suspending, None), E::SuspendFailed) => Some((S::Running, None)),
            ((S::Suspended, None), E::ResumeBegun) => Some((S::Suspended, resuming)),
            ((S::Suspended, r), E::ResumeDone) if r == resuming => Some((S::Running, None)),
            ((S::Suspended, r), E::ResumeFailed) if r == resuming => Some((S::Suspended, None)),
            ((S::Running, None), E::SnapshotBegun) => Some((S::Snapshotting, None)),
            ((S::Snapshotting, None), E::SnapshotEnded) => Some((S::Running, None)),
            ((S::Running | S::Snapshotting, None), E::Crashed(_)) => Some((S::Failed, None)),
            (
                (S::Pending | S::Running | S::Suspending | S::Suspended | S::Snapshotting, _),
                E::Terminate(_),
            ) => Some((S::Terminated, None)),
            _ => None,
        }
    }

    #[test]
    fn every_state_and_event_matches_the_table() {
        let mut allowed_count = 0;
        for status in STATUSES {
            for transition in [None, Some(Transition::Resuming)] {
                for event in events() {
                    let got = next((status, transition), event).ok();
                    assert_eq!(
                        got,
                        allowed((status, transition), event),
                        "{status} {transition:?} + {event:?}"
                    );
                    allowed_count += usize::from(got.is_some());
                }
            }
        }
        assert!(allowed_count > 20, "the table allows the lifecycle at all");
    }

    #[test]
    fn ended_sandboxes_stay_ended() {
        for s in [S::Terminated, S::Failed, S::Timeout] {
            for e in events() {
                assert!(next((s, None), e).is_err(), "{s} + {e:?} must be refused");
            }
        }
    }

    #[test]
    fn apply_sets_status_transition_and_reason() {
        let mut record = crate::store::sample_record("a", None);
        record.status = S::Suspended;
        apply(&mut record, Event::ResumeBegun).expect("resume begins");
        assert_eq!(record.transition.as_deref(), Some("resuming"));
        assert!(
            apply(&mut record, Event::ResumeBegun).is_err(),
            "one resume at a time"
        );
        apply(&mut record, Event::ResumeFailed).expect("resume fails");
        assert_eq!(
            (record.status, record.transition.as_deref()),
            (S::Suspended, None)
        );
        apply(&mut record, Event::Terminate(TerminationReason::Timeout)).expect("ends");
        assert_eq!(record.status, S::Terminated);
        assert_eq!(record.termination_reason.as_deref(), Some("timeout"));
        let err = apply(&mut record, Event::Started).expect_err("ended");
        assert_eq!(err.status, S::Terminated);
    }
}
