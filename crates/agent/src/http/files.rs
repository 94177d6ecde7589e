//! File routes (docs/protocol/sandbox-api.md, Files). `?path=` is form-decoded (`+` is a
//! space).

use alcove_wire::files::{FileList, FilePathQuery};
use axum::Json;
use axum::body::Body;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::error::{AgentError, ApiError};
use super::openapi::tags;
use crate::files;

/// Read size when streaming a file out.
const READ_CHUNK_BYTES: usize = 64 * 1024;

fn path_of(
    query: Result<Query<FilePathQuery>, QueryRejection>,
) -> Result<(String, std::path::PathBuf), ApiError> {
    let Query(FilePathQuery { path }) = query.map_err(|e| match e {
        QueryRejection::FailedToDeserializeQueryString(e)
            if e.body_text().contains("duplicate") =>
        {
            ApiError::invalid("query parameter `path` is given more than once")
        }
        _ => ApiError::invalid("query parameter `path` is required"),
    })?;
    let checked = files::validate(&path)?;
    Ok((path, checked))
}

/// `GET /files?path=` → the raw bytes, streamed.
#[utoipa::path(
    get,
    path = "/api/v1/files",
    tag = tags::FILES,
    operation_id = "readFile",
    params(FilePathQuery),
    responses(
        (status = 200, description = "The file's bytes, streamed: with `Content-Length` (its size when the read began), or chunked for kernel and FUSE files (`/proc`, `/sys`), whose sizes are not their lengths.", content_type = "application/octet-stream"),
        (status = 400, description = "`INVALID_ARGUMENT` (no `path`, not absolute, a NUL byte, too long, a symbolic-link loop, a kernel file that serves no bytes to a read), `IS_DIRECTORY` or `NOT_A_DIRECTORY`.", body = AgentError),
        (status = 403, description = "`PATH_TRAVERSAL` (the path has `..`) or `PERMISSION_DENIED` (file permissions, a read-only or kernel file).", body = AgentError),
        (status = 404, description = "`NOT_FOUND`.", body = AgentError),
        (status = 500, description = "`INTERNAL`: an I/O error (details in the agent log).", body = AgentError),
    )
)]
pub async fn read(
    query: Result<Query<FilePathQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, path) = path_of(query)?;
    let (mut file, len) = files::open_for_read(&path).await?;
    let body = match len {
        // No more than the promised length, however much the file grew since: a body longer
        // than its `Content-Length` breaks the connection. (One that shrank ends short, and
        // the client sees an incomplete body: it was read while it was cut.)
        Some(len) => Body::from_stream(ReaderStream::with_capacity(
            file.take(len),
            READ_CHUNK_BYTES,
        )),
        // A kernel or FUSE file has no length before it is read: it goes chunked, to its end.
        // Its first read is made before the answer, so that one the kernel refuses
        // (`/proc/self/mem`) gets an error status, not a body cut off before its first byte.
        None => {
            let mut first = bytes::BytesMut::with_capacity(READ_CHUNK_BYTES);
            file.read_buf(&mut first)
                .await
                .map_err(|e| files::read_error(e, &path))?;
            let rest = ReaderStream::with_capacity(file, READ_CHUNK_BYTES);
            Body::from_stream(futures::stream::once(async move { Ok(first.freeze()) }).chain(rest))
        }
    };
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    if let Some(len) = len {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, len.into());
    }
    Ok(response)
}

/// `PUT /files?path=` with the raw bytes as body → 204.
#[utoipa::path(
    put,
    path = "/api/v1/files",
    tag = tags::FILES,
    operation_id = "writeFile",
    params(FilePathQuery),
    request_body(content_type = "application/octet-stream", description = "The new content, raw bytes (any `Content-Type`); missing parent directories are created."),
    responses(
        (status = 204, description = "Written (created or replaced)."),
        (status = 400, description = "`INVALID_ARGUMENT` (no `path`, not absolute, a NUL byte, too long, a symbolic-link loop), `IS_DIRECTORY` or `NOT_A_DIRECTORY`.", body = AgentError),
        (status = 403, description = "`PATH_TRAVERSAL` (the path has `..`) or `PERMISSION_DENIED` (file permissions, a read-only or kernel file).", body = AgentError),
        (status = 404, description = "`NOT_FOUND`.", body = AgentError),
        (status = 409, description = "`ALREADY_EXISTS` or `FILE_BUSY` (a running program written in place, a mount point).", body = AgentError),
        (status = 507, description = "`NO_SPACE`: the sandbox's disk is full.", body = AgentError),
        (status = 500, description = "`INTERNAL`: an I/O error (details in the agent log).", body = AgentError),
    )
)]
pub async fn write(
    query: Result<Query<FilePathQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (_, path) = path_of(query)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A failed upload's answer waits for the rest of the body (`unread_body`).
    files::write(&path, body.into_data_stream(), declared).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /files?path=` → 204 (files only).
#[utoipa::path(
    delete,
    path = "/api/v1/files",
    tag = tags::FILES,
    operation_id = "deleteFile",
    params(FilePathQuery),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "`INVALID_ARGUMENT` (no `path`, not absolute, a NUL byte, too long, a symbolic-link loop), `IS_DIRECTORY` or `NOT_A_DIRECTORY`.", body = AgentError),
        (status = 403, description = "`PATH_TRAVERSAL` (the path has `..`) or `PERMISSION_DENIED` (file permissions, a read-only or kernel file).", body = AgentError),
        (status = 404, description = "`NOT_FOUND`.", body = AgentError),
        (status = 409, description = "`FILE_BUSY`: a mount point.", body = AgentError),
        (status = 500, description = "`INTERNAL`: an I/O error (details in the agent log).", body = AgentError),
    )
)]
pub async fn delete(
    query: Result<Query<FilePathQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let (_, path) = path_of(query)?;
    files::delete(&path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /files/list?path=` → `{"path", "entries"}`.
#[utoipa::path(
    get,
    path = "/api/v1/files/list",
    tag = tags::FILES,
    operation_id = "listDirectory",
    params(FilePathQuery),
    responses(
        (status = 200, description = "The directory's entries: directories first, then by name.", body = FileList),
        (status = 400, description = "`INVALID_ARGUMENT` (no `path`, not absolute, a NUL byte, too long, a symbolic-link loop), `IS_DIRECTORY` or `NOT_A_DIRECTORY`.", body = AgentError),
        (status = 403, description = "`PATH_TRAVERSAL` (the path has `..`) or `PERMISSION_DENIED` (file permissions, a read-only or kernel file).", body = AgentError),
        (status = 404, description = "`NOT_FOUND`.", body = AgentError),
        (status = 500, description = "`INTERNAL`: an I/O error (details in the agent log).", body = AgentError),
    )
)]
pub async fn list(
    query: Result<Query<FilePathQuery>, QueryRejection>,
) -> Result<Json<FileList>, ApiError> {
    let (shown, path) = path_of(query)?;
    let entries = files::list(&path).await?;
    Ok(Json(FileList {
        path: shown,
        entries,
    }))
}
