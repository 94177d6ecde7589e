//! Routes of persistent volumes (docs/volumes.md): `{B}/file-systems` (create,
//! list, get, delete) and `{B}/sandboxes/{id}/file_systems` (attach, detach).

use std::collections::HashMap;

use alcove_wire::error::ApiErrorBody;
use alcove_wire::file_system::{
    CreateFileSystemRequest, DetachFileSystemRequest, FileSystemInfo, FileSystemMount,
    ListFileSystemsResponse,
};
use alcove_wire::sandbox::SandboxInfo;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use utoipa::IntoParams;

use super::AppState;
use super::body::{WholeBody, json_object};
use super::error::ApiError;
use super::openapi::{SandboxParam, tags};
use super::sandboxes::{ident, namespace};

/// The `{name}` path parameter of the volume routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FileSystemParam {
    /// The volume's name (its id).
    #[allow(dead_code)]
    name: String,
}

fn name(params: &HashMap<String, String>) -> Result<&str, ApiError> {
    params
        .get("name")
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request("missing file system name in path"))
}

/// `POST {B}/file-systems`.
#[utoipa::path(
    post,
    path = "/file-systems",
    tag = tags::FILE_SYSTEMS,
    operation_id = "createFileSystem",
    description = "Creates a persistent volume: an empty ext4 file system of `size_mb` MiB that outlives the sandboxes it is mounted in.",
    request_body(content = CreateFileSystemRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Created.", body = FileSystemInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a bad name or a size outside 1-1048576 MiB.", body = ApiErrorBody),
        (status = 409, description = "`INVALID_STATE`: the namespace has a volume of that name.", body = ApiErrorBody),
        (status = 507, description = "`RESOURCE_EXHAUSTED`: the host has no room for it.", body = ApiErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<FileSystemInfo>, ApiError> {
    let req: CreateFileSystemRequest = json_object(&headers, &body)?;
    let info = state
        .control
        .file_systems
        .create(namespace(&params), req)
        .await?;
    Ok(Json(info))
}

/// `GET {B}/file-systems`.
#[utoipa::path(
    get,
    path = "/file-systems",
    tag = tags::FILE_SYSTEMS,
    operation_id = "listFileSystems",
    responses((status = 200, description = "The namespace's volumes, by name, with where each is mounted.", body = ListFileSystemsResponse))
)]
pub async fn list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ListFileSystemsResponse>, ApiError> {
    let file_systems = state.control.file_systems.list(namespace(&params)).await?;
    Ok(Json(ListFileSystemsResponse { file_systems }))
}

/// `GET {B}/file-systems/{name}`.
#[utoipa::path(
    get,
    path = "/file-systems/{name}",
    tag = tags::FILE_SYSTEMS,
    operation_id = "getFileSystem",
    params(FileSystemParam),
    responses(
        (status = 200, description = "The volume.", body = FileSystemInfo),
        (status = 404, description = "`NOT_FOUND`: no such volume.", body = ApiErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<FileSystemInfo>, ApiError> {
    let info = state
        .control
        .file_systems
        .get(namespace(&params), name(&params)?)
        .await?;
    Ok(Json(info))
}

/// `DELETE {B}/file-systems/{name}`.
#[utoipa::path(
    delete,
    path = "/file-systems/{name}",
    tag = tags::FILE_SYSTEMS,
    operation_id = "deleteFileSystem",
    description = "Deletes a volume and its data. Refused while a live sandbox (a suspended one included) has it mounted.",
    params(FileSystemParam),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`NOT_FOUND`: no such volume.", body = ApiErrorBody),
        (status = 409, description = "`FILE_SYSTEM_IN_USE`: a live sandbox has it mounted.", body = ApiErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    state
        .control
        .file_systems
        .delete(namespace(&params), name(&params)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST {B}/sandboxes/{id}/file_systems`.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/file_systems",
    tag = tags::FILE_SYSTEMS,
    operation_id = "attachFileSystem",
    description = "Mounts a volume into a running sandbox, live: its processes keep running. A volume is mounted read-write in one sandbox at a time, or read-only in any number.",
    params(SandboxParam),
    request_body(content = FileSystemMount, content_type = "application/json"),
    responses(
        (status = 200, description = "Mounted; `file_systems` lists it.", body = SandboxInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a bad mount path (relative, not normalized, `/`, under `/proc`, `/sys`, `/dev` or the runtime's own mounts), `snapshot_id` or `owner` set.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox or volume.", body = ApiErrorBody),
        (status = 409, description = "`FILE_SYSTEM_IN_USE`: the volume is mounted elsewhere in a way that excludes this mount. `INVALID_STATE`: the sandbox is not running, the path is taken, or the sandbox put a symlink or a file on the path.", body = ApiErrorBody),
    )
)]
pub async fn attach(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<SandboxInfo>, ApiError> {
    let mount: FileSystemMount = json_object(&headers, &body)?;
    let record = state
        .control
        .sandboxes
        .attach(namespace(&params), ident(&params)?, &[mount])
        .await?;
    Ok(Json(state.control.info(&record)))
}

/// `DELETE {B}/sandboxes/{id}/file_systems`.
#[utoipa::path(
    delete,
    path = "/sandboxes/{id}/file_systems",
    tag = tags::FILE_SYSTEMS,
    operation_id = "detachFileSystem",
    description = "Unmounts a volume from a running sandbox, live. Never lazily: with files open (or working directories) on it, the answer is 409 and it stays mounted.",
    params(SandboxParam),
    request_body(content = DetachFileSystemRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Unmounted; `file_systems` no longer lists it.", body = SandboxInfo),
        (status = 404, description = "`NOT_FOUND`: no such sandbox, or nothing mounted at `mount_path`.", body = ApiErrorBody),
        (status = 409, description = "`FILE_SYSTEM_IN_USE`: files on the volume are in use. `INVALID_STATE`: the sandbox is not running.", body = ApiErrorBody),
    )
)]
pub async fn detach(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<SandboxInfo>, ApiError> {
    let req: DetachFileSystemRequest = json_object(&headers, &body)?;
    let record = state
        .control
        .sandboxes
        .detach(namespace(&params), ident(&params)?, &req.mount_path)
        .await?;
    Ok(Json(state.control.info(&record)))
}
