//! `POST {B}/sandboxes/{id}/pty-ticket`: a short-lived ticket with which a browser opens a PTY
//! WebSocket of one sandbox through the proxy (a browser cannot put an API key on a WebSocket;
//! see `crate::console`).

use std::collections::HashMap;

use alcove_wire::error::ApiErrorBody;
use alcove_wire::time::now_millis;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::openapi::{SandboxParam, tags};
use super::sandboxes::{ident, namespace};
use crate::desktop::tokens::PTY_TICKET_LIFETIME_MS;

/// A PTY WebSocket ticket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct PtyTicket {
    /// Add as `&ticket=<ticket>` to `/sandboxes/{id}/api/v1/pty/{session_id}/ws?token=…` in
    /// place of the API key. Opens WebSockets of this sandbox's PTY sessions only (the
    /// session's own token is still needed).
    #[schema(example = "1767225630123.5f0c…")]
    ticket: String,
    /// When the ticket stops opening sockets (epoch ms); an open socket stays open.
    expires_at: i64,
}

/// `POST {B}/sandboxes/{id}/pty-ticket`.
#[utoipa::path(
    post,
    path = "/sandboxes/{id}/pty-ticket",
    tag = tags::SANDBOXES,
    operation_id = "ptyTicket",
    description = "A ticket, valid for 30 seconds, that opens a PTY WebSocket of this sandbox through the proxy without the API key (for browsers, which cannot set headers on a WebSocket).",
    params(SandboxParam),
    responses(
        (status = 200, description = "The ticket.", body = PtyTicket),
        (status = 401, description = "`UNAUTHORIZED`: no or a wrong API key.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such sandbox.", body = ApiErrorBody),
    )
)]
pub async fn pty_ticket(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<PtyTicket>, ApiError> {
    let record = state
        .control
        .sandboxes
        .get(namespace(&params), ident(&params)?)
        .await?;
    let expires_at = now_millis() + PTY_TICKET_LIFETIME_MS;
    Ok(Json(PtyTicket {
        ticket: state
            .desktop_tokens
            .issue_pty_ticket(&record.id, expires_at),
        expires_at,
    }))
}
