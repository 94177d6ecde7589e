//! Routes of the protocol that this server does not implement yet: each answers a
//! clear 501 instead of pretending (docs/protocol/control-plane.md, Routes not
//! built; docs/protocol/departures.md).

use axum::Router;
use axum::extract::Request;
use axum::routing::any;

use super::AppState;
use super::error::ApiError;

fn answer(what: &'static str) -> impl Fn(Request) -> std::future::Ready<ApiError> + Clone {
    move |_req| std::future::ready(ApiError::not_implemented(what))
}

/// The unbuilt routes, relative to `{B}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sandbox-pools", any(answer("sandbox pools")))
        .route("/sandbox-pools/{pool}", any(answer("sandbox pools")))
        .route(
            "/sandbox-pools/{pool}/sandboxes",
            any(answer("sandbox pools")),
        )
        .route("/sandboxes/{id}/copy", any(answer("copying sandboxes")))
        .route("/sandboxes/{id}/logs", any(answer("sandbox logs")))
        .route(
            "/sandboxes/{id}/processes",
            any(answer("sandbox process logs")),
        )
        .route(
            "/sandboxes/{id}/file_systems",
            any(answer("attached file systems")),
        )
        .route("/archived-sandboxes", any(answer("archived sandboxes")))
        .route(
            "/archived-sandboxes/{id}",
            any(answer("archived sandboxes")),
        )
}
