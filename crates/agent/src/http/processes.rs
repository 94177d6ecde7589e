//! Process management routes (docs/protocol/sandbox-api.md, Processes).

use alcove_wire::process::{
    ProcessInfo, ProcessList, SignalRequest, SignalResponse, StartProcessRequest, StopAllResponse,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::body::WholeBody;
use super::error::{AgentError, ApiError};
use super::openapi::{ProcessParam, tags};
use super::parse_json;
use crate::AgentState;

/// `POST /processes` → 201 `ProcessInfo`.
#[utoipa::path(
    post,
    path = "/api/v1/processes",
    tag = tags::PROCESSES,
    operation_id = "startProcess",
    request_body(content = StartProcessRequest, description = "The command; read whatever the `Content-Type`."),
    responses(
        (status = 201, description = "Started.", body = ProcessInfo),
        (status = 400, description = "`INVALID_ARGUMENT` (body, process name, restart or health-check settings, each naming the field), `COMMAND_NOT_FOUND`, `NOT_EXECUTABLE`, `USER_NOT_FOUND` or `INVALID_WORKING_DIR`.", body = AgentError),
        (status = 403, description = "`PERMISSION_DENIED`: the agent cannot switch to that user.", body = AgentError),
        (status = 409, description = "`NAME_TAKEN`: a running process holds the name.", body = AgentError),
        (status = 500, description = "`INTERNAL`: the command could not be spawned.", body = AgentError),
        (status = 503, description = "`PROCESS_LIMIT`: the sandbox's task limit is full.", body = AgentError),
    )
)]
pub async fn start(
    State(state): State<AgentState>,
    WholeBody(body): WholeBody,
) -> Result<(StatusCode, Json<ProcessInfo>), ApiError> {
    let req: StartProcessRequest = parse_json(&body)?;
    let process = state.processes().start(&req)?;
    Ok((StatusCode::CREATED, Json(process.info())))
}

/// `DELETE /processes` → 200 `{"killed": n}`: every process of the sandbox
/// but the agent and the image's services, killed (frozen first, so forks
/// cannot outrun it). The way back from a fork bomb or a runaway tree.
#[utoipa::path(
    delete,
    path = "/api/v1/processes",
    tag = tags::PROCESSES,
    operation_id = "stopAllProcesses",
    responses((status = 200, description = "How many processes were killed.", body = StopAllResponse))
)]
pub async fn stop_all(State(state): State<AgentState>) -> Result<Json<StopAllResponse>, ApiError> {
    let agent = state.clone();
    let killed = tokio::task::spawn_blocking(move || agent.stop_all_processes())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(StopAllResponse { killed }))
}

/// `GET /processes`.
#[utoipa::path(
    get,
    path = "/api/v1/processes",
    tag = tags::PROCESSES,
    operation_id = "listProcesses",
    responses((status = 200, description = "Every process the agent tracks.", body = ProcessList))
)]
pub async fn list(State(state): State<AgentState>) -> Json<ProcessList> {
    Json(ProcessList {
        processes: state.processes().list(),
    })
}

/// `GET /processes/{p}`.
#[utoipa::path(
    get,
    path = "/api/v1/processes/{p}",
    tag = tags::PROCESSES,
    operation_id = "getProcess",
    params(ProcessParam),
    responses(
        (status = 200, description = "The process.", body = ProcessInfo),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
pub async fn get(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<ProcessInfo>, ApiError> {
    Ok(Json(state.processes().get(&key)?.info()))
}

/// `DELETE /processes/{p}` → 204: SIGKILL to the process tree (an exited process is removed).
#[utoipa::path(
    delete,
    path = "/api/v1/processes/{p}",
    tag = tags::PROCESSES,
    operation_id = "killProcess",
    params(ProcessParam),
    responses(
        (status = 204, description = "Killed (or, once exited, removed)."),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
    )
)]
pub async fn delete(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.processes().delete(&key)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /processes/{p}/signal` → `{"success": true}`; the signal goes to the process group.
#[utoipa::path(
    post,
    path = "/api/v1/processes/{p}/signal",
    tag = tags::PROCESSES,
    operation_id = "signalProcess",
    params(ProcessParam),
    request_body(content = SignalRequest, description = "The signal; read whatever the `Content-Type`."),
    responses(
        (status = 200, description = "Sent to the process group.", body = SignalResponse),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body or an unknown signal number.", body = AgentError),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
        (status = 409, description = "`PROCESS_EXITED`: the process has already exited (a managed one between runs: the message says when it restarts).", body = AgentError),
    )
)]
pub async fn signal(
    State(state): State<AgentState>,
    Path(key): Path<String>,
    WholeBody(body): WholeBody,
) -> Result<Json<SignalResponse>, ApiError> {
    let process = state.processes().get(&key)?;
    let req: SignalRequest = parse_json(&body)?;
    process.signal(req.signal)?;
    Ok(Json(SignalResponse { success: true }))
}

/// `POST /processes/{p}/restart`: a managed process is restarted now (SIGTERM, SIGKILL after
/// a grace period, then a new run; a stopped one is started again and supervised) → the new
/// run's `ProcessInfo`.
#[utoipa::path(
    post,
    path = "/api/v1/processes/{p}/restart",
    tag = tags::PROCESSES,
    operation_id = "restartProcess",
    params(ProcessParam),
    responses(
        (status = 200, description = "The new run.", body = ProcessInfo),
        (status = 404, description = "`NOT_FOUND`: no such process.", body = AgentError),
        (status = 409, description = "`NOT_MANAGED`: the process is not managed.", body = AgentError),
    )
)]
pub async fn restart(
    State(state): State<AgentState>,
    Path(key): Path<String>,
) -> Result<Json<ProcessInfo>, ApiError> {
    Ok(Json(state.processes().restart(&key).await?.info()))
}
