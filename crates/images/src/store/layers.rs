//! Layers: `layers/sha256/<diff id>/fs` (the unpacked tree) beside
//! `layer.json` (its size), made only by unpacking a blob under `tmp/` and
//! renaming the result into place.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, RenameFlags};
use serde::{Deserialize, Serialize};

use super::fsutil::{self, fsync_dir, mkdir_private, remove_tree, tmp_name};
use super::{ImageStore, LayerRecord};
use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};
use crate::pack::{HashingWriter, pack_dir_excluding};
use crate::unpack::{self, MEDIA_TYPE_TAR_GZIP, UnpackLimits};

/// `layers/sha256/<hex>/layer.json`: what is known of an unpacked layer
/// without walking it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct LayerMeta {
    /// Bytes of regular file content.
    pub unpacked_size: u64,
}

/// A directory under `tmp/`, removed on drop unless kept.
pub(super) struct TmpDir {
    path: Option<PathBuf>,
}

impl TmpDir {
    pub(super) fn new(store: &ImageStore) -> Result<Self> {
        let path = store.tmp_dir().join(tmp_name());
        mkdir_private(&path)?;
        Ok(Self { path: Some(path) })
    }

    pub(super) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    /// Gives up ownership: the directory was renamed away.
    fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(p) = self.path.take()
            && let Err(e) = remove_tree(&p)
        {
            tracing::warn!(path = %p.display(), error = %e, "could not remove a work directory");
        }
    }
}

impl ImageStore {
    pub(super) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers/sha256")
    }

    pub(super) fn layer_meta(&self, diff_id: &Digest) -> LayerMeta {
        let path = self.layers_dir().join(diff_id.hex()).join("layer.json");
        fsutil::read_small(&path, 1 << 16)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub(super) fn unpack_stored_blob(
        &self,
        blob: &Digest,
        media_type: &str,
        expected_diff_id: Option<&Digest>,
        limits: &UnpackLimits,
    ) -> Result<LayerRecord> {
        if !unpack::is_supported_media_type(media_type) {
            return Err(ImageStoreError::UnsupportedMediaType(
                media_type.to_string(),
            ));
        }
        let path = self.blob_path(blob);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageStoreError::BlobMissing(blob.to_string()));
            }
            Err(e) => return Err(ImageStoreError::io("open", path)(e)),
        };
        let size = file
            .metadata()
            .map_err(ImageStoreError::io("stat", &path))?
            .len();
        let record = |diff_id: Digest, unpacked_size| LayerRecord {
            diff_id,
            blob: Some(blob.clone()),
            media_type: media_type.to_string(),
            size,
            unpacked_size,
        };
        if let Some(d) = expected_diff_id
            && self.has_layer(d)
        {
            return Ok(record(d.clone(), self.layer_meta(d).unpacked_size));
        }
        let work = TmpDir::new(self)?;
        let unpacked = unpack::unpack_layer(
            BufReader::with_capacity(256 << 10, file),
            media_type,
            &work.path().join("fs"),
            limits,
            blob.as_str(),
        )?;
        if let Some(expected) = expected_diff_id
            && *expected != unpacked.diff_id
        {
            return Err(ImageStoreError::DigestMismatch {
                what: format!("diff id of layer {blob}"),
                expected: expected.to_string(),
                actual: unpacked.diff_id.to_string(),
            });
        }
        self.install_layer(work, &unpacked.diff_id, unpacked.unpacked_size)?;
        Ok(record(unpacked.diff_id, unpacked.unpacked_size))
    }

    /// Moves a finished `tmp/<x>/fs` into `layers/`; when the layer exists
    /// already, ours is discarded (the same diff id is the same tree).
    fn install_layer(&self, work: TmpDir, diff_id: &Digest, unpacked_size: u64) -> Result<()> {
        let meta = serde_json::to_vec(&LayerMeta { unpacked_size }).map_err(|e| {
            ImageStoreError::BadImage {
                what: "layer.json".into(),
                reason: e.to_string(),
            }
        })?;
        let meta_path = work.path().join("layer.json");
        let mut f = File::create(&meta_path).map_err(ImageStoreError::io("create", &meta_path))?;
        f.write_all(&meta)
            .map_err(ImageStoreError::io("write", &meta_path))?;
        drop(f);
        // One syncfs instead of an fsync per file: the tree must be on disk
        // before it appears where readers look.
        let dir = File::open(work.path()).map_err(ImageStoreError::io("open", work.path()))?;
        nix::unistd::syncfs(&dir)
            .map_err(|e| ImageStoreError::io("syncfs", work.path())(e.into()))?;
        let dest = self.layers_dir().join(diff_id.hex());
        for _ in 0..2 {
            match nix::fcntl::renameat2(
                AT_FDCWD,
                work.path(),
                AT_FDCWD,
                &dest,
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => {
                    work.keep();
                    return fsync_dir(&self.layers_dir());
                }
                Err(nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY) => {
                    if self.has_layer(diff_id) {
                        return Ok(());
                    }
                    // A layer directory without its tree (an adoption cut
                    // short): not a layer, replace it.
                    remove_tree(&dest)?;
                }
                Err(e) => return Err(ImageStoreError::io("rename", &dest)(e.into())),
            }
        }
        Err(ImageStoreError::io("rename", &dest)(std::io::Error::from(
            std::io::ErrorKind::AlreadyExists,
        )))
    }

    pub(super) fn pack_upper(
        &self,
        upper: &Path,
        exclude: &[&str],
        limits: &UnpackLimits,
    ) -> Result<LayerRecord> {
        // Gzip output is at most a little larger than its input.
        let blob_limit = limits
            .max_bytes
            .saturating_add(limits.max_bytes / 8 + (1 << 20));
        let writer = self.blob_writer(None, blob_limit)?;
        // The fastest level: a build step's layer is written while its user
        // waits, and the store is on the same disk it would be read from.
        let gz = flate2::GzBuilder::new().write(writer, flate2::Compression::fast());
        let (hashing, _) = pack_dir_excluding(upper, HashingWriter::new(gz), limits, exclude)?;
        let (gz, diff_id, _) = hashing.finish();
        let writer = gz
            .finish()
            .map_err(ImageStoreError::from_io("compress layer of", upper))?;
        let (blob, _) = writer.commit()?;
        // One code path for everything that reaches layers/: the unpacker.
        self.unpack_stored_blob(&blob, MEDIA_TYPE_TAR_GZIP, Some(&diff_id), limits)
    }
}

#[cfg(test)]
mod tests;
