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

use super::AppState;
use super::body::optional_json_object;
use super::error::ApiError;
use super::sandboxes::{ident, namespace};

/// Longest wait a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// Query of suspend and resume.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// Milliseconds to wait for the target state (absent = answer at once).
    wait_ms: Option<u64>,
}

/// Body of suspend and resume: the SDKs send none; a JSON object (whose fields
/// are ignored) is accepted too, anything else is a 400.
#[derive(Debug, Default, Deserialize)]
struct TransitionBody {}

/// The wait asked for, after checking the query and the body.
fn wait_of(
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: &Bytes,
) -> Result<Option<Duration>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    optional_json_object::<TransitionBody>(body)?;
    Ok(q.wait_ms.map(|ms| Duration::from_millis(ms).min(MAX_WAIT)))
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
pub async fn suspend(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let wait = wait_of(query, &body)?;
    let (record, reached) = state
        .control
        .suspend(Some(namespace(&params)), ident(&params)?, wait)
        .await?;
    Ok(answer(&state, &record, reached))
}

/// `POST {B}/sandboxes/{id}/resume[?wait_ms=N]`.
pub async fn resume(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let wait = wait_of(query, &body)?;
    let (record, reached) = state
        .control
        .resume(Some(namespace(&params)), ident(&params)?, wait)
        .await?;
    Ok(answer(&state, &record, reached))
}
