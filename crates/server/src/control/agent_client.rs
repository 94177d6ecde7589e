//! A small HTTP client for talking to sandbox agents (and the pooled client the
//! proxy forwards through).
//!
//! Its connections are kept alive and pooled by host name, and the host names are not the
//! sandboxes' addresses but [`Upstream::url`]'s, which name the run of the sandbox's network
//! stack as well; the client's own resolver turns them back into the address. A sandbox's
//! address outlives its network stack: a suspend tears the stack down and a resume builds a
//! new one at the same address, and a new sandbox may get an ended one's address. A
//! connection to the stack before is dead, and when the stack went before its end of the
//! connection could say so (a close racing the removal of the network), nothing tells this
//! client: the next request sent on it would fail with a reset. Keyed by run, such a
//! connection is never picked again, and leaves the pool when it idles out. (Other names, a
//! node's for a relayed copy, are looked up as usual.)

use std::future::{Future, ready};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use alcove_runtime::SandboxHandle;
use alcove_runtime::node::AGENT_PORT;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiAddrs, GaiResolver, Name};
use hyper_util::rt::TokioExecutor;

/// Body type of requests sent to agents.
pub type AgentBody = axum::body::Body;

/// The domain of [`Upstream::url`]'s host names (`.invalid` never resolves elsewhere).
const RUN_DOMAIN: &str = ".alcove.invalid";

/// One run of a sandbox's network stack: its address, and its handle's
/// [`SandboxHandle::run`]. Requests to it go to [`Upstream::url`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    ip: Ipv4Addr,
    run: u64,
}

impl Upstream {
    /// Where the sandbox of `handle` answers in the run `handle` is of.
    pub fn of(handle: &SandboxHandle) -> Self {
        Self {
            ip: handle.ip,
            run: handle.run(),
        }
    }

    /// Its address with `port`: what a request to it carries as `Host`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip, port))
    }

    /// The URL of `path` (with its query) on `port`, for [`AgentClient`]: a host name that
    /// holds the address and the run (`10-0-0-2.r7.alcove.invalid`).
    pub fn url(&self, port: u16, path: &str) -> String {
        let [a, b, c, d] = self.ip.octets();
        format!(
            "http://{a}-{b}-{c}-{d}.r{}{RUN_DOMAIN}:{port}{path}",
            self.run
        )
    }

    /// [`Upstream::url`] on the agent's port.
    pub fn agent_url(&self, path: &str) -> String {
        self.url(AGENT_PORT, path)
    }

    /// A request with `method` for `path` on the agent: to [`Upstream::agent_url`], with the
    /// address the agent listens on as `Host` (the run's name is only the pool's).
    pub fn agent_request(&self, method: http::Method, path: &str) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri(self.agent_url(path))
            .header(http::header::HOST, self.addr(AGENT_PORT).to_string())
    }
}

/// The address an [`Upstream::url`] host name holds; `None` for any other name.
fn address_of(host: &str) -> Option<Ipv4Addr> {
    let (dashed, run) = host.strip_suffix(RUN_DOMAIN)?.split_once('.')?;
    run.strip_prefix('r')?.parse::<u64>().ok()?;
    dashed.replace('-', ".").parse().ok()
}

/// The resolver of [`AgentClient`]'s connector: [`Upstream::url`] names to their address,
/// without a lookup; any other name (another node's, for a relayed copy) as the system
/// resolves it.
#[derive(Debug, Clone)]
struct RunResolver {
    system: GaiResolver,
}

/// The addresses [`RunResolver`] answers.
enum Addresses {
    Run(std::iter::Once<SocketAddr>),
    System(GaiAddrs),
}

impl Iterator for Addresses {
    type Item = SocketAddr;

    fn next(&mut self) -> Option<SocketAddr> {
        match self {
            Self::Run(one) => one.next(),
            Self::System(addrs) => addrs.next(),
        }
    }
}

impl tower::Service<Name> for RunResolver {
    type Response = Addresses;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addresses, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        match address_of(name.as_str()) {
            // The port is the URL's: the connector sets it on the address.
            Some(ip) => Box::pin(ready(Ok(Addresses::Run(std::iter::once(
                SocketAddr::from((ip, 0)),
            ))))),
            None => {
                let lookup = self.system.call(name);
                Box::pin(async move { lookup.await.map(Addresses::System) })
            }
        }
    }
}

/// Pooled HTTP/1 client for agent traffic.
#[derive(Clone, Debug)]
pub struct AgentClient {
    inner: Client<HttpConnector<RunResolver>, AgentBody>,
}

impl Default for AgentClient {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentClient {
    /// A client with keep-alive pooling and no overall timeout (streams are long).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new_with_resolver(RunResolver {
            system: GaiResolver::new(),
        });
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(connector);
        Self { inner }
    }

    /// Sends a request as is (the proxy's path).
    pub async fn send(
        &self,
        req: http::Request<AgentBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.inner.request(req).await
    }

    /// POSTs JSON to `path` on the agent of `upstream`; returns status and body.
    pub async fn post_json(
        &self,
        upstream: Upstream,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(http::StatusCode, Bytes), String> {
        self.send_json(http::Method::POST, upstream, path, body)
            .await
    }

    /// Sends JSON with `method` to `path` on the agent of `upstream`; returns status and body.
    pub async fn send_json(
        &self,
        method: http::Method,
        upstream: Upstream,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(http::StatusCode, Bytes), String> {
        let req = upstream
            .agent_request(method, path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(AgentBody::new(Full::new(Bytes::from(body.to_string()))))
            .map_err(|e| e.to_string())?;
        let resp = self.inner.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_url_names_the_address_and_the_run_and_resolves_to_the_address() {
        let one = Upstream {
            ip: Ipv4Addr::new(10, 77, 69, 242),
            run: 7,
        };
        let url = one.agent_url("/api/v1/files?path=/x");
        assert_eq!(
            url,
            "http://10-77-69-242.r7.alcove.invalid:9501/api/v1/files?path=/x"
        );
        let uri: http::Uri = url.parse().expect("a valid URI");
        let host = uri.host().expect("host");
        assert_eq!(address_of(host), Some(one.ip));
        // Another run at the same address is another host, so another pool of connections.
        let next = Upstream { run: 8, ..one };
        assert_ne!(next.url(8080, "/"), one.url(8080, "/"));
        assert_eq!(one.addr(8080).to_string(), "10.77.69.242:8080");
        for other in [
            "example.com",
            "10-77-69-242.alcove.invalid",
            "10-77-69-242.x7.alcove.invalid",
            "10-77-69.r7.alcove.invalid",
            "10-77-69-242.r7.alcove.invalid.example.com",
        ] {
            assert_eq!(address_of(other), None, "{other}");
        }
    }
}
