//! When a request is sent again, and after how long (docs/protocol/errors.md, Retrying; as the
//! Python SDK's `_send`).
//!
//! Two rules, decided here without I/O so they can be tested alone:
//!
//! * an **idempotent** request (every GET, and the few others the server documents as
//!   idempotent) is retried after a connection failure and after 429/502/503/504, up to
//!   [`ATTEMPTS`] times with a doubling back-off;
//! * a **replayable** request is replayed while the proxy answers 503 with
//!   `SANDBOX_NOT_READY` / `SANDBOX_UNREACHABLE` (the request never reached the sandbox), up to
//!   [`NOT_READY_ATTEMPTS`] times. A 502 `SANDBOX_UNREACHABLE` may have reached it (a `run`
//!   sent again could run twice): only idempotent requests retry it. Creates, snapshots and
//!   streamed uploads are not replayable;
//! * **any** request whose body can be sent again is retried when the server refused it before
//!   doing anything (429 `TOO_MANY_REQUESTS`, 503 `SERVER_BUSY`: a burst past the server's
//!   per-client or connection limits), up to [`BUSY_ATTEMPTS`] times, honouring `Retry-After`.

use std::time::Duration;

use http::StatusCode;

/// Attempts of an idempotent request (the first one included).
pub const ATTEMPTS: u32 = 3;
/// Attempts of a replayable request while the sandbox is not ready.
pub const NOT_READY_ATTEMPTS: u32 = 12;
/// Statuses after which an idempotent request is retried.
pub const RETRYABLE_STATUSES: [StatusCode; 4] = [
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];
/// Codes of a proxy's 503 that means "the request did not reach the sandbox".
pub const NOT_READY_CODES: [&str; 2] = ["SANDBOX_NOT_READY", "SANDBOX_UNREACHABLE"];
/// Codes of an answer that means "refused before anything was done": safe to send again.
pub const BUSY_CODES: [&str; 2] = ["TOO_MANY_REQUESTS", "SERVER_BUSY"];
/// Attempts of a request the server refused as busy (the first one included).
pub const BUSY_ATTEMPTS: u32 = 10;
/// Longest `Retry-After` honoured; a longer one is capped so a call keeps its deadline shape.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(4);

/// Which rules apply to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retried after connection failures and [`RETRYABLE_STATUSES`].
    pub idempotent: bool,
    /// Replayed while the sandbox is not ready.
    pub replayable: bool,
}

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// No answer: the connection failed (not a timeout, which is never retried).
    ConnectionFailed,
    /// An error answer, with the `code` of its body and its `Retry-After`, if any.
    Answer {
        /// Its status.
        status: StatusCode,
        /// The `code` field of its JSON body.
        code: Option<&'a str>,
        /// Its `Retry-After` in seconds.
        retry_after: Option<Duration>,
    },
}

/// The pause before attempt `attempt + 1`, or `None` to give up with this outcome.
/// `attempt` counts from 1.
pub fn delay(policy: Policy, attempt: u32, outcome: Outcome<'_>) -> Option<Duration> {
    let doubling = |base_ms: u64| Duration::from_millis(base_ms << (attempt - 1).min(16));
    match outcome {
        Outcome::ConnectionFailed => {
            (policy.idempotent && attempt < ATTEMPTS).then(|| doubling(200))
        }
        Outcome::Answer {
            status,
            code,
            retry_after,
        } => {
            let answered = |statuses: &[StatusCode], codes: [&str; 2]| {
                statuses.contains(&status) && code.is_some_and(|code| codes.contains(&code))
            };
            // A 502 may have reached the sandbox: not "not ready".
            let not_ready = answered(&[StatusCode::SERVICE_UNAVAILABLE], NOT_READY_CODES);
            let busy = answered(
                &[
                    StatusCode::TOO_MANY_REQUESTS,
                    StatusCode::SERVICE_UNAVAILABLE,
                ],
                BUSY_CODES,
            );
            let backoff = if busy && attempt < BUSY_ATTEMPTS {
                doubling(200).min(Duration::from_secs(2))
            } else if policy.replayable && not_ready && attempt < NOT_READY_ATTEMPTS {
                doubling(250).min(Duration::from_secs(4))
            } else if policy.idempotent
                && attempt < ATTEMPTS
                && RETRYABLE_STATUSES.contains(&status)
            {
                doubling(200)
            } else {
                return None;
            };
            Some(backoff.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Policy = Policy {
        idempotent: true,
        replayable: true,
    };
    const POST: Policy = Policy {
        idempotent: false,
        replayable: true,
    };
    const CREATE: Policy = Policy {
        idempotent: false,
        replayable: false,
    };

    fn answer(status: u16, code: Option<&str>) -> Outcome<'_> {
        Outcome::Answer {
            status: StatusCode::from_u16(status).expect("valid status"),
            code,
            retry_after: None,
        }
    }

    #[test]
    fn idempotent_requests_retry_busy_answers_with_backoff() {
        for status in [429, 502, 503, 504] {
            assert_eq!(
                delay(GET, 1, answer(status, None)),
                Some(Duration::from_millis(200))
            );
            assert_eq!(
                delay(GET, 2, answer(status, None)),
                Some(Duration::from_millis(400))
            );
            assert_eq!(delay(GET, ATTEMPTS, answer(status, None)), None);
            assert_eq!(delay(POST, 1, answer(status, None)), None);
        }
        for status in [400, 404, 409, 500, 501] {
            assert_eq!(delay(GET, 1, answer(status, None)), None);
        }
        assert_eq!(
            delay(GET, 1, Outcome::ConnectionFailed),
            Some(Duration::from_millis(200))
        );
        assert_eq!(delay(POST, 1, Outcome::ConnectionFailed), None);
    }

    #[test]
    fn any_request_is_sent_again_when_the_server_refused_it_unread() {
        let refused = |status: u16, code: &'static str, retry_after: Option<u64>| Outcome::Answer {
            status: StatusCode::from_u16(status).expect("valid status"),
            code: Some(code),
            retry_after: retry_after.map(Duration::from_secs),
        };
        for policy in [GET, POST, CREATE] {
            for (status, code) in [(429, "TOO_MANY_REQUESTS"), (503, "SERVER_BUSY")] {
                assert_eq!(
                    delay(policy, 1, refused(status, code, Some(1))),
                    Some(Duration::from_secs(1))
                );
                assert_eq!(
                    delay(policy, 6, refused(status, code, None)),
                    Some(Duration::from_secs(2))
                );
                assert_eq!(
                    delay(policy, BUSY_ATTEMPTS, refused(status, code, None)),
                    None
                );
            }
        }
        // A pool at capacity is a 429 too, but an answer: nothing is retried.
        assert_eq!(
            delay(CREATE, 1, refused(429, "POOL_AT_CAPACITY", Some(1))),
            None
        );
    }

    #[test]
    fn replayable_requests_wait_for_a_sandbox_that_is_not_ready() {
        let not_ready = answer(503, Some("SANDBOX_NOT_READY"));
        assert_eq!(delay(POST, 1, not_ready), Some(Duration::from_millis(250)));
        assert_eq!(delay(POST, 5, not_ready), Some(Duration::from_secs(4)));
        assert_eq!(delay(POST, NOT_READY_ATTEMPTS, not_ready), None);
        assert_eq!(delay(CREATE, 1, not_ready), None);
        assert_eq!(
            delay(POST, 1, answer(503, Some("SANDBOX_UNREACHABLE"))),
            Some(Duration::from_millis(250))
        );
        // A 502 may have reached the sandbox: a run is not sent twice, a GET is retried.
        let cut = answer(502, Some("SANDBOX_UNREACHABLE"));
        assert_eq!(delay(POST, 1, cut), None);
        assert_eq!(delay(GET, 1, cut), Some(Duration::from_millis(200)));
        // Another 503 is not "not ready": only idempotent requests retry it.
        assert_eq!(delay(POST, 1, answer(503, Some("STORE_UNAVAILABLE"))), None);
        assert_eq!(delay(POST, 1, answer(503, None)), None);
    }

    #[test]
    fn retry_after_lengthens_the_pause_within_a_cap() {
        let busy = |secs| Outcome::Answer {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: Some("SERVER_BUSY"),
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(delay(GET, 1, busy(1)), Some(Duration::from_secs(1)));
        assert_eq!(delay(GET, 1, busy(60)), Some(MAX_RETRY_AFTER));
    }
}
