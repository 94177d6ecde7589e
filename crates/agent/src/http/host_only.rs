//! The agent answers the host only. Its API runs any command as any user, so a process of
//! the sandbox that reached it (at `127.0.0.1:9501`, or at the sandbox's own address) would
//! turn any user of the sandbox into its root. The host's proxy connects from the sandbox's
//! gateway, an address no process of the sandbox can send from without `CAP_NET_ADMIN`
//! (which only the sandbox's root has, and root needs nothing of the agent).

use std::net::SocketAddr;

use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};

use super::error::{AgentErrorCode, ApiError};

/// Both ends of a connection to the agent.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    /// The agent's address the connection came to.
    pub local: SocketAddr,
    /// Where it came from.
    pub remote: SocketAddr,
}

impl Ends {
    /// Whether the connection comes from inside the sandbox: from a loopback address, or
    /// from the very address it reached (a sandbox's own processes send from its own
    /// addresses; the host from the gateway).
    pub fn from_inside(&self) -> bool {
        let from = self.remote.ip();
        from.is_loopback() || from == self.local.ip()
    }
}

/// The agent's TCP listener for the host-only service: each connection comes with its
/// [`Ends`], and without Nagle (output lines are small writes that should leave at once).
#[derive(Debug)]
pub struct EndsListener(pub TcpListener);

impl Listener for EndsListener {
    type Io = TcpStream;
    type Addr = Ends;

    async fn accept(&mut self) -> (TcpStream, Ends) {
        // axum's accept of a TCP listener, which waits out errors such as EMFILE.
        let (tcp, remote) = Listener::accept(&mut self.0).await;
        let _ = tcp.set_nodelay(true);
        // An accepted socket always has a local address; were it missing, the remote one
        // makes the connection count as from inside (refused), never as from the host.
        let local = tcp.local_addr().unwrap_or(remote);
        (tcp, Ends { local, remote })
    }

    /// The listening address as both ends.
    fn local_addr(&self) -> std::io::Result<Ends> {
        let at = self.0.local_addr()?;
        Ok(Ends {
            local: at,
            remote: at,
        })
    }
}

impl Connected<IncomingStream<'_, EndsListener>> for Ends {
    fn connect_info(stream: IncomingStream<'_, EndsListener>) -> Self {
        *stream.remote_addr()
    }
}

/// Refuses a request that comes from inside the sandbox.
pub async fn refuse_inside(
    ConnectInfo(ends): ConnectInfo<Ends>,
    req: Request,
    next: Next,
) -> Response {
    if ends.from_inside() {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            AgentErrorCode::PermissionDenied,
            "the sandbox's agent answers the host only, not processes of the sandbox",
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(local: &str, remote: &str) -> Ends {
        Ends {
            local: local.parse().expect("local"),
            remote: remote.parse().expect("remote"),
        }
    }

    #[test]
    fn only_the_host_is_outside() {
        assert!(!ends("10.77.0.2:9501", "10.77.0.1:40000").from_inside());
        assert!(ends("127.0.0.1:9501", "127.0.0.1:40000").from_inside());
        assert!(ends("10.77.0.2:9501", "127.0.0.1:40000").from_inside());
        assert!(ends("10.77.0.2:9501", "10.77.0.2:40000").from_inside());
        assert!(ends("127.0.0.1:9501", "127.5.6.7:40000").from_inside());
    }
}
