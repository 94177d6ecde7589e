//! The store itself: blobs, layers, image records and the reference index.
//!
//! Every mutation (commit, tag, remove, collect) takes the store's lock (an
//! in-process mutex plus `flock` on `<root>/lock`, as several servers may share
//! one images directory); reads never block on it. Files appear atomically:
//! written under `tmp/`, then renamed into place, so a crash leaves nothing
//! half-made where a reader looks, and [`ImageStore::open`] empties `tmp/`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Result;
use crate::unpack::UnpackLimits;

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

/// What [`ImageStore::collect_garbage`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layers removed.
    pub layers: usize,
    /// Bytes freed.
    pub bytes: u64,
}

/// The store at one root directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating, mode 0700) the store at `root`, empties `tmp/` (what a
    /// crash left half-made) and drops image records whose layers are missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let _ = root;
        unimplemented!("ImageStore::open")
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
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
        let _ = (expected, limit);
        unimplemented!("ImageStore::blob_writer")
    }

    /// Reads a small blob (a manifest or config) of at most `limit` bytes,
    /// checking its digest.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let _ = (digest, limit);
        unimplemented!("ImageStore::read_blob")
    }

    /// Stores `bytes` as a blob; returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let _ = bytes;
        unimplemented!("ImageStore::put_blob")
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
        self.layer_dir(diff_id).is_dir()
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
        let _ = (blob, media_type, expected_diff_id, limits);
        unimplemented!("ImageStore::unpack_blob")
    }

    /// Makes a layer of an overlay upper directory written by a sandbox (a
    /// build step, a snapshot): packs it as a gzip tar blob (whiteout devices
    /// and opaque directories become `.wh.` entries, nothing is followed, and
    /// devices, sockets and foreign xattrs are left out), then unpacks that
    /// blob like any other. Blocking.
    pub fn layer_from_dir(&self, upper: &Path, limits: &UnpackLimits) -> Result<LayerRecord> {
        let _ = (upper, limits);
        unimplemented!("ImageStore::layer_from_dir")
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
        let _ = (layers, config, source, manifest_digest, names);
        unimplemented!("ImageStore::commit_image")
    }

    /// Points `name` (a reference key, `name:tag`) at image `id`.
    pub fn tag(&self, id: &Digest, name: &str) -> Result<()> {
        let _ = (id, name);
        unimplemented!("ImageStore::tag")
    }

    /// Finds an image by reference (`name`, `name:tag`, `name@sha256:…` of
    /// its manifest), by id (`sha256:…`) or by an id prefix of at least 12
    /// hex digits.
    pub fn resolve(&self, text: &str) -> Result<ImageRecord> {
        let _ = text;
        unimplemented!("ImageStore::resolve")
    }

    /// The image with id `id`.
    pub fn get(&self, id: &Digest) -> Result<ImageRecord> {
        let _ = id;
        unimplemented!("ImageStore::get")
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        unimplemented!("ImageStore::list")
    }

    /// The reference index (`name:tag` → image id).
    pub fn refs(&self) -> Result<BTreeMap<String, Digest>> {
        unimplemented!("ImageStore::refs")
    }

    /// Removes a reference; with `untag_only` false and no other name left
    /// (or when `text` is an id), removes the image record too. Blobs and
    /// layers stay until [`ImageStore::collect_garbage`]. Returns the ids of
    /// removed records.
    pub fn remove(&self, text: &str, untag_only: bool) -> Result<Vec<Digest>> {
        let _ = (text, untag_only);
        unimplemented!("ImageStore::remove")
    }

    /// Removes blobs and layers no image record refers to, except those of
    /// `keep` (layer diff ids or blob digests still in use by someone who is
    /// not an image: a running sandbox of a removed image, a build).
    pub fn collect_garbage(&self, keep: &HashSet<Digest>) -> Result<GcReport> {
        let _ = keep;
        unimplemented!("ImageStore::collect_garbage")
    }

    /// Adopts a built-in image built by setup into the store:
    /// `<dir>/manifest.json` (name, aliases, env, services, recipe_sha256)
    /// and `<dir>/rootfs`. The rootfs is hashed as a tar stream (its diff id)
    /// and renamed into `layers/` (it must be on the same file system), and a
    /// symlink is left in its place so setup sees the image as built. Does
    /// nothing when an image of the same recipe is already stored. Blocking.
    pub fn adopt_builtin(&self, dir: &Path) -> Result<Option<ImageRecord>> {
        let _ = dir;
        unimplemented!("ImageStore::adopt_builtin")
    }
}

/// A blob being written (see [`ImageStore::blob_writer`]).
#[derive(Debug)]
pub struct BlobWriter {
    _private: (),
}

impl std::io::Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = buf;
        unimplemented!("BlobWriter::write")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl BlobWriter {
    /// Checks the digest and size, syncs and moves the blob into place.
    /// Returns its digest and size.
    pub fn commit(self) -> Result<(Digest, u64)> {
        unimplemented!("BlobWriter::commit")
    }
}
