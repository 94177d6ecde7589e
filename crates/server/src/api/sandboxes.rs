//! Routes of `{B}/sandboxes` (docs/protocol/control-plane.md: Create a sandbox, Get
//! and list, Update, Delete).

use std::collections::HashMap;
use std::time::Duration;

use alcove_wire::sandbox::{
    CreateSandboxRequest, CreateSandboxResponse, ListSandboxesResponse, SandboxInfo, SandboxStatus,
    UpdateSandboxRequest,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::body::json_object;
use super::error::ApiError;

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
pub async fn create(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateSandboxRequest = json_object(&headers, &body)?;
    let wait = req.wait != Some(false);
    let outcome = state
        .control
        .create(namespace(&params), req, wait, create_budget(&headers))
        .await?;
    let r = &outcome.record;
    let status = if outcome.still_pending {
        SandboxStatus::Pending
    } else {
        r.status
    };
    let body = CreateSandboxResponse {
        sandbox_id: r.id.clone(),
        status,
        sandbox_url: (status == SandboxStatus::Running)
            .then(|| state.control.sandbox_url().to_string()),
        name: r.name.clone(),
        pending_reason: (status == SandboxStatus::Pending).then(|| "scheduling".to_string()),
        termination_reason: r.termination_reason.clone(),
        error_details: r
            .error_details
            .as_deref()
            .map(|d| crate::redact::for_client(d).into_owned()),
    };
    let code = if wait {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(body)).into_response())
}

/// `GET {B}/sandboxes`.
pub async fn list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ListSandboxesResponse>, ApiError> {
    let records = state.control.list(namespace(&params)).await?;
    Ok(Json(ListSandboxesResponse {
        sandboxes: records
            .iter()
            .map(|r| super::public_info(&state, r))
            .collect(),
    }))
}

/// `GET {B}/sandboxes/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let record = state
        .control
        .get(namespace(&params), ident(&params)?)
        .await?;
    Ok(Json(super::public_info(&state, &record)))
}

/// `PATCH {B}/sandboxes/{id}`.
pub async fn update(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SandboxInfo>, ApiError> {
    let req: UpdateSandboxRequest = json_object(&headers, &body)?;
    let record = state
        .control
        .update(namespace(&params), ident(&params)?, req)
        .await?;
    Ok(Json(super::public_info(&state, &record)))
}

/// `DELETE {B}/sandboxes/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SandboxInfo>, ApiError> {
    let record = state
        .control
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
