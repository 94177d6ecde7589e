//! Process management routes (docs/protocol/sandbox-api.md, Processes).

use alcove_wire::process::{
    ProcessInfo, ProcessList, SignalRequest, SignalResponse, StartProcessRequest,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;

use super::error::ApiError;
use super::parse_json;
use crate::AgentState;
use crate::process::ProcessError;

/// `POST /processes` → 201 `ProcessInfo`.
pub async fn start(
    State(state): State<AgentState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ProcessInfo>), ApiError> {
    let req: StartProcessRequest = parse_json(&body)?;
    let process = state.processes().start(&req)?;
    Ok((StatusCode::CREATED, Json(process.info())))
}

/// `GET /processes`.
pub async fn list(State(state): State<AgentState>) -> Json<ProcessList> {
    Json(ProcessList {
        processes: state.processes().list(),
    })
}

/// `GET /processes/{p}`.
pub async fn get(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<ProcessInfo>, ApiError> {
    Ok(Json(state.processes().get(&key)?.info()))
}

/// `DELETE /processes/{p}` → 204: SIGKILL to the process tree (an exited process is removed).
pub async fn delete(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.processes().delete(&key)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /processes/{p}/signal` → `{"success": true}`; the signal goes to the process group.
pub async fn signal(
    State(state): State<AgentState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<SignalResponse>, ApiError> {
    let process = state.processes().get(&key)?;
    let req: SignalRequest = parse_json(&body)?;
    process.signal(req.signal)?;
    Ok(Json(SignalResponse { success: true }))
}

/// `POST /processes/{p}/restart`: supervision is not built yet, so 501 (404 if unknown).
pub async fn restart(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<ProcessInfo>, ApiError> {
    state.processes().get(&key)?;
    Err(ProcessError::NotImplemented("restarting managed processes").into())
}
