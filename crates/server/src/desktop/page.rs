//! The desktop page and its WebSocket.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use alcove_wire::error::ErrorCode;

use crate::api::AppState;
use crate::api::error::ApiError;

/// The page: noVNC, connecting to `<this path>/websockify` with the same query.
const PAGE: &str = include_str!("page.html");

/// Query of the desktop page and its socket.
#[derive(Debug, Deserialize)]
pub struct DesktopQuery {
    /// The token of the desktop URL (needed when API keys are configured).
    token: Option<String>,
    /// The sandbox's VNC port (default 5901).
    port: Option<u16>,
}

/// `GET /desktop/{id}`: the noVNC page of one sandbox.
pub async fn desktop_page(
    State(state): State<AppState>,
    Path(ident): Path<String>,
    q: Result<Query<DesktopQuery>, QueryRejection>,
) -> Response {
    match admit(&state, &ident, q).await {
        Ok(_) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // The token is in the URL: keep it out of other sites' Referer headers.
                (header::REFERRER_POLICY, "no-referrer"),
                (header::CACHE_CONTROL, "no-store"),
                // Only the server's own pages (the console) may frame a live desktop: a
                // page of another site could lay itself over it and take the clicks.
                (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'self'"),
                (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
            ],
            PAGE,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /desktop/{id}/websockify`: the page's WebSocket, relayed to the
/// sandbox's VNC port through its TCP tunnel.
pub async fn desktop_socket(
    State(state): State<AppState>,
    Path(ident): Path<String>,
    q: Result<Query<DesktopQuery>, QueryRejection>,
    req: Request,
) -> Response {
    let (id, port) = match admit(&state, &ident, q).await {
        Ok(admitted) => admitted,
        Err(e) => return e.into_response(),
    };
    crate::proxy::forward_to_agent(state, id, format!("/api/v1/tunnels/tcp?port={port}"), req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The VNC port a desktop URL may name: 1–65535 but the agent's own. (A desktop's socket is a
/// TCP tunnel into the sandbox, and the agent's port serves its whole API.)
pub(crate) fn check_vnc_port(port: u16) -> Result<u16, ApiError> {
    if port == 0 {
        return Err(ApiError::bad_request("port must be between 1 and 65535"));
    }
    if i64::from(port) == alcove_wire::limits::MANAGEMENT_PORT {
        return Err(ApiError::bad_request(format!(
            "port {port} is the sandbox agent's own port, not a VNC server"
        )));
    }
    Ok(port)
}

/// The sandbox's id and the VNC port when the request may reach that desktop: with API keys
/// configured, only with a valid token for that sandbox and port. The token is checked before
/// anything is said about the sandbox, so that a request without one cannot tell which exist.
async fn admit(
    state: &AppState,
    ident: &str,
    q: Result<Query<DesktopQuery>, QueryRejection>,
) -> Result<(String, u16), ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let port = check_vnc_port(q.port.unwrap_or(super::DEFAULT_VNC_PORT))?;
    if !state.keys.is_empty() && q.token.is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a desktop URL needs its token: get one with desktop_url() \
             (POST /sandboxes/{id}/desktop)",
        ));
    }
    if state.keys.is_empty() {
        let target = state.control.sandboxes.target(ident).await?;
        return Ok((target.record.id.to_string(), port));
    }
    // With keys, a sandbox that is not there answers as a bad token does: only a token holder
    // learns whether it exists.
    if let (Ok(target), Some(t)) = (state.control.sandboxes.target(ident).await, &q.token) {
        let id = target.record.id.to_string();
        if state.desktop_tokens.verify(&id, port, t) {
            return Ok((id, port));
        }
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "this desktop URL is invalid or has expired: ask for a new one (desktop_url())",
    ))
}
