//! `GET /metrics` (Prometheus/OpenMetrics text), `GET {B}/sandboxes/{id}/metrics`
//! (one sandbox's use against its limits, JSON), and the layer that counts
//! answered requests by route template.

use std::collections::HashMap;

use alcove_wire::error::ApiErrorBody;
use alcove_wire::metrics::SandboxMetrics;
use alcove_wire::time::now_millis;
use axum::Json;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::openapi::{SandboxParam, tags};
use super::sandboxes::{ident, namespace};

/// The content type of OpenMetrics text, which Prometheus scrapes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = tags::SERVER,
    operation_id = "metrics",
    description = "Metrics in the OpenMetrics text format: API requests by route and status, durations of create, restore, suspend, resume and snapshot, sandboxes by status, the host's capacity, and each running sandbox's CPU, memory, tasks and disk (from its cgroups and layer). Needs the API key when keys are configured.",
    responses(
        (status = 200, description = "The metrics.", content_type = "application/openmetrics-text", body = String),
    )
)]
pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let data = state.control.scrape_data().await?;
    let text = crate::metrics::render(state.control.metrics(), &data).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            alcove_wire::error::ErrorCode::Internal,
            "the metrics could not be encoded",
        )
        .with_detail(e.to_string())
    })?;
    Ok(([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response())
}

/// `GET {B}/sandboxes/{id}/metrics`.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/metrics",
    tag = tags::SANDBOXES,
    operation_id = "sandboxMetrics",
    description = "What a running sandbox uses now against its limits: CPU time, memory, tasks and disk, read from its cgroups and its writable layer.",
    params(SandboxParam),
    responses(
        (status = 200, description = "The figures.", body = SandboxMetrics),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
        (status = 409, description = "`INVALID_STATE`: the sandbox is not running (suspended, pending or ended).", body = ApiErrorBody),
    )
)]
pub async fn sandbox_metrics(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SandboxMetrics>, ApiError> {
    let (record, usage) = state
        .control
        .usage(namespace(&params), ident(&params)?)
        .await?;
    Ok(Json(SandboxMetrics {
        sandbox_id: record.id.to_string(),
        timestamp: now_millis(),
        cpu_seconds: usage.cpu_seconds,
        cpus: record.cpus,
        memory_bytes: usage.memory_bytes,
        memory_limit_bytes: usage.memory_limit_bytes,
        pids: usage.pids,
        pids_limit: usage.pids_limit,
        disk_used_bytes: usage.disk_used_bytes,
        disk_limit_bytes: usage.disk_limit_bytes,
    }))
}

/// Counts each answered request under its route template (never the raw path,
/// which would make a series per sandbox id).
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().as_str().to_string();
    let response = next.run(req).await;
    state
        .control
        .metrics()
        .request(crate::metrics::RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        });
    response
}
