//! The agent's only error response type: `{"error": "...", "code": "..."}`
//! (docs/protocol/errors.md, Agent errors; the style of indexify's in-sandbox server), and the
//! one place that picks statuses.
//!
//! Caller faults are 4xx with the full message. Agent faults are 500 with a generic message;
//! the detail goes to the agent's log (stderr), not to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::files::FileError;
use crate::process::ProcessError;
use crate::process::spawn::LaunchError;
use crate::pty::PtyError;

/// Machine-readable codes of the agent's error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentErrorCode {
    /// No such process, file, directory or route.
    NotFound,
    /// The request body or a parameter is malformed.
    InvalidArgument,
    /// The command is not in `PATH` (or at its path), or its interpreter is missing.
    CommandNotFound,
    /// The command exists but cannot be executed.
    NotExecutable,
    /// The requested user or group does not exist.
    UserNotFound,
    /// The working directory does not exist or is not a directory.
    InvalidWorkingDir,
    /// The agent may not do this (file permissions, switching users as non-root).
    PermissionDenied,
    /// A file operation hit a directory.
    IsDirectory,
    /// A listing (or a parent of a written file) is not a directory.
    NotADirectory,
    /// A path contains `..`.
    PathTraversal,
    /// Something already exists where a new entry was to be made.
    AlreadyExists,
    /// The file is busy (a running program's executable, a mount point).
    FileBusy,
    /// No space is left on the file system (or the sandbox's disk).
    NoSpace,
    /// A running process already holds the name.
    NameTaken,
    /// The process has already exited.
    ProcessExited,
    /// Only managed processes can be restarted.
    NotManaged,
    /// Stdin cannot be written.
    StdinNotWritable,
    /// The PTY session token is missing or wrong.
    InvalidToken,
    /// The PTY session limit is reached.
    TooManySessions,
    /// The sandbox's process limit is reached: no process can be started.
    ProcessLimit,
    /// Nothing listens on the tunnel's port inside the sandbox.
    ConnectionRefused,
    /// Connecting to the tunnel's port failed otherwise (timeout, unreachable).
    ConnectionFailed,
    /// The route or feature is not built yet.
    NotImplemented,
    /// The HTTP method is not served on this path.
    MethodNotAllowed,
    /// The request body is larger than the route takes (413); the message says how much.
    PayloadTooLarge,
    /// The agent failed; see its log.
    Internal,
}

/// The wire body of an agent error: `{"error", "code"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentError {
    /// Human-readable message.
    pub error: String,
    /// Machine-readable code.
    pub code: AgentErrorCode,
}

/// An error answer: status plus body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: AgentError,
}

impl ApiError {
    /// An answer with this status, code and message.
    pub fn new(status: StatusCode, code: AgentErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: AgentError {
                error: message.into(),
                code,
            },
        }
    }

    /// 400 `INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            AgentErrorCode::InvalidArgument,
            message,
        )
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, AgentErrorCode::NotFound, message)
    }

    /// 500 with a generic message; `detail` goes to the sandbox's log (level error), which
    /// its owner reads with `GET /v1/namespaces/{ns}/sandboxes/{id}/logs?level=5`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        crate::journal::agent_problem(
            alcove_wire::journal::LogLevel::Error,
            format!("internal error: {detail}"),
        );
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            AgentErrorCode::Internal,
            "internal agent error; the details are in the sandbox's log (get_logs with level error)",
        )
    }

    /// The status this answer carries.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<LaunchError> for ApiError {
    fn from(err: LaunchError) -> Self {
        use AgentErrorCode as C;
        let (status, code) = match &err {
            LaunchError::EmptyCommand
            | LaunchError::InvalidArgument(_)
            | LaunchError::ArgumentsTooLong(_) => (StatusCode::BAD_REQUEST, C::InvalidArgument),
            LaunchError::ProgramBusy(_) => (StatusCode::CONFLICT, C::FileBusy),
            LaunchError::User(_) => (StatusCode::BAD_REQUEST, C::UserNotFound),
            LaunchError::WorkingDirMissing(_) | LaunchError::WorkingDirNotDir(_) => {
                (StatusCode::BAD_REQUEST, C::InvalidWorkingDir)
            }
            LaunchError::CommandNotFound(_) => (StatusCode::BAD_REQUEST, C::CommandNotFound),
            LaunchError::NotExecutable(_) => (StatusCode::BAD_REQUEST, C::NotExecutable),
            LaunchError::CannotSwitchUser { .. } => (StatusCode::FORBIDDEN, C::PermissionDenied),
            LaunchError::ProcessLimit(_) => (StatusCode::SERVICE_UNAVAILABLE, C::ProcessLimit),
            LaunchError::Spawn { .. } => return Self::internal(&err),
        };
        Self::new(status, code, err.to_string())
    }
}

impl From<ProcessError> for ApiError {
    fn from(err: ProcessError) -> Self {
        use AgentErrorCode as C;
        let err = match err {
            ProcessError::Launch(launch) => return launch.into(),
            other => other,
        };
        let (status, code) = match &err {
            ProcessError::Launch(_) => return Self::internal(&err),
            ProcessError::NotFound(_) => (StatusCode::NOT_FOUND, C::NotFound),
            ProcessError::NameTaken(_) => (StatusCode::CONFLICT, C::NameTaken),
            ProcessError::InvalidName(_)
            | ProcessError::InvalidSignal(_)
            | ProcessError::Invalid(_) => (StatusCode::BAD_REQUEST, C::InvalidArgument),
            ProcessError::NotManaged(_) => (StatusCode::CONFLICT, C::NotManaged),
            ProcessError::Exited(_) | ProcessError::Restarting { .. } => {
                (StatusCode::CONFLICT, C::ProcessExited)
            }
            ProcessError::StdinNotWritable { .. } => (StatusCode::BAD_REQUEST, C::StdinNotWritable),
            ProcessError::Body(_) => (StatusCode::BAD_REQUEST, C::InvalidArgument),
        };
        Self::new(status, code, err.to_string())
    }
}

impl From<PtyError> for ApiError {
    fn from(err: PtyError) -> Self {
        use AgentErrorCode as C;
        let err = match err {
            PtyError::Launch(launch) => return launch.into(),
            other => other,
        };
        let (status, code) = match &err {
            PtyError::Launch(_) | PtyError::Terminal { .. } => return Self::internal(&err),
            PtyError::NotFound(_) => (StatusCode::NOT_FOUND, C::NotFound),
            PtyError::InvalidSize { .. } => (StatusCode::BAD_REQUEST, C::InvalidArgument),
            PtyError::TooMany => (StatusCode::TOO_MANY_REQUESTS, C::TooManySessions),
        };
        Self::new(status, code, err.to_string())
    }
}

impl From<FileError> for ApiError {
    fn from(err: FileError) -> Self {
        use AgentErrorCode as C;
        let (status, code) = match &err {
            FileError::Empty | FileError::NotAbsolute(_) | FileError::Nul | FileError::Body(_) => {
                (StatusCode::BAD_REQUEST, C::InvalidArgument)
            }
            FileError::Traversal(_) => (StatusCode::FORBIDDEN, C::PathTraversal),
            FileError::NotFound(_) => (StatusCode::NOT_FOUND, C::NotFound),
            FileError::IsDirectory(_) => (StatusCode::BAD_REQUEST, C::IsDirectory),
            FileError::NotADirectory(_) => (StatusCode::BAD_REQUEST, C::NotADirectory),
            FileError::PermissionDenied(_) | FileError::ReadOnly(_) | FileError::KernelFile(_) => {
                (StatusCode::FORBIDDEN, C::PermissionDenied)
            }
            FileError::NoSpace(_) | FileError::NoSpaceToReplace(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, C::NoSpace)
            }
            FileError::AlreadyExists(_) => (StatusCode::CONFLICT, C::AlreadyExists),
            FileError::Busy(_) => (StatusCode::CONFLICT, C::FileBusy),
            FileError::BadPath { .. } | FileError::NotRegular(_) | FileError::KernelRead { .. } => {
                (StatusCode::BAD_REQUEST, C::InvalidArgument)
            }
            FileError::Io { .. } => return Self::internal(&err),
        };
        Self::new(status, code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_error_and_code() {
        let err = ApiError::not_found("process 7 not found");
        let json = serde_json::to_string(&err.body).expect("serializes");
        assert_eq!(
            json,
            r#"{"error":"process 7 not found","code":"NOT_FOUND"}"#
        );
    }

    #[test]
    fn file_errors_get_indexify_codes() {
        let err = ApiError::from(FileError::IsDirectory("/tmp".into()));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.body.code, AgentErrorCode::IsDirectory);
        let err = ApiError::from(FileError::Traversal("/a/..".into()));
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            serde_json::to_value(err.body.code).expect("serializes"),
            "PATH_TRAVERSAL"
        );
    }

    #[test]
    fn caller_faults_of_the_file_system_are_4xx() {
        let cases = [
            (
                FileError::ReadOnly("/sys/x".into()),
                403,
                "PERMISSION_DENIED",
            ),
            (
                FileError::KernelFile("/proc/version".into()),
                403,
                "PERMISSION_DENIED",
            ),
            (
                FileError::PermissionDenied("/x".into()),
                403,
                "PERMISSION_DENIED",
            ),
            (FileError::NotFound("/x".into()), 404, "NOT_FOUND"),
            (
                FileError::NotADirectory("/f/x".into()),
                400,
                "NOT_A_DIRECTORY",
            ),
            (FileError::IsDirectory("/tmp".into()), 400, "IS_DIRECTORY"),
            (FileError::NoSpace("/big".into()), 507, "NO_SPACE"),
            (FileError::AlreadyExists("/x".into()), 409, "ALREADY_EXISTS"),
            (FileError::Busy("/bin/sh".into()), 409, "FILE_BUSY"),
        ];
        for (err, status, code) in cases {
            let err = ApiError::from(err);
            assert_eq!(err.status().as_u16(), status, "{code}");
            assert_eq!(
                serde_json::to_value(err.body.code).expect("serializes"),
                code
            );
        }
    }

    #[test]
    fn io_failures_do_not_leak_detail() {
        let err = ApiError::from(FileError::Io {
            action: "writing",
            path: "/secret/path".into(),
            source: std::io::Error::other("disk on fire"),
        });
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.body.error.contains("disk on fire"));
    }
}
