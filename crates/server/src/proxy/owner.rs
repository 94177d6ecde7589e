//! Forwarding to the owning node: when several servers share one store, a
//! request for a sandbox that lives on another node is relayed to that node
//! unchanged (its `Host`, API key, body and query), both ways streaming, HTTP
//! upgrades (PTY and tunnel WebSockets) included. One hop only: the owner
//! answers a forwarded request itself.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ingress::parse_ingress_host;
use super::node_link::{NodeAddress, tls_failure};
use super::routing::sandbox_ident;
use super::sandbox_api::{
    Via, is_upgrade, relay_request, relay_upgrade, strip_hop_by_hop, tls_refused, unreachable,
};
use alcove_wire::limits::{DEFAULT_CPUS, DEFAULT_MEMORY_MB};
use alcove_wire::sandbox::CreateSandboxRequest;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::control::{ControlError, Placement, TakeOver};

pub use crate::control::FORWARDED_BY;
use crate::control::RELAY_TOKEN;

/// The sandbox a request is for, when it must be served where the sandbox
/// lives: anything through the proxy or ingress, and every sandbox route but
/// the plain `GET` of its record (which any node answers from the store).
fn target_ident(req: &Request, ingress_domain: &str) -> Option<String> {
    if let Some((_, ident)) = parse_ingress_host(req.headers(), ingress_domain) {
        return Some(ident);
    }
    let path = req.uri().path();
    if path.starts_with("/api/v1/") {
        return sandbox_ident(req.headers());
    }
    if let Some(ident) = path.strip_prefix("/desktop/") {
        return (!ident.is_empty() && !ident.contains('/')).then(|| ident.to_string());
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["v1", "namespaces", _, "sandboxes", rest @ ..] | ["sandboxes", rest @ ..] => rest,
        _ => return None,
    };
    match rest {
        [] | [""] => None,
        [_ident] if req.method() == http::Method::GET => None,
        [ident, ..] => Some((*ident).to_string()),
    }
}

/// Whether `req` is traffic for a sandbox (the proxy's `/api/v1/…` routes and
/// ingress), which wakes a suspended sandbox with `auto_resume`.
fn is_traffic(req: &Request, ingress_domain: &str) -> bool {
    req.uri().path().starts_with("/api/v1/")
        || parse_ingress_host(req.headers(), ingress_domain).is_some()
}

/// The path segments of a `POST`; `None` for other methods.
fn post_segments(req: &Request) -> Option<Vec<&str>> {
    (req.method() == http::Method::POST)
        .then(|| req.uri().path().trim_matches('/').split('/').collect())
}

/// Whether `req` creates a sandbox (`POST {B}/sandboxes`).
fn is_create(req: &Request) -> bool {
    post_segments(req).is_some_and(|segments| {
        matches!(
            segments.as_slice(),
            ["v1", "namespaces", _, "sandboxes"] | ["sandboxes"]
        )
    })
}

/// Whether `req` resumes a sandbox (`POST {B}/sandboxes/{id}/resume`).
fn is_resume(req: &Request) -> bool {
    post_segments(req).is_some_and(|segments| {
        matches!(
            segments.as_slice(),
            ["v1", "namespaces", _, "sandboxes", _, "resume"] | ["sandboxes", _, "resume"]
        )
    })
}

/// The pool a request claims a sandbox of (`POST {B}/sandbox-pools/{pool}/sandboxes`).
fn claimed_pool(req: &Request) -> Option<String> {
    let segments = post_segments(req)?;
    match segments.as_slice() {
        ["v1", "namespaces", _, "sandbox-pools", pool, "sandboxes"]
        | ["sandbox-pools", pool, "sandboxes"]
            if !pool.is_empty() =>
        {
            Some((*pool).to_string())
        }
        _ => None,
    }
}

/// Middleware: relays a request for another node's sandbox to that node, and a
/// create asked of a draining node to the active node with the most room.
pub async fn forward_to_owner(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    drop_unproven_relay_headers(&state, req.headers_mut());
    // This runs before the API key is checked (a request only relayed is checked by the node
    // that serves it), so a request without a good key may be relayed and nothing more: it
    // neither moves a sandbox between nodes nor learns where one lives. It goes on to the
    // check here, which answers it as it answers any other.
    let keyed = state.keys.is_empty() || state.keys.check(req.headers()).is_ok();
    if req.headers().contains_key(FORWARDED_BY) {
        // A resume relayed to its node may still go on to a node with room, once.
        if keyed
            && let Some(by_traffic) = wakes(&state, &req)
            && !req.headers().contains_key(HANDED_OVER)
            && state.control.has_peers()
            && let Some(ident) = target_ident(&req, &state.ingress_domain)
        {
            return resume_here_or_hand_over(&state, &ident, by_traffic, req, next).await;
        }
        return next.run(req).await;
    }
    if is_create(&req) && state.control.has_peers() {
        return place_create(&state, req, next)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    // A claim goes where the pool's warm sandboxes are.
    if let Some(pool) = claimed_pool(&req).filter(|_| state.control.has_peers()) {
        return match state.control.pool_home_elsewhere(&pool).await {
            Ok(Some((node, address))) => relay_to_node(&state, &node, &address, req)
                .await
                .unwrap_or_else(IntoResponse::into_response),
            _ => next.run(req).await,
        };
    }
    let Some(ident) = target_ident(&req, &state.ingress_domain) else {
        return next.run(req).await;
    };
    match state.control.owner_elsewhere(&ident).await {
        Ok(None)
            if keyed
                && state.control.has_peers()
                && let Some(by_traffic) = wakes(&state, &req) =>
        {
            resume_here_or_hand_over(&state, &ident, by_traffic, req, next).await
        }
        Ok(None) => next.run(req).await,
        Ok(Some((node, address))) => relay_to_node(&state, &node, &address, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(_) if !keyed => next.run(req).await,
        // Its node stopped: a resume (or, for a sandbox that wakes on traffic,
        // traffic) moves it here when its dump is in the blob store.
        Err(e @ ControlError::NodeOffline { .. })
            if is_resume(&req) || is_traffic(&req, &state.ingress_domain) =>
        {
            let by_traffic = !is_resume(&req);
            match state.control.take_over_suspended(&ident, by_traffic).await {
                Ok(TakeOver::Here) => next.run(req).await,
                Ok(TakeOver::There { node, address }) => {
                    relay_to_node(&state, &node, &address, req)
                        .await
                        .unwrap_or_else(IntoResponse::into_response)
                }
                Ok(TakeOver::No) => ApiError::from(e).into_response(),
                Err(other) => ApiError::from(other).into_response(),
            }
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The headers only nodes may set on a request they relay (the token aside).
pub(super) const RELAY_HEADERS: [&str; 3] = [FORWARDED_BY, HANDED_OVER, crate::control::COPY_DUMP];

/// Keeps the relay headers of a request only when it carries the cluster's
/// relay token (a node relayed it), and drops the token itself, so that it
/// never travels further (into a sandbox) and clients cannot forge a relay.
fn drop_unproven_relay_headers(state: &AppState, headers: &mut http::HeaderMap) {
    let proven = state.control.is_relayed_by_a_node(headers);
    headers.remove(RELAY_TOKEN);
    if !proven {
        for name in RELAY_HEADERS {
            headers.remove(name);
        }
    }
}

/// Marks a request (a resume, or traffic that wakes the sandbox) relayed to the
/// node another node handed the sandbox to: it is served there or refused,
/// never handed on again.
const HANDED_OVER: &str = "x-alcove-handed-over";

/// Whether `req` may resume this node's suspended sandbox somewhere else: a
/// resume (`Some(false)`), or traffic while this node is draining
/// (`Some(true)`; it moves a sandbox that wakes on traffic). Traffic to a node
/// that is not draining is served here, without a look at the store.
fn wakes(state: &AppState, req: &Request) -> Option<bool> {
    if is_resume(req) {
        Some(false)
    } else if state.control.is_draining() && is_traffic(req, &state.ingress_domain) {
        Some(true)
    } else {
        None
    }
}

/// Resumes this node's sandbox `ident` here, unless this node cannot (it is
/// full, draining, or its labels do not match) and another node can: then the
/// sandbox is handed to that node and the request relayed there.
async fn resume_here_or_hand_over(
    state: &AppState,
    ident: &str,
    by_traffic: bool,
    mut req: Request,
    next: Next,
) -> Response {
    match state.control.hand_over_when_unable(ident, by_traffic).await {
        Ok(None) => next.run(req).await,
        Ok(Some((node, address))) => {
            req.headers_mut()
                .insert(HANDED_OVER, HeaderValue::from_static("1"));
            relay_to_node(state, &node, &address, req)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Places a create: tries the nodes in [`Control::placement_order`] until one
/// has room for it (each node checks its own room when it stores the sandbox
/// and answers `503 RESOURCE_EXHAUSTED` when it has none). A body that does not
/// parse is left to the create handler here, which says what is wrong with it.
///
/// [`Control::placement_order`]: crate::control::Control::placement_order
async fn place_create(state: &AppState, req: Request, next: Next) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // The same bound as the create handler's own, so a cluster takes what a single node takes.
    let bytes = axum::body::to_bytes(body, crate::api::body::BODY_LIMIT)
        .await
        .map_err(|_| crate::api::body::too_large())?;
    let asked = serde_json::from_slice::<CreateSandboxRequest>(&bytes)
        .ok()
        .map(|c| {
            let res = c.resources.unwrap_or_default();
            (
                res.cpus.unwrap_or(DEFAULT_CPUS),
                res.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
                c.node_selector.unwrap_or_default(),
            )
        });
    let rebuild = || Request::from_parts(parts.clone(), axum::body::Body::from(bytes.clone()));
    let order = match &asked {
        Some((_, _, selector)) => {
            // A selector no node could match is bad input, not a lack of room.
            crate::control::node_selector::validate(selector)?;
            state.control.placement_order(selector).await?
        }
        None => Vec::new(),
    };
    if order.is_empty() {
        // No live active node's labels match: say so rather than why this one refuses.
        if let Some((cpus, memory_mb, selector)) = asked.as_ref().filter(|a| !a.2.is_empty()) {
            return Err(crate::control::Control::no_room(selector, *cpus, *memory_mb).into());
        }
        return Ok(next.run(rebuild()).await);
    }
    for place in order {
        let resp = match &place {
            Placement::Here => next.clone().run(rebuild()).await,
            Placement::There { node, address } => {
                match relay_to_node(state, node, address, rebuild()).await {
                    Ok(resp) => resp,
                    // An unreachable node: the next one may do.
                    Err(e) => {
                        tracing::warn!(node = %node, error = ?e, "placing a create");
                        continue;
                    }
                }
            }
        };
        match no_room(resp).await {
            Ok(resp) => return Ok(resp),
            Err(()) => continue,
        }
    }
    let (cpus, memory_mb, selector) =
        asked.unwrap_or((DEFAULT_CPUS, DEFAULT_MEMORY_MB, Default::default()));
    Err(crate::control::Control::no_room(&selector, cpus, memory_mb).into())
}

/// `Err` when `resp` says the node has no room (`503 RESOURCE_EXHAUSTED`),
/// else the response unchanged (a 503's small body is read and put back).
async fn no_room(resp: Response) -> Result<Response, ()> {
    if resp.status() != StatusCode::SERVICE_UNAVAILABLE {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Ok(Response::from_parts(parts, axum::body::Body::empty()));
    };
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string));
    if code.as_deref() == Some("RESOURCE_EXHAUSTED") {
        return Err(());
    }
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
}

async fn relay_to_node(
    state: &AppState,
    node: &str,
    address: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let label = format!("node {node}");
    let refused = |why: String| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            alcove_wire::error::ErrorCode::SandboxUnreachable,
            format!("{label} advertises {address:?}: {why}"),
        )
    };
    let bad_address = || refused("not an http:// or https:// URL this server can reach".into());
    let target = NodeAddress::parse(address).ok_or_else(bad_address)?;
    if let Some(why) = state.nodes.refuses(&target) {
        return Err(refused(why.into()));
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let upgrade = is_upgrade(req.headers());
    let mut headers = req.headers().clone();
    strip_hop_by_hop(&mut headers, upgrade);
    let me = state.control.node_name().unwrap_or_default().to_string();
    headers.insert(
        FORWARDED_BY,
        HeaderValue::from_str(&me).map_err(|_| bad_address())?,
    );
    if let Some(token) = state.control.relay_token() {
        headers.insert(
            RELAY_TOKEN,
            HeaderValue::from_str(token).map_err(|_| bad_address())?,
        );
    }
    if upgrade {
        let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(bad_address)?;
        let stream = state.nodes.connect(&target, addr).await.map_err(|e| {
            tls_failure(&e).map_or_else(|| unreachable(&label, &e), |why| tls_refused(&label, &why))
        })?;
        relay_upgrade(&label, stream, &path, headers, req, None).await
    } else {
        let uri = format!("{}{path}", target.base());
        relay_request(Via::Node(&state.nodes), &label, uri, headers, req, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(method: &str, path: &str, host: Option<&str>) -> Request {
        let mut b = http::Request::builder().method(method).uri(path);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(Body::empty()).expect("request")
    }

    fn ident(r: &Request) -> Option<String> {
        target_ident(r, "sandbox.localhost")
    }

    #[test]
    fn creates_are_told_apart() {
        assert!(is_create(&req(
            "POST",
            "/v1/namespaces/default/sandboxes",
            None
        )));
        assert!(is_create(&req("POST", "/sandboxes", None)));
        assert!(!is_create(&req("GET", "/sandboxes", None)));
        assert!(!is_create(&req("POST", "/sandboxes/abc/suspend", None)));
        assert!(!is_create(&req("POST", "/sandbox-pools", None)));
    }

    #[test]
    fn traffic_is_told_apart() {
        let traffic = |r: &Request| is_traffic(r, "sandbox.localhost");
        assert!(traffic(&req("GET", "/api/v1/files?path=/x", None)));
        assert!(traffic(&req(
            "GET",
            "/",
            Some("8080-web.sandbox.localhost:8900")
        )));
        assert!(!traffic(&req("POST", "/sandboxes/abc/resume", None)));
        assert!(!traffic(&req(
            "GET",
            "/v1/namespaces/default/sandboxes/abc",
            None
        )));
    }

    #[test]
    fn resumes_are_told_apart() {
        assert!(is_resume(&req(
            "POST",
            "/v1/namespaces/default/sandboxes/abc/resume",
            None
        )));
        assert!(is_resume(&req("POST", "/sandboxes/abc/resume", None)));
        assert!(!is_resume(&req("GET", "/sandboxes/abc/resume", None)));
        assert!(!is_resume(&req("POST", "/sandboxes/abc/suspend", None)));
        assert!(!is_resume(&req("POST", "/sandboxes/abc/resume/x", None)));
    }

    #[test]
    fn claims_are_told_apart() {
        let pool = |m: &str, p: &str| claimed_pool(&req(m, p, None));
        assert_eq!(
            pool("POST", "/sandbox-pools/p1/sandboxes").as_deref(),
            Some("p1")
        );
        assert_eq!(
            pool("POST", "/v1/namespaces/team/sandbox-pools/p1/sandboxes").as_deref(),
            Some("p1")
        );
        assert_eq!(pool("GET", "/sandbox-pools/p1/sandboxes"), None);
        assert_eq!(pool("POST", "/sandbox-pools/p1"), None);
        assert_eq!(pool("POST", "/sandbox-pools//sandboxes"), None);
    }

    #[test]
    fn which_requests_go_where_their_sandbox_lives() {
        let cases = [
            (
                req("POST", "/v1/namespaces/default/sandboxes/abc/suspend", None),
                Some("abc"),
            ),
            (req("DELETE", "/sandboxes/web", None), Some("web")),
            (req("GET", "/sandboxes/web", None), None),
            (req("GET", "/sandboxes/web/logs", None), Some("web")),
            (req("GET", "/v1/namespaces/default/sandboxes", None), None),
            (req("POST", "/v1/namespaces/default/sandboxes", None), None),
            (
                req("GET", "/api/v1/processes", Some("abc.local")),
                Some("abc"),
            ),
            (
                req("GET", "/api/v1/processes", Some("localhost:8900")),
                None,
            ),
            (req("GET", "/snapshots/s1", None), None),
            (req("GET", "/nodes", None), None),
            (
                req("GET", "/", Some("8080-web.sandbox.localhost:8900")),
                Some("web"),
            ),
            (req("GET", "/desktop/web", None), Some("web")),
        ];
        for (r, want) in cases {
            assert_eq!(ident(&r).as_deref(), want, "{} {}", r.method(), r.uri());
        }
    }
}
