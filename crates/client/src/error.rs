//! [`ClientError`], the one error of this crate, and how error answers map to it.
//!
//! The control plane answers `{"message", "code", "request_id"?}`, the in-sandbox agent
//! `{"error", "code"}`, and a proxy in front may answer plain text: [`ErrorBody::parse`] reads
//! all three. Which typed variant a 404 or 409 becomes depends on what was asked
//! ([`Scope`]), as in the Python SDK's `error_from_response`.

use std::time::Duration;

use http::StatusCode;

/// Result of every fallible call of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The client setting to raise when a [`ClientError::Timeout`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutSetting {
    /// The per-request timeout and wait deadline (`SandboxClientBuilder::timeout`).
    Timeout,
    /// The silence bound of `run` / `follow_*` (`SandboxClientBuilder::stream_idle_timeout`).
    StreamIdleTimeout,
    /// A timeout passed to the call itself (PTY reads and waits).
    Call,
}

/// Everything that can go wrong in a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The sandbox (id or name) does not exist, or its name no longer resolves (404).
    #[error("sandbox {sandbox:?} not found: {message}")]
    SandboxNotFound {
        /// The id or name asked for.
        sandbox: String,
        /// The server's message.
        message: String,
        /// The server's code, when it gave one.
        code: Option<String>,
    },
    /// The snapshot does not exist (404 on a snapshot call).
    #[error("snapshot {snapshot_id:?} not found: {message}")]
    SnapshotNotFound {
        /// The snapshot asked for.
        snapshot_id: String,
        /// The server's message.
        message: String,
    },
    /// The image does not exist (404 on an image call): unknown to the store, to the registry
    /// a pull asked, or the `FROM` image of a build.
    #[error("image {}not found: {message}",
        reference.as_deref().map(|r| format!("{r:?} ")).unwrap_or_default())]
    ImageNotFound {
        /// The reference asked for, when the call named one.
        reference: Option<String>,
        /// The server's message.
        message: String,
        /// The server's code, when it gave one.
        code: Option<String>,
    },
    /// Create or rename was refused with 409: a live sandbox holds the name.
    #[error("name conflict: {message}")]
    NameConflict {
        /// The server's message.
        message: String,
        /// The server's code (`NAME_TAKEN`).
        code: Option<String>,
    },
    /// The server refused the API key (401) or the caller's rights (403).
    #[error("authentication failed ({status}): {message}")]
    Unauthorized {
        /// 401 or 403.
        status: StatusCode,
        /// The server's message.
        message: String,
    },
    /// Any other non-2xx answer.
    #[error("API error ({status}{}): {message}{}",
        code.as_deref().map(|c| format!(", {c}")).unwrap_or_default(),
        request_suffix(message, request_id.as_deref()))]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The `code` field of a JSON error body.
        code: Option<String>,
        /// The server's message (or the whole body when it is not JSON).
        message: String,
        /// Id under which the server logged a 5xx failure.
        request_id: Option<String>,
    },
    /// The server could not be reached, or a response stream broke off.
    #[error("{what}: {detail}")]
    Connection {
        /// What was being done (`GET http://…`).
        what: String,
        /// What failed, with its causes.
        detail: String,
    },
    /// A client-side deadline passed.
    #[error("{what}: {detail}")]
    Timeout {
        /// What was being done.
        what: String,
        /// What ran out and how to wait longer.
        detail: String,
        /// The setting to raise.
        setting: TimeoutSetting,
        /// The bound that passed.
        after: Duration,
    },
    /// An answer could not be decoded.
    #[error("decoding {what}: {detail}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// Why it failed.
        detail: String,
    },
    /// The sandbox failed or ended while the client was waiting on it.
    #[error("{message}")]
    SandboxFailed {
        /// Its id.
        sandbox_id: String,
        /// Its status (`failed`, `terminated`, …).
        status: String,
        /// `termination_reason`, when given.
        reason: Option<String>,
        /// The whole story.
        message: String,
    },
    /// The sandbox has no usable `sandbox_url`: its processes and files cannot be reached.
    #[error("{0}")]
    NotRoutable(String),
    /// A snapshot failed (or was deleted) while the client waited for it.
    #[error("{0}")]
    SnapshotFailed(String),
    /// The sandbox reported a failure inside a stream (a run's error event).
    #[error("command failed in the sandbox{}: {message}",
        code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    CommandFailed {
        /// The agent's code.
        code: Option<String>,
        /// The agent's message.
        message: String,
    },
    /// A PTY session cannot do what was asked (not connected, exited, terminated).
    #[error("PTY session {session_id}: {message}")]
    Pty {
        /// The session.
        session_id: String,
        /// What went wrong.
        message: String,
    },
    /// An argument was refused before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A local file or socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// " (request <id>)" after an API error's message, unless the message names the request
/// itself (the server's 5xx messages do).
fn request_suffix(message: &str, request_id: Option<&str>) -> String {
    match request_id {
        Some(id) if !message.contains(id) => format!(" (request {id})"),
        _ => String::new(),
    }
}

impl ClientError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    pub(crate) fn decode(what: impl Into<String>, detail: impl ToString) -> Self {
        Self::Decode {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// The HTTP status of an error answer, if this error is one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::SandboxNotFound { .. }
            | Self::SnapshotNotFound { .. }
            | Self::ImageNotFound { .. } => Some(StatusCode::NOT_FOUND),
            Self::NameConflict { .. } => Some(StatusCode::CONFLICT),
            Self::Unauthorized { status, .. } | Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error code (`NOT_FOUND`, `INVALID_STATE`, …), when it gave one. The image
    /// calls add `IMAGE_IN_USE` (409), `BUILD_FAILED` (422), `REGISTRY_UNAUTHORIZED` (401 or
    /// 403, the registry refused the credentials) and `REGISTRY_ERROR` (502), all as
    /// [`ClientError::Api`], also when they arrive as the `error` event of a pull or build.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::SandboxNotFound { code, .. }
            | Self::ImageNotFound { code, .. }
            | Self::NameConflict { code, .. }
            | Self::Api { code, .. }
            | Self::CommandFailed { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether a sandbox, snapshot or image was not found.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// Whether a client-side deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}

/// What an error answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    pub message: String,
    pub code: Option<String>,
    pub request_id: Option<String>,
}

impl ErrorBody {
    /// Reads `{"message"|"error", "code", "request_id"}`, a create answer of a failed sandbox,
    /// or plain text.
    pub fn parse(status: StatusCode, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let plain = || Self {
            message: match text.trim() {
                "" => status.to_string(),
                trimmed => trimmed.to_string(),
            },
            code: None,
            request_id: None,
        };
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) else {
            return plain();
        };
        let field = |key: &str| map.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let code = field("code");
        let request_id = field("request_id");
        let message = ["message", "error"]
            .iter()
            .find_map(|key| match map.get(*key) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(serde_json::Value::Object(inner)) => inner
                    .get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string),
                _ => None,
            })
            .unwrap_or_else(|| text.trim().to_string());
        Self {
            message,
            code,
            request_id,
        }
    }
}

/// What a request was about, which decides how its 404 / 409 is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Nothing in particular (lists, secrets).
    Plain,
    /// A sandbox-scoped control-plane call: 404 = [`ClientError::SandboxNotFound`].
    Sandbox(String),
    /// A snapshot call: 404 = [`ClientError::SnapshotNotFound`].
    Snapshot(String),
    /// Create: 409 = [`ClientError::NameConflict`].
    Create,
    /// Rename: 404 = sandbox not found, 409 = name conflict.
    Rename(String),
    /// A request through the proxy: only the proxy's own `SANDBOX_NOT_FOUND` is a missing
    /// sandbox (the agent's 404 is a missing process or file).
    Proxy(String),
    /// An image call (about this reference, when it names one): 404 =
    /// [`ClientError::ImageNotFound`].
    Image(Option<String>),
}

/// Code of a registry's refusal of the credentials of a pull (401 or 403): not the API key's.
pub(crate) const REGISTRY_UNAUTHORIZED: &str = "REGISTRY_UNAUTHORIZED";

/// Codes of a 409 to a create or rename that is not about the name (a volume held elsewhere,
/// a snapshot's source busy, …): everything else there, a server's own code included, is a
/// name held by a live sandbox, which `get_or_create` attaches to.
const OTHER_CONFLICTS: &[&str] = &["INVALID_STATE", "FILE_SYSTEM_IN_USE", "OPERATION_REFUSED"];

/// Maps an error answer to a [`ClientError`].
pub(crate) fn error_from_answer(status: StatusCode, body: &[u8], scope: &Scope) -> ClientError {
    error_from_body(status, ErrorBody::parse(status, body), scope)
}

/// Maps what an error answer (or an `error` event) said to a [`ClientError`].
pub(crate) fn error_from_body(status: StatusCode, body: ErrorBody, scope: &Scope) -> ClientError {
    let ErrorBody {
        message,
        code,
        request_id,
    } = body;
    let sandbox_missing =
        |sandbox: &str, message: String, code: Option<String>| ClientError::SandboxNotFound {
            sandbox: sandbox.to_string(),
            message,
            code,
        };
    match (status, scope) {
        (StatusCode::NOT_FOUND, Scope::Sandbox(id) | Scope::Rename(id)) => {
            sandbox_missing(id, message, code)
        }
        (StatusCode::NOT_FOUND, Scope::Proxy(id))
            if code.as_deref() == Some("SANDBOX_NOT_FOUND") =>
        {
            sandbox_missing(id, message, code)
        }
        (StatusCode::NOT_FOUND, Scope::Snapshot(id)) => ClientError::SnapshotNotFound {
            snapshot_id: id.clone(),
            message,
        },
        (StatusCode::NOT_FOUND, Scope::Image(reference)) => ClientError::ImageNotFound {
            reference: reference.clone(),
            message,
            code,
        },
        (StatusCode::CONFLICT, Scope::Create | Scope::Rename(_))
            if !code
                .as_deref()
                .is_some_and(|c| OTHER_CONFLICTS.contains(&c)) =>
        {
            ClientError::NameConflict { message, code }
        }
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _)
            if (!matches!(scope, Scope::Proxy(_)) || code.as_deref() == Some("UNAUTHORIZED"))
                && code.as_deref() != Some(REGISTRY_UNAUTHORIZED) =>
        {
            ClientError::Unauthorized { status, message }
        }
        _ => ClientError::Api {
            status,
            code,
            message,
            request_id,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_of_every_shape_are_read() {
        let cp = ErrorBody::parse(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"message":"boom","code":"INTERNAL","request_id":"r1"}"#,
        );
        assert_eq!(cp.message, "boom");
        assert_eq!(cp.code.as_deref(), Some("INTERNAL"));
        assert_eq!(cp.request_id.as_deref(), Some("r1"));
        let agent = ErrorBody::parse(
            StatusCode::NOT_FOUND,
            br#"{"error":"no such file","code":"NOT_FOUND"}"#,
        );
        assert_eq!(agent.message, "no such file");
        let text = ErrorBody::parse(StatusCode::BAD_GATEWAY, b" upstream died \n");
        assert_eq!(text.message, "upstream died");
        assert_eq!(text.code, None);
        let empty = ErrorBody::parse(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(empty.message, "502 Bad Gateway");
    }

    #[test]
    fn a_request_is_named_once() {
        let api = |message: &str| ClientError::Api {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: Some("OPERATION_FAILED".into()),
            message: message.into(),
            request_id: Some("r7".into()),
        };
        assert_eq!(
            api("busy").to_string(),
            "API error (500 Internal Server Error, OPERATION_FAILED): busy (request r7)"
        );
        assert_eq!(
            api("busy (request r7)").to_string(),
            "API error (500 Internal Server Error, OPERATION_FAILED): busy (request r7)"
        );
    }

    #[test]
    fn status_and_scope_pick_the_variant() {
        let not_found = br#"{"message":"gone","code":"NOT_FOUND"}"#;
        let err = error_from_answer(
            StatusCode::NOT_FOUND,
            not_found,
            &Scope::Sandbox("sb".into()),
        );
        assert!(matches!(err, ClientError::SandboxNotFound { ref sandbox, .. } if sandbox == "sb"));
        assert!(err.is_not_found());
        let err = error_from_answer(
            StatusCode::NOT_FOUND,
            not_found,
            &Scope::Snapshot("s1".into()),
        );
        assert!(matches!(err, ClientError::SnapshotNotFound { .. }));
        // The agent's 404 (a missing file) is not a missing sandbox; the proxy's is.
        let err = error_from_answer(StatusCode::NOT_FOUND, not_found, &Scope::Proxy("sb".into()));
        assert!(matches!(err, ClientError::Api { .. }));
        let proxy = br#"{"message":"no sandbox","code":"SANDBOX_NOT_FOUND"}"#;
        let err = error_from_answer(StatusCode::NOT_FOUND, proxy, &Scope::Proxy("sb".into()));
        assert!(matches!(err, ClientError::SandboxNotFound { .. }));
        let taken = br#"{"message":"name taken","code":"NAME_TAKEN"}"#;
        let err = error_from_answer(StatusCode::CONFLICT, taken, &Scope::Create);
        assert!(matches!(err, ClientError::NameConflict { .. }));
        let err = error_from_answer(StatusCode::CONFLICT, taken, &Scope::Plain);
        assert!(matches!(err, ClientError::Api { .. }));
        // A create's 409 about a volume is not about the name.
        let held = br#"{"message":"file system data is mounted","code":"FILE_SYSTEM_IN_USE"}"#;
        let err = error_from_answer(StatusCode::CONFLICT, held, &Scope::Create);
        assert!(matches!(err, ClientError::Api { .. }), "{err}");
        assert_eq!(err.code(), Some("FILE_SYSTEM_IN_USE"));
        let err = error_from_answer(StatusCode::UNAUTHORIZED, b"{}", &Scope::Plain);
        assert!(matches!(err, ClientError::Unauthorized { .. }));
        // A PTY token refused by the agent is its own 403, not the API key.
        let token = br#"{"error":"bad token","code":"INVALID_TOKEN"}"#;
        let err = error_from_answer(StatusCode::FORBIDDEN, token, &Scope::Proxy("sb".into()));
        assert_eq!(err.code(), Some("INVALID_TOKEN"));
    }

    #[test]
    fn image_errors_keep_their_codes() {
        let err = error_from_answer(
            StatusCode::NOT_FOUND,
            br#"{"message":"image x:1 not found","code":"NOT_FOUND"}"#,
            &Scope::Image(Some("x:1".into())),
        );
        assert!(
            matches!(err, ClientError::ImageNotFound { ref reference, .. } if reference.as_deref() == Some("x:1")),
            "{err}"
        );
        assert!(err.is_not_found());
        assert_eq!(err.code(), Some("NOT_FOUND"));
        assert_eq!(
            err.to_string(),
            r#"image "x:1" not found: image x:1 not found"#
        );
        // The registry refused the pull's credentials: not the API key, and the code is kept.
        let err = error_from_answer(
            StatusCode::UNAUTHORIZED,
            br#"{"message":"registry said no","code":"REGISTRY_UNAUTHORIZED"}"#,
            &Scope::Image(None),
        );
        assert!(matches!(err, ClientError::Api { .. }), "{err}");
        assert_eq!(err.code(), Some(REGISTRY_UNAUTHORIZED));
        let err = error_from_answer(
            StatusCode::CONFLICT,
            br#"{"message":"image x is in use by sandbox sb","code":"IMAGE_IN_USE"}"#,
            &Scope::Image(Some("x".into())),
        );
        assert_eq!(
            (err.status(), err.code()),
            (Some(StatusCode::CONFLICT), Some("IMAGE_IN_USE"))
        );
    }

    #[test]
    fn api_errors_read_well() {
        let err = error_from_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"message":"internal error","code":"INTERNAL","request_id":"abc"}"#,
            &Scope::Plain,
        );
        assert_eq!(
            err.to_string(),
            "API error (500 Internal Server Error, INTERNAL): internal error (request abc)"
        );
        assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    }
}
