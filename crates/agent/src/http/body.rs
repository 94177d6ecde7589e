//! Request bodies read whole, with a limit answered in the agent's error shape.

use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;

use super::error::{AgentErrorCode, ApiError};

/// The most a request body read whole may hold: axum's default limit, which its `Bytes`
/// extractor applies. A command line cannot use more anyway (Linux takes about 2 MiB of
/// arguments and environment together); file writes are streamed and have no such limit.
pub const BODY_LIMIT: usize = 2 << 20;

/// A request's whole body, at most [`BODY_LIMIT`] bytes. Where axum's own `Bytes` extractor
/// answers a plain-text 413, this answers `PAYLOAD_TOO_LARGE` in the error shape.
pub struct WholeBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for WholeBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    AgentErrorCode::PayloadTooLarge,
                    format!(
                        "the request body is larger than {} MiB, the most this route takes",
                        BODY_LIMIT >> 20
                    ),
                ))
            }
            Err(other) => Err(ApiError::invalid(format!(
                "reading the request body: {}",
                other.body_text()
            ))),
        }
    }
}
