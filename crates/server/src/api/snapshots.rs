//! Routes of snapshots (docs/protocol/control-plane.md, Snapshots).

use std::collections::HashMap;
use std::time::Duration;

use alcove_wire::snapshot::{
    CreateSnapshotRequest, CreateSnapshotResponse, ListSnapshotsResponse, SnapshotInfo,
    SnapshotStatus,
};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use alcove_wire::error::ApiErrorBody;

use super::AppState;
use super::body::{WholeBody, optional_json_object};
use super::error::ApiError;
use super::lifecycle_ops::bounded_wait;
use super::openapi::{SandboxParam, SnapshotParam, tags};
use super::sandboxes::namespace;

fn param<'a>(params: &'a HashMap<String, String>, key: &str) -> Result<&'a str, ApiError> {
    params
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("missing {key} in path")))
}

/// A snapshot's wire form with its `error` free of host details.
fn public_snapshot(snap: &crate::store::SnapshotRecord) -> SnapshotInfo {
    let mut info = snap.to_info();
    if let Some(error) = info.error.as_mut() {
        *error = crate::redact::for_client(error).into_owned();
    }
    info
}

/// How long a snapshot request waits for the snapshot to end when it does not say: a
/// client that polls once a second (the official SDKs) then needs no second poll for a
/// snapshot taken within it, and never waits longer than it would have.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// Query of a snapshot request.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotWaitQuery {
    /// Milliseconds to wait for the snapshot to end before answering (absent = 1000;
    /// 0 = answer at once; at most 300000).
    wait_ms: Option<u64>,
}

/// `POST {B}/sandboxes/{id}/snapshot[?wait_ms=N]`; the body may be empty, else a JSON object.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/snapshot",
    tag = tags::SNAPSHOTS,
    operation_id = "snapshotSandbox",
    description = "Starts a snapshot of a running sandbox, which keeps running (frozen only while its layer is copied and, for `memory`, its processes dumped), and waits up to `wait_ms` for it to end. Poll `GET /snapshots/{sid}` for the end of one still `in_progress`.",
    params(SandboxParam, SnapshotWaitQuery),
    request_body(content = Option<CreateSnapshotRequest>, description = "None, or a JSON object (any `Content-Type`)."),
    responses(
        (status = 200, description = "Ended within `wait_ms`: `completed` or `failed` (`GET /snapshots/{sid}` has the details).", body = CreateSnapshotResponse),
        (status = 202, description = "Accepted, still `in_progress` after `wait_ms`.", body = CreateSnapshotResponse),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
        (status = 409, description = "`INVALID_STATE`: the sandbox is not running.", body = ApiErrorBody),
        (status = 507, description = "`RESOURCE_EXHAUSTED`: no room on the disk for the snapshot; nothing was taken.", body = ApiErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    query: Result<Query<SnapshotWaitQuery>, QueryRejection>,
    WholeBody(body): WholeBody,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let wait = query.wait_ms.map_or(DEFAULT_WAIT, bounded_wait);
    let req: CreateSnapshotRequest = optional_json_object(&body)?;
    let snap = state
        .control
        .snapshots
        .create(
            Some(namespace(&params)),
            param(&params, "id")?,
            req.snapshot_type,
            wait,
        )
        .await?;
    let code = if snap.status == SnapshotStatus::InProgress {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let body = CreateSnapshotResponse {
        snapshot_id: snap.id,
        status: snap.status,
    };
    Ok((code, Json(body)).into_response())
}

/// `GET {B}/snapshots/{sid}`.
#[utoipa::path(
    get,
    path = "/snapshots/{sid}",
    tag = tags::SNAPSHOTS,
    operation_id = "getSnapshot",
    params(SnapshotParam),
    responses(
        (status = 200, description = "The snapshot.", body = SnapshotInfo),
        (status = 404, description = "`NOT_FOUND`: no such snapshot.", body = ApiErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SnapshotInfo>, ApiError> {
    let snap = state
        .control
        .snapshots
        .get(Some(namespace(&params)), param(&params, "sid")?)
        .await?;
    Ok(Json(public_snapshot(&snap)))
}

/// `GET {B}/snapshots`.
#[utoipa::path(
    get,
    path = "/snapshots",
    tag = tags::SNAPSHOTS,
    operation_id = "listSnapshots",
    responses((status = 200, description = "The namespace's snapshots, oldest first.", body = ListSnapshotsResponse))
)]
pub async fn list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ListSnapshotsResponse>, ApiError> {
    let snaps = state
        .control
        .snapshots
        .list(namespace(&params), None)
        .await?;
    Ok(Json(ListSnapshotsResponse {
        snapshots: snaps.iter().map(public_snapshot).collect(),
    }))
}

/// `GET {B}/sandboxes/{id}/snapshots`.
#[utoipa::path(
    get,
    path = "/sandboxes/{id}/snapshots",
    tag = tags::SNAPSHOTS,
    operation_id = "listSandboxSnapshots",
    params(SandboxParam),
    responses(
        (status = 200, description = "The sandbox's snapshots, oldest first.", body = ListSnapshotsResponse),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
    )
)]
pub async fn list_for_sandbox(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ListSnapshotsResponse>, ApiError> {
    let snaps = state
        .control
        .snapshots
        .list(namespace(&params), Some(param(&params, "id")?))
        .await?;
    Ok(Json(ListSnapshotsResponse {
        snapshots: snaps.iter().map(public_snapshot).collect(),
    }))
}

/// `DELETE {B}/snapshots/{sid}`.
#[utoipa::path(
    delete,
    path = "/snapshots/{sid}",
    tag = tags::SNAPSHOTS,
    operation_id = "deleteSnapshot",
    params(SnapshotParam),
    responses(
        (status = 204, description = "Deleted with its files."),
        (status = 400, description = "`INVALID_ARGUMENT`: the snapshot is still being taken.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such snapshot.", body = ApiErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    state
        .control
        .snapshots
        .delete(Some(namespace(&params)), param(&params, "sid")?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
