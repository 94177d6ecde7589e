//! `POST /api/v1/processes/run` (docs/protocol/sandbox-api.md, Run a command).

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;

use super::error::ApiError;
use super::{parse_json, sse_response};
use crate::AgentState;
use crate::process::run;
use crate::sse;

/// Starts the command, then streams `started`, output lines and `exit` as SSE. A command that
/// cannot start is a JSON error before any streaming.
pub async fn run(State(state): State<AgentState>, body: Bytes) -> Result<Response, ApiError> {
    let req = parse_json(&body)?;
    let rx = run::start(state.launcher(), &req, state.active_runs())?;
    Ok(sse_response(sse::channel_stream(rx)))
}
