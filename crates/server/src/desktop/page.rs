//! The desktop page and its WebSocket.

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
    Query(q): Query<DesktopQuery>,
) -> Response {
    match admit(&state, &ident, &q).await {
        Ok(_) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // The token is in the URL: keep it out of other sites' Referer headers.
                (header::REFERRER_POLICY, "no-referrer"),
                (header::CACHE_CONTROL, "no-store"),
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
    Query(q): Query<DesktopQuery>,
    req: Request,
) -> Response {
    let id = match admit(&state, &ident, &q).await {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let port = q.port.unwrap_or(super::DEFAULT_VNC_PORT);
    if port == 0 {
        return ApiError::bad_request("port must be between 1 and 65535").into_response();
    }
    crate::proxy::forward_to_agent(state, id, format!("/api/v1/tunnels/tcp?port={port}"), req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The sandbox's id when the request may reach its desktop: with API keys
/// configured, only with a valid token for that sandbox.
async fn admit(state: &AppState, ident: &str, q: &DesktopQuery) -> Result<String, ApiError> {
    let target = state.control.sandboxes.target(ident).await?;
    let id = target.record.id.to_string();
    if state.keys.is_empty() {
        return Ok(id);
    }
    match &q.token {
        Some(t) if state.desktop_tokens.verify(&id, t) => Ok(id),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "this desktop URL is invalid or has expired: ask for a new one (desktop_url())",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "a desktop URL needs its token: get one with desktop_url() \
             (POST /sandboxes/{id}/desktop)",
        )),
    }
}
