//! Images through the blob store, so that a sandbox can run on any node
//! whatever node pulled, imported, built or saved its image.
//!
//! - **Sharing.** Once a node has stored an image, it uploads the image's
//!   config blob and its layers' blobs under `images/<id>/` (recorded with
//!   their digests, owner `image:<id>`) and records the image and its names
//!   in the store. The built-in images are on every node and are not shared.
//! - **Fetching.** A node asked for an image it does not have (by name, id or
//!   pinned reference) looks it up there, downloads the blobs it lacks
//!   (each checked against its recorded digest), unpacks the layers as it
//!   would a pull's and stores the image under its shared names.
//! - **Deleting** an image through a node removes it (or the names deleted)
//!   from what is shared and records the deletion; every node then removes
//!   its own copy (or those names) on its next sweep, once none of its
//!   sandboxes or snapshots uses the image. Sharing the image again under
//!   that id or name cancels the deletion; deletions are kept for a week.

use std::collections::HashSet;

use alcove_blobs::BlobDigest;
use alcove_images::{Digest, ImageRecord, ImageRef, ImageSource, ImageStoreError};
use alcove_wire::time::now_millis;

use super::context::Context;
use crate::store::BlobRecord;

/// The owner name of a shared image's objects.
fn image_owner(id: &str) -> String {
    format!("image:{id}")
}

/// Runs image-store work off the async threads; its errors as text.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageStoreError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

impl Context {
    /// Shares image `id` through the blob store (nothing without one, or
    /// for a built-in image). A failure is logged: the image still works on
    /// this node.
    pub(super) async fn share_image(&self, id: &str) {
        if self.cfg.blobs.is_none() {
            return;
        }
        match self.try_share_image(id).await {
            Ok(true) => tracing::info!(image_id = id, "image shared through the blob store"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(image_id = id, error = %e, "sharing an image through the blob store")
            }
        }
    }

    async fn try_share_image(&self, id: &str) -> Result<bool, String> {
        let Some(blobs) = &self.cfg.blobs else {
            return Ok(false);
        };
        let digest: Digest = id.parse().map_err(|e: ImageStoreError| e.to_string())?;
        let images = self.images.clone();
        let record = blocking(move || images.store().get(&digest)).await?;
        if matches!(record.source, ImageSource::Builtin { .. }) {
            return Ok(false);
        }
        let owner = image_owner(id);
        let have: HashSet<String> = self
            .store
            .blobs_of(&owner)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|b| b.key)
            .collect();
        let wanted = std::iter::once(record.id.clone())
            .chain(record.layers.iter().filter_map(|l| l.blob.clone()));
        for blob in wanted {
            let key = format!("images/{}/{}", record.id.hex(), blob.hex());
            if have.contains(&key) {
                continue;
            }
            let path = self.images.store().blob_path(&blob);
            let got = blobs
                .upload_file(&key, &path)
                .await
                .map_err(|e| format!("uploading blob {blob}: {e}"))?;
            if got.sha256 != blob.hex() {
                return Err(format!(
                    "blob {blob} changed on disk: it reads as sha256:{}",
                    got.sha256
                ));
            }
            let rec = BlobRecord {
                key,
                owner: owner.clone(),
                sha256: got.sha256,
                size: i64::try_from(got.size).unwrap_or(i64::MAX),
                created_at: now_millis(),
            };
            self.store.put_blob(&rec).await.map_err(|e| e.to_string())?;
        }
        let json = serde_json::to_string(&record).map_err(|e| e.to_string())?;
        self.store
            .put_shared_image(id, &json, &record.names, now_millis())
            .await
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Stops sharing what a delete of image `id` removed: the images
    /// `deleted` (ids) and its names `untagged`, and records the deletion so
    /// that the nodes that fetched them remove theirs
    /// ([`Control::sweep_deleted_images`]).
    ///
    /// [`Control::sweep_deleted_images`]: super::Control::sweep_deleted_images
    pub(super) async fn unshare(
        self: &std::sync::Arc<Self>,
        id: &str,
        deleted: &[String],
        untagged: &[String],
    ) {
        if self.cfg.blobs.is_none() {
            return;
        }
        if let Err(e) = self.store.unshare_names(untagged).await {
            tracing::warn!(error = %e, "unsharing image names");
        }
        let deletions: Vec<(String, String)> = deleted
            .iter()
            .map(|d| (d.clone(), d.clone()))
            .chain(untagged.iter().map(|n| (n.clone(), id.to_string())))
            .collect();
        if let Err(e) = self
            .store
            .record_image_deletions(&deletions, now_millis())
            .await
        {
            tracing::warn!(image_id = %id, error = %e, "recording an image deletion for the other nodes");
        }
        for id in deleted {
            match self.store.unshare_image(id).await {
                Ok(()) => self.forget_blobs(image_owner(id)),
                Err(e) => tracing::warn!(image_id = %id, error = %e, "unsharing an image"),
            }
        }
    }

    /// The id of the shared image `reference` names (a name, an id, or a
    /// pinned `name@sha256:<id>`), if one is shared.
    async fn shared_image_id(&self, reference: &str) -> Result<Option<String>, String> {
        let by_id = match reference.rsplit_once('@') {
            Some((_, digest)) => Some(digest),
            None if reference.starts_with("sha256:") => Some(reference),
            None => None,
        };
        if let Some(id) = by_id {
            let shared = self
                .store
                .shared_image(id)
                .await
                .map_err(|e| e.to_string())?;
            if shared.is_some() {
                return Ok(Some(id.to_string()));
            }
            // A pinned reference of an image shared under another id: try its name.
            if reference.starts_with("sha256:") {
                return Ok(None);
            }
        }
        let name = reference.rsplit_once('@').map_or(reference, |(n, _)| n);
        let Ok(parsed) = ImageRef::parse(name) else {
            return Ok(None);
        };
        self.store
            .shared_image_named(&parsed.key())
            .await
            .map_err(|e| e.to_string())
    }

    /// Runs `resolve` (a lookup of image `reference` in this node's store);
    /// when the image is not there but another node shared it, fetches it
    /// and runs `resolve` again. Else the lookup's answer, or why the fetch
    /// failed.
    pub(super) async fn resolve_or_fetch<T, F, Fut>(
        &self,
        reference: &str,
        resolve: F,
    ) -> Result<T, super::ControlError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, super::ControlError>>,
    {
        let missing = match resolve().await {
            Err(e @ super::ControlError::NotFound { kind: "image", .. }) => e,
            found => return found,
        };
        match self.fetch_shared_image(reference).await {
            Ok(true) => resolve().await,
            Ok(false) => Err(missing),
            Err(reason) => Err(super::ControlError::OperationFailed {
                id: String::new(),
                op: "fetching image",
                reason: format!("{reference} from the blob store: {reason}"),
            }),
        }
    }

    /// Fetches the shared image `reference` names into this node's image
    /// store; `Ok(false)` when no such image is shared.
    async fn fetch_shared_image(&self, reference: &str) -> Result<bool, String> {
        let Some(blobs) = &self.cfg.blobs else {
            return Ok(false);
        };
        let Some(id) = self.shared_image_id(reference).await? else {
            return Ok(false);
        };
        // One fetch of an image at a time; the next finds it stored.
        let lock = self.op_lock(&format!("image-fetch:{id}"));
        let _fetching = lock.lock().await;
        let Some(json) = self
            .store
            .shared_image(&id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(false);
        };
        let record: ImageRecord =
            serde_json::from_str(&json).map_err(|e| format!("reading shared image {id}: {e}"))?;
        if record.id.to_string() != id {
            return Err(format!("shared image {id} is recorded as {}", record.id));
        }
        let names = self
            .store
            .shared_image_names(&id)
            .await
            .map_err(|e| e.to_string())?;
        let store = self.images.store().clone();
        // Collections wait while blobs no image names yet are written.
        let work = {
            let store = store.clone();
            blocking(move || store.work_guard()).await?
        };
        let objects = self
            .store
            .blobs_of(&image_owner(&id))
            .await
            .map_err(|e| e.to_string())?;
        for object in objects {
            let digest: Digest = format!("sha256:{}", object.sha256)
                .parse()
                .map_err(|e: ImageStoreError| e.to_string())?;
            if store.has_blob(&digest) {
                continue;
            }
            let tmp = store.tmp_path();
            let expected = BlobDigest {
                sha256: object.sha256.clone(),
                size: u64::try_from(object.size).unwrap_or(0),
            };
            if let Err(e) = blobs.download_file(&object.key, &tmp, &expected).await {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!("downloading blob {digest} of image {id}: {e}"));
            }
            let dest = store.blob_path(&digest);
            let placed = dest
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::rename(&tmp, &dest));
            if let Err(e) = placed {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!("storing blob {digest}: {e}"));
            }
        }
        let limits = self.images.limits();
        blocking(move || {
            let _work = work;
            let mut layers = Vec::with_capacity(record.layers.len());
            for layer in &record.layers {
                layers.push(match &layer.blob {
                    Some(blob) => {
                        store.unpack_blob(blob, &layer.media_type, Some(&layer.diff_id), &limits)?
                    }
                    // A built-in image's layer: it must be on this node too.
                    None if store.has_layer(&layer.diff_id) => layer.clone(),
                    None => {
                        return Err(ImageStoreError::NotFound(format!(
                            "layer {} of image {} (not in the blob store, and not on this node)",
                            layer.diff_id, record.id
                        )));
                    }
                });
            }
            store.commit_pulled_image(
                &record.id,
                layers,
                record.manifest_digest.clone(),
                record.source.clone(),
                &names,
            )
        })
        .await?;
        tracing::info!(image_id = %id, "image fetched from the blob store");
        Ok(true)
    }
}
