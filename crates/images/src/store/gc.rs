//! Garbage collection: blobs and layers no image record refers to.

use std::collections::HashSet;
use std::path::Path;

use super::fsutil::{LockGuard, remove_tree, tmp_name};
use super::{GcReport, ImageStore};
use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};

/// The digests of the entries of a `…/sha256/` directory (other names are
/// not the store's and are left alone).
fn digests_in(dir: &Path) -> Result<Vec<Digest>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(ImageStoreError::io("read", dir))? {
        let entry = entry.map_err(ImageStoreError::io("read", dir))?;
        if let Some(d) = entry
            .file_name()
            .to_str()
            .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
        {
            out.push(d);
        }
    }
    Ok(out)
}

impl ImageStore {
    pub(super) fn collect_locked(
        &self,
        _guard: &LockGuard<'_>,
        keep: &HashSet<Digest>,
    ) -> Result<GcReport> {
        let mut used = keep.clone();
        for record in self.read_records()? {
            used.insert(record.id.clone());
            used.extend(record.manifest_digest.clone());
            for layer in &record.layers {
                used.insert(layer.diff_id.clone());
                used.extend(layer.blob.clone());
            }
        }
        let mut report = GcReport::default();
        for digest in digests_in(&self.blobs_dir())? {
            if used.contains(&digest) {
                continue;
            }
            let path = self.blob_path(&digest);
            let size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    report.blobs += 1;
                    report.bytes += size;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageStoreError::io("remove", path)(e)),
            }
        }
        for diff_id in digests_in(&self.layers_dir())? {
            if used.contains(&diff_id) {
                continue;
            }
            let size = self.layer_meta(&diff_id).unpacked_size;
            // Out of layers/ in one rename first, so a crash mid-removal
            // leaves no half layer where readers look (tmp/ is emptied at
            // open).
            let dir = self.layers_dir().join(diff_id.hex());
            let doomed = self.tmp_dir().join(tmp_name());
            std::fs::rename(&dir, &doomed).map_err(ImageStoreError::io("rename", &dir))?;
            remove_tree(&doomed)?;
            report.layers += 1;
            report.bytes += size;
        }
        Ok(report)
    }
}
