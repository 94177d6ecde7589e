//! The store itself: blobs, layers, image records and the reference index.
//!
//! Every mutation (commit, tag, remove, collect) takes the store's lock (an
//! in-process mutex plus `flock` on `<root>/lock`, as several servers may share
//! one images directory); reads never block on it. Files appear atomically:
//! written under `tmp/`, then renamed into place, so a crash leaves nothing
//! half-made where a reader looks, and [`ImageStore::open`] empties `tmp/`.

mod blobs;
mod builtin;
mod fsutil;
mod gc;
mod layers;
mod records;
mod refs;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};
use crate::unpack::UnpackLimits;

pub use blobs::BlobWriter;
use fsutil::StoreLock;
pub use records::{RECIPE_LABEL, SERVICES_LABEL};

/// How a sandbox of the image runs: the OCI config's `Env`, `WorkingDir`,
/// `User`, `Entrypoint`, `Cmd` and `ExposedPorts`, and for the built-in
/// images the services they start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `KEY=VALUE` entries, in order.
    #[serde(default)]
    pub env: Vec<String>,
    /// Default working directory of processes.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Default user of processes (`name`, `uid`, `uid:gid`, `name:group`).
    #[serde(default)]
    pub user: Option<String>,
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// TCP ports of `ExposedPorts` (`"8080/tcp"`; UDP ones are left out).
    #[serde(default)]
    pub exposed_ports: Vec<u16>,
    /// Programs started at boot (built-in images only).
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// A program a built-in image starts in each new sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Process name.
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the uncompressed tar stream: the key of the unpacked layer.
    pub diff_id: Digest,
    /// Digest of the stored (compressed) blob, if the store keeps one (the
    /// built-in images' layers have none).
    #[serde(default)]
    pub blob: Option<Digest>,
    /// Media type of the blob.
    #[serde(default)]
    pub media_type: String,
    /// Bytes of the blob (0 without one).
    #[serde(default)]
    pub size: u64,
    /// Bytes of the unpacked files.
    #[serde(default)]
    pub unpacked_size: u64,
}

/// Where an image came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ImageSource {
    /// Built by setup from a recipe (`images/<name>/recipe.txt`).
    Builtin {
        /// Hash of the recipe.
        recipe_sha256: String,
    },
    /// Pulled from a registry.
    Pull {
        /// The reference pulled.
        reference: String,
    },
    /// Imported from a `docker save` or OCI layout archive.
    Import,
    /// Built from a Dockerfile or the SDKs' image DSL.
    Build,
    /// Saved from a filesystem snapshot.
    Snapshot {
        /// The snapshot.
        snapshot_id: String,
    },
}

/// One image, as stored in `images/sha256/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Digest of the image's config blob: its id.
    pub id: Digest,
    /// Digest of the registry manifest it was pulled or imported with.
    #[serde(default)]
    pub manifest_digest: Option<Digest>,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// How its sandboxes run.
    pub config: RunConfig,
    /// Where it came from.
    pub source: ImageSource,
    /// When it was stored (RFC 3339, UTC).
    pub created_at: String,
    /// References (`name:tag`) that point at it, sorted; filled from the
    /// index when read, never stored in the record.
    #[serde(default, skip_serializing)]
    pub names: Vec<String>,
}

impl ImageRecord {
    /// Bytes of all unpacked layers.
    pub fn unpacked_size(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked_size).sum()
    }
}

/// Held by work that writes what no image names yet (see
/// [`ImageStore::work_guard`]).
#[derive(Debug)]
pub struct WorkGuard {
    _flock: nix::fcntl::Flock<std::fs::File>,
}

/// What [`ImageStore::collect_garbage`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layers removed.
    pub layers: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Nothing was collected: a pull, import or build was writing.
    pub deferred: bool,
}

/// The store at one root directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    lock: StoreLock,
}

impl ImageStore {
    /// Opens (creating, mode 0700) the store at `root`, empties `tmp/` (what a
    /// crash left half-made) and drops image records whose layers are missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fsutil::mkdir_private(&root)?;
        // Absolute, so the symlinks adopt_builtin leaves point anywhere-proof.
        let root = std::fs::canonicalize(&root).map_err(ImageStoreError::io("resolve", &root))?;
        for sub in [
            "blobs",
            "blobs/sha256",
            "layers",
            "layers/sha256",
            "images",
            "images/sha256",
            "tmp",
        ] {
            fsutil::mkdir_private(&root.join(sub))?;
        }
        let store = Self {
            lock: StoreLock::new(root.join("lock")),
            root,
        };
        let guard = store.lock.lock()?;
        store.clean_tmp()?;
        store.drop_broken_records(&guard)?;
        drop(guard);
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh path under `tmp/` for work in progress outside the store's own
    /// (an upload, a build's trees, a mount point), named as the store names
    /// its own: the next [`ImageStore::open`] removes it once this process is
    /// gone. Nothing is created.
    pub fn tmp_path(&self) -> PathBuf {
        self.tmp_dir().join(fsutil::tmp_name())
    }

    /// Removes what crashed processes left in `tmp/`; the work in progress
    /// of live servers sharing the store is kept.
    fn clean_tmp(&self) -> Result<()> {
        let tmp = self.tmp_dir();
        let entries = std::fs::read_dir(&tmp).map_err(ImageStoreError::io("read", &tmp))?;
        for entry in entries {
            let entry = entry.map_err(ImageStoreError::io("read", &tmp))?;
            let name = entry.file_name();
            if fsutil::tmp_owner_alive(&name.to_string_lossy()) {
                continue;
            }
            fsutil::remove_tree(&entry.path())?;
        }
        Ok(())
    }

    // --- blobs ---------------------------------------------------------------

    /// Where the blob of `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the blob is stored.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A writer of one new blob. `expected` (digest and size, when known)
    /// is checked on [`BlobWriter::commit`]; more than `limit` bytes fail the
    /// write. Dropping the writer without committing removes what it wrote.
    pub fn blob_writer(&self, expected: Option<(Digest, u64)>, limit: u64) -> Result<BlobWriter> {
        self.new_blob_writer(expected, limit)
    }

    /// Reads a small blob (a manifest or config) of at most `limit` bytes,
    /// checking its digest.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        self.read_blob_checked(digest, limit)
    }

    /// Stores `bytes` as a blob; returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_blob_bytes(bytes)
    }

    // --- layers --------------------------------------------------------------

    /// The unpacked directory of the layer `diff_id` (an overlay lower dir).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root
            .join("layers/sha256")
            .join(diff_id.hex())
            .join("fs")
    }

    /// Whether the layer is unpacked.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        // symlink_metadata: a symlink at `fs` is no layer.
        std::fs::symlink_metadata(self.layer_dir(diff_id)).is_ok_and(|m| m.is_dir())
    }

    /// Unpacks the stored blob `blob` of `media_type` (tar, gzip or zstd)
    /// safely into a layer (see [`crate::unpack`]); the diff id is computed
    /// while unpacking and checked against `expected_diff_id` when given. A
    /// layer already unpacked is not unpacked again. Blocking.
    pub fn unpack_blob(
        &self,
        blob: &Digest,
        media_type: &str,
        expected_diff_id: Option<&Digest>,
        limits: &UnpackLimits,
    ) -> Result<LayerRecord> {
        self.unpack_stored_blob(blob, media_type, expected_diff_id, limits)
    }

    /// Makes a layer of an overlay upper directory written by a sandbox (a
    /// build step, a snapshot): packs it as a gzip tar blob (whiteout devices
    /// and opaque directories become `.wh.` entries, nothing is followed, and
    /// devices, sockets and foreign xattrs are left out), then unpacks that
    /// blob like any other. Blocking.
    pub fn layer_from_dir(&self, upper: &Path, limits: &UnpackLimits) -> Result<LayerRecord> {
        self.pack_upper(upper, &[], limits)
    }

    /// [`ImageStore::layer_from_dir`] leaving out the relative paths
    /// `exclude` and what is below them (see [`crate::pack::pack_dir_excluding`]).
    pub fn layer_from_dir_excluding(
        &self,
        upper: &Path,
        exclude: &[&str],
        limits: &UnpackLimits,
    ) -> Result<LayerRecord> {
        self.pack_upper(upper, exclude, limits)
    }

    // --- images --------------------------------------------------------------

    /// Stores an image made of `layers` (all already unpacked) with `config`:
    /// writes its OCI config blob (whose digest is the image id), its record,
    /// then points each of `names` at it. Storing an image that exists again
    /// only adds names.
    pub fn commit_image(
        &self,
        layers: Vec<LayerRecord>,
        config: RunConfig,
        source: ImageSource,
        manifest_digest: Option<Digest>,
        names: &[String],
    ) -> Result<ImageRecord> {
        let guard = self.lock.lock()?;
        self.commit_locked(&guard, layers, config, source, manifest_digest, names)
    }

    /// Stores a pulled or imported image whose OCI config is the stored blob
    /// `config_blob` (kept as is, so the id is the registry's): its
    /// `rootfs.diff_ids` must be the diff ids of `layers` (all unpacked),
    /// and its run configuration is read from it. Storing an image that
    /// exists again only adds names.
    pub fn commit_pulled_image(
        &self,
        config_blob: &Digest,
        layers: Vec<LayerRecord>,
        manifest_digest: Option<Digest>,
        source: ImageSource,
        names: &[String],
    ) -> Result<ImageRecord> {
        let guard = self.lock.lock()?;
        self.commit_pulled_locked(&guard, config_blob, layers, manifest_digest, source, names)
    }

    /// Points `name` (a reference key, `name:tag`) at image `id`.
    pub fn tag(&self, id: &Digest, name: &str) -> Result<()> {
        let guard = self.lock.lock()?;
        self.tag_locked(&guard, id, name)
    }

    /// Finds an image by reference (`name`, `name:tag`, `name@sha256:…` of
    /// its manifest), by id (`sha256:…`) or by an id prefix of at least 12
    /// hex digits.
    pub fn resolve(&self, text: &str) -> Result<ImageRecord> {
        self.resolve_text(text)
    }

    /// The image with id `id`.
    pub fn get(&self, id: &Digest) -> Result<ImageRecord> {
        let mut record = self.read_record(id)?;
        let refs = self.refs()?;
        record.names = names_of(&refs, id);
        Ok(record)
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let refs = self.refs()?;
        let mut records = self.read_records()?;
        for r in &mut records {
            r.names = names_of(&refs, &r.id);
        }
        records.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(records)
    }

    /// The reference index (`name:tag` → image id).
    pub fn refs(&self) -> Result<BTreeMap<String, Digest>> {
        self.read_refs()
    }

    /// Removes a reference; with `untag_only` false and no other name left
    /// (or when `text` is an id), removes the image record too. Blobs and
    /// layers stay until [`ImageStore::collect_garbage`]. Returns the ids of
    /// removed records.
    pub fn remove(&self, text: &str, untag_only: bool) -> Result<Vec<Digest>> {
        let guard = self.lock.lock()?;
        self.remove_locked(&guard, text, untag_only)
    }

    /// Removes blobs and layers no image record refers to, except those of
    /// `keep` (layer diff ids or blob digests still in use by someone who is
    /// not an image: a running sandbox of a removed image, a build).
    pub fn collect_garbage(&self, keep: &HashSet<Digest>) -> Result<GcReport> {
        // Pulls, imports and builds write blobs and layers before an image
        // names them: while any runs, in this process or another sharing
        // the store, nothing is collected (the next collection, or the next
        // start, takes what is left).
        let Some(_work) = self.try_exclusive_work()? else {
            return Ok(GcReport {
                deferred: true,
                ..GcReport::default()
            });
        };
        let guard = self.lock.lock()?;
        self.collect_locked(&guard, keep)
    }

    /// Marks work that writes blobs or layers no image names yet (a pull,
    /// an import, a build) until the guard drops: collections wait for it.
    pub fn work_guard(&self) -> Result<WorkGuard> {
        let path = self.root.join("work.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageStoreError::io("open", &path))?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockShared)
            .map_err(|(_, e)| ImageStoreError::io("flock", &path)(e.into()))?;
        Ok(WorkGuard { _flock: flock })
    }

    fn try_exclusive_work(&self) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
        let path = self.root.join("work.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageStoreError::io("open", &path))?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(ImageStoreError::io("flock", &path)(e.into())),
        }
    }

    /// Adopts a built-in image built by setup into the store:
    /// `<dir>/manifest.json` (name, aliases, env, services, recipe_sha256)
    /// and `<dir>/rootfs`. The rootfs is hashed as a tar stream (its diff id)
    /// and renamed into `layers/` (it must be on the same file system), and a
    /// symlink is left in its place so setup sees the image as built. Does
    /// nothing when an image of the same recipe is already stored. Blocking.
    pub fn adopt_builtin(&self, dir: &Path) -> Result<Option<ImageRecord>> {
        let guard = self.lock.lock()?;
        self.adopt_locked(&guard, dir)
    }
}

/// The names of `id` in the index, sorted.
fn names_of(refs: &BTreeMap<String, Digest>, id: &Digest) -> Vec<String> {
    refs.iter()
        .filter(|(_, v)| *v == id)
        .map(|(k, _)| k.clone())
        .collect()
}
