//! The blob store: the bytes that must outlive this machine or move to another
//! one (a suspended sandbox's dump and layer, a snapshot's files), kept under
//! keys such as `snapshots/<id>/disk.tar.zst`.
//!
//! Two backends behind one type, both through the `object_store` crate: a
//! directory (`file:///path`, e.g. a shared mount) and S3 or any server that
//! speaks its protocol (`s3://bucket/prefix`). Every upload is hashed as it is
//! streamed, and every download is hashed again and compared with what the
//! upload recorded before the file is put in place: a corrupt object never
//! reaches a restore.

mod error;
mod location;
mod transfer;

pub use error::{BlobError, Result};
pub use location::{BlobLocation, S3Settings};
pub use transfer::BlobDigest;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

/// A blob store: where it is, and the client that reaches it.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    location: BlobLocation,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The location carries no credentials; the client is left out.
        f.debug_struct("BlobStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl BlobStore {
    /// Opens the store at `url` (`file:///dir` or `s3://bucket[/prefix]`);
    /// `s3` is only read for S3. Nothing is contacted yet: see [`Self::check`].
    pub fn open(url: &str, s3: &S3Settings) -> Result<Self> {
        let location = BlobLocation::parse(url)?;
        let inner = location.connect(s3)?;
        Ok(Self { inner, location })
    }

    /// Where the store is, for logs and `GET /nodes` (never credentials).
    pub fn location(&self) -> &BlobLocation {
        &self.location
    }

    /// Writes, reads back and deletes a small probe object, so a wrong
    /// endpoint, bucket or credentials fail at start rather than at the first
    /// suspend.
    pub async fn check(&self) -> Result<()> {
        let key = format!("probes/{}", std::process::id());
        let digest = self
            .upload(&key, &mut std::io::Cursor::new(b"alcove".to_vec()))
            .await?;
        let path = self.path(&key)?;
        let got = object_store::ObjectStoreExt::get(&*self.inner, &path)
            .await
            .map_err(|e| BlobError::from_store(&key, e))?
            .bytes()
            .await
            .map_err(|e| BlobError::from_store(&key, e))?;
        if got.as_ref() != b"alcove" {
            return Err(BlobError::Store(format!(
                "the probe object read back differs from what was written ({} of {} bytes)",
                got.len(),
                digest.size
            )));
        }
        self.delete(&key).await
    }

    /// Deletes one object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match object_store::ObjectStoreExt::delete(&*self.inner, &path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BlobError::from_store(key, e)),
        }
    }

    /// Deletes every object under `prefix` (a key followed by `/`).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        use futures::TryStreamExt;
        let path = self.path(prefix)?;
        let found: Vec<_> = self
            .inner
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(|e| BlobError::from_store(prefix, e))?;
        for meta in found {
            match object_store::ObjectStoreExt::delete(&*self.inner, &meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(BlobError::from_store(prefix, e)),
            }
        }
        Ok(())
    }

    /// The object path of `key` under the store's prefix, refusing anything
    /// but plain names (the keys are built from ids, but a bug must not be able
    /// to reach outside the prefix).
    fn path(&self, key: &str) -> Result<ObjectPath> {
        let ok_part = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if key.is_empty() || !key.split('/').all(ok_part) {
            return Err(BlobError::BadKey(key.to_string()));
        }
        let full = match self.location.prefix() {
            "" => key.to_string(),
            prefix => format!("{prefix}/{key}"),
        };
        ObjectPath::parse(&full).map_err(|_| BlobError::BadKey(key.to_string()))
    }
}

#[cfg(test)]
mod tests;
