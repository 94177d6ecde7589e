//! HTTP routes: the control plane under `/v1/namespaces/{ns}` and flat
//! (WIRE §1.2), the sandbox proxy under `/api/v1/*`, and `/healthz`.

mod body;
pub mod error;
mod lifecycle_ops;
mod sandboxes;
mod secrets;
mod snapshots;
mod unbuilt;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};

use crate::auth::ApiKeys;
use crate::control::{AgentClient, Control};
use error::ApiError;

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The control plane.
    pub control: Arc<Control>,
    /// Pooled client to sandbox agents.
    pub agents: AgentClient,
    /// Accepted API keys (empty = auth off).
    pub keys: Arc<ApiKeys>,
    /// Domain of user-port ingress hosts (`<port>-<id>.<domain>`).
    pub ingress_domain: Arc<str>,
}

fn resource_routes() -> Router<AppState> {
    Router::new()
        .route("/sandboxes", post(sandboxes::create).get(sandboxes::list))
        .route(
            "/sandboxes/{id}",
            get(sandboxes::get)
                .patch(sandboxes::update)
                .delete(sandboxes::delete),
        )
        .route("/sandboxes/{id}/suspend", post(lifecycle_ops::suspend))
        .route("/sandboxes/{id}/resume", post(lifecycle_ops::resume))
        .route("/sandboxes/{id}/snapshot", post(snapshots::create))
        .route(
            "/sandboxes/{id}/snapshots",
            get(snapshots::list_for_sandbox),
        )
        .route("/secrets", get(secrets::list))
        .route("/secrets/{name}", put(secrets::set).delete(secrets::delete))
        .route("/snapshots", get(snapshots::list))
        .route(
            "/snapshots/{sid}",
            get(snapshots::get).delete(snapshots::delete),
        )
        .merge(unbuilt::routes())
}

/// The whole HTTP surface of `alcove serve`.
pub fn build_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/v1/namespaces/{ns}", resource_routes())
        .merge(resource_routes())
        .route("/api/v1/{*rest}", any(crate::proxy::forward))
        .route(
            "/sandboxes/{id}/api/v1/{*rest}",
            any(crate::proxy::forward_by_path),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::proxy::route_ingress,
        ))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        alcove_wire::error::ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" || state.keys.is_empty() {
        return next.run(req).await;
    }
    match state.keys.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Gives every request a span with an id, echoed as `x-request-id`.
async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let _entered = span.enter();
    drop(_entered);
    let mut resp = tracing::Instrument::instrument(next.run(req), span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
