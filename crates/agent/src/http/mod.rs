//! The sandbox API (`/api/v1/...`, docs/protocol/sandbox-api.md), one file per resource.
//! Handlers extract and validate, call the process/file modules, and map results; statuses
//! are picked only in [`error`].

pub mod body;
pub mod environment;
pub mod error;
pub mod files;
pub mod health;
pub mod host_only;
pub mod io;
pub mod journal;
pub mod openapi;
pub mod processes;
pub mod pty;
pub mod run;
pub mod tunnel;
pub mod unread_body;
pub mod ws;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AgentState;
use crate::sse;
use error::{AgentErrorCode, ApiError};

/// Every sandbox API route this build serves, each with its OpenAPI description: the router and
/// the document come from this one list, so neither can name a route the other lacks.
pub fn api_router() -> OpenApiRouter<AgentState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::info))
        .routes(routes!(run::run))
        .routes(routes!(
            processes::start,
            processes::list,
            processes::stop_all
        ))
        .routes(routes!(processes::get, processes::delete))
        .routes(routes!(processes::signal))
        .routes(routes!(processes::restart))
        .routes(routes!(environment::set))
        .routes(routes!(io::write_stdin))
        .routes(routes!(io::close_stdin))
        .routes(routes!(io::stdout))
        .routes(routes!(io::stderr))
        .routes(routes!(io::output))
        .routes(routes!(io::follow_stdout))
        .routes(routes!(io::follow_stderr))
        .routes(routes!(io::follow_output))
        .routes(routes!(files::read, files::write, files::delete))
        .routes(routes!(files::list))
        .routes(routes!(pty::create, pty::list))
        .routes(routes!(pty::get, pty::delete))
        .routes(routes!(pty::resize))
        .routes(routes!(pty::connect))
        .routes(routes!(tunnel::tcp))
        .routes(routes!(journal::follow))
}

/// The agent's router with every sandbox API route this build serves; unknown paths answer a
/// JSON 404.
pub fn build_router(state: AgentState) -> Router {
    let (router, _doc) = api_router().split_for_parts();
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(
            unread_body::read_rest_before_answering,
        ))
        .layer(axum::middleware::from_fn(utf8_path))
        .with_state(state)
}

/// Refuses a path that is not UTF-8 once percent-decoded in the error shape (the path
/// extractors would answer it in plain text).
async fn utf8_path(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8()
        .is_err()
    {
        return ApiError::invalid("invalid path: not UTF-8 once percent-decoded").into_response();
    }
    next.run(req).await
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        AgentErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Parses a JSON request body whatever its Content-Type (clients differ in what they send).
fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid("request body must be a JSON object"));
    }
    // The path names the field at fault (`restart.initial_backoff_ms: invalid value: -1 …`).
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            ApiError::invalid(format!("invalid request body: {inner}"))
        } else {
            ApiError::invalid(format!("invalid request body: {path}: {inner}"))
        }
    })
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
