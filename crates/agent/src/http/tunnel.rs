//! `GET /api/v1/tunnels/tcp?port=N` (docs/protocol/sandbox-api.md, TCP tunnels): a WebSocket
//! relaying raw bytes to `127.0.0.1:N` inside the sandbox.
//!
//! The TCP connection is made *before* the upgrade is accepted, so a client learns at once
//! that nothing listens: 502 `CONNECTION_REFUSED` (other connect failures, including a
//! [`CONNECT_TIMEOUT`], are 502 `CONNECTION_FAILED`); a missing or bad port is 400. Then
//! every binary message from the client is written to the connection, and every read from
//! the connection becomes one binary message (never a text frame; client text frames are
//! ignored). End of file from the service closes the WebSocket with 1000; a failed
//! connection with 1011; a client close or disconnect closes the connection.
//!
//! Back-pressure: each direction writes before it reads again, so at most one read
//! ([`READ_CHUNK_BYTES`]) per direction is in the agent's hands.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::{AgentError, AgentErrorCode, ApiError};
use super::openapi::tags;
use super::ws::{close, finish_close};

/// Longest wait for the service to accept the connection (a full accept backlog).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest read from the service, and so the largest message sent to the client.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Query of the tunnel upgrade.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TunnelQuery {
    /// Port inside the sandbox, 1 to 65535 (kept as text to answer a clear 400).
    #[serde(default)]
    pub port: Option<String>,
}

fn parse_port(query: Result<Query<TunnelQuery>, QueryRejection>) -> Result<u16, ApiError> {
    let port = query
        .ok()
        .and_then(|Query(q)| q.port)
        .ok_or_else(|| ApiError::invalid("query parameter `port` is required"))?;
    match port.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(ApiError::invalid(format!(
            "invalid port {port:?}: expected 1 to 65535"
        ))),
    }
}

/// `GET /tunnels/tcp?port=N`: connects, then upgrades and relays (see the module docs).
#[utoipa::path(
    get,
    path = "/api/v1/tunnels/tcp",
    tag = tags::TUNNELS,
    operation_id = "tcpTunnel",
    description = "Connects to `127.0.0.1:<port>` inside the sandbox, then upgrades to a WebSocket relaying raw bytes as binary messages in both directions. The service closing its side closes the WebSocket with 1000; a failed connection with 1011.",
    params(TunnelQuery),
    responses(
        (status = 101, description = "Connected; switched to the WebSocket protocol."),
        (status = 400, description = "`INVALID_ARGUMENT`: no port, a port outside 1-65535, or not a WebSocket upgrade.", body = AgentError),
        (status = 502, description = "`CONNECTION_REFUSED` (nothing listens on the port) or `CONNECTION_FAILED`.", body = AgentError),
    )
)]
pub async fn tcp(
    query: Result<Query<TunnelQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let port = parse_port(query)?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::invalid(format!("expected a WebSocket upgrade: {rejection}"))
    })?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut)));
    let tcp = connected.map_err(|err| {
        let code = if err.kind() == io::ErrorKind::ConnectionRefused {
            AgentErrorCode::ConnectionRefused
        } else {
            AgentErrorCode::ConnectionFailed
        };
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            code,
            format!("cannot connect to port {port} inside the sandbox: {err}"),
        )
    })?;
    // Interactive protocols (VNC, shells) want small writes to leave at once.
    let _ = tcp.set_nodelay(true);
    Ok(upgrade.on_upgrade(move |socket| relay(socket, tcp)))
}

/// How a relay ended.
enum Ending {
    /// The service closed its side: close the WebSocket normally.
    ServiceClosed,
    /// Reading from or writing to the service failed.
    ServiceFailed,
    /// The client closed the WebSocket or went away.
    ClientGone,
}

async fn relay(socket: WebSocket, tcp: TcpStream) {
    let (mut sink, mut stream) = socket.split();
    let (mut from_service, mut to_service) = tcp.into_split();
    let upstream = async {
        while let Some(Ok(message)) = stream.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => return Ending::ClientGone,
                // Text carries nothing here; pings are answered by the library.
                _ => continue,
            };
            if to_service.write_all(&bytes).await.is_err() {
                return Ending::ServiceFailed;
            }
        }
        Ending::ClientGone
    };
    let downstream = async {
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        loop {
            match from_service.read(&mut buf).await {
                Ok(0) => return Ending::ServiceClosed,
                Ok(n) => {
                    let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(message).await.is_err() {
                        return Ending::ClientGone;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ending::ServiceFailed,
            }
        }
    };
    let ending = tokio::select! {
        ending = upstream => ending,
        ending = downstream => ending,
    };
    // The connection closes here, whichever side ended first.
    drop((from_service, to_service));
    let closing = match ending {
        Ending::ServiceClosed => Some((1000, "")),
        Ending::ServiceFailed => Some((1011, "connection to the service failed")),
        Ending::ClientGone => None,
    };
    if let Some((code, reason)) = closing {
        close(&mut sink, code, reason).await;
    }
    finish_close(sink, stream).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(port: Option<&str>) -> Result<Query<TunnelQuery>, QueryRejection> {
        Ok(Query(TunnelQuery {
            port: port.map(String::from),
        }))
    }

    #[test]
    fn ports_are_checked() {
        assert_eq!(parse_port(query(Some("8080"))).ok(), Some(8080));
        for bad in [None, Some("0"), Some("65536"), Some("-1"), Some("http")] {
            let err = parse_port(query(bad)).expect_err("refused");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
    }
}
