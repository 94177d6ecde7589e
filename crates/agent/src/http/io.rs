//! Process I/O routes (docs/protocol/sandbox-api.md, Process I/O): stdin, captured output,
//! and the follow streams.

use std::convert::Infallible;
use std::sync::Arc;

use alcove_wire::process::{OutputEvent, OutputResponse, OutputStream};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use super::error::ApiError;
use super::sse_response;
use crate::AgentState;
use crate::process::TrackedProcess;
use crate::sse;

/// Lines encoded into one follow chunk at most.
const FOLLOW_BATCH_LINES: usize = 4096;

/// `POST /processes/{p}/stdin`: the raw body is streamed into the process's stdin → 204.
pub async fn write_stdin(
    State(state): State<AgentState>,
    Path(key): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let process = state.processes().get(&key)?;
    process.write_stdin(body.into_data_stream()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /processes/{p}/stdin/close` → 204.
pub async fn close_stdin(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.processes().get(&key)?.close_stdin().await?;
    Ok(StatusCode::NO_CONTENT)
}

fn captured(
    state: &AgentState,
    key: &str,
    filter: Option<OutputStream>,
) -> Result<Json<OutputResponse>, ApiError> {
    let process = state.processes().get(key)?;
    let lines = process.output.texts(filter);
    Ok(Json(OutputResponse {
        pid: process.pid,
        line_count: lines.len(),
        lines,
    }))
}

/// `GET /processes/{p}/stdout`.
pub async fn stdout(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<OutputResponse>, ApiError> {
    captured(&state, &key, Some(OutputStream::Stdout))
}

/// `GET /processes/{p}/stderr`.
pub async fn stderr(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<OutputResponse>, ApiError> {
    captured(&state, &key, Some(OutputStream::Stderr))
}

/// `GET /processes/{p}/output`: both streams interleaved in read order.
pub async fn output(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<OutputResponse>, ApiError> {
    captured(&state, &key, None)
}

struct Follow {
    process: Arc<TrackedProcess>,
    filter: Option<OutputStream>,
    cursor: u64,
    changes: watch::Receiver<()>,
    done: bool,
}

/// Replays the buffer, then live lines, then an `eof` event once the process exited and its
/// output is drained; keep-alive comments fill silences.
fn follow_stream(
    process: Arc<TrackedProcess>,
    filter: Option<OutputStream>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let changes = process.output.subscribe();
    let start = Follow {
        process,
        filter,
        cursor: 0,
        changes,
        done: false,
    };
    futures::stream::unfold(start, |mut follow| async move {
        if follow.done {
            return None;
        }
        loop {
            // Mark the current version seen *before* reading, so an append racing with the
            // read still wakes us below.
            follow.changes.borrow_and_update();
            let chunk =
                follow
                    .process
                    .output
                    .read_from(follow.cursor, follow.filter, FOLLOW_BATCH_LINES);
            follow.cursor = chunk.next;
            if !chunk.lines.is_empty() {
                let mut buf = Vec::with_capacity(chunk.lines.len() * 96);
                for line in chunk.lines {
                    let event = OutputEvent {
                        line: line.text,
                        timestamp: line.timestamp,
                        stream: Some(line.stream),
                    };
                    sse::push_event(&mut buf, "output", &event);
                }
                return Some((Ok(Bytes::from(buf)), follow));
            }
            if chunk.finished {
                follow.done = true;
                let eof = sse::event("eof", &serde_json::json!({}));
                return Some((Ok(eof), follow));
            }
            match tokio::time::timeout(sse::KEEPALIVE_INTERVAL, follow.changes.changed()).await {
                Ok(Ok(())) => {}
                // The buffer owns the sender and we hold the buffer: cannot happen; end cleanly.
                Ok(Err(_)) => return None,
                Err(_silent) => return Some((Ok(Bytes::from_static(sse::KEEPALIVE)), follow)),
            }
        }
    })
}

fn follow(
    state: &AgentState,
    key: &str,
    filter: Option<OutputStream>,
) -> Result<Response, ApiError> {
    let process = state.processes().get(key)?;
    Ok(sse_response(follow_stream(process, filter)))
}

/// `GET /processes/{p}/stdout/follow` (SSE).
pub async fn follow_stdout(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    follow(&state, &key, Some(OutputStream::Stdout))
}

/// `GET /processes/{p}/stderr/follow` (SSE).
pub async fn follow_stderr(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    follow(&state, &key, Some(OutputStream::Stderr))
}

/// `GET /processes/{p}/output/follow` (SSE).
pub async fn follow_output(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    follow(&state, &key, None)
}
