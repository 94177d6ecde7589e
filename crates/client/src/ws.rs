//! Opening a WebSocket to a sandbox (PTY sessions, TCP tunnels), as the Python SDK's
//! `_websocket.py`: the self-routing URL names the sandbox, so no `Host` override is sent; the
//! API key, the user agent and (for a PTY) the session token travel as headers.
//!
//! A refused upgrade is mapped like any proxy answer ([`ClientError::SandboxNotFound`] for the
//! proxy's `SANDBOX_NOT_FOUND`, [`ClientError::Api`] with its status otherwise).

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use reqwest::Url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{ClientError, Scope, TimeoutSetting, error_from_answer};
use crate::transport::{Transport, USER_AGENT};

/// Longest wait for the peer to answer our close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// An open WebSocket to a sandbox.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `url` with the client's headers plus `extra`; the handshake waits at most the
/// client's connect timeout. `what` names the socket in errors.
pub(crate) async fn connect(
    transport: &Transport,
    url: &Url,
    extra: &HeaderMap,
    sandbox_id: &str,
    what: &str,
) -> Result<Socket, ClientError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::invalid(format!("{what}: {e}")))?;
    let headers = request.headers_mut();
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    for (name, value) in transport.base_headers().iter().chain(extra.iter()) {
        headers.insert(name.clone(), value.clone());
    }
    let limit = transport.config.connect_timeout();
    let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::clone(&transport.tls));
    let handshake =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector));
    match tokio::time::timeout(limit, handshake).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(error_from_answer(
                response.status(),
                body,
                &Scope::Proxy(sandbox_id.to_string()),
            ))
        }
        Ok(Err(err)) => Err(ClientError::Connection {
            what: what.to_string(),
            detail: crate::transport::chain(&err),
        }),
        Err(_) => Err(ClientError::Timeout {
            what: what.to_string(),
            detail: format!(
                "timed out opening the WebSocket within {}s",
                limit.as_secs_f64()
            ),
            setting: TimeoutSetting::Timeout,
            after: limit,
        }),
    }
}

/// The close frame's code and reason, when a message is one.
pub(crate) fn close_details(message: &Message) -> Option<(Option<u16>, String)> {
    match message {
        Message::Close(Some(frame)) => Some((Some(frame.code.into()), frame.reason.to_string())),
        Message::Close(None) => Some((None, String::new())),
        _ => None,
    }
}
