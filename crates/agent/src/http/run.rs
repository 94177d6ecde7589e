//! `POST /api/v1/processes/run` (docs/protocol/sandbox-api.md, Run a command).

use axum::extract::State;
use axum::response::Response;

use alcove_wire::process::RunRequest;

use super::body::WholeBody;
use super::error::{AgentError, ApiError};
use super::openapi::{RunEvents, tags};
use super::{parse_json, sse_response};
use crate::AgentState;
use crate::process::run;
use crate::sse;

/// Starts the command, then streams `started`, output lines and `exit` as SSE. A command that
/// cannot start is a JSON error before any streaming.
#[utoipa::path(
    post,
    path = "/api/v1/processes/run",
    tag = tags::PROCESSES,
    operation_id = "runProcess",
    request_body(content = RunRequest, description = "The command; read whatever the `Content-Type`."),
    responses(
        (status = 200, response = RunEvents),
        (status = 400, description = "`INVALID_ARGUMENT` (body), `COMMAND_NOT_FOUND`, `NOT_EXECUTABLE`, `USER_NOT_FOUND` or `INVALID_WORKING_DIR`.", body = AgentError),
        (status = 403, description = "`PERMISSION_DENIED`: the agent cannot switch to that user.", body = AgentError),
        (status = 500, description = "`INTERNAL`: the command could not be spawned.", body = AgentError),
        (status = 503, description = "`PROCESS_LIMIT`: the sandbox's task limit is full.", body = AgentError),
    )
)]
pub async fn run(
    State(state): State<AgentState>,
    WholeBody(body): WholeBody,
) -> Result<Response, ApiError> {
    let req = parse_json(&body)?;
    let rx = run::start(state.launcher(), &req, state.active_runs())?;
    Ok(sse_response(sse::channel_stream(rx)))
}
