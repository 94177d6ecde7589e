//! PTY routes (docs/protocol/sandbox-api.md, PTY sessions): sessions over JSON, and the
//! session WebSocket (docs/protocol/streaming.md, PTY WebSocket).
//!
//! The WebSocket upgrade is checked before it is accepted: unknown session 404, token
//! missing or wrong 403 (the token may come as `?token=` or `X-PTY-Token`; either one
//! matching is enough), not a WebSocket request 400. Frames are those of
//! [`alcove_wire::pty`]; text frames from the client are ignored and pings are answered by
//! the WebSocket library. Close codes and reasons the agent sends:
//!
//! * 1000 `exit:<code>`, after the `0x03` exit frame, once the process exited and all its
//!   output was sent;
//! * 1000 `session terminated`, when the session is deleted or reaped;
//! * 4000 `replaced by a newer connection to this session`, when another client attaches.

use alcove_wire::pty::{
    self, ClientFrame, CreatePtyRequest, CreatePtyResponse, PtySessionInfo, PtySessionList,
    ResizeRequest, ServerFrame,
};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;

use super::error::{ApiError, DaemonErrorCode};
use super::parse_json;
use super::ws::{close, finish_close};
use crate::AgentState;
use crate::pty::session::{Attachment, Delivery};

/// `POST /pty` → 201 `{"session_id", "token"}`.
pub async fn create(
    State(state): State<AgentState>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatePtyResponse>), ApiError> {
    let req: CreatePtyRequest = parse_json(&body)?;
    Ok((StatusCode::CREATED, Json(state.ptys().create(&req)?)))
}

/// `GET /pty` → every session (without tokens).
pub async fn list(State(state): State<AgentState>) -> Json<PtySessionList> {
    Json(PtySessionList {
        sessions: state.ptys().list(),
    })
}

/// `GET /pty/{id}`.
pub async fn get(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<Json<PtySessionInfo>, ApiError> {
    Ok(Json(state.ptys().get(&id)?.info()))
}

/// `DELETE /pty/{id}` → 204: kills the process tree and removes the session.
pub async fn delete(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.ptys().delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /pty/{id}/resize` `{"cols", "rows"}` → the session.
pub async fn resize(
    State(state): State<AgentState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<PtySessionInfo>, ApiError> {
    state.ptys().get(&id)?;
    let req: ResizeRequest = parse_json(&body)?;
    Ok(Json(state.ptys().resize(&id, req.rows, req.cols)?))
}

/// Query of the WebSocket upgrade.
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    /// The session token (also accepted as the `X-PTY-Token` header).
    #[serde(default)]
    pub token: Option<String>,
}

/// `GET /pty/{id}/ws`: attaches to the session over a WebSocket (see the module docs).
pub async fn connect(
    State(state): State<AgentState>,
    Path(id): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let session = state.ptys().get(&id)?;
    let from_query = query.ok().and_then(|Query(q)| q.token);
    let from_header = headers
        .get(pty::TOKEN_HEADER)
        .and_then(|value| value.to_str().ok());
    let authorized = [from_query.as_deref(), from_header]
        .into_iter()
        .flatten()
        .any(|token| session.token_matches(token));
    if !authorized {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            DaemonErrorCode::InvalidToken,
            format!("missing or wrong token for PTY session {id}"),
        ));
    }
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::invalid(format!("expected a WebSocket upgrade: {rejection}"))
    })?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, session.attach())))
}

/// Relays between one client and its session until either side ends, then finishes the
/// closing handshake.
async fn serve(socket: WebSocket, attachment: Attachment) {
    let (mut sink, mut stream) = socket.split();
    let mut changes = attachment.subscribe();
    let outbound = async {
        loop {
            match attachment.next(&mut changes).await {
                Delivery::Output(bytes) => {
                    let frame = ServerFrame::Output(&bytes).encode();
                    if sink.send(Message::Binary(frame.into())).await.is_err() {
                        // Not delivered: keep it for the next client.
                        attachment.unsend(bytes);
                        return;
                    }
                }
                Delivery::Exit(code) => {
                    let frame = ServerFrame::Exit(code).encode();
                    if sink.send(Message::Binary(frame.into())).await.is_ok() {
                        close(&mut sink, pty::CLOSE_NORMAL, &pty::exit_reason(code)).await;
                    }
                    return;
                }
                Delivery::Replaced => {
                    close(&mut sink, pty::CLOSE_REPLACED, pty::REPLACED_REASON).await;
                    return;
                }
                Delivery::Terminated => {
                    close(&mut sink, pty::CLOSE_NORMAL, pty::TERMINATED_REASON).await;
                    return;
                }
            }
        }
    };
    let inbound = async {
        while let Some(Ok(message)) = stream.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => return,
                // Text carries nothing in this protocol; pings are answered by the library.
                _ => continue,
            };
            // Input to a process that exited fails (EIO) and is dropped like any typing
            // into a dead terminal; a refused resize leaves the old size.
            match ClientFrame::parse(&bytes) {
                Some(ClientFrame::Input(data)) => {
                    let _ = attachment.input(data).await;
                }
                Some(ClientFrame::Resize { cols, rows }) => {
                    let _ = attachment.resize(rows, cols);
                }
                Some(ClientFrame::Ready) => attachment.ready(),
                None => {}
            }
        }
    };
    tokio::select! {
        () = outbound => {}
        () = inbound => {}
    }
    // Detach at once; the handshake below may take a while.
    drop(attachment);
    finish_close(sink, stream).await;
}
