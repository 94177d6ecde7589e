//! Control-plane requests that change something run to their end, whether or not the client
//! still waits for the answer.
//!
//! The HTTP server drops a handler's future when its client hangs up. A delete cut short
//! that way had marked the sandbox terminated in the store but never reached the host: its
//! container, mounts, cgroups and network stayed up, owned by no sandbox until the next
//! start of the server swept them. Every step of a control operation would need to be safe
//! to stop at; instead such a request is handled in a task of its own, which the client's
//! going away does not stop. Reads (GET, HEAD) are cancelled as before, and so is what goes
//! through the sandbox proxy (a `run` whose client hung up is the agent's to end).

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use alcove_wire::error::ErrorCode;

/// Runs a request that may change state in a task of its own (see the module's doc).
pub async fn run_to_completion(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    // The task keeps the request's span and id: its log lines and error answers name it.
    let work = next.run(req).instrument(tracing::Span::current());
    let handled = match super::current_request_id() {
        Some(id) => tokio::spawn(super::REQUEST_ID.scope(id, work)).await,
        None => tokio::spawn(work).await,
    };
    handled.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a request's handler ended abnormally");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the request's handler ended abnormally",
        )
        .into_response()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::middleware;
    use axum::routing::delete;
    use tower::ServiceExt;

    use super::*;

    /// A handler that takes a while, then records that it finished.
    async fn slow(finished: Arc<AtomicBool>) -> &'static str {
        tokio::time::sleep(Duration::from_millis(50)).await;
        finished.store(true, Ordering::SeqCst);
        "done"
    }

    async fn abandon(method: Method) -> bool {
        let finished = Arc::new(AtomicBool::new(false));
        let (on_delete, on_get) = (Arc::clone(&finished), Arc::clone(&finished));
        let app: Router = Router::new()
            .route(
                "/x",
                delete(move || slow(on_delete)).get(move || slow(on_get)),
            )
            .route_layer(middleware::from_fn(run_to_completion));
        let req = Request::builder()
            .method(method)
            .uri("/x")
            .body(Body::empty())
            .expect("request");
        // The client hangs up 10 ms in: the request's future is dropped.
        let _ = tokio::time::timeout(Duration::from_millis(10), app.oneshot(req)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        finished.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_change_whose_client_hangs_up_still_runs_to_its_end() {
        assert!(abandon(Method::DELETE).await);
    }

    #[tokio::test]
    async fn a_read_whose_client_hangs_up_is_dropped() {
        assert!(!abandon(Method::GET).await);
    }
}
