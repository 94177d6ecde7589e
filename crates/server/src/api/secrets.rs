//! Routes of `{B}/secrets` (Alcove's own; the original protocol leaves secrets to
//! the platform): set, list (names only) and delete. See
//! docs/protocol/control-plane.md, Secrets.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::AppState;
use super::body::json_object;
use super::error::ApiError;
use super::sandboxes::namespace;
use crate::control::secrets::SecretMeta;

/// Body of `PUT {B}/secrets/{name}`.
#[derive(Deserialize)]
pub struct SetSecret {
    /// The value (never echoed or logged).
    value: String,
}

/// Answer of `GET {B}/secrets`.
#[derive(serde::Serialize)]
pub struct SecretList {
    /// Names and times, never values.
    secrets: Vec<SecretMeta>,
}

fn name(params: &HashMap<String, String>) -> Result<&str, ApiError> {
    params
        .get("name")
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request("missing secret name in path"))
}

/// `PUT {B}/secrets/{name}`.
pub async fn set(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SecretMeta>, ApiError> {
    let body: SetSecret = json_object(&headers, &body)?;
    let meta = state
        .control
        .set_secret(namespace(&params), name(&params)?, &body.value)
        .await?;
    Ok(Json(meta))
}

/// `GET {B}/secrets`.
pub async fn list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SecretList>, ApiError> {
    let secrets = state.control.list_secrets(namespace(&params)).await?;
    Ok(Json(SecretList { secrets }))
}

/// `DELETE {B}/secrets/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    state
        .control
        .delete_secret(namespace(&params), name(&params)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
