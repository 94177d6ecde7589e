//! Error bodies (docs/protocol/errors.md).
//!
//! The control plane answers `{"message": "...", "code": "..."}`; the in-sandbox
//! agent answers `{"error": "...", "code": "..."}`. The SDKs show the whole body
//! as the error message and expose `code`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Machine-readable error codes of the control plane and proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request is malformed or a field is out of range.
    InvalidArgument,
    /// The named sandbox, snapshot or image does not exist.
    NotFound,
    /// A live sandbox already holds the requested name.
    NameTaken,
    /// The operation does not fit the sandbox's current status.
    InvalidState,
    /// Authentication is missing or wrong.
    Unauthorized,
    /// The request came from a web page of another site, or named a host this
    /// server (without API keys) does not answer to (403).
    Forbidden,
    /// The route exists in the protocol but is not built yet.
    NotImplemented,
    /// The sandbox is still booting or resuming; the request did not reach it.
    SandboxNotReady,
    /// The sandbox's agent could not be reached.
    SandboxUnreachable,
    /// An operation (suspend, resume, snapshot) ran and failed; the sandbox is unchanged.
    OperationFailed,
    /// What runs in the sandbox makes the operation (suspend, copy) impossible right now
    /// (409); the message says what and what to do, and the sandbox runs on unchanged.
    OperationRefused,
    /// The host has no room for it (pids, disk): nothing was created.
    ResourceExhausted,
    /// The client has too many requests in flight (429); retry when some finish.
    TooManyRequests,
    /// The server is at its connection limit (503); retry later.
    ServerBusy,
    /// The server's database cannot be reached (503); nothing was changed, retry later.
    StoreUnavailable,
    /// The node is draining (503): it starts and resumes no sandboxes.
    NodeDraining,
    /// The sandbox lives on another node, which alone serves it (421).
    OnOtherNode,
    /// The sandbox lives on a node whose lease ran out (503); retry later.
    NodeOffline,
    /// This node cannot hold its lease in the store (503): it starts nothing
    /// and has frozen or stopped its sandboxes until it holds it again.
    NodeFenced,
    /// The server failed; details are in its log under the request id.
    Internal,
    /// The image is used by a sandbox, a suspended sandbox or a snapshot (409).
    ImageInUse,
    /// The registry refused the credentials (its own 401 or 403, with its message).
    RegistryUnauthorized,
    /// The registry could not be reached or answered something unusable (502).
    RegistryError,
    /// A build step failed (422); the message has its exit code and output.
    BuildFailed,
    /// A pool has as many sandboxes as its `max_containers` and none idle (429).
    PoolAtCapacity,
    /// A pool still has claimed sandboxes that have not ended (409).
    PoolInUse,
    /// A file system (volume) is mounted where the request needs it free, or files
    /// are open on it (409).
    FileSystemInUse,
    /// The request's body is larger than the route takes (413); the message says how much.
    PayloadTooLarge,
    /// The route exists, but not with this HTTP method (405).
    MethodNotAllowed,
}

/// The control plane's error body: `{"message", "code"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    /// Human-readable explanation, lower-case, no final period.
    pub message: String,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Request id to look up in the server log (set on 5xx answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub request_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_screaming_snake_case_on_the_wire() {
        let body = ApiErrorBody {
            message: "no such sandbox".into(),
            code: ErrorCode::SandboxNotReady,
            request_id: None,
        };
        let json = serde_json::to_string(&body).expect("serialize");
        assert_eq!(
            json,
            r#"{"message":"no such sandbox","code":"SANDBOX_NOT_READY"}"#
        );
    }
}
