//! `POST {B}/sandboxes/{id}/suspend` and `/resume` (docs/protocol/control-plane.md,
//! Suspend and resume): 200 when the target state is reached within `wait_ms`, 202
//! when accepted but not yet.

use std::collections::HashMap;
use std::time::Duration;

use alcove_wire::sandbox::SandboxInfo;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use alcove_wire::error::ApiErrorBody;

use super::AppState;
use super::body::{WholeBody, optional_json_object};
use super::error::ApiError;
use super::openapi::{SandboxParam, tags};
use super::sandboxes::{ident, namespace};

/// Longest wait a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// The wait of `wait_ms`, at most [`MAX_WAIT`] (suspend, resume and snapshots).
pub(super) fn bounded_wait(wait_ms: u64) -> Duration {
    Duration::from_millis(wait_ms).min(MAX_WAIT)
}

/// Query of suspend and resume.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Milliseconds to wait for the target state (absent = answer at once; at most 300000).
    wait_ms: Option<u64>,
}

/// Body of suspend and resume: the SDKs send none; a JSON object (whose fields
/// are ignored) is accepted too, anything else is a 400.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(crate) struct TransitionBody {}

/// The wait asked for, after checking the query and the body.
fn wait_of(
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: &Bytes,
) -> Result<Option<Duration>, ApiError> {
    let Query(q) = query?;
    optional_json_object::<TransitionBody>(body)?;
    Ok(q.wait_ms.map(bounded_wait))
}

fn answer(state: &AppState, record: &crate::store::SandboxRecord, reached: bool) -> Response {
    let code = if reached {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let info: SandboxInfo = super::public_info(state, record);
    (code, Json(info)).into_response()
}

/// `POST {B}/sandboxes/{id}/suspend[?wait_ms=N]`.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/suspend",
    tag = tags::SANDBOXES,
    operation_id = "suspendSandbox",
    description = "Dumps the sandbox's processes to disk and stops it (named sandboxes only).",
    params(SandboxParam, WaitQuery),
    request_body(content = Option<TransitionBody>, description = "None, or a JSON object whose fields are ignored."),
    responses(
        (status = 200, description = "`suspended` within `wait_ms` (or already).", body = SandboxInfo),
        (status = 202, description = "Accepted; not `suspended` yet.", body = SandboxInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: an ephemeral sandbox, or a malformed query or body.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
        (status = 409, description = "`INVALID_STATE`: not in a status that can be suspended.", body = ApiErrorBody),
        (status = 500, description = "`OPERATION_FAILED`: the suspend ran and failed; the sandbox is unchanged.", body = ApiErrorBody),
    )
)]
pub async fn suspend(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    WholeBody(body): WholeBody,
) -> Result<Response, ApiError> {
    let wait = wait_of(query, &body)?;
    let (record, reached) = state
        .control
        .suspension
        .suspend(Some(namespace(&params)), ident(&params)?, wait)
        .await?;
    Ok(answer(&state, &record, reached))
}

/// `POST {B}/sandboxes/{id}/resume[?wait_ms=N]`.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/resume",
    tag = tags::SANDBOXES,
    operation_id = "resumeSandbox",
    description = "Restores a suspended sandbox under its id, name and address; the status stays `suspended` while it resumes.",
    params(SandboxParam, WaitQuery),
    request_body(content = Option<TransitionBody>, description = "None, or a JSON object whose fields are ignored."),
    responses(
        (status = 200, description = "`running` within `wait_ms` (or already).", body = SandboxInfo),
        (status = 202, description = "Accepted; not `running` yet.", body = SandboxInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed query or body.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
        (status = 409, description = "`INVALID_STATE`: not in a status that can be resumed.", body = ApiErrorBody),
        (status = 500, description = "`OPERATION_FAILED`: the resume ran and failed; the sandbox is unchanged.", body = ApiErrorBody),
        (status = 503, description = "`RESOURCE_EXHAUSTED`: with several nodes, none has CPUs and memory left for it (it stays suspended); `NODE_OFFLINE`: its node is down and it cannot move yet.", body = ApiErrorBody),
        (status = 507, description = "`RESOURCE_EXHAUSTED`: the host has no room.", body = ApiErrorBody),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    WholeBody(body): WholeBody,
) -> Result<Response, ApiError> {
    let wait = wait_of(query, &body)?;
    let (record, reached) = state
        .control
        .suspension
        .resume(Some(namespace(&params)), ident(&params)?, wait)
        .await?;
    Ok(answer(&state, &record, reached))
}
