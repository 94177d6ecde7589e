//! Blobs: `blobs/sha256/<hex>`, written through [`BlobWriter`] (hashed and
//! counted on the way in) and read back with their digest checked.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use super::ImageStore;
use super::fsutil::{fsync_dir, tmp_name};
use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};

/// A blob being written (see [`ImageStore::blob_writer`]).
pub struct BlobWriter {
    /// The open tmp file; `None` once committed.
    file: Option<File>,
    tmp: PathBuf,
    blobs_dir: PathBuf,
    hasher: Sha256,
    written: u64,
    /// The effective limit: the caller's, or the announced size if smaller
    /// (more bytes than announced can never match the digest).
    limit: u64,
    expected: Option<(Digest, u64)>,
    over_limit: bool,
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("tmp", &self.tmp)
            .field("written", &self.written)
            .field("limit", &self.limit)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    fn what(&self) -> String {
        match &self.expected {
            Some((d, _)) => format!("blob {d}"),
            None => "blob".to_string(),
        }
    }

    fn too_large(&self) -> ImageStoreError {
        ImageStoreError::TooLarge {
            what: self.what(),
            limit: self.limit,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks the digest and size, syncs and moves the blob into place.
    /// Returns its digest and size.
    pub fn commit(mut self) -> Result<(Digest, u64)> {
        if self.over_limit {
            return Err(self.too_large());
        }
        if let Some((_, size)) = &self.expected
            && self.written < *size
        {
            return Err(ImageStoreError::Truncated {
                what: self.what(),
                expected: *size,
                got: self.written,
            });
        }
        let digest = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some((expected, _)) = &self.expected
            && *expected != digest
        {
            return Err(ImageStoreError::DigestMismatch {
                what: self.what(),
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
        let Some(file) = self.file.take() else {
            return Err(self.too_large());
        };
        file.sync_all()
            .map_err(ImageStoreError::io("fsync", &self.tmp))?;
        drop(file);
        let dest = self.blobs_dir.join(digest.hex());
        // Content-addressed: replacing an existing blob puts the same bytes
        // in place, so a plain rename is right even if it exists.
        if let Err(e) = fs::rename(&self.tmp, &dest) {
            let _ = fs::remove_file(&self.tmp);
            return Err(ImageStoreError::io("rename", dest)(e));
        }
        fsync_dir(&self.blobs_dir)?;
        Ok((digest, self.written))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.over_limit || self.written + buf.len() as u64 > self.limit {
            self.over_limit = true;
            return Err(self.too_large().into_io());
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("blob already committed"));
        };
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Not committed (or commit failed before the rename): nothing of it
        // must stay.
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl ImageStore {
    pub(super) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub(super) fn new_blob_writer(
        &self,
        expected: Option<(Digest, u64)>,
        limit: u64,
    ) -> Result<BlobWriter> {
        let tmp = self.tmp_dir().join(tmp_name());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(ImageStoreError::io("create", &tmp))?;
        let limit = match &expected {
            Some((_, size)) => limit.min(*size),
            None => limit,
        };
        Ok(BlobWriter {
            file: Some(file),
            tmp,
            blobs_dir: self.blobs_dir(),
            hasher: Sha256::new(),
            written: 0,
            limit,
            expected,
            over_limit: false,
        })
    }

    pub(super) fn read_blob_checked(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageStoreError::BlobMissing(digest.to_string()));
            }
            Err(e) => return Err(ImageStoreError::io("open", path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(ImageStoreError::io("read", &path))?;
        if bytes.len() as u64 > limit {
            return Err(ImageStoreError::TooLarge {
                what: format!("blob {digest}"),
                limit,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(ImageStoreError::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    pub(super) fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.new_blob_writer(None, u64::MAX)?;
        w.write_all(bytes)
            .map_err(ImageStoreError::from_io("write", &w.tmp))?;
        Ok(w.commit()?.0)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn store() -> (tempfile::TempDir, ImageStore) {
        let t = tempfile::tempdir().expect("tempdir");
        let s = ImageStore::open(t.path().join("images")).expect("open");
        (t, s)
    }

    fn tmp_is_empty(s: &ImageStore) -> bool {
        fs::read_dir(s.tmp_dir())
            .expect("read tmp")
            .next()
            .is_none()
    }

    #[test]
    fn writes_checks_and_reads_back_a_blob() {
        let (_t, s) = store();
        let d = Digest::of(b"hello");
        let mut w = s.blob_writer(Some((d.clone(), 5)), 100).expect("writer");
        w.write_all(b"hel").expect("write");
        w.write_all(b"lo").expect("write");
        assert_eq!(w.commit().expect("commit"), (d.clone(), 5));
        assert!(s.has_blob(&d));
        let mode = fs::metadata(s.blob_path(&d))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(s.read_blob(&d, 5).expect("read"), b"hello");
        assert!(matches!(
            s.read_blob(&d, 4),
            Err(ImageStoreError::TooLarge { .. })
        ));
        assert_eq!(s.put_blob(b"hello").expect("put"), d);
        assert!(tmp_is_empty(&s));
    }

    #[test]
    fn refuses_a_wrong_digest() {
        let (_t, s) = store();
        let d = Digest::of(b"hello");
        let mut w = s.blob_writer(Some((d.clone(), 5)), 100).expect("writer");
        w.write_all(b"HELLO").expect("write");
        assert!(matches!(
            w.commit(),
            Err(ImageStoreError::DigestMismatch { .. })
        ));
        assert!(!s.has_blob(&d));
        assert!(tmp_is_empty(&s));
    }

    #[test]
    fn refuses_a_truncated_blob() {
        let (_t, s) = store();
        let d = Digest::of(b"hello");
        let mut w = s.blob_writer(Some((d.clone(), 5)), 100).expect("writer");
        w.write_all(b"hel").expect("write");
        assert!(matches!(
            w.commit(),
            Err(ImageStoreError::Truncated {
                expected: 5,
                got: 3,
                ..
            })
        ));
        assert!(tmp_is_empty(&s));
    }

    #[test]
    fn stops_past_the_limit_or_the_announced_size() {
        let (_t, s) = store();
        let mut w = s.blob_writer(None, 4).expect("writer");
        let err = w.write_all(b"hello").expect_err("over limit");
        assert!(matches!(
            ImageStoreError::from_io("write", "x")(err),
            ImageStoreError::TooLarge { limit: 4, .. }
        ));
        assert!(matches!(w.commit(), Err(ImageStoreError::TooLarge { .. })));
        let mut w = s
            .blob_writer(Some((Digest::of(b"hi"), 2)), 100)
            .expect("writer");
        assert!(w.write_all(b"hello").is_err());
        drop(w);
        assert!(tmp_is_empty(&s));
    }

    #[test]
    fn dropping_an_uncommitted_writer_removes_its_file() {
        let (_t, s) = store();
        let mut w = s.blob_writer(None, 100).expect("writer");
        w.write_all(b"partial").expect("write");
        assert!(!tmp_is_empty(&s));
        drop(w);
        assert!(tmp_is_empty(&s));
        assert!(
            fs::read_dir(s.blobs_dir())
                .expect("read blobs")
                .next()
                .is_none()
        );
    }

    #[test]
    fn read_blob_checks_the_digest() {
        let (_t, s) = store();
        let d = s.put_blob(b"config").expect("put");
        fs::write(s.blob_path(&d), b"tampered").expect("write");
        assert!(matches!(
            s.read_blob(&d, 100),
            Err(ImageStoreError::DigestMismatch { .. })
        ));
        assert!(matches!(
            s.read_blob(&Digest::of(b"none"), 100),
            Err(ImageStoreError::BlobMissing(_))
        ));
    }
}
