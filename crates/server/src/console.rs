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
fn pty_socket_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/sandboxes/")?;
    let (ident, rest) = rest.split_once('/')?;
    let session = rest.strip_prefix("api/v1/pty/")?.strip_suffix("/ws")?;
    (!ident.is_empty() && !session.is_empty() && !session.contains('/')).then_some((ident, session))
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
