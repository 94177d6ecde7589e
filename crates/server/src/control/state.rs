//! The sandbox state machine as one pure function: (status, event) → next status.

use alcove_wire::sandbox::SandboxStatus;

/// Something that happens to a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Its container started and the agent answers.
    Started,
    /// Starting failed.
    StartFailed,
    /// Deleted by a user, or its timeout ran out.
    Terminate,
    /// Found gone after a restart of the server.
    Lost,
}

/// An event that does not apply to the current status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event:?} a sandbox that is {status}")]
pub struct InvalidTransition {
    /// Status at the time.
    pub status: SandboxStatus,
    /// The event refused.
    pub event: Event,
}

/// The status after `event`, or why it cannot happen.
pub fn next(status: SandboxStatus, event: Event) -> Result<SandboxStatus, InvalidTransition> {
    use Event as E;
    use SandboxStatus as S;
    let to = match (status, event) {
        (S::Pending, E::Started) => S::Running,
        (S::Pending, E::StartFailed) => S::Failed,
        (
            S::Pending | S::Running | S::Suspending | S::Suspended | S::Snapshotting,
            E::Terminate | E::Lost,
        ) => S::Terminated,
        _ => return Err(InvalidTransition { status, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SandboxStatus as S;

    #[test]
    fn lifecycle_paths() {
        assert_eq!(next(S::Pending, Event::Started), Ok(S::Running));
        assert_eq!(next(S::Pending, Event::StartFailed), Ok(S::Failed));
        assert_eq!(next(S::Running, Event::Terminate), Ok(S::Terminated));
        assert_eq!(next(S::Pending, Event::Terminate), Ok(S::Terminated));
        assert_eq!(next(S::Running, Event::Lost), Ok(S::Terminated));
    }

    #[test]
    fn ended_sandboxes_stay_ended() {
        for s in [S::Terminated, S::Failed] {
            for e in [
                Event::Started,
                Event::StartFailed,
                Event::Terminate,
                Event::Lost,
            ] {
                assert!(next(s, e).is_err(), "{s} + {e:?} must be refused");
            }
        }
        assert!(next(S::Running, Event::Started).is_err());
    }
}
