//! `ApiError`: the only error that becomes an HTTP response, and the only place
//! that picks statuses. A 5xx answers a generic message with the request id; the
//! detail goes to the log.

use alcove_wire::error::{ApiErrorBody, ErrorCode};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::control::ControlError;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with an explicit status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }

    /// 501 for a route of WIRE.md that is not built yet.
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

    /// The message as built (before a 5xx answer replaces it).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        use ControlError as C;
        let (status, code) = match &e {
            C::NotFound { .. } => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            C::NameTaken(_) => (StatusCode::CONFLICT, ErrorCode::NameTaken),
            C::InvalidArgument { .. } => (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument),
            C::InvalidState { .. } => (StatusCode::CONFLICT, ErrorCode::InvalidState),
            C::NotImplemented(_) => (StatusCode::NOT_IMPLEMENTED, ErrorCode::NotImplemented),
            C::NotReady { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::SandboxNotReady),
            C::Runtime(alcove_runtime::RuntimeError::Image(
                alcove_runtime::error::ImageError::NotFound(_),
            )) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            C::OperationFailed { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::OperationFailed,
            ),
            C::Store(_) | C::Runtime(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let message = if self.status.is_server_error() && self.code == ErrorCode::Internal {
            tracing::error!(%request_id, error = %self.message, "request failed");
            format!("internal error; see the server log for request {request_id}")
        } else {
            self.message
        };
        let body = ApiErrorBody {
            message,
            code: self.code,
            request_id: self.status.is_server_error().then_some(request_id),
        };
        (self.status, Json(body)).into_response()
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
}
