//! Following a running sandbox's journal: one task per running sandbox reads the agent's
//! `GET /api/v1/journal?after=N` stream and appends each batch to the sandbox's log files.
//!
//! When the stream breaks and reconnecting keeps failing, the sandbox may have crashed (its
//! agent is its PID 1: when the agent dies, everything in the sandbox stops). Every third
//! failure in a row reports the sandbox as a crash suspect; the control plane checks its
//! container and, if it is gone, marks the sandbox failed. A follower is stopped (aborted)
//! before the server itself stops a sandbox, so planned stops are never suspects.

use std::sync::Arc;
use std::time::Duration;

use alcove_runtime::SandboxId;
use alcove_wire::journal::JournalBatch;
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;

use super::Logs;
use crate::control::{AgentClient, Upstream};

/// Failures in a row after which the sandbox is reported as a crash suspect.
const SUSPECT_AFTER: u32 = 3;

/// Longest wait between reconnects.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// Why one read of the stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// The agent could not be reached or answered an error.
    Unreachable(String),
    /// The stream had worked and then broke or ended.
    Broken(String),
}

/// Follows the journal of sandbox `id` at `upstream` until aborted.
pub(super) async fn follow(
    logs: Arc<Logs>,
    agents: AgentClient,
    id: SandboxId,
    upstream: Upstream,
) {
    let mut failures = 0u32;
    loop {
        let after = logs.last_agent_seq(&id).await;
        match read_stream(&logs, &agents, &id, upstream, after).await {
            StreamEnd::Broken(why) => {
                tracing::debug!(sandbox_id = %id, reason = %why, "journal stream ended; reconnecting");
                failures = 1;
            }
            StreamEnd::Unreachable(why) => {
                failures += 1;
                tracing::debug!(sandbox_id = %id, reason = %why, failures, "journal unreachable");
                if failures.is_multiple_of(SUSPECT_AFTER) {
                    logs.report_suspect(&id);
                }
            }
        }
        let wait = Duration::from_millis(100 * u64::from(failures.min(50)));
        tokio::time::sleep(wait.min(MAX_RETRY_WAIT)).await;
    }
}

async fn read_stream(
    logs: &Logs,
    agents: &AgentClient,
    id: &SandboxId,
    upstream: Upstream,
    after: u64,
) -> StreamEnd {
    let path = format!("/api/v1/journal?after={after}");
    let req = match upstream
        .agent_request(http::Method::GET, &path)
        .header(http::header::ACCEPT, "text/event-stream")
        .body(crate::control::AgentBody::empty())
    {
        Ok(req) => req,
        Err(e) => return StreamEnd::Unreachable(e.to_string()),
    };
    let resp = match tokio::time::timeout(Duration::from_secs(10), agents.send(req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return StreamEnd::Unreachable(e.to_string()),
        Err(_) => return StreamEnd::Unreachable("no answer within 10 s".into()),
    };
    if !resp.status().is_success() {
        return StreamEnd::Unreachable(format!("agent answered {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut pending = BytesMut::new();
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return StreamEnd::Broken(e.to_string()),
            None => return StreamEnd::Broken("the agent closed the stream".into()),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut records = Vec::new();
        while let Some(end) = find_event_end(&pending) {
            let event = pending.split_to(end);
            pending.advance(2);
            for line in event[..].split(|&b| b == b'\n') {
                let Some(json) = line.strip_prefix(b"data: ") else {
                    continue;
                };
                match serde_json::from_slice::<JournalBatch>(json) {
                    Ok(batch) => {
                        if batch.missed > 0 {
                            records.push(super::server_record(
                                alcove_wire::journal::LogLevel::Warn,
                                format!(
                                    "{} log records were lost: the sandbox wrote them faster than they were collected",
                                    batch.missed
                                ),
                            ));
                        }
                        records.extend(batch.records);
                    }
                    Err(e) => {
                        return StreamEnd::Broken(format!("malformed journal event: {e}"));
                    }
                }
            }
        }
        if !records.is_empty() {
            logs.append(id, records).await;
        }
        // An event larger than any the agent sends: a confused or hostile peer.
        if pending.len() > 64 << 20 {
            return StreamEnd::Broken("journal event too large".into());
        }
    }
}

/// End of the first complete SSE event (the index of its blank-line separator).
fn find_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_blank_lines() {
        assert_eq!(find_event_end(b"data: {}\n\ndata"), Some(8));
        assert_eq!(find_event_end(b"data: {}\n"), None);
    }
}
