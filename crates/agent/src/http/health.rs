//! `GET /api/v1/health` and `GET /api/v1/info` (docs/protocol/sandbox-api.md, Health and
//! info). Both answer from memory at once (the SDKs give them 3 s).

use std::sync::atomic::Ordering;

use alcove_wire::health::{AgentInfo, HealthResponse};
use axum::Json;
use axum::extract::State;

use super::openapi::tags;
use crate::AgentState;

/// Always healthy while the agent answers.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = tags::AGENT,
    operation_id = "health",
    responses((status = 200, description = "The agent answers.", body = HealthResponse))
)]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse { healthy: true })
}

/// Version, uptime and process counts (runs in progress count as running and tracked; so
/// do PTY sessions, as running while their command runs).
#[utoipa::path(
    get,
    path = "/api/v1/info",
    tag = tags::AGENT,
    operation_id = "info",
    responses((status = 200, description = "The agent's version, uptime and process counts.", body = AgentInfo))
)]
pub async fn info(State(state): State<AgentState>) -> Json<AgentInfo> {
    let (running, tracked) = state.processes().counts();
    let (live_ptys, ptys) = state.ptys().counts();
    let runs = state.active_runs().load(Ordering::Acquire);
    Json(AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: state.uptime().as_secs(),
        running_processes: running + runs + live_ptys,
        total_processes: tracked + runs + ptys,
    })
}
