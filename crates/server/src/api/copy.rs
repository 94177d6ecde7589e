//! `POST {B}/sandboxes/{id}/copy?times=N` (docs/protocol/control-plane.md, Copy):
//! 200 when every copy runs, 422 with the same body when any failed.

use std::collections::HashMap;

use alcove_wire::copy::{CopiedSandbox, CopySandboxResponse};
use alcove_wire::error::ApiErrorBody;
use alcove_wire::sandbox::SandboxStatus;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::body::{WholeBody, optional_json_object};
use super::error::ApiError;
use super::lifecycle_ops::TransitionBody;
use super::openapi::{SandboxParam, tags};
use super::sandboxes::{ident, namespace};
use crate::control::{COPY_DUMP, FORWARDED_BY};
use crate::store::SandboxRecord;

/// Query of copy.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CopyQuery {
    /// How many copies to make, 1 to 16 (absent = 1).
    times: Option<u32>,
}

/// `POST {B}/sandboxes/{id}/copy?times=N`.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/copy",
    tag = tags::SANDBOXES,
    operation_id = "copySandbox",
    description = "Copies a running sandbox `times` ways: one memory dump of the source (which keeps running, frozen only while dumped) restored into new sandboxes, each with its own id, address, cgroup and copy of the writable layer, and the source's processes, memory and files. Copies inherit the source's image, resources, secrets, network policy, ports, entrypoint and timeout; they get no name. In a cluster, copies that do not fit on the source's node are restored on other nodes with room. Answers once every copy runs or failed.",
    params(SandboxParam, CopyQuery),
    request_body(content = Option<TransitionBody>, description = "None, or a JSON object whose fields are ignored."),
    responses(
        (status = 200, description = "Every copy runs.", body = CopySandboxResponse),
        (status = 400, description = "`INVALID_ARGUMENT`: `times` not an integer from 1 to 16, or a malformed body.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
        (status = 409, description = "`INVALID_STATE`: the sandbox is not running; nothing was made.", body = ApiErrorBody),
        (status = 422, description = "Some copies failed (`status: failed` with a `reason`); the others run.", body = CopySandboxResponse),
        (status = 500, description = "`OPERATION_FAILED`: the dump of the source failed; it keeps running and nothing was made.", body = ApiErrorBody),
        (status = 503, description = "`RESOURCE_EXHAUSTED`: in a cluster, no node has room for a single copy; nothing was made.", body = ApiErrorBody),
        (status = 507, description = "`RESOURCE_EXHAUSTED`: the host has no room; nothing was made.", body = ApiErrorBody),
    )
)]
pub async fn copy(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    query: Result<Query<CopyQuery>, QueryRejection>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "invalid times: {} (an integer from 1 to {})",
            e.body_text(),
            crate::control::MAX_COPIES
        ))
    })?;
    optional_json_object::<TransitionBody>(&body)?;
    let times = q.times.unwrap_or(1);
    let sandboxes = &state.control.sandboxes;
    // The source's node asking this one to restore copies from its dump.
    let dump = headers
        .get(COPY_DUMP)
        .filter(|_| headers.contains_key(FORWARDED_BY))
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let outcome = match dump {
        Some(dump) => {
            sandboxes
                .copy_from_dump(namespace(&params), ident(&params)?, &dump, times)
                .await?
        }
        None => {
            // Copies placed on other nodes are asked for with the caller's key.
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            sandboxes
                .copy(namespace(&params), ident(&params)?, times, auth)
                .await?
        }
    };
    let code = if outcome.all_running() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let body = CopySandboxResponse {
        source_sandbox_id: outcome.source_id.to_string(),
        sandboxes: outcome.copies.iter().map(|c| copied(&state, c)).collect(),
    };
    Ok((code, Json(body)).into_response())
}

/// One copy's wire form, its failure free of host details.
fn copied(state: &AppState, record: &SandboxRecord) -> CopiedSandbox {
    let info = super::public_info(state, record);
    let running = record.status == SandboxStatus::Running;
    CopiedSandbox {
        sandbox_id: info.id,
        status: info.status,
        reason: (!running).then(|| info.error_details.clone()).flatten(),
        sandbox_url: info.sandbox_url,
        routing_hint: None,
        ingress_endpoint: info.ingress_endpoint,
        name: info.name,
        termination_reason: info.termination_reason,
        error_details: info.error_details,
    }
}
