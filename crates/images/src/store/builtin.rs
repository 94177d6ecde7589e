//! Adopting a built-in image that setup built as a plain directory tree.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::fsutil::{
    LockGuard, fsync_dir, mkdir_private, read_small, remove_tree, tmp_name, write_atomic,
};
use super::layers::LayerMeta;
use super::{ImageRecord, ImageSource, ImageStore, LayerRecord, RunConfig, ServiceConfig};
use crate::error::{ImageStoreError, Result};
use crate::pack::{HashingWriter, pack_dir};
use crate::reference::ImageRef;
use crate::unpack::{MEDIA_TYPE_TAR, UnpackLimits};

/// `<dir>/manifest.json` of a built-in image.
#[derive(Debug, Deserialize)]
struct BuiltinManifest {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    services: Vec<ServiceConfig>,
    recipe_sha256: String,
}

impl ImageStore {
    pub(super) fn adopt_locked(
        &self,
        guard: &LockGuard<'_>,
        dir: &Path,
    ) -> Result<Option<ImageRecord>> {
        let manifest_path = dir.join("manifest.json");
        let bytes =
            read_small(&manifest_path, 1 << 20)?.ok_or_else(|| ImageStoreError::BadImage {
                what: manifest_path.display().to_string(),
                reason: "missing".into(),
            })?;
        let manifest: BuiltinManifest =
            serde_json::from_slice(&bytes).map_err(|e| ImageStoreError::BadImage {
                what: manifest_path.display().to_string(),
                reason: e.to_string(),
            })?;
        let mut names = vec![ImageRef::parse(&manifest.name)?.key()];
        for alias in &manifest.aliases {
            names.push(ImageRef::parse(alias)?.key());
        }

        let existing = self.read_records()?.into_iter().find(|r| {
            matches!(&r.source, ImageSource::Builtin { recipe_sha256 } if *recipe_sha256 == manifest.recipe_sha256)
        });
        if let Some(record) = existing {
            for name in &names {
                self.tag_locked(guard, &record.id, name)?;
            }
            return Ok(None);
        }

        let rootfs = dir.join("rootfs");
        let meta =
            std::fs::symlink_metadata(&rootfs).map_err(ImageStoreError::io("stat", &rootfs))?;
        if meta.file_type().is_symlink() {
            return Err(ImageStoreError::BadImage {
                what: rootfs.display().to_string(),
                reason: format!(
                    "is a symlink (adopted before?) but no image of recipe {} is stored",
                    manifest.recipe_sha256
                ),
            });
        }
        if !meta.is_dir() {
            return Err(ImageStoreError::BadImage {
                what: rootfs.display().to_string(),
                reason: "is not a directory".into(),
            });
        }

        // The diff id of the tree as a tar stream, hashed only: no blob is
        // kept for a built-in layer, and compressing would be wasted time.
        let (hashing, packed) = pack_dir(
            &rootfs,
            HashingWriter::new(std::io::sink()),
            &UnpackLimits::default(),
        )?;
        let (_, diff_id, _) = hashing.finish();

        let layer_parent = self.layers_dir().join(diff_id.hex());
        if self.has_layer(&diff_id) {
            // The same tree is stored already: keep that one, drop ours
            // (moved under tmp/ first, so a crash leaves nothing behind).
            let doomed = self.tmp_dir().join(tmp_name());
            std::fs::rename(&rootfs, &doomed).map_err(ImageStoreError::io("rename", &rootfs))?;
            remove_tree(&doomed)?;
        } else {
            // A layer directory without `fs` is left over from an adoption
            // cut short: no layer.
            remove_tree(&layer_parent)?;
            mkdir_private(&layer_parent)?;
            let meta = serde_json::to_vec(&LayerMeta {
                unpacked_size: packed.file_bytes,
            })
            .map_err(|e| ImageStoreError::BadImage {
                what: "layer.json".into(),
                reason: e.to_string(),
            })?;
            write_atomic(&self.tmp_dir(), &layer_parent.join("layer.json"), &meta)?;
            let fs_dir = self.layer_dir(&diff_id);
            std::fs::rename(&rootfs, &fs_dir).map_err(ImageStoreError::io("rename", &rootfs))?;
            fsync_dir(&layer_parent)?;
        }
        // Setup checks `rootfs/bin/sh`: it must still see the tree.
        std::os::unix::fs::symlink(self.layer_dir(&diff_id), &rootfs)
            .map_err(ImageStoreError::io("symlink", &rootfs))?;
        fsync_dir(dir)?;

        let layer = LayerRecord {
            diff_id: diff_id.clone(),
            blob: None,
            media_type: MEDIA_TYPE_TAR.to_string(),
            size: 0,
            unpacked_size: self.layer_meta(&diff_id).unpacked_size,
        };
        let config = RunConfig {
            env: manifest
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            services: manifest.services,
            ..RunConfig::default()
        };
        let record = self.commit_locked(
            guard,
            vec![layer],
            config,
            ImageSource::Builtin {
                recipe_sha256: manifest.recipe_sha256,
            },
            None,
            &names,
        )?;
        Ok(Some(record))
    }
}
