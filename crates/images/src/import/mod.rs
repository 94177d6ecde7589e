//! Importing an image archive: what `docker save` writes (older Docker:
//! `manifest.json`, `<hex>.json` config, `<id>/layer.tar`; newer Docker adds
//! an OCI layout beside it) or an OCI image layout in a tar (`oci-layout`,
//! `index.json`, `blobs/sha256/…`, as `skopeo copy … oci-archive:x.tar`
//! writes). The stream may be gzip-compressed.
//!
//! The stream is read once: each blob goes straight into the store (its
//! digest verified when its name carries one, computed for a `layer.tar`),
//! so no layer is held in memory; the JSON documents (≤ 4 MiB each) are.
//! Then manifest → config → layers are resolved, each layer is unpacked,
//! and the image is committed last.
//!
//! An archive with an OCI layout is read through it (its media types are
//! explicit); `manifest.json` alone is read the `docker save` way.
//!
//! A failed import commits no image and names nothing. Blobs and layers it
//! had already written stay in the store until garbage collection removes
//! them (or a later import or pull uses them).

mod archive;

use std::io::{BufRead, BufReader, Read};

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};
use crate::pull::oci::{self, Document, MAX_DOCUMENT_BYTES, OCI_LAYER_TAR};
use crate::reference::ImageRef;
use crate::store::{ImageRecord, ImageSource, ImageStore, LayerRecord};
use crate::unpack::UnpackLimits;

use archive::Contents;

/// The annotation an OCI layout names an image's reference (or only its
/// tag) with.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and newer Docker put the full name in.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Bounds on one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Bytes of one blob (a layer), as stored (default 16 GiB).
    pub max_blob_bytes: u64,
    /// Bounds on one unpacked layer.
    pub unpack: UnpackLimits,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_blob_bytes: crate::pull::DEFAULT_MAX_LAYER_BYTES,
            unpack: UnpackLimits::default(),
        }
    }
}

/// One entry of `docker save`'s `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image resolved from the archive, ready to unpack and commit.
struct Resolved {
    config: Digest,
    manifest_digest: Option<Digest>,
    /// Blob, media type and diff id of each layer, bottom first.
    layers: Vec<(Digest, String, Digest)>,
    /// Names the archive carries (used when the caller gives none).
    names: Vec<String>,
}

/// Imports the image in `reader` (a tar stream, gzip-compressed or not)
/// into `store`, naming it `names` (`name[:tag]` each), or, if `names` is
/// empty, by the names the archive carries; without either the image is
/// stored without names and found by its id. Blocking.
pub fn import_archive(
    store: &ImageStore,
    reader: impl Read,
    names: &[String],
    limits: &ImportLimits,
) -> Result<ImageRecord> {
    // Check the caller's names before reading gigabytes.
    let given = names
        .iter()
        .map(|n| ImageRef::parse(n).map(|r| r.key()))
        .collect::<Result<Vec<_>>>()?;
    let mut reader = BufReader::new(reader);
    let head = reader
        .fill_buf()
        .map_err(ImageStoreError::io("read archive", "<stream>"))?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let contents = if gzip {
        archive::read_entries(
            store,
            flate2::read::MultiGzDecoder::new(reader),
            limits.max_blob_bytes,
        )?
    } else {
        archive::read_entries(store, reader, limits.max_blob_bytes)?
    };
    let resolved = if contents.json.contains_key("oci-layout")
        && contents.json.contains_key("index.json")
    {
        resolve_oci(store, &contents)?
    } else if contents.json.contains_key("manifest.json") {
        resolve_docker(store, &contents)?
    } else {
        return Err(ImageStoreError::BadImage {
            what: "archive".into(),
            reason: "neither an OCI layout (oci-layout, index.json) nor a docker save archive (manifest.json)".into(),
        });
    };
    let names = if given.is_empty() {
        resolved
            .names
            .iter()
            .map(|n| ImageRef::parse(n).map(|r| r.key()))
            .collect::<Result<Vec<_>>>()?
    } else {
        given
    };
    let mut layers: Vec<LayerRecord> = Vec::with_capacity(resolved.layers.len());
    for (blob, media_type, diff_id) in &resolved.layers {
        layers.push(store.unpack_blob(blob, media_type, Some(diff_id), &limits.unpack)?);
    }
    let record = store.commit_pulled_image(
        &resolved.config,
        layers,
        resolved.manifest_digest,
        ImageSource::Import,
        &names,
    )?;
    tracing::info!(id = %record.id, names = ?record.names, "imported image");
    Ok(record)
}

fn bad(what: &str, reason: impl Into<String>) -> ImageStoreError {
    ImageStoreError::BadImage {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// A blob the archive's documents name must be in the store by now.
fn need_blob(store: &ImageStore, digest: &Digest) -> Result<()> {
    if store.has_blob(digest) {
        Ok(())
    } else {
        Err(bad("archive", format!("blob {digest} is missing")))
    }
}

/// manifest.json → config → layers, for `docker save` archives.
fn resolve_docker(store: &ImageStore, contents: &Contents) -> Result<Resolved> {
    let bytes = contents
        .json
        .get("manifest.json")
        .ok_or_else(|| bad("archive", "manifest.json is missing"))?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(bytes).map_err(|e| bad("manifest.json", e.to_string()))?;
    let entry = match entries.as_slice() {
        [entry] => entry,
        [] => return Err(bad("manifest.json", "lists no image")),
        more => {
            return Err(bad(
                "manifest.json",
                format!("lists {} images; import one at a time", more.len()),
            ));
        }
    };
    let config = docker_config(store, contents, &entry.config)?;
    let config_bytes = store.read_blob(&config, MAX_DOCUMENT_BYTES)?;
    let diff_ids = oci::diff_ids(
        &config_bytes,
        &format!("config {config}"),
        entry.layers.len(),
    )?;
    let mut layers = Vec::with_capacity(entry.layers.len());
    for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
        let blob = match blob_name(path) {
            Some(digest) => digest,
            None => contents
                .layer_tar(path)
                .map(|(d, _)| d.clone())
                .ok_or_else(|| {
                    bad(
                        "manifest.json",
                        format!("layer {path:?} is not in the archive"),
                    )
                })?,
        };
        need_blob(store, &blob)?;
        // docker save writes layers uncompressed.
        layers.push((blob, OCI_LAYER_TAR.to_string(), diff_id));
    }
    Ok(Resolved {
        config,
        manifest_digest: None,
        layers,
        names: entry.repo_tags.clone().unwrap_or_default(),
    })
}

/// `blobs/sha256/<hex>` as a digest.
fn blob_name(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/")
        .and_then(|hex| format!("sha256:{hex}").parse().ok())
}

/// The config of a `docker save` entry, stored: `blobs/sha256/<hex>`
/// (newer Docker) or `<hex>.json`, whose name is its digest.
fn docker_config(store: &ImageStore, contents: &Contents, path: &str) -> Result<Digest> {
    if let Some(digest) = blob_name(path) {
        need_blob(store, &digest)?;
        return Ok(digest);
    }
    let bytes = contents.json.get(path).ok_or_else(|| {
        bad(
            "manifest.json",
            format!("config {path:?} is not in the archive"),
        )
    })?;
    let digest = Digest::of(bytes);
    let named = path.strip_suffix(".json").unwrap_or(path);
    if named != digest.hex() {
        return Err(ImageStoreError::DigestMismatch {
            what: format!("config {path}"),
            expected: format!("sha256:{named}"),
            actual: digest.to_string(),
        });
    }
    store.put_blob(bytes)
}

/// index.json → (index →) manifest → config → layers, for OCI layouts.
fn resolve_oci(store: &ImageStore, contents: &Contents) -> Result<Resolved> {
    let layout: serde_json::Value = contents
        .json
        .get("oci-layout")
        .map(|b| serde_json::from_slice(b))
        .transpose()
        .map_err(|e| bad("oci-layout", e.to_string()))?
        .unwrap_or_default();
    if !layout
        .get("imageLayoutVersion")
        .is_some_and(serde_json::Value::is_string)
    {
        return Err(bad("oci-layout", "has no imageLayoutVersion"));
    }
    let index_bytes = contents
        .json
        .get("index.json")
        .ok_or_else(|| bad("archive", "index.json is missing"))?;
    let Document::Index(index) = oci::parse_document(index_bytes, "index.json")? else {
        return Err(bad("index.json", "is not an image index"));
    };
    let entry = oci::choose_platform(&index, "index.json")?;
    let mut names = archive_names(contents, entry);
    let top = entry.digest.clone();
    let mut digest = top.clone();
    // One nested index is followed (an image's own multi-platform index
    // inside the layout's index).
    for _ in 0..2 {
        need_blob(store, &digest)?;
        let what = format!("manifest {digest}");
        let bytes = store.read_blob(&digest, MAX_DOCUMENT_BYTES)?;
        match oci::parse_document(&bytes, &what)? {
            Document::Index(inner) => {
                let entry = oci::choose_platform(&inner, &what)?;
                if names.is_empty() {
                    names = archive_names(contents, entry);
                }
                digest = entry.digest.clone();
            }
            Document::Manifest(manifest) => {
                oci::check_manifest(&manifest)?;
                let config = manifest.config.digest.clone();
                need_blob(store, &config)?;
                let config_bytes = store.read_blob(&config, MAX_DOCUMENT_BYTES)?;
                let diff_ids = oci::diff_ids(
                    &config_bytes,
                    &format!("config {config}"),
                    manifest.layers.len(),
                )?;
                let mut layers = Vec::with_capacity(manifest.layers.len());
                for (layer, diff_id) in manifest.layers.into_iter().zip(diff_ids) {
                    need_blob(store, &layer.digest)?;
                    layers.push((layer.digest, layer.media_type, diff_id));
                }
                return Ok(Resolved {
                    config,
                    manifest_digest: Some(top),
                    layers,
                    names,
                });
            }
        }
    }
    Err(bad("index.json", "indexes nested too deep"))
}

/// The names an archive gives the image of an index entry: newer Docker's
/// `RepoTags` in `manifest.json` beside the layout, else the full name
/// containerd and Docker annotate, else `org.opencontainers.image.ref.name`
/// when it is a full `name:tag` reference. A bare `ref.name` is a tag
/// alone (`skopeo copy … oci:dir:latest`), with no repository to put it on,
/// so it names nothing.
fn archive_names(contents: &Contents, entry: &oci::Descriptor) -> Vec<String> {
    if let Some(tags) = contents
        .json
        .get("manifest.json")
        .and_then(|b| serde_json::from_slice::<Vec<DockerEntry>>(b).ok())
        .and_then(|entries| match entries.as_slice() {
            [only] => only.repo_tags.clone(),
            _ => None,
        })
        .filter(|tags| !tags.is_empty())
    {
        return tags;
    }
    if let Some(name) = entry.annotations.get(CONTAINERD_NAME) {
        return vec![name.clone()];
    }
    match entry.annotations.get(REF_NAME) {
        Some(name) if name.contains(':') || name.contains('/') => vec![name.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
