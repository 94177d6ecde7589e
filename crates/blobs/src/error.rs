//! Errors of the blob store.

/// What can go wrong opening, writing or reading the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The `--blob-store` location or its settings are not usable.
    #[error("blob store: {0}")]
    Config(String),
    /// A key that is not a plain relative path of safe names.
    #[error(
        "blob key {0:?} is not a relative path of names made of letters, digits, '.', '_' and '-'"
    )]
    BadKey(String),
    /// The store refused the credentials it was given.
    #[error("the blob store refused the credentials ({0})")]
    Credentials(String),
    /// The object is not in the store.
    #[error("blob {0:?} is not in the blob store")]
    NotFound(String),
    /// The bytes read back do not hash to what was written.
    #[error(
        "blob {key:?} is corrupt: expected sha256 {expected} ({expected_size} bytes), \
         read sha256 {actual} ({actual_size} bytes)"
    )]
    Corrupt {
        /// Which object.
        key: String,
        /// The digest recorded at upload.
        expected: String,
        /// The size recorded at upload.
        expected_size: u64,
        /// What the downloaded bytes hash to.
        actual: String,
        /// How many bytes were downloaded.
        actual_size: u64,
    },
    /// The store failed the request (network, server).
    #[error("blob store request failed: {0}")]
    Store(String),
    /// A local file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The local file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl BlobError {
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.display().to_string();
        move |source| Self::Io { what, path, source }
    }

    /// Classifies an `object_store` error: missing objects and refused
    /// credentials get their own variants, the rest is a store failure.
    pub(crate) fn from_store(key: &str, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound(key.to_string()),
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. } => Self::Credentials(e.to_string()),
            other => {
                let text = other.to_string();
                // S3 answers a wrong key id or signature with a plain 403.
                if [
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "AccessDenied",
                    "403 Forbidden",
                ]
                .iter()
                .any(|m| text.contains(m))
                {
                    Self::Credentials(text)
                } else {
                    Self::Store(text)
                }
            }
        }
    }
}

/// Result of the blob store.
pub type Result<T, E = BlobError> = std::result::Result<T, E>;
