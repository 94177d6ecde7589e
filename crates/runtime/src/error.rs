//! Errors of the node runtime, one enum per concern wrapped by [`RuntimeError`].

use std::path::PathBuf;

/// A failed external command (`runc`, `nft`, `mount`, …), with what was run.
#[derive(Debug, thiserror::Error)]
#[error("running {argv}: {reason}")]
pub struct CommandError {
    /// The command line, space-joined.
    pub argv: String,
    /// Exit status and stderr, or the spawn error.
    pub reason: String,
}

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image has this name or alias.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// The image directory exists but its manifest is unreadable.
    #[error("reading image manifest {path}: {reason}")]
    BadManifest {
        /// Manifest path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Errors of the runtime as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// An external command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Image lookup failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("creating", "removing", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Building the OCI runtime spec failed.
    #[error("building the OCI spec: {0}")]
    Spec(String),
    /// No free network slot is left in the sandbox subnet.
    #[error("no free address left in subnet {0}")]
    SubnetExhausted(String),
    /// The sandbox's agent did not answer in time.
    #[error("agent of sandbox {id} did not become ready within {secs} s")]
    AgentNotReady {
        /// Sandbox id.
        id: String,
        /// How long we waited.
        secs: u64,
    },
    /// A configuration value is invalid.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    /// This host cannot do what was asked (a capability the server lacks); the text says what
    /// to do instead.
    #[error("{0}")]
    Unsupported(String),
    /// The host has no room for the sandbox (pids, disk); nothing was made.
    #[error("{0}")]
    Capacity(String),
    /// What the sandbox did refuses the operation (a symlink where a volume is
    /// to be mounted); nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// Something is in use (files open on a volume being detached); nothing
    /// was changed.
    #[error("{0}")]
    Busy(String),
    /// A netlink or namespace step of a sandbox's network plumbing failed.
    #[error("network plumbing: {0}")]
    Network(String),
}

impl RuntimeError {
    /// Why the operation failed, when what the sandbox does or holds stands in its way
    /// ([`RuntimeError::Refused`], [`RuntimeError::Busy`]) rather than the host: a text
    /// written for the sandbox's user.
    pub fn sandbox_refusal(&self) -> Option<&str> {
        match self {
            Self::Refused(reason) | Self::Busy(reason) => Some(reason),
            _ => None,
        }
    }

    /// Wraps an I/O error with the operation and path it belongs to.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

/// A path as `&str` for an external command's argv (our paths are UTF-8).
pub(crate) fn path_str(p: &std::path::Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| RuntimeError::Config(format!("path {} is not UTF-8", p.display())))
}

/// Shorthand for runtime results.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
