//! The sandbox API (`/api/v1/...`, docs/protocol/sandbox-api.md), one file per resource.
//! Handlers extract and validate, call the process/file modules, and map results; statuses
//! are picked only in [`error`].

pub mod error;
pub mod files;
pub mod health;
pub mod io;
pub mod processes;
pub mod pty;
pub mod run;
pub mod tunnel;
pub mod ws;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;

use crate::AgentState;
use crate::sse;
use error::{ApiError, DaemonErrorCode};

/// The agent's router with every sandbox API route this build serves; unknown paths answer a
/// JSON 404.
pub fn build_router(state: AgentState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health::health))
        .route("/api/v1/info", get(health::info))
        .route("/api/v1/processes/run", post(run::run))
        .route(
            "/api/v1/processes",
            post(processes::start).get(processes::list),
        )
        .route(
            "/api/v1/processes/{p}",
            get(processes::get).delete(processes::delete),
        )
        .route("/api/v1/processes/{p}/signal", post(processes::signal))
        .route("/api/v1/processes/{p}/restart", post(processes::restart))
        .route("/api/v1/processes/{p}/stdin", post(io::write_stdin))
        .route("/api/v1/processes/{p}/stdin/close", post(io::close_stdin))
        .route("/api/v1/processes/{p}/stdout", get(io::stdout))
        .route("/api/v1/processes/{p}/stderr", get(io::stderr))
        .route("/api/v1/processes/{p}/output", get(io::output))
        .route(
            "/api/v1/processes/{p}/stdout/follow",
            get(io::follow_stdout),
        )
        .route(
            "/api/v1/processes/{p}/stderr/follow",
            get(io::follow_stderr),
        )
        .route(
            "/api/v1/processes/{p}/output/follow",
            get(io::follow_output),
        )
        .route(
            "/api/v1/files",
            get(files::read).put(files::write).delete(files::delete),
        )
        .route("/api/v1/files/list", get(files::list))
        .route("/api/v1/pty", post(pty::create).get(pty::list))
        .route("/api/v1/pty/{id}", get(pty::get).delete(pty::delete))
        .route("/api/v1/pty/{id}/resize", post(pty::resize))
        .route("/api/v1/pty/{id}/ws", get(pty::connect))
        .route("/api/v1/tunnels/tcp", get(tunnel::tcp))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        DaemonErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Parses a JSON request body whatever its Content-Type (clients differ in what they send).
fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("request body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|err| ApiError::invalid(format!("invalid request body: {err}")))
}

/// A `200 text/event-stream` answer streaming `body`.
fn sse_response<S>(body: S) -> Response
where
    S: Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    (
        [
            (header::CONTENT_TYPE, sse::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-cache"),
            // Tell buffering reverse proxies (nginx) to pass events through at once.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
