//! `POST {B}/sandboxes/{id}/desktop`: a URL at which a browser sees and drives
//! the sandbox's desktop (noVNC through the proxy; see `crate::desktop`).

use std::collections::HashMap;

use alcove_wire::desktop::{DesktopUrl, DesktopUrlRequest};
use alcove_wire::error::ApiErrorBody;
use alcove_wire::time::now_millis;
use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::body::{WholeBody, optional_json_object};
use super::error::ApiError;
use super::openapi::{SandboxParam, tags};
use super::sandboxes::{ident, namespace};
use crate::desktop::tokens::TOKEN_LIFETIME_MS;
use crate::desktop::{DEFAULT_VNC_PORT, check_vnc_port};

/// `POST {B}/sandboxes/{id}/desktop`.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/desktop",
    tag = tags::SANDBOXES,
    operation_id = "desktopUrl",
    description = "A URL, valid for an hour, at which a browser sees and drives the sandbox's desktop (noVNC over the sandbox's TCP tunnel to its VNC server).",
    params(SandboxParam),
    request_body(content = Option<DesktopUrlRequest>, description = "None, or the VNC port."),
    responses(
        (status = 200, description = "The URL.", body = DesktopUrl),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body, or a port that is 0 or the agent's own (9501).", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
    )
)]
pub async fn desktop_url(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    WholeBody(body): WholeBody,
) -> Result<Json<DesktopUrl>, ApiError> {
    let req: DesktopUrlRequest = optional_json_object(&body)?;
    let vnc_port = check_vnc_port(req.port.unwrap_or(DEFAULT_VNC_PORT))?;
    let record = state
        .control
        .sandboxes
        .get(namespace(&params), ident(&params)?)
        .await?;
    let expires_at = now_millis() + TOKEN_LIFETIME_MS;
    let token = state.desktop_tokens.issue(&record.id, vnc_port, expires_at);
    let base = state.control.sandbox_url().trim_end_matches('/');
    let port = req.port.map(|p| format!("&port={p}")).unwrap_or_default();
    Ok(Json(DesktopUrl {
        url: format!("{base}/desktop/{}?token={token}{port}", record.id),
        expires_at,
    }))
}
