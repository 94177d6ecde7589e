//! The server's side of images: the store under the images directory, the
//! built-in images adopted into it at start, and the turning of a reference
//! into what a sandbox boots (layers, environment, user, working directory).
//!
//! A sandbox record keeps its image *pinned*: `<name>@<image id>`, a valid
//! reference that resolves to the exact layers it was made from even after
//! the name is pointed at another image. Users see only the name part.

pub mod context;
pub mod dockerfile;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alcove_images::pull::{PullConfig, PullRequest, Puller};
use alcove_images::unpack::UnpackLimits;
use alcove_images::{
    Digest, ImageRecord, ImageRef, ImageSource, ImageStore, ImageStoreError, RunConfig,
};
use alcove_runtime::image::{Image, ImageService};

/// Most an image archive sent to the import route may hold, as uploaded: it
/// is written to the store's disk before it is read, so it needs a bound of
/// its own (the import's bounds are per blob and per unpacked layer).
pub const MAX_IMPORT_BYTES: u64 = 32 << 30;

/// The image a sandbox boots, resolved.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// What the runtime needs.
    pub image: Image,
    /// The image's run configuration (working directory, user, entrypoint…).
    pub run: RunConfig,
    /// The pinned reference to store in the sandbox's record.
    pub pinned: String,
}

/// The images of this server.
#[derive(Debug, Clone)]
pub struct Images {
    store: ImageStore,
    dir: PathBuf,
    puller: Puller,
    limits: UnpackLimits,
    /// Layers (and their blobs) of builds in progress, by build: no image
    /// names them yet, so a collection must keep them.
    building: Arc<std::sync::Mutex<HashMap<u64, HashSet<Digest>>>>,
}

/// How images are fetched and unpacked.
#[derive(Debug, Clone, Default)]
pub struct ImageSettings {
    /// Registries spoken to in plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
    /// Bounds on one unpacked layer.
    pub limits: UnpackLimits,
}

/// The part of a pinned reference users see (`name` of `name@sha256:…`).
pub fn display_name(pinned: &str) -> &str {
    match pinned.rsplit_once('@') {
        Some((name, digest)) if digest.starts_with("sha256:") && !name.is_empty() => name,
        _ => pinned,
    }
}

impl Images {
    /// Opens the store under `images_dir` (`<images_dir>/store`) and adopts
    /// the built-in images setup left in `<images_dir>/<name>/`. Blocking:
    /// the first adoption of an image hashes its whole tree.
    pub fn open(images_dir: &Path, settings: ImageSettings) -> Result<Self, ImageStoreError> {
        let store = ImageStore::open(images_dir.join("store"))?;
        let puller = Puller::new(
            store.clone(),
            PullConfig {
                insecure_registries: settings.insecure_registries,
                unpack_limits: settings.limits,
                ..PullConfig::default()
            },
        );
        let this = Self {
            store,
            dir: images_dir.to_path_buf(),
            puller,
            limits: settings.limits,
            building: Arc::default(),
        };
        this.adopt_builtins();
        // What a delete could not collect (work was in progress) or a crash
        // left unnamed.
        match this.store.collect_garbage(&HashSet::new()) {
            Ok(report) if report.blobs + report.layers > 0 => tracing::info!(
                blobs = report.blobs,
                layers = report.layers,
                bytes = report.bytes,
                "collected unused image data"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "collecting unused image data"),
        }
        Ok(this)
    }

    /// The store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// Pulls an image from its registry (see [`Puller::pull`]).
    pub async fn pull(&self, request: PullRequest) -> Result<ImageRecord, ImageStoreError> {
        let _work = self.store.work_guard()?;
        self.puller.pull(request).await
    }

    /// Keeps `layer` (its diff id and blob) out of collections until
    /// [`Images::build_done`] of `build`.
    pub fn hold_for_build(&self, build: u64, layer: &alcove_images::LayerRecord) {
        let mut building = self.building.lock().unwrap_or_else(|p| p.into_inner());
        let held = building.entry(build).or_default();
        held.insert(layer.diff_id.clone());
        held.extend(layer.blob.clone());
    }

    /// Lets a collection take what build `build` held.
    pub fn build_done(&self, build: u64) {
        self.building
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&build);
    }

    /// What collections must keep: every build's layers.
    pub fn held(&self) -> HashSet<Digest> {
        self.building
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// Bounds on one unpacked layer.
    pub fn limits(&self) -> UnpackLimits {
        self.limits
    }

    /// Imports a `docker save` or OCI layout archive. Blocking.
    pub fn import(
        &self,
        archive: impl std::io::Read,
        names: &[String],
    ) -> Result<ImageRecord, ImageStoreError> {
        let _work = self.store.work_guard()?;
        alcove_images::import::import_archive(
            &self.store,
            archive,
            names,
            &alcove_images::import::ImportLimits {
                unpack: self.limits,
                ..Default::default()
            },
        )
    }

    /// Adopts every `<images_dir>/<name>/manifest.json` image not yet in the
    /// store; one that cannot be adopted is logged and skipped (its sandboxes
    /// then fail to resolve it, with a clear error).
    fn adopt_builtins(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("manifest.json").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let started = std::time::Instant::now();
            match self.store.adopt_builtin(&dir) {
                Ok(Some(image)) => tracing::info!(
                    image = %image.id,
                    names = ?image.names,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "adopted a built-in image into the store"
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot adopt a built-in image")
                }
            }
        }
    }

    /// Resolves what a create asks for (`None` = the image `default`) and
    /// pins it.
    pub fn resolve_for_create(&self, text: Option<&str>) -> Result<ResolvedImage, ImageStoreError> {
        let text = text.unwrap_or("default");
        let record = self.store.resolve(text)?;
        let name = match &record.source {
            // The built-ins are known by their canonical name whatever alias
            // selected them (`default` is `alcove/debian`).
            ImageSource::Builtin { .. } => {
                builtin_name(&record).unwrap_or_else(|| text.to_string())
            }
            _ => ImageRef::parse(text)
                .map(|r| strip_digest(&r))
                .unwrap_or_else(|_| text.to_string()),
        };
        Ok(self.resolved(record, &name))
    }

    /// Resolves the pinned reference of a sandbox's record (or the plain
    /// name of a record made before images were pinned).
    pub fn resolve_pinned(&self, pinned: &str) -> Result<ResolvedImage, ImageStoreError> {
        let name = display_name(pinned).to_string();
        let record = match pinned.rsplit_once('@') {
            Some((_, digest)) if digest.starts_with("sha256:") => {
                self.store.get(&digest.parse::<Digest>()?)?
            }
            _ => self.store.resolve(pinned)?,
        };
        Ok(self.resolved(record, &name))
    }

    fn resolved(&self, record: ImageRecord, name: &str) -> ResolvedImage {
        let env = record
            .config
            .env_vars()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let image = Image {
            name: name.to_string(),
            id: record.id.to_string(),
            layers: record
                .layers
                .iter()
                .map(|l| self.store.layer_dir(&l.diff_id))
                .collect(),
            env,
            services: record
                .config
                .services
                .iter()
                .map(|s| ImageService {
                    name: s.name.clone(),
                    command: s.command.clone(),
                })
                .collect(),
            working_dir: record
                .config
                .working_dir
                .clone()
                .filter(|d| d.starts_with('/')),
            user: record.config.user.clone().filter(|u| !u.is_empty()),
        };
        ResolvedImage {
            pinned: format!("{name}@{}", record.id),
            image,
            run: record.config,
        }
    }
}

/// Shared handle.
pub type SharedImages = Arc<Images>;

fn builtin_name(record: &ImageRecord) -> Option<String> {
    record
        .names
        .iter()
        .find(|n| n.contains('/'))
        .map(|n| n.strip_suffix(":latest").unwrap_or(n).to_string())
}

/// `name[:tag]` of a reference (a digest is replaced by the image id when pinned).
fn strip_digest(r: &ImageRef) -> String {
    match &r.tag {
        Some(t) if t != "latest" => format!("{}:{t}", r.name),
        _ => r.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_name_drops_the_pin() {
        let id = Digest::of(b"x");
        assert_eq!(
            display_name(&format!("alcove/debian@{id}")),
            "alcove/debian"
        );
        assert_eq!(
            display_name(&format!("localhost:5000/b:1@{id}")),
            "localhost:5000/b:1"
        );
        assert_eq!(display_name("alcove/debian"), "alcove/debian");
    }
}
