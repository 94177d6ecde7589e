//! HTTP routes: the control plane under `/v1/namespaces/{ns}` and flat
//! (docs/protocol/control-plane.md, Base paths and namespaces), the sandbox proxy
//! under `/api/v1/*`, `/healthz` and `/openapi.json`.

mod archived;
pub(crate) mod body;
mod copy;
mod desktop;
pub mod error;
mod file_systems;
mod images;
mod lifecycle_ops;
mod logs;
mod metrics;
mod nodes;
pub mod openapi;
mod path_check;
mod pools;
mod pty_ticket;
mod sandboxes;
mod secrets;
pub mod site_guard;
mod snapshots;
mod to_completion;
mod unbuilt;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
    /// How requests are relayed to other nodes (plain or TLS).
    pub nodes: crate::proxy::NodeLink,
    /// Accepted API keys (empty = auth off).
    pub keys: Arc<ApiKeys>,
    /// Domain of user-port ingress hosts (`<port>-<id>.<domain>`).
    pub ingress_domain: Arc<str>,
    /// Signs and checks the tokens of desktop URLs.
    pub desktop_tokens: Arc<crate::desktop::DesktopTokens>,
    /// noVNC's files, served under `/desktop/novnc/`.
    pub novnc_dir: Arc<std::path::Path>,
    /// Host names answered to without API keys besides loopback ones (`--allowed-host`).
    pub allowed_hosts: Arc<site_guard::AllowedHosts>,
}

/// The control-plane routes under `{B}`, each with its OpenAPI description.
fn resource_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sandboxes::create, sandboxes::list))
        .routes(routes!(
            sandboxes::get,
            sandboxes::update,
            sandboxes::delete
        ))
        .routes(routes!(archived::list))
        .routes(routes!(archived::get))
        .routes(routes!(lifecycle_ops::suspend))
        .routes(routes!(lifecycle_ops::resume))
        .routes(routes!(copy::copy))
        .routes(routes!(snapshots::create))
        .routes(routes!(snapshots::list_for_sandbox))
        .routes(routes!(secrets::list))
        .routes(routes!(secrets::set, secrets::delete))
        .routes(routes!(desktop::desktop_url))
        .routes(routes!(pty_ticket::pty_ticket))
        .routes(routes!(metrics::sandbox_metrics))
        .routes(routes!(logs::get_logs))
        .routes(routes!(logs::list_log_processes))
        .routes(routes!(snapshots::list))
        .routes(routes!(snapshots::get, snapshots::delete))
        .routes(routes!(pools::create, pools::list))
        .routes(routes!(pools::get, pools::update, pools::delete))
        .routes(routes!(pools::claim))
        .routes(routes!(images::list))
        .routes(routes!(images::pull))
        .routes(routes!(images::import))
        .routes(routes!(images::build))
        .routes(routes!(images::save_snapshot))
        .merge(images::reference_routes())
        .routes(routes!(file_systems::create, file_systems::list))
        .routes(routes!(file_systems::get, file_systems::delete))
        .routes(routes!(file_systems::attach, file_systems::detach))
        .merge(unbuilt::routes())
}

/// Every route of `alcove serve` with its OpenAPI description: the router and the document
/// ([`openapi::document`]) come from this one list. The proxy routes are described by the
/// agent's own routes (`/api/v1/...`).
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(openapi::serve))
        .routes(routes!(metrics::scrape))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::drain))
        .routes(routes!(nodes::activate))
        .nest("/v1/namespaces/{ns}", resource_routes())
        .merge(resource_routes())
        // Every control-plane route above; not the proxy's or the desktop's below.
        .route_layer(middleware::from_fn(to_completion::run_to_completion))
        .route("/api/v1/{*rest}", any(crate::proxy::forward))
        .route(
            "/sandboxes/{id}/api/v1/{*rest}",
            any(crate::proxy::forward_by_path),
        )
        .route("/desktop/{id}", get(crate::desktop::desktop_page))
        .route(
            "/desktop/{id}/websockify",
            get(crate::desktop::desktop_socket),
        )
}

/// The whole HTTP surface of `alcove serve`.
pub fn build_router(state: AppState) -> Router {
    let (router, _doc) = api_router().split_for_parts();
    router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .nest_service(
            "/desktop/novnc",
            // A missing file answers in the error shape, as every other route does.
            tower_http::services::ServeDir::new(&*state.novnc_dir).fallback(
                axum::handler::HandlerWithoutStateExt::into_service(
                    crate::desktop::novnc_file_missing,
                ),
            ),
        )
        .merge(crate::console::routes())
        .route("/artifact-storage/{*rest}", any(artifact_storage))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(path_check::check_path))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::proxy::route_ingress,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::proxy::forward_to_owner,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            site_guard::guard,
        ))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Body of `GET /healthz`.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok` while the server answers.
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /healthz`: the server answers (no API key needed).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = openapi::tags::SERVER,
    operation_id = "healthz",
    responses((status = 200, description = "The server answers.", body = Health))
)]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// A sandbox's wire form as clients may see it: `error_details` free of host
/// details (a record stored by older code, or by a path not converted yet, may
/// still hold a command line).
pub(crate) fn public_info(
    state: &AppState,
    record: &crate::store::SandboxRecord,
) -> alcove_wire::sandbox::SandboxInfo {
    let mut info = state.control.info(record);
    if let Some(details) = info.error_details.as_mut()
        && crate::redact::leaks_host_detail(details)
    {
        *details = crate::redact::for_client(details).into_owned();
    }
    info
}

/// The hosted platform's Artifact Storage, where the official SDK's module-level
/// `create_file_system` and `list_file_systems` go: not part of this server, which has
/// volumes of its own instead.
async fn artifact_storage() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        alcove_wire::error::ErrorCode::NotImplemented,
        "Artifact Storage (the hosted platform's file systems) is not part of Alcove: its \
         file systems are local volumes, made with POST /file-systems (client.create_file_system \
         in Alcove's SDKs, `alcove fs create`) and mounted by the same file_system_id"
            .to_string(),
    )
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        alcove_wire::error::ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        alcove_wire::error::ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The API-key check in front of every route (see the exemptions below).
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // Desktop pages and sockets carry a signed token instead (a browser cannot
    // put a key on a WebSocket); their handlers check it. noVNC's files and the
    // console's files are public (the console asks for a key and sends it itself).
    let path = req.uri().path();
    if matches!(path, "/healthz" | "/openapi.json")
        || path.starts_with("/desktop/")
        || crate::console::is_console_path(path)
        || state.keys.is_empty()
    {
        return next.run(req).await;
    }
    let refused = match state.keys.check(req.headers()) {
        Ok(()) => return next.run(req).await,
        Err(e) => e,
    };
    // The console's terminal: a PTY WebSocket with a ticket instead of the key.
    if !req
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION)
    {
        match crate::console::pty_ticket_admits(&state, req).await {
            Ok(Some(req)) => return next.run(req).await,
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    refused.into_response()
}

tokio::task_local! {
    /// The id of the request being handled (set by [`request_id`]).
    static REQUEST_ID: String;
}

/// The id of the request this task is handling, if any: error answers carry it
/// so that a client's report finds the log lines.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Gives every request an id and a span carrying it (so every log line of the
/// request, and of jobs it starts, names it); the id is echoed as `x-request-id`.
async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let run = tracing::Instrument::instrument(next.run(req), span);
    let mut resp = REQUEST_ID.scope(id.clone(), run).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn every_answer_has_a_request_id_matching_its_error_body() {
        let app: Router = Router::new()
            .route("/ok", get(|| async { "fine" }))
            .route(
                "/fail",
                get(|| async {
                    ApiError::from(crate::control::ControlError::OperationFailed {
                        id: "x".into(),
                        op: "resume",
                        reason: "resume failed: running runc --root /var/lib/alcove/runc".into(),
                    })
                }),
            )
            .layer(middleware::from_fn(request_id));
        let resp = app
            .clone()
            .oneshot(Request::get("/ok").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert!(resp.headers().contains_key("x-request-id"));

        let resp = app
            .oneshot(Request::get("/fail").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let header = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("x-request-id");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: alcove_wire::error::ApiErrorBody =
            serde_json::from_slice(&bytes).expect("wire body");
        assert_eq!(body.request_id.as_deref(), Some(header.as_str()));
        assert!(body.message.ends_with(&format!("(request {header})")));
        assert!(!body.message.contains("runc"));
    }
}
