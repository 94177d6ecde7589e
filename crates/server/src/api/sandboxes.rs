//! Routes of `{B}/sandboxes` (docs/protocol/control-plane.md: Create a sandbox, Get
//! and list, Update, Delete).

use std::collections::HashMap;
use std::time::Duration;

use alcove_wire::sandbox::{
    CreateSandboxRequest, CreateSandboxResponse, ListSandboxesResponse, SandboxInfo, SandboxStatus,
    UpdateSandboxRequest,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use alcove_wire::error::ApiErrorBody;

use super::AppState;
use super::body::{WholeBody, json_object};
use super::error::ApiError;
use super::openapi::{SandboxParam, tags};

/// Namespace of a request: the `{ns}` path segment, or `default` on flat routes.
pub fn namespace(params: &HashMap<String, String>) -> &str {
    params.get("ns").map(String::as_str).unwrap_or("default")
}

pub(super) fn ident(params: &HashMap<String, String>) -> Result<&str, ApiError> {
    params
        .get("id")
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request("missing sandbox id in path"))
}

fn header_ms(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// How long a blocking create may wait: the client's timeout minus its grace
/// (docs/protocol/control-plane.md, Create a sandbox); without headers, 300 s
/// minus 5 s.
pub fn create_budget(headers: &HeaderMap) -> Duration {
    let timeout = header_ms(headers, "x-tensorlake-request-timeout-ms").unwrap_or(300_000);
    let grace = header_ms(headers, "x-tensorlake-request-timeout-grace-ms")
        .unwrap_or_else(|| 5_000.min(timeout / 4));
    Duration::from_millis(timeout.saturating_sub(grace).max(100))
}

/// `POST {B}/sandboxes`.
#[utoipa::path(
    post,
    path = "/sandboxes",
    tag = tags::SANDBOXES,
    operation_id = "createSandbox",
    description = "Creates a sandbox. Blocking by default: waits until it runs, up to the client's `X-Tensorlake-Request-Timeout-Ms` minus `X-Tensorlake-Request-Timeout-Grace-Ms` (default 300 s minus 5 s), then answers `pending`; with `wait: false` answers 202 at once.",
    params(
        ("X-Tensorlake-Request-Timeout-Ms" = Option<u64>, Header, description = "The client's timeout for a blocking create, in milliseconds."),
        ("X-Tensorlake-Request-Timeout-Grace-Ms" = Option<u64>, Header, description = "How much earlier than its timeout the client wants the answer, in milliseconds."),
    ),
    request_body(content = CreateSandboxRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Blocking create: running, failed, or still `pending` when the wait ran out.", body = CreateSandboxResponse),
        (status = 202, description = "`wait: false`: accepted, `pending`.", body = CreateSandboxResponse),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body, a field out of range, an unknown secret, GPUs.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such image, snapshot or volume (`file_systems`).", body = ApiErrorBody),
        (status = 409, description = "`NAME_TAKEN`: a live sandbox holds the name. `FILE_SYSTEM_IN_USE`: a volume of `file_systems` is mounted elsewhere in a way that excludes this mount.", body = ApiErrorBody),
        (status = 507, description = "`RESOURCE_EXHAUSTED`: the host has no room; nothing was created.", body = ApiErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Response, ApiError> {
    let req: CreateSandboxRequest = json_object(&headers, &body)?;
    let wait = req.wait != Some(false);
    let outcome = state
        .control
        .sandboxes
        .create(namespace(&params), req, wait, create_budget(&headers))
        .await?;
    let body = create_response(&state, &outcome);
    let code = if wait {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(body)).into_response())
}

/// The answer of a create or a claim: the sandbox as its start left it (`pending` while
/// it still starts).
pub(super) fn create_response(
    state: &AppState,
    outcome: &crate::control::CreateOutcome,
) -> CreateSandboxResponse {
    let r = &outcome.record;
    let status = if outcome.still_pending {
        SandboxStatus::Pending
    } else {
        r.status
    };
    let info = (status == SandboxStatus::Running).then(|| super::public_info(state, r));
    CreateSandboxResponse {
        sandbox_id: r.id.to_string(),
        status,
        sandbox_url: info
            .as_ref()
            .map(|_| state.control.sandbox_url().to_string()),
        name: r.name.clone(),
        ingress_endpoint: info.as_ref().and_then(|i| i.ingress_endpoint.clone()),
        pending_reason: (status == SandboxStatus::Pending).then(|| "scheduling".to_string()),
        termination_reason: r.termination_reason.clone(),
        error_details: r
            .error_details
            .as_deref()
            .map(|d| crate::redact::for_client(d).into_owned()),
        claim_configuration_applied: None,
        sandbox: info.map(Box::new),
    }
}

/// `GET {B}/sandboxes`.
#[utoipa::path(
    get,
    path = "/sandboxes",
    tag = tags::SANDBOXES,
    operation_id = "listSandboxes",
    description = "The live sandboxes of the namespace (every status but `terminated`, `failed` and `timeout`), oldest first. Ended ones are in `GET /archived-sandboxes`; `GET /sandboxes/{id}` still answers them by id.",
    responses((status = 200, description = "The namespace's live sandboxes, oldest first.", body = ListSandboxesResponse))
)]
pub async fn list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ListSandboxesResponse>, ApiError> {
    let records = state.control.sandboxes.list(namespace(&params)).await?;
    Ok(Json(ListSandboxesResponse {
        sandboxes: records
            .iter()
            .map(|r| super::public_info(&state, r))
            .collect(),
    }))
}

/// `GET {B}/sandboxes/{id}`.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}",
    tag = tags::SANDBOXES,
    operation_id = "getSandbox",
    params(SandboxParam),
    responses(
        (status = 200, description = "The sandbox.", body = SandboxInfo),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let record = state
        .control
        .sandboxes
        .get(namespace(&params), ident(&params)?)
        .await?;
    Ok(Json(super::public_info(&state, &record)))
}

/// `PATCH {B}/sandboxes/{id}`.
#[utoipa::path(
    patch,
    path = "/sandboxes/{id}",
    tag = tags::SANDBOXES,
    operation_id = "updateSandbox",
    description = "Changes `name`, `exposed_ports`, `allow_unauthenticated_access`, `auto_resume` or `network` (applied at once to a running sandbox); omitted fields stay. `resources`, sent alone, resizes the sandbox live (CPU and memory through its cgroups, the disk grown online; a suspended one gets them at resume) as the next `resource_resize` generation, applied before the answer.",
    params(SandboxParam),
    request_body(content = UpdateSandboxRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated sandbox.", body = SandboxInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body, a field out of range, a shrinking `disk_mb`, or `resources` with other fields.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
        (status = 409, description = "`NAME_TAKEN`, or `INVALID_STATE`: the sandbox has ended, is not running or suspended for a resize, or uses more memory than `resources.memory_mb` (the message has the figures).", body = ApiErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<SandboxInfo>, ApiError> {
    let req: UpdateSandboxRequest = json_object(&headers, &body)?;
    let record = state
        .control
        .sandboxes
        .update(namespace(&params), ident(&params)?, req)
        .await?;
    Ok(Json(super::public_info(&state, &record)))
}

/// `DELETE {B}/sandboxes/{id}`.
#[utoipa::path(
    delete,
    path = "/sandboxes/{id}",
    tag = tags::SANDBOXES,
    operation_id = "deleteSandbox",
    description = "Terminates the sandbox (idempotent: an ended one is answered as it is). A pending one ends `cancelled`; a suspended one is deleted with its dump.",
    params(SandboxParam),
    responses(
        (status = 200, description = "The sandbox, terminated.", body = SandboxInfo),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
        (status = 409, description = "`INVALID_STATE`: the sandbox cannot be terminated in its current status.", body = ApiErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let record = state
        .control
        .sandboxes
        .delete(
            Some(namespace(&params)),
            ident(&params)?,
            crate::control::state::TerminationReason::Deleted,
        )
        .await?;
    Ok(Json(super::public_info(&state, &record)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_timeout_minus_grace() {
        let mut h = HeaderMap::new();
        assert_eq!(create_budget(&h), Duration::from_millis(295_000));
        h.insert(
            "x-tensorlake-request-timeout-ms",
            "10000".parse().expect("hv"),
        );
        assert_eq!(create_budget(&h), Duration::from_millis(7_500));
        h.insert(
            "x-tensorlake-request-timeout-grace-ms",
            "5000".parse().expect("hv"),
        );
        assert_eq!(create_budget(&h), Duration::from_millis(5_000));
        h.insert(
            "x-tensorlake-request-timeout-ms",
            "bogus".parse().expect("hv"),
        );
        assert_eq!(create_budget(&h), Duration::from_millis(295_000));
    }
}
