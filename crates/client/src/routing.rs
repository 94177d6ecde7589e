//! URLs: the control plane's, and how a sandbox's agent is reached through the proxy.
//!
//! The same rules as the Python SDK (`_protocol/_routing.py`, `_websocket.py`; see
//! docs/protocol/proxy.md, Addressing a sandbox):
//!
//! * HTTP to a sandbox goes to its `sandbox_url`. A `localhost` / `127.0.0.1` proxy keeps the
//!   whole URL (path prefix included) and is routed by `Host: <sandbox_id>.local`; any other host
//!   keeps only `scheme://host[:port]` and is routed by `X-Tensorlake-Sandbox-Id`.
//! * WebSockets (PTY, tunnels) use the self-routing form
//!   `ws(s)://host[:port][/prefix]/sandboxes/<sandbox_id>/api/v1/...`, so the URL alone routes
//!   and any WebSocket client can use it. The PTY URL keeps a path prefix of `sandbox_url`; the
//!   tunnel URL replaces the whole path.
//!
//! Every path segment is percent-encoded by [`reqwest::Url`], so ids and names cannot escape
//! their segment.

use http::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use crate::config::ClientConfig;
use crate::error::ClientError;

/// Header routing a request to a sandbox on a non-local proxy.
pub const SANDBOX_ID_HEADER: &str = "x-tensorlake-sandbox-id";

/// `base` with `segments` appended (each percent-encoded as one segment).
pub(crate) fn join(base: &Url, segments: &[&str]) -> Result<Url, ClientError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ClientError::invalid(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// `{api_url}/v1/namespaces/{namespace}/{segments...}`.
pub(crate) fn control_url(cfg: &ClientConfig, segments: &[&str]) -> Result<Url, ClientError> {
    let base = parse(&cfg.api_url, "api_url")?;
    let mut all = vec!["v1", "namespaces", cfg.namespace.as_str()];
    all.extend_from_slice(segments);
    join(&base, &all)
}

/// `<api_url>/<segments…>`: a route of the server itself, outside any namespace
/// (`/nodes`).
pub(crate) fn server_url(cfg: &ClientConfig, segments: &[&str]) -> Result<Url, ClientError> {
    let base = parse(&cfg.api_url, "api_url")?;
    join(&base, segments)
}

fn parse(url: &str, what: &str) -> Result<Url, ClientError> {
    Url::parse(url.trim()).map_err(|e| ClientError::invalid(format!("{what} {url:?}: {e}")))
}

/// Where and how to reach one sandbox's agent through the proxy.
#[derive(Debug, Clone)]
pub(crate) struct ProxyTarget {
    /// Base URL that `/api/v1/...` is appended to.
    pub base: Url,
    /// The routing header (`Host` or `X-Tensorlake-Sandbox-Id`).
    pub headers: HeaderMap,
}

impl ProxyTarget {
    /// Addresses `sandbox_id` through `sandbox_url`.
    pub fn new(sandbox_url: &str, sandbox_id: &str) -> Result<Self, ClientError> {
        let not_routable = || {
            ClientError::NotRoutable(format!(
                "sandbox {sandbox_id}: unusable sandbox_url {sandbox_url:?}"
            ))
        };
        let mut base = Url::parse(sandbox_url.trim()).map_err(|_| not_routable())?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(not_routable());
        }
        // Credentials in the URL are never sent along (the API key travels as a header).
        base.set_username("").map_err(|()| not_routable())?;
        base.set_password(None).map_err(|()| not_routable())?;
        base.set_query(None);
        base.set_fragment(None);
        let mut headers = HeaderMap::new();
        let local = matches!(base.host_str(), Some("localhost" | "127.0.0.1"));
        if local {
            let trimmed = base.path().trim_end_matches('/').to_string();
            base.set_path(&trimmed);
            let host = HeaderValue::try_from(format!("{sandbox_id}.local"))
                .map_err(|_| ClientError::invalid(format!("sandbox id {sandbox_id:?}")))?;
            headers.insert(http::header::HOST, host);
        } else {
            base.set_path("");
            let id = HeaderValue::try_from(sandbox_id)
                .map_err(|_| ClientError::invalid(format!("sandbox id {sandbox_id:?}")))?;
            headers.insert(HeaderName::from_static(SANDBOX_ID_HEADER), id);
        }
        Ok(Self { base, headers })
    }

    /// The URL of `/api/v1/{segments...}` in the sandbox.
    pub fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        join(&self.base, &all)
    }
}

/// `ws(s)://host[:port][/prefix]/sandboxes/<sandbox_id>/api/v1/{segments...}`.
fn self_routing(
    sandbox_url: &str,
    sandbox_id: &str,
    keep_path: bool,
    segments: &[&str],
) -> Result<Url, ClientError> {
    let not_routable = || {
        ClientError::NotRoutable(format!(
            "sandbox {sandbox_id}: unusable sandbox_url {sandbox_url:?}"
        ))
    };
    let mut url = Url::parse(sandbox_url.trim()).map_err(|_| not_routable())?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(not_routable()),
    };
    url.set_scheme(scheme).map_err(|()| not_routable())?;
    url.set_username("").map_err(|()| not_routable())?;
    url.set_password(None).map_err(|()| not_routable())?;
    url.set_query(None);
    url.set_fragment(None);
    if !keep_path {
        url.set_path("");
    }
    let mut all = vec!["sandboxes", sandbox_id, "api", "v1"];
    all.extend_from_slice(segments);
    join(&url, &all)
}

/// The self-routing URL of a PTY session's socket, its token in the query
/// (docs/protocol/streaming.md, PTY WebSocket).
pub(crate) fn pty_websocket_url(
    sandbox_url: &str,
    sandbox_id: &str,
    session_id: &str,
    token: &str,
) -> Result<Url, ClientError> {
    let mut url = self_routing(sandbox_url, sandbox_id, true, &["pty", session_id, "ws"])?;
    url.query_pairs_mut().append_pair("token", token);
    Ok(url)
}

/// The self-routing URL of a TCP tunnel to `port` (the whole path is replaced;
/// docs/protocol/proxy.md, Addressing a sandbox).
pub(crate) fn tunnel_websocket_url(
    sandbox_url: &str,
    sandbox_id: &str,
    port: u16,
) -> Result<Url, ClientError> {
    let mut url = self_routing(sandbox_url, sandbox_id, false, &["tunnels", "tcp"])?;
    url.query_pairs_mut().append_pair("port", &port.to_string());
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(url: &str, namespace: &str) -> ClientConfig {
        ClientConfig {
            api_url: url.into(),
            api_key: None,
            namespace: namespace.into(),
            timeout: Duration::from_secs(1),
            stream_idle_timeout: None,
        }
    }

    #[test]
    fn control_urls_keep_a_prefix_and_encode_segments() {
        let url = control_url(&cfg("http://h:1", "default"), &["sandboxes", "a b/c"]).expect("url");
        assert_eq!(
            url.as_str(),
            "http://h:1/v1/namespaces/default/sandboxes/a%20b%2Fc"
        );
        let url = control_url(&cfg("http://h:1/alcove", "ns"), &["snapshots"]).expect("url");
        assert_eq!(url.as_str(), "http://h:1/alcove/v1/namespaces/ns/snapshots");
    }

    #[test]
    fn a_local_proxy_routes_by_host_and_keeps_its_path() {
        let target = ProxyTarget::new("http://localhost:8900/prefix/", "sb-1").expect("target");
        assert_eq!(target.headers[http::header::HOST], "sb-1.local");
        assert!(target.headers.get(SANDBOX_ID_HEADER).is_none());
        let url = target.url(&["processes", "42", "stdin"]).expect("url");
        assert_eq!(
            url.as_str(),
            "http://localhost:8900/prefix/api/v1/processes/42/stdin"
        );
        let plain = ProxyTarget::new("http://127.0.0.1:8900", "sb-1").expect("target");
        assert_eq!(
            plain.url(&["files"]).expect("url").as_str(),
            "http://127.0.0.1:8900/api/v1/files"
        );
    }

    #[test]
    fn a_remote_proxy_routes_by_header_and_drops_path_and_credentials() {
        let target = ProxyTarget::new("https://user:pw@proxy.example:443/some/path", "sb-1")
            .expect("target");
        assert_eq!(target.headers[SANDBOX_ID_HEADER], "sb-1");
        assert!(target.headers.get(http::header::HOST).is_none());
        assert_eq!(
            target.url(&["processes"]).expect("url").as_str(),
            "https://proxy.example/api/v1/processes"
        );
        assert!(matches!(
            ProxyTarget::new("ftp://x", "sb"),
            Err(ClientError::NotRoutable(_))
        ));
        assert!(matches!(
            ProxyTarget::new("", "sb"),
            Err(ClientError::NotRoutable(_))
        ));
    }

    #[test]
    fn websocket_urls_route_by_path() {
        let pty = pty_websocket_url("http://localhost:8900/p", "sb", "s/1", "t&k").expect("url");
        assert_eq!(
            pty.as_str(),
            "ws://localhost:8900/p/sandboxes/sb/api/v1/pty/s%2F1/ws?token=t%26k"
        );
        let tunnel = tunnel_websocket_url("https://h/p", "sb", 8080).expect("url");
        assert_eq!(
            tunnel.as_str(),
            "wss://h/sandboxes/sb/api/v1/tunnels/tcp?port=8080"
        );
    }
}
