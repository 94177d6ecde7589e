//! File routes (docs/protocol/sandbox-api.md, Files). `?path=` is form-decoded (`+` is a
//! space).

use alcove_wire::files::{FileList, FilePathQuery};
use axum::Json;
use axum::body::Body;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::io::ReaderStream;

use super::error::ApiError;
use crate::files;

/// Read size when streaming a file out.
const READ_CHUNK_BYTES: usize = 64 * 1024;

fn path_of(
    query: Result<Query<FilePathQuery>, QueryRejection>,
) -> Result<(String, std::path::PathBuf), ApiError> {
    let Query(FilePathQuery { path }) =
        query.map_err(|_| ApiError::invalid("query parameter `path` is required"))?;
    let checked = files::validate(&path)?;
    Ok((path, checked))
}

/// `GET /files?path=` → the raw bytes, streamed.
pub async fn read(
    query: Result<Query<FilePathQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, path) = path_of(query)?;
    let (file, len) = files::open_for_read(&path).await?;
    let body = Body::from_stream(ReaderStream::with_capacity(file, READ_CHUNK_BYTES));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// `PUT /files?path=` with the raw bytes as body → 204.
pub async fn write(
    query: Result<Query<FilePathQuery>, QueryRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let (_, path) = path_of(query)?;
    files::write(&path, body.into_data_stream()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /files?path=` → 204 (files only).
pub async fn delete(
    query: Result<Query<FilePathQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let (_, path) = path_of(query)?;
    files::delete(&path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /files/list?path=` → `{"path", "entries"}`.
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
