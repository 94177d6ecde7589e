//! Errors of the image store.

use std::path::PathBuf;

/// What can go wrong in the store, in a pull, an import or an unpack.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
    /// Not a `sha256:<64 hex>` digest.
    #[error("{0:?} is not a sha256 digest")]
    BadDigest(String),
    /// Not a valid image reference.
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference {
        /// What was given.
        reference: String,
        /// Why it is refused.
        reason: String,
    },
    /// No image has this reference or id.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// Content did not match the digest it was announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which blob or layer.
        what: String,
        /// The announced digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Content is larger than allowed (a truncated or oversized blob, or a
    /// decompression bomb).
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Which blob or layer.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// Content ended before its announced size.
    #[error("{what} is truncated: {got} of {expected} bytes")]
    Truncated {
        /// Which blob.
        what: String,
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// A media type the store cannot use.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// A layer archive holds something the store refuses (an entry escaping
    /// the layer, a link out of it, a malformed header).
    #[error("layer {layer}: {reason}")]
    BadLayer {
        /// Which layer (digest).
        layer: String,
        /// What was wrong, naming the entry.
        reason: String,
    },
    /// A manifest, index or config is malformed or inconsistent.
    #[error("{what}: {reason}")]
    BadImage {
        /// Which document.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// The image is in use and cannot be deleted.
    #[error("image {image} is in use by {users}")]
    InUse {
        /// The image.
        image: String,
        /// Who uses it, human-readable.
        users: String,
    },
    /// A blob the operation needs is not stored.
    #[error("blob {0} is not stored")]
    BlobMissing(String),
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The registry refused access (its 401 or 403), with its message.
    #[error("registry {registry} refused access: {message}")]
    RegistryUnauthorized {
        /// The registry host.
        registry: String,
        /// What the registry (or its token service) said.
        message: String,
    },
    /// The registry could not be reached or answered something unusable.
    #[error("registry {registry}: {message}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What went wrong.
        message: String,
    },
}

impl ImageStoreError {
    /// Wraps an I/O error with the operation and path it belongs to.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }

    /// Like [`ImageStoreError::io`], but first unwraps a store error that a
    /// reader or writer of ours raised through `std::io` (a size limit hit
    /// inside a decompressor, say), so it keeps its own variant.
    pub fn from_io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| match Self::take_inner(source) {
            Ok(inner) => inner,
            Err(source) => Self::Io { op, path, source },
        }
    }

    /// The store error carried inside `err`, if one is; otherwise `err`.
    pub(crate) fn take_inner(err: std::io::Error) -> Result<Self, std::io::Error> {
        if !err.get_ref().is_some_and(|e| e.is::<Self>()) {
            return Err(err);
        }
        let kind = err.kind();
        match err.into_inner().map(|e| e.downcast::<Self>()) {
            Some(Ok(inner)) => Ok(*inner),
            // Unreachable after the check above, but keep an error either way.
            _ => Err(std::io::Error::from(kind)),
        }
    }

    /// Wraps this error in an `std::io::Error` (to raise it from a `Read` or
    /// `Write` implementation); [`ImageStoreError::from_io`] unwraps it.
    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }
}

/// Shorthand for store results.
pub type Result<T, E = ImageStoreError> = std::result::Result<T, E>;
