//! Routes of a sandbox's logs (docs/protocol/control-plane.md, Logs): `GET {B}/sandboxes/{id}/logs`
//! and `GET {B}/sandboxes/{id}/processes`. They answer for live and archived sandboxes alike.

use std::collections::HashMap;

use alcove_runtime::SandboxId;
use alcove_wire::error::ApiErrorBody;
use alcove_wire::journal::{ProcessLogFiltersResponse, SandboxLogsResponse};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::openapi::{SandboxParam, tags};
use super::sandboxes::{ident, namespace};
use crate::control::ControlError;
use crate::logs::query::LogQuery;

/// Query of `GET {B}/sandboxes/{id}/logs` (for the OpenAPI document: the handler reads the
/// pairs itself, because `level` and `processId` repeat).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LogsQueryDoc {
    /// Levels to keep, repeated (`level=4&level=5`): 1 trace, 2 debug, 3 info (stdout, normal
    /// events), 4 warn (stderr, failures), 5 error, 6 fatal; names work too. None = all.
    level: Option<Vec<String>>,
    /// Processes to keep, repeated: a pid, a managed-process id or a name. None = all records.
    #[serde(rename = "processId")]
    #[param(rename = "processId")]
    process_id: Option<Vec<String>>,
    /// Keep records whose text holds this (case-insensitive).
    body: Option<String>,
    /// The first records, 1 to 10000 (default 1000). Not with `tail`.
    head: Option<u32>,
    /// The last records, 1 to 10000. Not with `head`.
    tail: Option<u32>,
    /// The `nextToken` of the previous page.
    #[serde(rename = "nextToken")]
    #[param(rename = "nextToken")]
    next_token: Option<String>,
}

async fn sandbox_id(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<SandboxId, ApiError> {
    let record = state
        .control
        .sandboxes
        .get(namespace(params), ident(params)?)
        .await?;
    Ok(record.id)
}

/// `GET {B}/sandboxes/{id}/logs`.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/logs",
    tag = tags::SANDBOXES,
    operation_id = "getSandboxLogs",
    description = "The sandbox's logs: every line its processes wrote (stdout at level 3, stderr at 4), the events around them (a process started, exited, was restarted, failed a health check, was killed by the OOM killer) and what happened to the sandbox, oldest first, one page at a time. Output beyond 256 KiB/s per sandbox is not logged (a warning counts the lines left out). Readable while the sandbox is archived.",
    params(SandboxParam, LogsQueryDoc),
    responses(
        (status = 200, description = "One page and the token of the next.", body = SandboxLogsResponse),
        (status = 400, description = "`INVALID_ARGUMENT`: an unknown level, `head` with `tail`, a size out of range or a token this server did not give out (the message names the parameter).", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox (or its archive retention ran out).", body = ApiErrorBody),
    )
)]
pub async fn get_logs(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<SandboxLogsResponse>, ApiError> {
    let Query(pairs) = query?;
    let all = |key: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let one = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let mut process_ids = all("processId");
    process_ids.extend(all("process_id"));
    let token = one("nextToken").or_else(|| one("next_token"));
    let query = LogQuery::parse(
        &all("level"),
        process_ids,
        token.as_deref(),
        one("head").as_deref(),
        one("tail").as_deref(),
        one("body"),
    )
    .map_err(|e| {
        ApiError::from(ControlError::InvalidArgument {
            field: e.field,
            reason: e.reason,
        })
    })?;
    let id = sandbox_id(&state, &params).await?;
    Ok(Json(
        state
            .control
            .logs()
            .query(&id, namespace(&params), &query)
            .await,
    ))
}

/// `GET {B}/sandboxes/{id}/processes`.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/processes",
    tag = tags::SANDBOXES,
    operation_id = "listSandboxLogProcesses",
    description = "The processes that have records in the sandbox's logs, in order of first appearance, with what `processId` matches for each and how many records it has.",
    params(SandboxParam),
    responses(
        (status = 200, description = "The processes.", body = ProcessLogFiltersResponse),
        (status = 404, description = "`NOT_FOUND`: no such sandbox (or its archive retention ran out).", body = ApiErrorBody),
    )
)]
pub async fn list_log_processes(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ProcessLogFiltersResponse>, ApiError> {
    let id = sandbox_id(&state, &params).await?;
    Ok(Json(ProcessLogFiltersResponse {
        processes: state.control.logs().processes(&id).await,
    }))
}
