//! Forwarding of one request (or WebSocket/upgrade) to a sandbox's agent.

use alcove_wire::error::ErrorCode;
use alcove_wire::sandbox::SandboxStatus;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use super::routing::sandbox_ident;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::control::{ControlError, Target, Upstream};

/// How long a request to a suspended sandbox waits for the resume it triggers.
const AUTO_RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

const HOP_BY_HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s != "upgrade")
        .collect();
    for name in listed {
        headers.remove(name.as_str());
    }
    headers.remove("keep-alive");
    if !keep_upgrade {
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
    } else {
        for name in HOP_BY_HOP
            .iter()
            .filter(|n| **n != header::CONNECTION && **n != header::UPGRADE)
        {
            headers.remove(name);
        }
    }
}

pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// `node` (`node <name>`) failed the TLS check of a relay: its certificate
/// is not trusted, or names another host.
pub(super) fn tls_refused(node: &str, why: &str) -> ApiError {
    tracing::warn!(target_name = %node, error = %why, "a node failed the TLS check of a relay");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::SandboxUnreachable,
        format!(
            "{node} failed the TLS check ({why}): its certificate must be issued for the host \
             of its advertised URL by a CA this node trusts (the system's, or --tls-ca)"
        ),
    )
}

/// `what` (`sandbox <id>`, `node <name>`) did not answer.
pub(super) fn unreachable(what: &str, detail: impl std::fmt::Display) -> ApiError {
    tracing::warn!(target_name = %what, error = %detail, "upstream unreachable");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::SandboxUnreachable,
        format!("{what} did not answer"),
    )
}

/// Proxies `/api/v1/*` to the sandbox named by the `Host` or
/// `X-Tensorlake-Sandbox-Id` header (docs/protocol/proxy.md, Addressing a sandbox).
pub async fn forward(State(state): State<AppState>, req: Request) -> Response {
    let result = match sandbox_ident(req.headers()) {
        Some(ident) => {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            forward_to(state, ident, path, req, Port::Agent).await
        }
        None => Err(ApiError::bad_request(
            "no sandbox addressed: send `Host: <sandbox-id>.local` or `X-Tensorlake-Sandbox-Id`, \
             or use /sandboxes/<sandbox-id>/api/v1/...",
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Proxies `/sandboxes/{id}/api/v1/*`: the sandbox is named in the path, so the
/// URL alone routes (for plain WebSocket clients given a `websocket_url`).
pub async fn forward_by_path(
    State(state): State<AppState>,
    Path((ident, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    // The tail as sent, still percent-encoded: `rest` is decoded, so a process named `a b`
    // became an invalid URI, `a?b` a query and `%2F` a slash on the way to the agent.
    let tail = raw_tail(req.uri().path()).unwrap_or(&rest).to_string();
    let path = format!("/api/v1/{tail}{query}");
    forward_to(state, ident, path, req, Port::Agent)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The part of a raw `…/sandboxes/{id}/api/v1/{tail}` path after `/api/v1/`: the segment
/// after `/sandboxes/` is the id (a `/` in it is encoded), what follows it must be `/api/v1/`.
fn raw_tail(path: &str) -> Option<&str> {
    let at = path.find("/sandboxes/")? + "/sandboxes/".len();
    let after_id = &path[at..];
    let slash = after_id.find('/')?;
    after_id[slash..].strip_prefix("/api/v1/")
}

/// Forwards `req` to the agent of sandbox `ident` at `path` (the desktop page's
/// socket, which is routed by its own URL).
pub(crate) async fn forward_to_agent(
    state: AppState,
    ident: String,
    path: String,
    req: Request,
) -> Result<Response, ApiError> {
    forward_to(state, ident, path, req, Port::Agent).await
}

/// Which port of the sandbox a request goes to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Port {
    /// The agent's sandbox API (9501).
    Agent,
    /// A user port; must be in the sandbox's `exposed_ports`.
    User(u16),
}

/// Forwards `req` (its path rewritten to `path`) to a sandbox's agent or to
/// one of its exposed ports: finds the sandbox (waking it when it sleeps and
/// may be woken), picks the upstream address, then relays an HTTP upgrade or a
/// plain request.
pub(super) async fn forward_to(
    state: AppState,
    ident: String,
    path: String,
    req: Request,
    port: Port,
) -> Result<Response, ApiError> {
    let target = admitted_target(&state, &ident, port, req.headers()).await?;
    let target = wake_if_asleep(&state, target).await?;
    let id = target.record.id.clone();
    let upstream = running_upstream(&target)?;
    let port = match port {
        Port::Agent => alcove_runtime::node::AGENT_PORT,
        Port::User(p) => p,
    };
    let addr = upstream.addr(port);
    let guard = state.control.enter_request(&id);
    let upgrade = is_upgrade(req.headers());
    let mut headers = req.headers().clone();
    strip_hop_by_hop(&mut headers, upgrade);
    // API keys are for Alcove, never for the sandbox; nor is how nodes relayed it.
    headers.remove(header::AUTHORIZATION);
    for name in super::owner::RELAY_HEADERS {
        headers.remove(name);
    }
    headers.insert(
        header::HOST,
        HeaderValue::from_str(&addr.to_string())
            .map_err(|e| unreachable(&format!("sandbox {id}"), e))?,
    );
    let label = format!("sandbox {id}");
    if upgrade {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable(&label, e))?;
        let _ = stream.set_nodelay(true);
        relay_upgrade(&label, Box::new(stream), &path, headers, req, Some(guard)).await
    } else {
        let uri = upstream.url(port, &path);
        relay_request(
            Via::Agent(&state.agents),
            &label,
            uri,
            headers,
            req,
            Some(guard),
        )
        .await
    }
}

/// The sandbox `ident` names, once the request may reach `port` of it: a user port must be
/// exposed and, unless the sandbox waives it, the request must carry an API key (the agent's
/// port is behind the key check already). Checked on the record, before anything wakes the
/// sandbox, and without a key a sandbox that is missing or not public answers as the key check
/// does: an anonymous request neither wakes a sandbox nor learns which ones exist.
async fn admitted_target(
    state: &AppState,
    ident: &str,
    port: Port,
    headers: &HeaderMap,
) -> Result<Target, ApiError> {
    let Port::User(p) = port else {
        return Ok(state.control.sandboxes.target(ident).await?);
    };
    let found = state.control.sandboxes.target(ident).await;
    if !state.keys.is_empty()
        && let Err(refused) = state.keys.check(headers)
        && !found
            .as_ref()
            .is_ok_and(|t| t.record.allow_unauthenticated_access)
    {
        return Err(refused);
    }
    let target = found?;
    if !target.record.exposed_ports.contains(&i64::from(p)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Unauthorized,
            format!("port {p} of sandbox {ident} is not exposed"),
        ));
    }
    Ok(target)
}

/// `target`, resumed first when it is suspended with `auto_resume` (traffic wakes it).
async fn wake_if_asleep(state: &AppState, target: Target) -> Result<Target, ApiError> {
    if target.record.status != SandboxStatus::Suspended || !target.record.auto_resume {
        return Ok(target);
    }
    let id = target.record.id.clone();
    let (_, resumed) = state
        .control
        .suspension
        .resume(None, &id, Some(AUTO_RESUME_WAIT))
        .await?;
    if resumed {
        return Ok(state.control.sandboxes.target(&id).await?);
    }
    Ok(target)
}

/// Where the sandbox of `target` answers, when it is running (or briefly frozen by a
/// snapshot); else why the request cannot reach it.
fn running_upstream(target: &Target) -> Result<Upstream, ApiError> {
    let id = &target.record.id;
    match (target.record.status, target.agent) {
        // A snapshot only freezes the sandbox for a moment: let requests wait for it.
        (SandboxStatus::Running | SandboxStatus::Snapshotting, Some(upstream)) => Ok(upstream),
        // The record was read just before a suspend took the sandbox out of the routes (or
        // a start or resume has not put it in yet): nothing reached it, and a moment later
        // it answers, or says it suspends. A 503 that clients may replay, not a 502.
        (SandboxStatus::Running | SandboxStatus::Snapshotting, None) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::SandboxNotReady,
            format!("sandbox {id} is changing state (a suspend or resume is under way); retry"),
        )),
        (status, _) if status.is_live() => Err(ControlError::NotReady {
            id: id.to_string(),
            status,
        }
        .into()),
        (status, _) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("sandbox {id} is {status}"),
        )),
    }
}

/// Relays an HTTP upgrade (PTY and tunnel WebSockets): the upstream answers
/// 101, then bytes are copied both ways until either side closes; the request
/// counts as in flight until then.
pub(super) async fn relay_upgrade(
    id: &str,
    stream: Box<dyn super::node_link::NodeStream>,
    path: &str,
    headers: HeaderMap,
    mut req: Request,
    guard: Option<crate::control::InFlightGuard>,
) -> Result<Response, ApiError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut upstream = http::Request::builder()
        .method(req.method())
        .uri(path)
        .body(Body::empty())
        .map_err(|e| unreachable(id, e))?;
    *upstream.headers_mut() = headers;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(id, e))?;
    tokio::spawn(conn.with_upgrades());
    let mut resp = sender
        .send_request(upstream)
        .await
        .map_err(|e| unreachable(id, e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    let agent_upgrade = hyper::upgrade::on(&mut resp);
    let sandbox_id = id.to_string();
    tokio::spawn(async move {
        let _guard = guard;
        match tokio::try_join!(client_upgrade, agent_upgrade) {
            Ok((client, agent)) => {
                let mut client = TokioIo::new(client);
                let mut agent = TokioIo::new(agent);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
            }
            Err(e) => tracing::debug!(target_name = %sandbox_id, error = %e, "upgrade failed"),
        }
    });
    let mut out = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .body(Body::empty())
        .map_err(|e| unreachable(id, e))?;
    *out.headers_mut() = resp.headers().clone();
    Ok(out)
}

/// The client a relayed request goes out through.
pub(super) enum Via<'a> {
    /// To a sandbox's agent.
    Agent(&'a crate::control::AgentClient),
    /// To another node, over HTTP or HTTPS.
    Node(&'a super::node_link::NodeLink),
}

impl Via<'_> {
    async fn send(
        self,
        req: http::Request<Body>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Via::Agent(agents) => agents.send(req).await,
            Via::Node(nodes) => nodes.send(req).await,
        }
    }
}

/// Relays a plain request to `uri`, streaming both bodies; the request counts
/// as in flight until the answer's body is done.
pub(super) async fn relay_request(
    via: Via<'_>,
    id: &str,
    uri: String,
    headers: HeaderMap,
    req: Request,
    guard: Option<crate::control::InFlightGuard>,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let mut upstream = http::Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(body)
        .map_err(|e| unreachable(id, e))?;
    *upstream.headers_mut() = headers;
    let to_node = matches!(via, Via::Node(_));
    let resp = via.send(upstream).await.map_err(|e| {
        if let Some(why) = to_node.then(|| super::node_link::tls_failure(&e)).flatten() {
            tls_refused(id, &why)
        } else if request_body_broke_off(&e) {
            tracing::debug!(target_name = %id, error = %e, "the client's request body broke off");
            ApiError::bad_request("the request body broke off before its end")
        } else if e.is_connect() {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::SandboxUnreachable,
                format!("{id} is not accepting connections"),
            )
        } else {
            unreachable(id, e)
        }
    })?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let body = GuardedBody {
        inner: body,
        _guard: guard,
    };
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Whether a relay failed because the client's own request body did (it hung up mid-upload),
/// not the upstream: hyper reports that as an error of the body it was given.
fn request_body_broke_off(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A response body that keeps its request counted as in flight until dropped.
struct GuardedBody {
    inner: hyper::body::Incoming,
    _guard: Option<crate::control::InFlightGuard>,
}

impl hyper::body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_record_without_a_route_is_not_ready_not_unreachable() {
        let record = crate::store::sample_record("a", Some("web"));
        let between = Target {
            record: record.clone(),
            agent: None,
        };
        let refused = running_upstream(&between).expect_err("no route");
        assert_eq!(
            (refused.status(), refused.code()),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::SandboxNotReady)
        );
        assert!(refused.message().contains("changing state"), "{refused:?}");
        let mut ended = record;
        ended.status = SandboxStatus::Terminated;
        let gone = running_upstream(&Target {
            record: ended,
            agent: None,
        })
        .expect_err("ended");
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_tail_of_a_path_routed_request_stays_encoded() {
        assert_eq!(
            raw_tail("/sandboxes/web/api/v1/processes/a%20b/stdin"),
            Some("processes/a%20b/stdin")
        );
        assert_eq!(
            raw_tail("/v1/namespaces/api/sandboxes/v1/api/v1/processes/%252F"),
            Some("processes/%252F")
        );
        assert_eq!(raw_tail("/sandboxes/api/api/v1/x"), Some("x"));
        assert_eq!(raw_tail("/sandboxes/web"), None);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_unless_upgrading() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, x-secret".parse().expect("hv"),
        );
        h.insert("x-secret", "1".parse().expect("hv"));
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().expect("hv"));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().expect("hv"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get(header::CONTENT_TYPE).is_some());

        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().expect("hv"));
        h.insert(header::UPGRADE, "websocket".parse().expect("hv"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert!(h.get(header::UPGRADE).is_some());
        assert!(h.get(header::CONNECTION).is_some());
    }
}
