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
use futures::{SinkExt, StreamExt};
use serde::Deserialize;

use super::body::WholeBody;
use super::error::{AgentError, AgentErrorCode, ApiError};
use super::openapi::{SessionParam, tags};
use super::parse_json;
use super::ws::{close, finish_close};
use crate::AgentState;
use crate::pty::session::{Attachment, Delivery};

/// `POST /pty` → 201 `{"session_id", "token"}`.
#[utoipa::path(
    post,
    path = "/api/v1/pty",
    tag = tags::PTY,
    operation_id = "createPty",
    request_body(content = CreatePtyRequest, description = "The command and terminal size; read whatever the `Content-Type`."),
    responses(
        (status = 201, description = "Started; attach with `GET /api/v1/pty/{session_id}/ws`.", body = CreatePtyResponse),
        (status = 400, description = "`INVALID_ARGUMENT` (body, size), `COMMAND_NOT_FOUND`, `NOT_EXECUTABLE`, `USER_NOT_FOUND` or `INVALID_WORKING_DIR`.", body = AgentError),
        (status = 403, description = "`PERMISSION_DENIED`: the agent cannot switch to that user.", body = AgentError),
        (status = 429, description = "`TOO_MANY_SESSIONS`: the session limit is reached.", body = AgentError),
        (status = 500, description = "`INTERNAL`: no terminal, or the command could not be spawned.", body = AgentError),
    )
)]
pub async fn create(
    State(state): State<AgentState>,
    WholeBody(body): WholeBody,
) -> Result<(StatusCode, Json<CreatePtyResponse>), ApiError> {
    let req: CreatePtyRequest = parse_json(&body)?;
    Ok((StatusCode::CREATED, Json(state.ptys().create(&req)?)))
}

/// `GET /pty` → every session (without tokens).
#[utoipa::path(
    get,
    path = "/api/v1/pty",
    tag = tags::PTY,
    operation_id = "listPtys",
    responses((status = 200, description = "Every session the agent keeps (never their tokens).", body = PtySessionList))
)]
pub async fn list(State(state): State<AgentState>) -> Json<PtySessionList> {
    Json(PtySessionList {
        sessions: state.ptys().list(),
    })
}

/// `GET /pty/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/pty/{id}",
    tag = tags::PTY,
    operation_id = "getPty",
    params(SessionParam),
    responses(
        (status = 200, description = "The session.", body = PtySessionInfo),
        (status = 404, description = "`NOT_FOUND`: no such session.", body = AgentError),
    )
)]
pub async fn get(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<Json<PtySessionInfo>, ApiError> {
    Ok(Json(state.ptys().get(&id)?.info()))
}

/// `DELETE /pty/{id}` → 204: kills the process tree and removes the session.
#[utoipa::path(
    delete,
    path = "/api/v1/pty/{id}",
    tag = tags::PTY,
    operation_id = "deletePty",
    params(SessionParam),
    responses(
        (status = 204, description = "Killed and removed; an attached client is closed with 1000 `session terminated`."),
        (status = 404, description = "`NOT_FOUND`: no such session.", body = AgentError),
    )
)]
pub async fn delete(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.ptys().delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /pty/{id}/resize` `{"cols", "rows"}` → the session.
#[utoipa::path(
    post,
    path = "/api/v1/pty/{id}/resize",
    tag = tags::PTY,
    operation_id = "resizePty",
    params(SessionParam),
    request_body(content = ResizeRequest, description = "The new size; read whatever the `Content-Type`."),
    responses(
        (status = 200, description = "Resized.", body = PtySessionInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body or a size out of range.", body = AgentError),
        (status = 404, description = "`NOT_FOUND`: no such session.", body = AgentError),
    )
)]
pub async fn resize(
    State(state): State<AgentState>,
    Path(id): Path<String>,
    WholeBody(body): WholeBody,
) -> Result<Json<PtySessionInfo>, ApiError> {
    state.ptys().get(&id)?;
    let req: ResizeRequest = parse_json(&body)?;
    Ok(Json(state.ptys().resize(&id, req.rows, req.cols)?))
}

/// Query of the WebSocket upgrade.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The session token (also accepted as the `X-PTY-Token` header).
    #[serde(default)]
    pub token: Option<String>,
}

/// `GET /pty/{id}/ws`: attaches to the session over a WebSocket (see the module docs).
#[utoipa::path(
    get,
    path = "/api/v1/pty/{id}/ws",
    tag = tags::PTY,
    operation_id = "attachPty",
    description = "Attaches to the session over a WebSocket of binary frames whose first byte is an opcode. Client to agent: `0x00` input bytes, `0x01` resize (cols, rows: u16 big-endian), `0x02` ready (output is held back until it arrives). Agent to client: `0x00` output bytes, `0x03` exit (i32 big-endian; 128+signal after a signal death). Text frames carry nothing. The agent closes with 1000 `exit:<code>` after the exit frame, 1000 `session terminated` when the session is deleted, and 4000 when a newer connection to the session replaces this one.",
    params(
        SessionParam,
        TokenQuery,
        ("X-PTY-Token" = Option<String>, Header, description = "The session token, instead of `?token=`."),
    ),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol."),
        (status = 400, description = "`INVALID_ARGUMENT`: not a WebSocket upgrade.", body = AgentError),
        (status = 403, description = "`INVALID_TOKEN`: the token is missing or wrong.", body = AgentError),
        (status = 404, description = "`NOT_FOUND`: no such session.", body = AgentError),
    )
)]
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
            AgentErrorCode::InvalidToken,
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
