//! The registry documents a pull or an import reads: image manifests and
//! indexes (OCI and Docker schema 2 alike) and the one part of an image
//! config the store checks here, `rootfs.diff_ids`.
//!
//! Only the fields used are modelled, with plain strings for media types, so
//! Docker's and OCI's spellings parse the same way and an unknown media type
//! reaches a check that can name it, instead of failing inside serde.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};

/// Manifests, indexes and configs are small; anything larger is refused
/// before it is parsed (a registry or archive cannot make us buffer more).
pub(crate) const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// Docker's schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list.
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media types a registry may answer a manifest request with.
pub(crate) const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// An uncompressed OCI layer (also the form of a `docker save` layer).
pub(crate) const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Config media types of container images (artifacts such as charts or wasm
/// modules have others and are refused).
const CONFIG_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Layer media types the unpacker reads: tar, gzip or zstd, in OCI's and
/// Docker's spellings, including the non-distributable ("foreign") ones,
/// whose blobs a registry or an archive may still carry.
const LAYER_MEDIA_TYPES: [&str; 9] = [
    OCI_LAYER_TAR,
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// The platform images are chosen for.
pub(crate) const WANTED_OS: &str = "linux";
/// The architecture images are chosen for.
pub(crate) const WANTED_ARCH: &str = "amd64";

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    /// Media type (empty when absent, as in some hand-made layouts).
    #[serde(default)]
    pub media_type: String,
    /// Digest, validated to be sha256.
    pub digest: Digest,
    /// Bytes.
    pub size: u64,
    /// Platform (index entries only).
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Annotations (index entries: `org.opencontainers.image.ref.name`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Platform {
    /// CPU architecture (`amd64`, `arm64`, …).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`, `windows`, …).
    #[serde(default)]
    pub os: String,
    /// Architecture variant (`v8`), shown in errors only.
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    fn describe(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// A manifest or an index, told apart by media type or by shape.
#[derive(Debug)]
pub(crate) enum Document {
    /// An image manifest.
    Manifest(Manifest),
    /// An index or manifest list.
    Index(Index),
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    /// Must be 2.
    pub schema_version: u32,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An index or manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    /// Must be 2.
    pub schema_version: u32,
    /// Entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// The fields of both kinds that tell them apart.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// The part of an image config checked against the manifest.
#[derive(Debug, Deserialize)]
struct ConfigProbe {
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

fn bad(what: &str, reason: impl Into<String>) -> ImageStoreError {
    ImageStoreError::BadImage {
        what: what.to_string(),
        reason: reason.into(),
    }
}

/// Parses a manifest or index named `what` (for errors).
pub(crate) fn parse_document(bytes: &[u8], what: &str) -> Result<Document> {
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ImageStoreError::TooLarge {
            what: what.to_string(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| bad(what, e.to_string()))?;
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        // OCI makes mediaType optional; a document without one (or with one
        // of an older writer) is judged by its shape.
        Some(other) if probe.manifests.is_none() && probe.config.is_none() => {
            return Err(ImageStoreError::UnsupportedMediaType(other.to_string()));
        }
        _ => probe.manifests.is_some() && probe.config.is_none(),
    };
    if is_index {
        let index: Index = serde_json::from_slice(bytes).map_err(|e| bad(what, e.to_string()))?;
        if index.schema_version != 2 {
            return Err(bad(what, format!("schemaVersion {}", index.schema_version)));
        }
        Ok(Document::Index(index))
    } else {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(what, e.to_string()))?;
        if manifest.schema_version != 2 {
            return Err(bad(
                what,
                format!("schemaVersion {} (only 2 is read)", manifest.schema_version),
            ));
        }
        Ok(Document::Manifest(manifest))
    }
}

/// Checks that `manifest` describes a container image this store can unpack:
/// a known config type and only tar, gzip or zstd layers.
pub(crate) fn check_manifest(manifest: &Manifest) -> Result<()> {
    let config_type = manifest.config.media_type.as_str();
    // An empty config type only occurs in hand-made layouts; the config is
    // still checked when it is parsed.
    if !config_type.is_empty() && !CONFIG_MEDIA_TYPES.contains(&config_type) {
        return Err(ImageStoreError::UnsupportedMediaType(
            config_type.to_string(),
        ));
    }
    if manifest.config.size > MAX_DOCUMENT_BYTES {
        return Err(ImageStoreError::TooLarge {
            what: format!("config {}", manifest.config.digest),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    for layer in &manifest.layers {
        if !LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str()) {
            return Err(ImageStoreError::UnsupportedMediaType(
                layer.media_type.clone(),
            ));
        }
    }
    Ok(())
}

/// The `rootfs.diff_ids` of a config, which must be as many as `layers`
/// (they pair up by position).
pub(crate) fn diff_ids(config: &[u8], what: &str, layers: usize) -> Result<Vec<Digest>> {
    let probe: ConfigProbe =
        serde_json::from_slice(config).map_err(|e| bad(what, e.to_string()))?;
    let ids = probe.rootfs.diff_ids;
    if ids.len() != layers {
        return Err(bad(
            what,
            format!(
                "rootfs.diff_ids has {} entries for {layers} layers",
                ids.len()
            ),
        ));
    }
    Ok(ids)
}

/// Picks the `linux/amd64` entry of an index. An index whose entries carry
/// no platform at all and hold exactly one image (an OCI layout of one
/// image) yields that one. Otherwise the error lists what is offered.
pub(crate) fn choose_platform<'a>(index: &'a Index, what: &str) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        // Attestations and signatures ride in indexes as manifests of an
        // `unknown/unknown` platform; they are never the image.
        .filter(|d| {
            d.platform
                .as_ref()
                .is_none_or(|p| p.os != "unknown" && p.architecture != "unknown")
        })
        .collect();
    if let Some(found) = candidates.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == WANTED_OS && p.architecture == WANTED_ARCH)
    }) {
        return Ok(found);
    }
    if let [only] = candidates.as_slice()
        && only.platform.is_none()
    {
        return Ok(only);
    }
    let offered: Vec<String> = candidates
        .iter()
        .map(|d| {
            d.platform
                .as_ref()
                .map_or_else(|| "unspecified".to_string(), Platform::describe)
        })
        .collect();
    Err(bad(
        what,
        format!(
            "no {WANTED_OS}/{WANTED_ARCH} image; offered: {}",
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, byte: u8) -> serde_json::Value {
        serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": Digest::of(&[byte]).to_string(),
            "size": 1,
            "platform": {"os": os, "architecture": arch},
        })
    }

    fn index(entries: Vec<serde_json::Value>) -> Index {
        let doc =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        match parse_document(doc.to_string().as_bytes(), "index").expect("parse") {
            Document::Index(i) => i,
            Document::Manifest(_) => panic!("an index parsed as a manifest"),
        }
    }

    #[test]
    fn chooses_linux_amd64_from_an_index() {
        let i = index(vec![
            entry("linux", "arm64", 1),
            entry("unknown", "unknown", 2),
            entry("linux", "amd64", 3),
        ]);
        assert_eq!(
            choose_platform(&i, "index").expect("choose").digest,
            Digest::of(&[3])
        );
    }

    #[test]
    fn no_matching_platform_lists_the_offered_ones() {
        let i = index(vec![
            entry("linux", "arm64", 1),
            entry("windows", "amd64", 2),
            entry("unknown", "unknown", 3),
        ]);
        let err = choose_platform(&i, "index")
            .expect_err("no amd64")
            .to_string();
        assert!(err.contains("linux/arm64, windows/amd64"), "{err}");
        assert!(!err.contains("unknown"), "{err}");
    }

    #[test]
    fn a_single_entry_without_platform_is_taken() {
        let mut e = entry("linux", "amd64", 1);
        e.as_object_mut().expect("object").remove("platform");
        let i = index(vec![e.clone()]);
        assert!(choose_platform(&i, "index").is_ok());
        let two = index(vec![e.clone(), e]);
        assert!(choose_platform(&two, "index").is_err());
    }

    #[test]
    fn tells_manifests_from_indexes_and_refuses_other_types() {
        let d = Digest::of(b"c").to_string();
        let docker = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d, "size": 1},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d, "size": 1}],
        });
        match parse_document(docker.to_string().as_bytes(), "m").expect("parse") {
            Document::Manifest(m) => check_manifest(&m).expect("supported"),
            Document::Index(_) => panic!("manifest read as an index"),
        }
        let artifact = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": d, "size": 1},
            "layers": [],
        });
        let Document::Manifest(m) =
            parse_document(artifact.to_string().as_bytes(), "m").expect("parse")
        else {
            panic!("manifest read as an index")
        };
        assert!(matches!(
            check_manifest(&m),
            Err(ImageStoreError::UnsupportedMediaType(_))
        ));
        let v1 = serde_json::json!({"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"});
        assert!(matches!(
            parse_document(v1.to_string().as_bytes(), "m"),
            Err(ImageStoreError::UnsupportedMediaType(_))
        ));
    }
}
