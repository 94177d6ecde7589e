//! Answers that wait for the rest of the request body.
//!
//! A handler may answer before it has read the whole request body: an upload that filled the
//! disk, stdin for a process that has exited, a body sent to a process that does not exist.
//! The connection then closes with bytes unread, the kernel resets it, and the reset can
//! destroy the answer before the client reads it: the client (the server's proxy) sees a
//! broken connection instead of `507 NO_SPACE` or `404 NOT_FOUND`. So once a handler has
//! answered and let go of a body it did not read to its end, the rest is read and dropped
//! before the answer goes out, for [`DRAIN_FOR`] at most, and only while it keeps coming: a body
//! that pauses for [`DRAIN_IDLE`] (a client streaming stdin as it is typed) gets the answer then.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;

/// How long the rest of an unread body is read before the answer goes out anyway.
pub const DRAIN_FOR: Duration = Duration::from_secs(10);

/// How long the draining waits for the body's next chunk.
pub const DRAIN_IDLE: Duration = Duration::from_millis(250);

/// The middleware (see the module docs).
pub async fn read_rest_before_answering(req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let shared = Arc::new(Mutex::new(Leftover {
        body: Some(body),
        ended: false,
    }));
    let req = Request::from_parts(parts, Body::new(SharedBody(Arc::clone(&shared))));
    let response = next.run(req).await;
    // Only a body the handler let go of: one it still reads (a task it spawned) is its own.
    let rest = match Arc::try_unwrap(shared) {
        Ok(leftover) => {
            let leftover = leftover.into_inner().unwrap_or_else(|p| p.into_inner());
            (!leftover.ended).then_some(leftover.body).flatten()
        }
        Err(_) => None,
    };
    if let Some(rest) = rest {
        let _ = tokio::time::timeout(DRAIN_FOR, drain(rest)).await;
    }
    response
}

/// Reads `body` to its end, its first error or its first pause of [`DRAIN_IDLE`], dropping
/// what it reads.
async fn drain(body: Body) {
    use futures::StreamExt;
    let mut data = body.into_data_stream();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(DRAIN_IDLE, data.next()).await {}
}

/// The request body, shared between the handler and the middleware.
#[derive(Debug)]
struct Leftover {
    body: Option<Body>,
    /// The handler read it to its end (or to an error): nothing is left to read.
    ended: bool,
}

/// The handler's view of a [`Leftover`].
struct SharedBody(Arc<Mutex<Leftover>>);

impl SharedBody {
    fn lock(&self) -> MutexGuard<'_, Leftover> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut leftover = self.lock();
        let Some(body) = leftover.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            leftover.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let leftover = self.lock();
        leftover.ended || leftover.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.lock()
            .body
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// A body of `chunks` chunks that counts how many were read.
    fn counted(chunks: usize, read: Arc<AtomicUsize>) -> Body {
        Body::from_stream(futures::stream::iter(0..chunks).map(move |_| {
            read.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from_static(b"chunk"))
        }))
    }

    async fn answer_early(body: Body) -> StatusCode {
        // Reads one chunk, then gives up on the rest.
        let _ = body.into_data_stream().next().await;
        StatusCode::INSUFFICIENT_STORAGE
    }

    async fn read_all(body: Body) -> StatusCode {
        let mut data = body.into_data_stream();
        while data.next().await.is_some() {}
        StatusCode::NO_CONTENT
    }

    #[tokio::test]
    async fn a_body_that_pauses_gets_its_answer_without_waiting_for_the_rest() {
        let app = Router::new()
            .route("/early", post(answer_early))
            .layer(axum::middleware::from_fn(read_rest_before_answering));
        let trickle = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"a"))])
            .chain(futures::stream::pending());
        let req = Request::post("/early")
            .body(Body::from_stream(trickle))
            .expect("request");
        let answered = tokio::time::timeout(DRAIN_IDLE * 8, app.oneshot(req)).await;
        let resp = answered.expect("answered after the pause").expect("answer");
        assert_eq!(resp.status(), StatusCode::INSUFFICIENT_STORAGE);
    }

    #[tokio::test]
    async fn an_early_answer_waits_for_the_rest_of_the_body() {
        let app = Router::new()
            .route("/early", post(answer_early))
            .route("/all", post(read_all))
            .layer(axum::middleware::from_fn(read_rest_before_answering));
        for (route, status) in [
            ("/early", StatusCode::INSUFFICIENT_STORAGE),
            ("/all", StatusCode::NO_CONTENT),
        ] {
            let read = Arc::new(AtomicUsize::new(0));
            let req = Request::post(route)
                .body(counted(100, Arc::clone(&read)))
                .expect("request");
            let resp = app.clone().oneshot(req).await.expect("answer");
            assert_eq!(resp.status(), status, "{route}");
            assert_eq!(
                read.load(Ordering::SeqCst),
                100,
                "{route}: the whole body was read"
            );
        }
    }
}
