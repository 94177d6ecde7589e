//! Process I/O routes (docs/protocol/sandbox-api.md, Process I/O): stdin, captured output,
//! and the follow streams.

use std::convert::Infallible;
use std::sync::Arc;

use alcove_wire::process::{EofEvent, OutputResponse, OutputStream};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use super::error::{AgentError, ApiError};
use super::openapi::{FollowEvents, LastEventIdHeader, ProcessParam, tags};
use super::sse_response;
use crate::AgentState;
use crate::output::LineRun;
use crate::output_events;
use crate::process::TrackedProcess;
use crate::sse;

/// Lines encoded into one follow chunk at most.
const FOLLOW_BATCH_LINES: usize = 4096;

/// The SSE header a client reconnecting sends back with the last event id it took.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// `POST /processes/{p}/stdin`: the raw body is streamed into the process's stdin → 204.
#[utoipa::path(
    post,
    path = "/api/v1/processes/{p}/stdin",
    tag = tags::PROCESS_IO,
    operation_id = "writeStdin",
    params(ProcessParam),
    request_body(content_type = "application/octet-stream", description = "Raw bytes, written in order as they arrive (any `Content-Type`)."),
    responses(
        (status = 204, description = "Written."),
        (status = 400, description = "`STDIN_NOT_WRITABLE` (not piped, closed, or no longer read), or `INVALID_ARGUMENT` (the body broke off).", body = AgentError),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
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
#[utoipa::path(
    post,
    path = "/api/v1/processes/{p}/stdin/close",
    tag = tags::PROCESS_IO,
    operation_id = "closeStdin",
    params(ProcessParam),
    responses(
        (status = 204, description = "Closed: the process reads end of file."),
        (status = 400, description = "`STDIN_NOT_WRITABLE`: already closed or not piped.", body = AgentError),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
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
    let (lines, continued) = process.output.texts(filter);
    Ok(Json(OutputResponse {
        pid: process.pid,
        line_count: lines.len(),
        lines,
        continued,
    }))
}

/// `GET /processes/{p}/stdout`.
#[utoipa::path(
    get,
    path = "/api/v1/processes/{p}/stdout",
    tag = tags::PROCESS_IO,
    operation_id = "getStdout",
    params(ProcessParam),
    responses(
        (status = 200, description = "Captured stdout lines still buffered.", body = OutputResponse),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
pub async fn stdout(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<OutputResponse>, ApiError> {
    captured(&state, &key, Some(OutputStream::Stdout))
}

/// `GET /processes/{p}/stderr`.
#[utoipa::path(
    get,
    path = "/api/v1/processes/{p}/stderr",
    tag = tags::PROCESS_IO,
    operation_id = "getStderr",
    params(ProcessParam),
    responses(
        (status = 200, description = "Captured stderr lines still buffered.", body = OutputResponse),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
pub async fn stderr(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<OutputResponse>, ApiError> {
    captured(&state, &key, Some(OutputStream::Stderr))
}

/// `GET /processes/{p}/output`: both streams interleaved in read order.
#[utoipa::path(
    get,
    path = "/api/v1/processes/{p}/output",
    tag = tags::PROCESS_IO,
    operation_id = "getOutput",
    params(ProcessParam),
    responses(
        (status = 200, description = "Captured lines of both streams, in read order.", body = OutputResponse),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
pub async fn output(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<OutputResponse>, ApiError> {
    captured(&state, &key, None)
}

/// Query of the follow routes.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowQuery {
    /// Alcove's own: `true` sends the lines of one stream read at the same time as one
    /// `output_batch` event `{"stream", "timestamp", "lines"}` instead of one `output` event
    /// each (Alcove's SDKs ask for it; the official ones do not). Each batch then carries an
    /// SSE `id`: a follow opened again with it as `Last-Event-ID` starts after that batch; and
    /// a batch after lines the buffer let go before this follower read them says how many
    /// (`dropped`).
    #[serde(default)]
    batch: bool,
}

struct Follow {
    process: Arc<TrackedProcess>,
    filter: Option<OutputStream>,
    batch: bool,
    cursor: u64,
    /// Lines the buffer let go before this follower read them, not yet told (with the next batch).
    dropped: u64,
    changes: watch::Receiver<()>,
    done: bool,
}

/// Replays the buffer, then live lines, then an `eof` event once the process exited and its
/// output is drained; keep-alive comments fill silences.
fn follow_stream(
    process: Arc<TrackedProcess>,
    filter: Option<OutputStream>,
    batch: bool,
    cursor: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let changes = process.output.subscribe();
    let start = Follow {
        process,
        filter,
        batch,
        cursor,
        dropped: 0,
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
            follow.dropped += chunk.dropped;
            if !chunk.is_empty() {
                let lines = chunk.runs.iter().map(LineRun::len).sum();
                let text = chunk.runs.iter().map(LineRun::text_len).sum();
                let mut buf =
                    Vec::with_capacity(output_events::capacity_for(lines, text, follow.batch));
                output_events::push_runs(&mut buf, &chunk.runs, follow.batch, follow.dropped);
                follow.dropped = 0;
                return Some((Ok(Bytes::from(buf)), follow));
            }
            if chunk.finished {
                follow.done = true;
                let eof = sse::event("eof", &EofEvent {});
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
    query: Result<Query<FollowQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::invalid(err.body_text()))?;
    let cursor = last_event_id(headers)?;
    let process = state.processes().get(key)?;
    Ok(sse_response(follow_stream(
        process,
        filter,
        query.batch,
        cursor,
    )))
}

/// Where a follow starts: the `Last-Event-ID` header (the `id` of the last batch a client
/// took: the line after it), or the oldest line kept.
fn last_event_id(headers: &HeaderMap) -> Result<u64, ApiError> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "Last-Event-ID must be the id of an output_batch event of a follow (a line number)",
            )
        })
}

/// `GET /processes/{p}/stdout/follow` (SSE).
#[utoipa::path(
    get,
    path = "/api/v1/processes/{p}/stdout/follow",
    tag = tags::PROCESS_IO,
    operation_id = "followStdout",
    params(ProcessParam, FollowQuery, LastEventIdHeader),
    responses(
        (status = 200, response = FollowEvents),
        (status = 400, description = "`INVALID_ARGUMENT`: a bad query or `Last-Event-ID`.", body = AgentError),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
pub async fn follow_stdout(
    State(state): State<AgentState>,
    Path(key): Path<String>,
    query: Result<Query<FollowQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    follow(&state, &key, Some(OutputStream::Stdout), query, &headers)
}

/// `GET /processes/{p}/stderr/follow` (SSE).
#[utoipa::path(
    get,
    path = "/api/v1/processes/{p}/stderr/follow",
    tag = tags::PROCESS_IO,
    operation_id = "followStderr",
    params(ProcessParam, FollowQuery, LastEventIdHeader),
    responses(
        (status = 200, response = FollowEvents),
        (status = 400, description = "`INVALID_ARGUMENT`: a bad query or `Last-Event-ID`.", body = AgentError),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
pub async fn follow_stderr(
    State(state): State<AgentState>,
    Path(key): Path<String>,
    query: Result<Query<FollowQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    follow(&state, &key, Some(OutputStream::Stderr), query, &headers)
}

/// `GET /processes/{p}/output/follow` (SSE).
#[utoipa::path(
    get,
    path = "/api/v1/processes/{p}/output/follow",
    tag = tags::PROCESS_IO,
    operation_id = "followOutput",
    params(ProcessParam, FollowQuery, LastEventIdHeader),
    responses(
        (status = 200, response = FollowEvents),
        (status = 400, description = "`INVALID_ARGUMENT`: a bad query or `Last-Event-ID`.", body = AgentError),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
pub async fn follow_output(
    State(state): State<AgentState>,
    Path(key): Path<String>,
    query: Result<Query<FollowQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    follow(&state, &key, None, query, &headers)
}
