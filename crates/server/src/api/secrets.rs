//! Routes of `{B}/secrets` (Alcove's own; the original protocol leaves secrets to
//! the platform): set, list (names only) and delete. See
//! docs/protocol/control-plane.md, Secrets.

use std::collections::HashMap;

use alcove_wire::error::ApiErrorBody;
use alcove_wire::time::EpochMillisSchema;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::body::{WholeBody, json_object};
use super::error::ApiError;
use super::openapi::{SecretParam, tags};
use super::sandboxes::namespace;
use crate::control::secrets::{MAX_SECRET_BYTES, SecretMeta};

/// Body of `PUT {B}/secrets/{name}`.
#[derive(Deserialize, ToSchema)]
pub struct SetSecret {
    /// The value (never echoed or logged).
    #[schema(schema_with = secret_value_schema)]
    value: String,
}

fn secret_value_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "The value (never echoed or logged): at most {MAX_SECRET_BYTES} bytes of UTF-8, \
             without NUL."
        )))
        .build()
}

/// A secret as answered: its name and times, never its value.
#[derive(Serialize, ToSchema)]
#[cfg_attr(test, derive(Deserialize))]
pub struct SecretInfo {
    /// Name (the environment variable it becomes).
    name: String,
    /// First set.
    #[schema(value_type = EpochMillisSchema)]
    created_at: i64,
    /// Last set.
    #[schema(value_type = EpochMillisSchema)]
    updated_at: i64,
}

impl From<SecretMeta> for SecretInfo {
    fn from(meta: SecretMeta) -> Self {
        Self {
            name: meta.name,
            created_at: meta.created_at,
            updated_at: meta.updated_at,
        }
    }
}

/// Answer of `GET {B}/secrets`.
#[derive(Serialize, ToSchema)]
#[cfg_attr(test, derive(Deserialize))]
pub struct SecretList {
    /// Names and times, never values.
    secrets: Vec<SecretInfo>,
}

fn name(params: &HashMap<String, String>) -> Result<&str, ApiError> {
    params
        .get("name")
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request("missing secret name in path"))
}

/// `PUT {B}/secrets/{name}`.
#[utoipa::path(
    put,
    path = "/secrets/{name}",
    tag = tags::SECRETS,
    operation_id = "setSecret",
    description = "Creates or replaces a secret. Sandboxes created with it in `secret_names` get it as an environment variable; running ones keep the value they started with.",
    params(SecretParam),
    request_body(content = SetSecret, content_type = "application/json"),
    responses(
        (status = 200, description = "Set.", body = SecretInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body, a name that is not an environment variable name, or a value too long.", body = ApiErrorBody),
    )
)]
pub async fn set(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<SecretInfo>, ApiError> {
    let body: SetSecret = json_object(&headers, &body)?;
    let meta = state
        .control
        .secrets
        .set(namespace(&params), name(&params)?, &body.value)
        .await?;
    Ok(Json(meta.into()))
}

/// `GET {B}/secrets`.
#[utoipa::path(
    get,
    path = "/secrets",
    tag = tags::SECRETS,
    operation_id = "listSecrets",
    responses((status = 200, description = "The namespace's secrets: names and times, never values.", body = SecretList))
)]
pub async fn list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SecretList>, ApiError> {
    let secrets = state.control.secrets.list(namespace(&params)).await?;
    Ok(Json(SecretList {
        secrets: secrets.into_iter().map(SecretInfo::from).collect(),
    }))
}

/// `DELETE {B}/secrets/{name}`.
#[utoipa::path(
    delete,
    path = "/secrets/{name}",
    tag = tags::SECRETS,
    operation_id = "deleteSecret",
    params(SecretParam),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`NOT_FOUND`: no such secret.", body = ApiErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    state
        .control
        .secrets
        .delete(namespace(&params), name(&params)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
