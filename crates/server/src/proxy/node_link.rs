//! How this node reaches another one when it relays a request: plain HTTP, or
//! HTTPS checked against the roots of [`crate::tls::client_config`].
//!
//! A node that serves HTTPS itself relays only over HTTPS: a relayed request
//! carries the client's API key and the cluster's relay token, and sending
//! them in clear to a peer would undo what the node's own TLS protects.

use std::sync::Arc;

use axum::body::Body;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream to a node: TCP, or TLS over TCP.
pub trait NodeStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> NodeStream for T {}

/// Where another node is, from the URL it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// Whether it is reached over TLS (`https://`).
    pub tls: bool,
    /// Its host: a DNS name or an IP address (no brackets), also the name its
    /// certificate must carry.
    pub host: String,
    /// Its port (80 or 443 when the URL names none).
    pub port: u16,
}

impl NodeAddress {
    /// Parses an advertised URL; `None` unless it is `http://` or `https://` with a host.
    pub fn parse(url: &str) -> Option<Self> {
        let uri: http::Uri = url.parse().ok()?;
        let tls = match uri.scheme_str()? {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return None;
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Some(Self {
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// `scheme://host:port`, brackets around an IPv6 host, for request URIs.
    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The clients that relay to other nodes.
#[derive(Clone, Debug)]
pub struct NodeLink {
    /// Pooled HTTP/1 client for relayed requests, `http://` and `https://`.
    client: Client<HttpsConnector<HttpConnector>, Body>,
    /// For relayed upgrades (WebSockets), which get a connection of their own.
    tls: Arc<ClientConfig>,
    /// This node serves HTTPS, so it relays only over HTTPS.
    tls_only: bool,
}

impl NodeLink {
    /// Relays trusting `roots`; `tls_only` when this node serves HTTPS.
    pub fn new(roots: Arc<ClientConfig>, tls_only: bool) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(ClientConfig::clone(&roots))
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(https);
        Self {
            client,
            tls: roots,
            tls_only,
        }
    }

    /// Relays over plain HTTP; every `https://` node fails its handshake (no
    /// trusted roots). For tests and tools that never reach other nodes.
    pub fn plain() -> Self {
        Self::new(crate::tls::no_roots(), false)
    }

    /// Whether a node at `address` may be relayed to; the reason when not.
    pub fn refuses(&self, address: &NodeAddress) -> Option<&'static str> {
        (self.tls_only && !address.tls).then_some(
            "this node serves HTTPS and relays only to nodes that advertise an https:// URL",
        )
    }

    /// Sends a relayed request (its URI names the node) and returns the answer's head.
    pub async fn send(
        &self,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(req).await
    }

    /// A connection of its own to the node at `address` (resolved to `addr`),
    /// TLS when the node advertises `https://`, for a relayed upgrade.
    pub async fn connect(
        &self,
        address: &NodeAddress,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<Box<dyn NodeStream>> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        if !address.tls {
            return Ok(Box::new(tcp));
        }
        let name = ServerName::try_from(address.host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
        Ok(Box::new(connector.connect(name, tcp).await?))
    }
}

/// The TLS failure behind a failed relay (a certificate not trusted, say), if
/// one is behind it: looked for down `error`'s chain of sources, inside I/O
/// errors too, where TLS connectors put it.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An I/O error's `source` skips the error it wraps; TLS connectors nest them.
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_urls_are_parsed() {
        let a = NodeAddress::parse("https://node-a.internal:8443").expect("https");
        assert_eq!(
            a,
            NodeAddress {
                tls: true,
                host: "node-a.internal".into(),
                port: 8443
            }
        );
        assert_eq!(a.base(), "https://node-a.internal:8443");
        let b = NodeAddress::parse("http://10.0.0.2").expect("http");
        assert_eq!((b.tls, b.port), (false, 80));
        assert_eq!(NodeAddress::parse("https://h/").map(|a| a.port), Some(443));
        let v6 = NodeAddress::parse("https://[fd00::2]:8900").expect("v6");
        assert_eq!(v6.host, "fd00::2");
        assert_eq!(v6.base(), "https://[fd00::2]:8900");
        for bad in ["ftp://h", "h:80", "", "http://"] {
            assert_eq!(NodeAddress::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors() {
        let io = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let found = tls_failure(&io).expect("found");
        assert!(found.contains("certificate"), "{found}");
        let nested = std::io::Error::other(io);
        assert_eq!(tls_failure(&nested).as_deref(), Some(found.as_str()));
        assert_eq!(tls_failure(&std::io::Error::other("refused")), None);
    }

    #[test]
    fn a_tls_node_relays_only_over_tls() {
        let roots = crate::tls::no_roots();
        let plain = NodeAddress::parse("http://10.0.0.2:8900").expect("plain");
        let tls = NodeAddress::parse("https://10.0.0.2:8900").expect("tls");
        let strict = NodeLink::new(Arc::clone(&roots), true);
        assert!(strict.refuses(&plain).is_some());
        assert!(strict.refuses(&tls).is_none());
        let open = NodeLink::new(roots, false);
        assert!(open.refuses(&plain).is_none());
    }
}
