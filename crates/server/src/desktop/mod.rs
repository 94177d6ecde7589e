//! A sandbox's desktop in the browser: a noVNC page served by `alcove serve`,
//! whose WebSocket reaches the sandbox's VNC server through the proxy's TCP
//! tunnel.
//!
//! * `POST {B}/sandboxes/{id}/desktop` (API key) answers a URL for one sandbox,
//!   carrying a signed token that expires ([`tokens`]);
//! * `GET /desktop/{id}?token=…` is the page; `GET /desktop/{id}/websockify?token=…`
//!   the WebSocket it opens (relayed to `/api/v1/tunnels/tcp?port=…` in the sandbox);
//! * `GET /desktop/novnc/…` serves noVNC's own files from `--novnc-dir`.
//!
//! A browser cannot put an API key on a WebSocket, so these routes take the
//! token instead; they are outside the API-key check and check it themselves.

mod page;
pub mod tokens;

pub(crate) use page::check_vnc_port;
pub use page::{desktop_page, desktop_socket};
pub use tokens::DesktopTokens;

/// The answer for a path under `/desktop/novnc/` that names no file of noVNC:
/// a 404 in the error shape (the file server's own is an empty body).
pub async fn novnc_file_missing(uri: axum::extract::OriginalUri) -> crate::api::error::ApiError {
    crate::api::error::ApiError::new(
        http::StatusCode::NOT_FOUND,
        alcove_wire::error::ErrorCode::NotFound,
        format!("no noVNC file at {}", uri.path()),
    )
}

/// The VNC port a desktop page connects to unless told otherwise.
pub const DEFAULT_VNC_PORT: u16 = 5901;
