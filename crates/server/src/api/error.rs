//! `ApiError`: the only error that becomes an HTTP response, and the only place
//! that picks statuses. No answer carries a host path or command line: a 5xx
//! answers a short public message with the request id (the same id as the
//! `x-request-id` header) and the detail goes to the log under that id.

use alcove_wire::error::{ApiErrorBody, ErrorCode};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::control::ControlError;
use crate::redact::{self, Failure};

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    /// What went wrong in full, for the log only.
    detail: Option<String>,
}

impl ApiError {
    /// An error with an explicit status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// Adds the full detail, logged (never answered) with the request id.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }

    /// 501 for a route of the protocol that is not built yet
    /// (docs/protocol/control-plane.md, Routes not built).
    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::NotImplemented,
            format!("{what} is not implemented by this server yet"),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message as a client may see it outside a response (an event of a
    /// stream): host details scrubbed, an internal error logged and named only.
    pub fn public_message(&self) -> String {
        if self.code == ErrorCode::Internal {
            let detail = self.detail.as_deref().unwrap_or(&self.message);
            tracing::error!(error = %detail, "streamed work failed");
            "internal error; see the server log".to_string()
        } else {
            redact::for_client(&self.message).into_owned()
        }
    }

    /// The message as built (before a 5xx answer replaces it).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A query string that does not parse: 400 with what is wrong with it.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(format!("invalid query: {}", rejection.body_text()))
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        use ControlError as C;
        let (status, code) = match &e {
            C::NotFound { .. } => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            C::NameTaken(_) => (StatusCode::CONFLICT, ErrorCode::NameTaken),
            C::InvalidArgument { .. } => (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument),
            C::InvalidState { .. } | C::Conflict(_) => {
                (StatusCode::CONFLICT, ErrorCode::InvalidState)
            }
            C::FileSystemInUse(_) => (StatusCode::CONFLICT, ErrorCode::FileSystemInUse),
            C::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, ErrorCode::NotImplemented),
            C::Draining => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NodeDraining),
            C::Fenced => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NodeFenced),
            C::NoRoom { .. }
            | C::NoRoomHere { .. }
            | C::NotMatchedHere { .. }
            | C::NoMatchingNode { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ResourceExhausted,
            ),
            C::OnOtherNode { .. } => (StatusCode::MISDIRECTED_REQUEST, ErrorCode::OnOtherNode),
            C::NodeOffline { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NodeOffline),
            C::NotReady { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::SandboxNotReady),
            C::Runtime(alcove_runtime::RuntimeError::Image(
                alcove_runtime::error::ImageError::NotFound(_),
            )) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            C::Runtime(alcove_runtime::RuntimeError::Capacity(_)) => (
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::ResourceExhausted,
            ),
            C::OperationFailed { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::OperationFailed,
            ),
            C::OperationRefused { .. } => (StatusCode::CONFLICT, ErrorCode::OperationRefused),
            C::Store(e) if e.is_unavailable() => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable)
            }
            C::Store(_) | C::Runtime(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
            C::Image(e) => image_status(e),
            C::BuildFailed(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::BuildFailed),
            C::PoolAtCapacity { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::PoolAtCapacity),
            C::PoolInUse { .. } => (StatusCode::CONFLICT, ErrorCode::PoolInUse),
        };
        let detail = e.to_string();
        let message = match &e {
            // The reason was stored for clients, but may come from older code or
            // a path not converted yet: scrub it again.
            C::OperationFailed { id, op, reason } => {
                let failure = match *op {
                    "suspend" => Failure::Suspend,
                    "resume" => Failure::Resume,
                    "snapshot" => Failure::Snapshot,
                    _ => Failure::Other,
                };
                let reason = reason
                    .strip_prefix(failure.prefix())
                    .and_then(|r| r.strip_prefix(": "))
                    .unwrap_or(reason);
                let reason = crate::redact::public_reason(failure, reason);
                if id.is_empty() {
                    format!("{op} failed: {reason}")
                } else {
                    format!("{op} of sandbox {id} failed: {reason}")
                }
            }
            C::Store(e) if e.is_unavailable() => {
                "the server's database cannot be reached; nothing was changed, retry later".into()
            }
            _ => detail.clone(),
        };
        Self::new(status, code, message).with_detail(detail)
    }
}

/// The status and code of an image store, pull, import or build error.
fn image_status(e: &alcove_images::ImageStoreError) -> (StatusCode, ErrorCode) {
    use alcove_images::ImageStoreError as I;
    match e {
        I::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        I::InUse { .. } => (StatusCode::CONFLICT, ErrorCode::ImageInUse),
        I::BadDigest(_)
        | I::BadReference { .. }
        | I::DigestMismatch { .. }
        | I::TooLarge { .. }
        | I::Truncated { .. }
        | I::UnsupportedMediaType(_)
        | I::BadLayer { .. }
        | I::BadImage { .. } => (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument),
        I::Io { .. } | I::BlobMissing(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
        }
        // The registry's own answer: 403 when it said forbidden, else 401.
        I::RegistryUnauthorized { message, .. } => (
            if message.contains("403") || message.to_ascii_lowercase().contains("forbidden") {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            },
            ErrorCode::RegistryUnauthorized,
        ),
        I::Registry { .. } => (StatusCode::BAD_GATEWAY, ErrorCode::RegistryError),
    }
}

/// Logs a 5xx answer at the level its cause deserves: a request that met a sandbox between
/// states (clients replay it) is routine, a full or draining node is news, a dependency that
/// failed (the database, a node, an agent, a registry) is a warning, and the rest is an error
/// of this server.
fn log_server_error(code: ErrorCode, request_id: &str, detail: &str) {
    use ErrorCode as E;
    match code {
        E::SandboxNotReady => tracing::debug!(%request_id, error = %detail, "request failed"),
        E::NodeDraining | E::ResourceExhausted | E::ServerBusy => {
            tracing::info!(%request_id, error = %detail, "request failed");
        }
        E::StoreUnavailable
        | E::NodeOffline
        | E::NodeFenced
        | E::SandboxUnreachable
        | E::RegistryError => tracing::warn!(%request_id, error = %detail, "request failed"),
        _ => tracing::error!(%request_id, error = %detail, "request failed"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = super::current_request_id()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let detail = self.detail.as_deref().unwrap_or(&self.message);
        let message = if self.status.is_server_error() {
            log_server_error(self.code, &request_id, detail);
            if self.code == ErrorCode::Internal {
                format!("internal error; see the server log for request {request_id}")
            } else {
                format!(
                    "{} (request {request_id})",
                    redact::for_client(&self.message)
                )
            }
        } else {
            let shown = redact::for_client(&self.message);
            if shown != self.message {
                tracing::warn!(%request_id, error = %detail, "answer held host details");
            }
            shown.into_owned()
        };
        let body = ApiErrorBody {
            message,
            code: self.code,
            request_id: self.status.is_server_error().then(|| request_id.clone()),
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        if self.code == ErrorCode::StoreUnavailable {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("2"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_errors_map_to_statuses() {
        let cases = [
            (
                ControlError::NotFound {
                    kind: "sandbox",
                    id: "x".into(),
                },
                StatusCode::NOT_FOUND,
            ),
            (ControlError::NameTaken("a".into()), StatusCode::CONFLICT),
            (
                ControlError::InvalidArgument {
                    field: "name",
                    reason: "bad".into(),
                },
                StatusCode::BAD_REQUEST,
            ),
            (
                ControlError::NotImplemented("secrets"),
                StatusCode::NOT_IMPLEMENTED,
            ),
            (
                ControlError::Runtime(alcove_runtime::RuntimeError::Image(
                    alcove_runtime::error::ImageError::NotFound("nope".into()),
                )),
                StatusCode::NOT_FOUND,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(ApiError::from(err).status(), status);
        }
    }

    const ARGV: &str = "runc --root /var/lib/alcove/runc --criu /usr/local/sbin/criu restore \
                        --image-path /var/lib/alcove/sandboxes/6f1c2a43/checkpoint \
                        --bundle /var/lib/alcove/sandboxes/6f1c2a43/bundle 6f1c2a43";

    async fn body_of(resp: Response) -> (StatusCode, Option<String>, ApiErrorBody) {
        let status = resp.status();
        let header = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
        assert!(
            !text.contains("/var/lib/alcove"),
            "host path answered: {text}"
        );
        assert!(
            !text.contains("runc --root"),
            "command line answered: {text}"
        );
        assert!(
            !text.contains("/usr/local/sbin"),
            "host path answered: {text}"
        );
        (
            status,
            header,
            serde_json::from_str(&text).expect("wire body"),
        )
    }

    #[tokio::test]
    async fn runtime_errors_never_reach_the_body() {
        let command = alcove_runtime::error::CommandError {
            argv: ARGV.into(),
            reason: "exit status: 1: criu failed: type RESTORE errno 0".into(),
        };
        let runtime = ControlError::Runtime(alcove_runtime::RuntimeError::Command(command));
        let (status, header, body) = body_of(ApiError::from(runtime).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body.code, ErrorCode::Internal);
        assert_eq!(body.request_id, header, "body and header carry the same id");
        assert!(body.request_id.is_some());

        let io = ControlError::Runtime(alcove_runtime::RuntimeError::Io {
            op: "creating",
            path: "/var/lib/alcove/sandboxes/6f1c2a43/rootfs".into(),
            source: std::io::Error::other("no space left on device"),
        });
        body_of(ApiError::from(io).into_response()).await;
    }

    #[tokio::test]
    async fn failed_operations_answer_a_public_reason_with_the_request_id() {
        // What older code stored in error_details, fed back as the reason.
        let failed = ControlError::OperationFailed {
            id: "6f1c2a43".into(),
            op: "resume",
            reason: format!("resume failed: running {ARGV}: exit status: 1"),
        };
        let (status, header, body) = body_of(ApiError::from(failed).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body.code, ErrorCode::OperationFailed);
        let id = body.request_id.clone().expect("request id");
        assert_eq!(header.as_deref(), Some(id.as_str()));
        assert_eq!(
            body.message,
            format!(
                "resume of sandbox 6f1c2a43 failed: the sandbox's processes could not be \
                 restored; it stays suspended (request {id})"
            )
        );

        // A reason free of host details is kept.
        let failed = ControlError::OperationFailed {
            id: "6f1c2a43".into(),
            op: "suspend",
            reason: "suspend failed: the sandbox is terminated".into(),
        };
        let (_, _, body) = body_of(ApiError::from(failed).into_response()).await;
        assert!(
            body.message.starts_with(
                "suspend of sandbox 6f1c2a43 failed: the sandbox is terminated (request "
            ),
            "{}",
            body.message
        );
    }

    #[tokio::test]
    async fn client_errors_are_scrubbed_too() {
        let err = ApiError::bad_request(format!("bad thing at {ARGV}"));
        let (status, header, body) = body_of(err.into_response()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(header.is_some(), "every answer has an x-request-id");
        assert_eq!(body.request_id, None);
    }
}
