//! The web console (docs/console.md): a single-page app built from `console/` and embedded in
//! the binary by `build.rs`, served at `/console/` (and `/` redirects there).
//!
//! Its files are public (they hold no data); everything it shows comes from the API, with the
//! API key the user types in, sent as `Authorization: Bearer` by the page's own code. There is
//! no cookie, so another site cannot make a browser act with the console's rights.
//!
//! A browser cannot put that header on a WebSocket, so the terminal's socket takes a ticket
//! instead ([`pty_ticket_admits`]): short-lived, signed, for one sandbox, and asked for with
//! the key (`POST {B}/sandboxes/{id}/pty-ticket`).

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use alcove_wire::error::ErrorCode;

use crate::api::AppState;
use crate::api::error::ApiError;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

/// Where the console is served.
pub const PREFIX: &str = "/console";

/// The console's Content-Security-Policy: scripts, styles, images and connections from this
/// server only, no plugins, never framed. `'unsafe-inline'` for styles only: xterm.js writes its
/// theme into `<style>` elements it creates; inline script stays forbidden. `frame-src 'self'`
/// lets the sandbox page show the server's desktop page (`/desktop/{id}`) in a frame.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; connect-src 'self'; frame-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether the server was compiled with the console's built files (else it serves a page
/// saying how to build them).
pub fn is_built() -> bool {
    assets::BUILT
}

/// The console's routes: `/`, `/console`, `/console/` and its files.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route(PREFIX, get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| async { asset("index.html") }))
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>| async move { asset(&path) }),
        )
}

/// Whether `path` is one of the console's own (public) routes.
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path == PREFIX || path.starts_with("/console/")
}

/// One of the console's files, with its security headers; an unknown path is the usual 404.
fn asset(path: &str) -> Response {
    let Some((_, content_type, bytes)) = assets::ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no console file {path:?}"),
        )
        .into_response();
    };
    let mut resp = (
        [
            (header::CONTENT_TYPE, *content_type),
            // Small files, and a new server may ship new ones under the same names.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *bytes,
    )
        .into_response();
    secure(resp.headers_mut());
    resp
}

/// The headers every console answer carries.
fn secure(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

/// The sandbox and PTY session a `/sandboxes/{id}/api/v1/pty/{session}/ws` path names.
/// Both must be plain tokens (ids, names and session ids are): no `.` segments, no escapes,
/// so that the path the ticket is checked against is the path the sandbox receives.
fn pty_socket_path(path: &str) -> Option<(&str, &str)> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let rest = path.strip_prefix("/sandboxes/")?;
    let (ident, rest) = rest.split_once('/')?;
    let session = rest.strip_prefix("api/v1/pty/")?.strip_suffix("/ws")?;
    (plain(ident) && plain(session)).then_some((ident, session))
}

/// The value of `ticket` in a query, if there is exactly one.
fn ticket_of(query: &str) -> Option<&str> {
    let mut found = query
        .split('&')
        .filter_map(|part| part.strip_prefix("ticket="));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// `uri` without its `ticket` parameter: the ticket is for Alcove, never for the sandbox.
fn without_ticket(uri: &Uri) -> Option<Uri> {
    let query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("ticket="))
        .collect();
    let path_and_query = if query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), query.join("&"))
    };
    path_and_query.parse().ok()
}

/// What the API-key check does with a request that has no key: a WebSocket upgrade of a
/// sandbox's PTY socket carrying `?ticket=` is admitted when the ticket was issued for that
/// sandbox and has not expired (the ticket is then removed from the URL); anything else
/// without a key is not for this function (`Ok(None)` leaves the key check to answer).
pub async fn pty_ticket_admits(
    state: &AppState,
    mut req: Request,
) -> Result<Option<Request>, ApiError> {
    let Some((ident, _session)) = pty_socket_path(req.uri().path()) else {
        return Ok(None);
    };
    let Some(ticket) = req.uri().query().and_then(ticket_of) else {
        return Ok(None);
    };
    let refused = |why: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            format!("{why}: ask for a new one (POST /sandboxes/{{id}}/pty-ticket)"),
        )
    };
    // Only the socket itself: a ticket never reads files or starts processes.
    if req.method() != Method::GET || !req.headers().contains_key(header::UPGRADE) {
        return Err(refused("a PTY ticket only opens a WebSocket"));
    }
    // An unknown sandbox answers like a bad ticket: no key, no hint of what exists.
    let id = match state.control.sandboxes.target(ident).await {
        Ok(target) => target.record.id.to_string(),
        Err(_) => return Err(refused("this PTY ticket is invalid or has expired")),
    };
    if !state.desktop_tokens.verify_pty_ticket(&id, ticket) {
        return Err(refused("this PTY ticket is invalid or has expired"));
    }
    let uri = without_ticket(req.uri()).ok_or_else(|| refused("malformed URL"))?;
    *req.uri_mut() = uri;
    Ok(Some(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_socket_paths_are_recognised_exactly() {
        assert_eq!(
            pty_socket_path("/sandboxes/abc/api/v1/pty/s1/ws"),
            Some(("abc", "s1"))
        );
        for other in [
            "/sandboxes/abc/api/v1/pty/s1",
            "/sandboxes/abc/api/v1/pty/s1/resize",
            "/sandboxes/abc/api/v1/files/ws",
            "/sandboxes/abc/api/v1/pty/a/b/ws",
            "/sandboxes//api/v1/pty/s1/ws",
            "/sandboxes/abc/api/v1/pty//ws",
            "/sandboxes/abc/api/v1/pty/../ws",
            "/sandboxes/abc/api/v1/pty/%2e%2e/ws",
            "/sandboxes/a%62c/api/v1/pty/s1/ws",
            "/sandboxes/../api/v1/pty/s1/ws",
            "/v1/namespaces/default/sandboxes/abc",
            "/api/v1/pty/s1/ws",
        ] {
            assert_eq!(pty_socket_path(other), None, "{other}");
        }
    }

    #[test]
    fn the_ticket_is_read_once_and_removed_before_forwarding() {
        assert_eq!(ticket_of("token=t&ticket=1.ab"), Some("1.ab"));
        assert_eq!(ticket_of("token=t"), None);
        assert_eq!(ticket_of("ticket=1&ticket=2"), None, "two tickets");
        let uri: Uri = "/sandboxes/a/api/v1/pty/s/ws?token=t&ticket=1.ab"
            .parse()
            .expect("uri");
        assert_eq!(
            without_ticket(&uri).expect("uri").to_string(),
            "/sandboxes/a/api/v1/pty/s/ws?token=t"
        );
        let uri: Uri = "/sandboxes/a/api/v1/pty/s/ws?ticket=1.ab"
            .parse()
            .expect("uri");
        assert_eq!(
            without_ticket(&uri).expect("uri").to_string(),
            "/sandboxes/a/api/v1/pty/s/ws"
        );
    }

    #[tokio::test]
    async fn console_files_carry_their_security_headers() {
        let resp = asset("index.html");
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp.headers();
        let csp = h
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .expect("csp");
        assert!(csp.contains("default-src 'self'"));
        assert!(csp.contains("script-src 'self';"), "no inline script");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).expect("nosniff"),
            "nosniff"
        );
        assert_eq!(
            h.get(header::REFERRER_POLICY).expect("referrer"),
            "no-referrer"
        );
        assert!(
            h.get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/html"))
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let page = String::from_utf8_lossy(&body);
        if is_built() {
            assert!(
                page.contains("<script type=\"module\" src=\"app.js\">"),
                "{page}"
            );
            assert!(!page.contains("<script>"), "no inline script: {page}");
        } else {
            assert!(page.contains("console not built"), "{page}");
        }
    }

    /// The API-key middleware in front of a route that echoes the URI it was given, over a
    /// control plane on the in-memory node holding one sandbox named `a`.
    async fn keyed_app() -> (Router, AppState, String, crate::control::tests::Harness) {
        let harness = crate::control::tests::harness().await;
        let record = harness
            .create(serde_json::json!({"name": "a"}))
            .await
            .expect("create");
        let state = AppState {
            control: std::sync::Arc::clone(&harness.control),
            agents: crate::control::AgentClient::new(),
            nodes: crate::proxy::NodeLink::plain(),
            keys: std::sync::Arc::new(crate::auth::ApiKeys::new(vec!["k".into()])),
            ingress_domain: std::sync::Arc::from("sandbox.localhost"),
            desktop_tokens: std::sync::Arc::new(crate::desktop::DesktopTokens::random()),
            novnc_dir: std::sync::Arc::from(std::path::Path::new("/nonexistent")),
            allowed_hosts: std::sync::Arc::default(),
        };
        let app = Router::new()
            .route(
                "/sandboxes/{id}/api/v1/{*rest}",
                axum::routing::any(|req: Request| async move { req.uri().to_string() }),
            )
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::api::authenticate,
            ))
            .with_state(state.clone());
        (app, state, record.id.to_string(), harness)
    }

    /// A WebSocket upgrade request (`upgrade`) or a plain GET of `uri`.
    fn get(uri: &str, upgrade: bool, key: Option<&str>) -> Request {
        let mut b = Request::get(uri);
        if upgrade {
            b = b
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "websocket")
                .header(header::SEC_WEBSOCKET_VERSION, "13")
                .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==");
        }
        if let Some(key) = key {
            b = b.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        b.body(axum::body::Body::empty()).expect("request")
    }

    /// The status and body of `req` through `app`.
    async fn send(app: &Router, req: Request) -> (StatusCode, String) {
        use tower::ServiceExt;
        let resp = app.clone().oneshot(req).await.expect("answer");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_pty_ticket_stands_in_for_the_key_on_its_own_socket_only() {
        let (app, state, id, _harness) = keyed_app().await;
        let later = alcove_wire::time::now_millis() + 30_000;
        let ticket = state.desktop_tokens.issue_pty_ticket(&id, later);
        let ws = |ident: &str, t: &str| {
            format!("/sandboxes/{ident}/api/v1/pty/s1/ws?token=t&ticket={t}")
        };

        // Its own sandbox's socket, by id or by name: admitted, the ticket gone from the URL.
        for ident in [id.as_str(), "a"] {
            let (status, body) = send(&app, get(&ws(ident, &ticket), true, None)).await;
            assert_eq!(status, StatusCode::OK, "{ident}: {body}");
            assert_eq!(body, format!("/sandboxes/{ident}/api/v1/pty/s1/ws?token=t"));
        }

        let other = state
            .desktop_tokens
            .issue_pty_ticket("another-sandbox", later);
        let expired = state
            .desktop_tokens
            .issue_pty_ticket(&id, alcove_wire::time::now_millis() - 1);
        let desktop = state
            .desktop_tokens
            .issue(&id, crate::desktop::DEFAULT_VNC_PORT, later);
        let refused = [
            (ws(&id, &other), true, None, "another sandbox's ticket"),
            (ws(&id, &expired), true, None, "an expired ticket"),
            (ws(&id, &desktop), true, None, "a desktop token"),
            (ws(&id, "1.00"), true, None, "a forged ticket"),
            (ws(&id, &ticket), false, None, "not a WebSocket"),
            (ws("nope", &ticket), true, None, "an unknown sandbox"),
            (
                format!("/sandboxes/{id}/api/v1/files?path=/&ticket={ticket}"),
                true,
                None,
                "another route",
            ),
            (
                format!("/sandboxes/{id}/api/v1/pty/s1/ws?token=t"),
                true,
                None,
                "no ticket",
            ),
            (ws(&id, &ticket), true, Some("wrong"), "a wrong key wins"),
        ];
        for (uri, upgrade, key, what) in refused {
            let (status, body) = send(&app, get(&uri, upgrade, key)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
            let body: alcove_wire::error::ApiErrorBody =
                serde_json::from_str(&body).expect("error body");
            assert_eq!(body.code, ErrorCode::Unauthorized, "{what}");
        }

        // The key itself still opens everything, and the URL is then left alone.
        let uri = format!("/sandboxes/{id}/api/v1/files/list?path=/");
        let (status, body) = send(&app, get(&uri, false, Some("k"))).await;
        assert_eq!((status, body), (StatusCode::OK, uri));
    }

    #[tokio::test]
    async fn unknown_console_files_are_404_in_the_error_shape() {
        for path in ["nope.js", "../Cargo.toml", ""] {
            let resp = asset(path);
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .expect("body");
            let body: alcove_wire::error::ApiErrorBody =
                serde_json::from_slice(&body).expect("error body");
            assert_eq!(body.code, ErrorCode::NotFound);
        }
    }
}
