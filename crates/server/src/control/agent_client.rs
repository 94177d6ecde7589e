//! A small HTTP client for talking to sandbox agents (and the pooled client the
//! proxy forwards through).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Body type of requests sent to agents.
pub type AgentBody = axum::body::Body;

/// Pooled HTTP/1 client for agent traffic.
#[derive(Clone, Debug)]
pub struct AgentClient {
    inner: Client<HttpConnector, AgentBody>,
}

impl Default for AgentClient {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentClient {
    /// A client with keep-alive pooling and no overall timeout (streams are long).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
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

    /// POSTs JSON to `path` on the agent at `addr`; returns status and body.
    pub async fn post_json(
        &self,
        addr: SocketAddr,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(http::StatusCode, Bytes), String> {
        self.send_json(http::Method::POST, addr, path, body).await
    }

    /// Sends JSON with `method` to `path` on the agent at `addr`; returns status and body.
    pub async fn send_json(
        &self,
        method: http::Method,
        addr: SocketAddr,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(http::StatusCode, Bytes), String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
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
