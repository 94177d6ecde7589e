//! Images as the control plane sees them: who uses one (so a delete can be
//! refused), deleting and collecting, and pulls with credentials from a
//! secret.

use std::collections::HashSet;

use alcove_images::pull::{PullRequest, RegistryCredentials};
use alcove_images::{Digest, ImageRecord, ImageStoreError};
use alcove_wire::image::{
    DeleteImageResponse, ImageInfo, ImageLayerInfo, ImageRunConfig, ImageUsers, PullImageRequest,
};

use super::ControlError;
use super::services::Control;

/// How long a deletion of a shared image is kept for the nodes that fetched
/// it (a node away longer keeps its copy until it is deleted through it).
pub const IMAGE_DELETIONS_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// The image id a pinned reference (`name@sha256:…`) names, if it is pinned.
pub(super) fn pinned_id(image: &str) -> Option<&str> {
    image
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| d.starts_with("sha256:"))
}

/// Runs blocking store work (reads and writes of images, layers, build
/// trees) on the blocking pool.
pub(super) async fn blocking<T: Send + 'static, E: Into<ControlError> + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| {
            ControlError::Image(ImageStoreError::Io {
                op: "running",
                path: "image store task".into(),
                source: std::io::Error::other(e.to_string()),
            })
        })?
        .map_err(Into::into)
}

/// The wire form of a stored image.
pub fn image_info(record: &ImageRecord, used_by: Option<ImageUsers>) -> ImageInfo {
    use alcove_images::ImageSource as S;
    ImageInfo {
        id: record.id.to_string(),
        names: record.names.clone(),
        manifest_digest: record.manifest_digest.as_ref().map(ToString::to_string),
        source: match record.source {
            S::Builtin { .. } => "builtin",
            S::Pull { .. } => "pull",
            S::Import => "import",
            S::Build => "build",
            S::Snapshot { .. } => "snapshot",
        }
        .to_string(),
        created_at: record.created_at.clone(),
        size_bytes: record.unpacked_size(),
        layers: record
            .layers
            .iter()
            .map(|l| ImageLayerInfo {
                diff_id: l.diff_id.to_string(),
                digest: l.blob.as_ref().map(ToString::to_string),
                size_bytes: l.size,
                unpacked_size_bytes: l.unpacked_size,
            })
            .collect(),
        config: ImageRunConfig {
            env: record.config.env.clone(),
            working_dir: record.config.working_dir.clone(),
            user: record.config.user.clone(),
            entrypoint: record.config.entrypoint.clone(),
            cmd: record.config.cmd.clone(),
            exposed_ports: record.config.exposed_ports.clone(),
        },
        used_by,
    }
}

impl Control {
    /// Every stored image, newest first.
    pub async fn list_images(&self) -> Result<Vec<ImageInfo>, ControlError> {
        let images = self.ctx.images.clone();
        let records = blocking(move || images.store().list()).await?;
        Ok(records.iter().map(|r| image_info(r, None)).collect())
    }

    /// One image, with who uses it.
    pub async fn get_image(&self, reference: &str) -> Result<ImageInfo, ControlError> {
        let record = self.resolve_stored(reference).await?;
        let users = self.image_users(&record.id).await?;
        Ok(image_info(&record, Some(users)))
    }

    async fn resolve_stored(&self, reference: &str) -> Result<ImageRecord, ControlError> {
        // Not on this node: shared through the blob store by another one?
        self.ctx
            .resolve_or_fetch(reference, || {
                let images = self.ctx.images.clone();
                let text = reference.to_string();
                blocking(move || images.store().resolve(&text))
            })
            .await
    }

    /// Sandboxes (not ended) and snapshots made from image `id`, on every
    /// node of the store: an image a sandbox runs is in use wherever the
    /// delete is asked.
    pub async fn image_users(&self, id: &Digest) -> Result<ImageUsers, ControlError> {
        self.users_of(id, self.ctx.store.list_live().await?).await
    }

    /// Like [`Self::image_users`], counting only this node's sandboxes: what
    /// keeps this node's copy of an image deleted through another node.
    async fn local_image_users(&self, id: &Digest) -> Result<ImageUsers, ControlError> {
        self.users_of(id, self.ctx.local_live().await?).await
    }

    async fn users_of(
        &self,
        id: &Digest,
        live: Vec<crate::store::SandboxRecord>,
    ) -> Result<ImageUsers, ControlError> {
        let id = id.to_string();
        let record = self.ctx.images.store().get(&id.parse()?)?;
        // Records made before images were pinned name a built-in by name.
        let legacy: HashSet<String> = record
            .names
            .iter()
            .flat_map(|n| {
                [
                    n.clone(),
                    n.strip_suffix(":latest").unwrap_or(n).to_string(),
                ]
            })
            .collect();
        let uses = |image: &str| match pinned_id(image) {
            Some(pinned) => pinned == id,
            None => legacy.contains(image),
        };
        let sandboxes = live
            .into_iter()
            .filter(|r| uses(&r.image))
            .map(|r| r.id.to_string())
            .collect();
        let snapshots = self
            .ctx
            .store
            .list_snapshots(None, None)
            .await?
            .into_iter()
            .filter(|s| uses(&s.image))
            .map(|s| s.id)
            .collect();
        Ok(ImageUsers {
            sandboxes,
            snapshots,
        })
    }

    /// Deletes a reference (the image goes with its last name, or at once
    /// when `reference` is an id), refusing while a sandbox or snapshot uses
    /// the image, then collects what no image needs any more.
    pub async fn delete_image(&self, reference: &str) -> Result<DeleteImageResponse, ControlError> {
        let record = self.resolve_stored(reference).await?;
        if matches!(record.source, alcove_images::ImageSource::Builtin { .. })
            && !record.names.is_empty()
        {
            // Setup provides it and sandboxes default to it; a new recipe
            // takes its names, after which the old one may go by id.
            return Err(ControlError::InvalidArgument {
                field: "reference",
                reason: format!(
                    "{reference} is a built-in image (rebuilt by scripts/setup.sh from its recipe); it cannot be deleted while it carries its names"
                ),
            });
        }
        let by_id = reference.starts_with("sha256:") || record.id.hex().starts_with(reference);
        let last_name = record.names.len() <= 1;
        if by_id || last_name {
            let users = self.image_users(&record.id).await?;
            if !users.sandboxes.is_empty() || !users.snapshots.is_empty() {
                let mut who: Vec<String> = users
                    .sandboxes
                    .iter()
                    .map(|s| format!("sandbox {s}"))
                    .collect();
                who.extend(users.snapshots.iter().map(|s| format!("snapshot {s}")));
                return Err(ControlError::Image(ImageStoreError::InUse {
                    image: reference.to_string(),
                    users: who.join(", "),
                }));
            }
        }
        let images = self.ctx.images.clone();
        let text = reference.to_string();
        let names_before = record.names.clone();
        let id = record.id.clone();
        let answer = blocking(move || -> Result<_, ImageStoreError> {
            let deleted = images.store().remove(&text, false)?;
            let report = images.store().collect_garbage(&images.held())?;
            let names_after = match images.store().get(&id) {
                Ok(r) => r.names,
                Err(_) => Vec::new(),
            };
            Ok(DeleteImageResponse {
                untagged: names_before
                    .into_iter()
                    .filter(|n| !names_after.contains(n))
                    .collect(),
                deleted: deleted.iter().map(ToString::to_string).collect(),
                freed_bytes: report.bytes,
            })
        })
        .await?;
        self.ctx
            .unshare(&record.id.to_string(), &answer.deleted, &answer.untagged)
            .await;
        Ok(answer)
    }

    /// Applies the image deletions recorded through any node (with a blob
    /// store): removes this node's copy of each deleted image, and each
    /// removed name that still points where it pointed, unless a sandbox or
    /// snapshot of this node uses the image (tried again on the next pass).
    /// Built-in images are never removed this way.
    pub async fn sweep_deleted_images(&self) {
        if self.ctx.cfg.blobs.is_none() {
            return;
        }
        let deletions = match self.ctx.store.image_deletions().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "reading image deletions");
                return;
            }
        };
        for (target, image_id) in deletions {
            if let Err(e) = self.apply_deletion(&target, &image_id).await {
                tracing::debug!(target = %target, error = %e, "applying an image deletion here");
            }
        }
    }

    /// Forgets the image deletions recorded before `now` less
    /// [`IMAGE_DELETIONS_KEPT_MS`] (with the archive's purge, not on every
    /// sweep: it writes to the store).
    pub async fn purge_image_deletions(&self, now: i64) {
        if self.ctx.cfg.blobs.is_none() {
            return;
        }
        if let Err(e) = self
            .ctx
            .store
            .purge_image_deletions(now - IMAGE_DELETIONS_KEPT_MS)
            .await
        {
            tracing::warn!(error = %e, "purging old image deletions");
        }
    }

    /// Removes `target` (image `image_id` itself, or a name of it) from this
    /// node's store, when it is here and unused.
    async fn apply_deletion(&self, target: &str, image_id: &str) -> Result<(), ControlError> {
        let Ok(id) = image_id.parse::<Digest>() else {
            return Ok(());
        };
        let images = self.ctx.images.clone();
        let Ok(record) = blocking(move || images.store().get(&id)).await else {
            return Ok(()); // not on this node
        };
        if matches!(record.source, alcove_images::ImageSource::Builtin { .. }) {
            return Ok(());
        }
        let whole = target == image_id;
        if !whole && !record.names.iter().any(|n| n == target) {
            return Ok(());
        }
        // The image goes with its last name: not while something here uses it
        // (one created here from this copy after the delete's own check).
        if whole || record.names.len() <= 1 {
            let users = self.local_image_users(&record.id).await?;
            if !users.sandboxes.is_empty() || !users.snapshots.is_empty() {
                return Ok(());
            }
        }
        let images = self.ctx.images.clone();
        let reference = target.to_string();
        let removed = blocking(move || -> Result<_, ImageStoreError> {
            let removed = images.store().remove(&reference, false)?;
            images.store().collect_garbage(&images.held())?;
            Ok(removed)
        })
        .await?;
        tracing::info!(
            image_id,
            target,
            removed = removed.len(),
            "deleted through another node: removed here"
        );
        Ok(())
    }

    /// Pulls an image; credentials come from the request or from a secret of
    /// `namespace` whose value is `username:password`.
    pub async fn pull_image(
        &self,
        namespace: &str,
        req: PullImageRequest,
        progress: Option<tokio::sync::mpsc::Sender<alcove_wire::image::ImageProgressEvent>>,
    ) -> Result<ImageInfo, ControlError> {
        let credentials = match (&req.username, &req.password, &req.auth_secret) {
            (_, _, Some(secret)) if req.username.is_some() || req.password.is_some() => {
                return Err(ControlError::InvalidArgument {
                    field: "auth_secret",
                    reason: format!("give either auth_secret {secret:?} or username and password"),
                });
            }
            (_, _, Some(secret)) => {
                let env = self
                    .secrets
                    .env(namespace, std::slice::from_ref(secret))
                    .await?;
                let value = env.into_iter().next().map(|(_, v)| v).unwrap_or_default();
                let Some((user, password)) = value.split_once(':') else {
                    return Err(ControlError::InvalidArgument {
                        field: "auth_secret",
                        reason: format!("secret {secret:?} must hold username:password"),
                    });
                };
                Some(RegistryCredentials::new(user, password))
            }
            (Some(user), Some(password), None) => {
                Some(RegistryCredentials::new(user.clone(), password.clone()))
            }
            (None, None, None) => None,
            _ => {
                return Err(ControlError::InvalidArgument {
                    field: "username",
                    reason: "username and password go together".into(),
                });
            }
        };
        let reference = alcove_images::ImageRef::parse(&req.reference)?;
        if reference.tag.is_some() {
            // A pull names the image by its reference too, when that has a tag.
            self.refuse_builtin_name(&req.reference).await?;
        }
        if let Some(name) = &req.name {
            self.refuse_builtin_name(name).await?;
        }
        let record = self
            .ctx
            .images
            .pull(PullRequest {
                reference: req.reference.clone(),
                name: req.name.clone(),
                credentials,
                progress,
            })
            .await?;
        self.ctx.share_image(&record.id.to_string()).await;
        Ok(image_info(&record, None))
    }

    /// Imports an archive already written to `path` (removed afterwards by
    /// the caller).
    pub async fn import_image(
        &self,
        path: std::path::PathBuf,
        name: Option<String>,
    ) -> Result<ImageInfo, ControlError> {
        if let Some(name) = &name {
            self.refuse_builtin_name(name).await?;
        }
        let images = self.ctx.images.clone();
        let record = blocking(move || {
            let file = std::fs::File::open(&path).map_err(ImageStoreError::io("opening", &path))?;
            let names: Vec<String> = name.into_iter().collect();
            images.import(std::io::BufReader::with_capacity(1 << 20, file), &names)
        })
        .await?;
        self.ctx.share_image(&record.id.to_string()).await;
        Ok(image_info(&record, None))
    }
}

impl Control {
    /// Saves a completed snapshot's filesystem as image `name`: its
    /// sandbox's image plus one layer, what the sandbox wrote (read from the
    /// snapshot's disk, mounted read-only; the runtime's mount points left
    /// out).
    pub async fn save_snapshot_as_image(
        &self,
        namespace: Option<&str>,
        snapshot_id: &str,
        name: &str,
    ) -> Result<ImageInfo, ControlError> {
        self.refuse_builtin_name(name).await?;
        let snap = self
            .ctx
            .store
            .get_snapshot(snapshot_id)
            .await?
            .filter(|s| namespace.is_none_or(|ns| s.namespace == ns))
            .ok_or_else(|| ControlError::NotFound {
                kind: "snapshot",
                id: snapshot_id.to_string(),
            })?;
        if snap.status != alcove_wire::snapshot::SnapshotStatus::Completed {
            return Err(ControlError::InvalidArgument {
                field: "snapshot_id",
                reason: format!(
                    "snapshot {snapshot_id} is {}, not completed",
                    snap.status.as_str()
                ),
            });
        }
        let lock = self
            .ctx
            .op_lock(&super::context::snapshot_lock_key(snapshot_id));
        let _guard = lock.lock().await;
        let dir = self.ctx.cfg.snapshots_dir.join(snapshot_id);
        alcove_runtime::archive::unpack(&dir, "disk.img").await?;
        let images = self.ctx.images.clone();
        let pinned = snap.image.clone();
        let name = name.to_string();
        let source = alcove_images::ImageSource::Snapshot {
            snapshot_id: snapshot_id.to_string(),
        };
        let record = blocking(move || {
            let _work = images.store().work_guard()?;
            let base = images.resolve_pinned(&pinned)?;
            let base = images.store().get(&base.image.id.parse()?)?;
            let mnt = images.store().tmp_path();
            std::fs::create_dir_all(&mnt).map_err(ImageStoreError::io("creating", &mnt))?;
            let mounted = std::process::Command::new("mount")
                .args(["-o", "loop,ro,nosuid,nodev,noexec,noload"])
                .arg(dir.join("disk.img"))
                .arg(&mnt)
                .output()
                .map_err(ImageStoreError::io("mounting", &mnt))?;
            if !mounted.status.success() {
                let _ = std::fs::remove_dir(&mnt);
                return Err(ImageStoreError::Io {
                    op: "mounting the snapshot's disk at",
                    path: mnt,
                    source: std::io::Error::other(
                        String::from_utf8_lossy(&mounted.stderr).trim().to_string(),
                    ),
                });
            }
            let layer = images.store().layer_from_dir_excluding(
                &mnt.join("upper"),
                super::build::MOUNTED,
                &images.limits(),
            );
            let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&mnt);
            let mut layers = base.layers.clone();
            layers.push(layer?);
            images
                .store()
                .commit_image(layers, base.config.clone(), source, None, &[name])
        })
        .await?;
        self.ctx.share_image(&record.id.to_string()).await;
        Ok(image_info(&record, None))
    }
}

impl Control {
    /// Refuses early, before a pull, an import, a build or a snapshot's packing, a name that a built-in
    /// image carries (the store refuses it again when it names the image: see
    /// `ImageStore::check_name_assignable`).
    pub(super) async fn refuse_builtin_name(&self, name: &str) -> Result<(), ControlError> {
        let images = self.ctx.images.clone();
        let name = name.to_string();
        blocking(move || {
            images
                .store()
                .check_name_assignable(&name, &alcove_images::ImageSource::Import)
        })
        .await
    }
}
