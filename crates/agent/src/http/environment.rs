//! `PUT /api/v1/environment` (docs/protocol/sandbox-api.md, Environment): variables
//! every later process inherits. A warm pool's claim binds the claimer's environment
//! and secrets to an already started sandbox this way.

use alcove_wire::process::SetEnvironmentRequest;
use axum::extract::State;
use axum::http::StatusCode;

use super::body::WholeBody;
use super::error::{AgentError, ApiError};
use super::openapi::tags;
use super::parse_json;
use crate::AgentState;

/// Adds variables to what every later process inherits (processes already started keep
/// theirs; a start's own `env` still wins).
#[utoipa::path(
    put,
    path = "/api/v1/environment",
    tag = tags::PROCESSES,
    operation_id = "setEnvironment",
    request_body(content = SetEnvironmentRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Later processes inherit the variables."),
        (status = 400, description = "`INVALID_ARGUMENT`: an empty name, a name with `=` or NUL, an `ALCOVE_AGENT_*` name, or a value with NUL; nothing was changed.", body = AgentError),
    )
)]
pub async fn set(
    State(state): State<AgentState>,
    WholeBody(body): WholeBody,
) -> Result<StatusCode, ApiError> {
    let req: SetEnvironmentRequest = parse_json(&body)?;
    state
        .launcher()
        .set_env(&req.env)
        .map_err(ApiError::invalid)?;
    Ok(StatusCode::NO_CONTENT)
}
