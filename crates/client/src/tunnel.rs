//! TCP tunnels (docs/protocol/sandbox-api.md, TCP tunnels): a local port that leads to a port
//! inside a sandbox.
//!
//! A task accepts local connections; each gets its own WebSocket to
//! `/api/v1/tunnels/tcp?port=N` and two relays, as the Python SDK's `AsyncTunnel`. When the
//! sandbox refuses a connection (nothing listens on the port) that local connection is closed
//! and a warning logged, and the tunnel keeps listening. When the local side ends its half
//! (even a half-close), the WebSocket is closed, which closes the connection in the sandbox.

use std::net::SocketAddr;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use http::HeaderMap;
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

use crate::error::ClientError;
use crate::sandbox::Sandbox;
use crate::ws::{self, Socket};

/// Largest read from a local connection, and so the largest message sent.
pub const RELAY_CHUNK_BYTES: usize = 64 * 1024;

/// A local TCP listener whose connections are relayed to a port in the sandbox.
///
/// It listens from creation until [`Tunnel::close`] or drop; both end every relayed connection.
#[derive(Debug)]
pub struct Tunnel {
    local_addr: SocketAddr,
    remote_port: u16,
    accepting: JoinHandle<()>,
}

impl Sandbox {
    /// Listens on `local` (`None`: `127.0.0.1` on a free port) and relays each connection to
    /// `remote_port` in the sandbox.
    pub async fn create_tunnel(
        &self,
        remote_port: u16,
        local: Option<SocketAddr>,
    ) -> Result<Tunnel, ClientError> {
        if remote_port == 0 {
            return Err(ClientError::invalid(
                "remote_port must be between 1 and 65535",
            ));
        }
        let sandbox_url = self.info().sandbox_url.as_deref().unwrap_or_default();
        let url = crate::routing::tunnel_websocket_url(sandbox_url, self.id(), remote_port)?;
        let local = local.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(local)
            .await
            .map_err(|e| ClientError::io(format!("binding the tunnel listener on {local}"), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ClientError::io("reading the tunnel listener's address", e))?;
        let relay = Relay {
            sandbox: self.clone(),
            url,
            remote_port,
        };
        let accepting = tokio::spawn(accept(listener, relay));
        Ok(Tunnel {
            local_addr,
            remote_port,
            accepting,
        })
    }
}

impl Tunnel {
    /// The local address to connect to (with the port the system picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The port inside the sandbox.
    pub fn remote_port(&self) -> u16 {
        self.remote_port
    }

    /// Stops listening and closes every relayed connection.
    pub async fn close(mut self) {
        self.accepting.abort();
        // The accept task owns the relays: ending it drops (and so aborts) them.
        let _ = (&mut self.accepting).await;
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// What each relayed connection needs.
#[derive(Clone)]
struct Relay {
    sandbox: Sandbox,
    url: Url,
    remote_port: u16,
}

async fn accept(listener: TcpListener, relay: Relay) {
    let mut relays = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    relays.spawn(relay.clone().serve(stream));
                }
                Err(err) => {
                    // Out of descriptors or buffers: pause instead of spinning.
                    tracing::warn!(error = %err, "tunnel: accepting a local connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            },
            Some(_) = relays.join_next(), if !relays.is_empty() => {}
        }
    }
}

impl Relay {
    async fn serve(self, local: TcpStream) {
        let _ = local.set_nodelay(true);
        let what = format!("tunnel to sandbox port {}", self.remote_port);
        let socket = match ws::connect(
            self.sandbox.transport(),
            &self.url,
            &HeaderMap::new(),
            self.sandbox.id(),
            &what,
        )
        .await
        {
            Ok(socket) => socket,
            Err(err) => {
                tracing::warn!(
                    sandbox = self.sandbox.id(),
                    port = self.remote_port,
                    error = %err,
                    "tunnel: the sandbox refused a connection, closing it"
                );
                return;
            }
        };
        let (sink, stream) = socket.split();
        let (reader, writer) = local.into_split();
        let upstream = tokio::spawn(local_to_socket(reader, sink));
        socket_to_local(stream, writer).await;
        upstream.abort();
    }
}

async fn local_to_socket(mut reader: OwnedReadHalf, mut sink: SplitSink<Socket, Message>) {
    let mut buf = vec![0u8; RELAY_CHUNK_BYTES];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = bytes::Bytes::copy_from_slice(&buf[..n]);
                if sink.send(Message::Binary(chunk)).await.is_err() {
                    return;
                }
            }
        }
    }
    // The local side ended: so does the connection in the sandbox.
    let _ = sink.close().await;
}

async fn socket_to_local(mut stream: SplitStream<Socket>, mut writer: OwnedWriteHalf) {
    while let Some(Ok(message)) = stream.next().await {
        match message {
            Message::Binary(bytes) if writer.write_all(&bytes).await.is_err() => break,
            Message::Text(_) => {
                tracing::warn!("tunnel: unexpected text frame from the sandbox, closing");
                break;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = writer.shutdown().await;
}
