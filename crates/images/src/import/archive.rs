//! Reading an image archive's tar stream once, front to back.
//!
//! Every name in the archive is untrusted. Only the names an archive of
//! either kind has are used, and none of them ever becomes a path on disk:
//! blobs go to the store by digest, small JSON documents stay in memory.
//! A name with `..`, an absolute name, a link (but for the one form older
//! `docker save` uses between layer files, which only aliases one name to
//! another here) or a special file is refused.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};
use crate::pull::oci::MAX_DOCUMENT_BYTES;
use crate::store::ImageStore;

/// What an archive held.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// `oci-layout`, `index.json`, `manifest.json`, `<hex>.json` (a
    /// `docker save` config), by name.
    pub json: HashMap<String, Vec<u8>>,
    /// Digests of the `blobs/sha256/<hex>` files (all stored, verified).
    pub blobs: HashSet<Digest>,
    /// `<id>/layer.tar` files of `docker save`: their stored blob and size.
    pub layer_tars: HashMap<String, (Digest, u64)>,
    /// `<id>/layer.tar` symlinks of older `docker save` (a layer listed
    /// twice): the name they stand for.
    pub aliases: HashMap<String, String>,
}

impl Contents {
    /// The blob of a `docker save` layer file, following an alias once.
    pub(crate) fn layer_tar(&self, name: &str) -> Option<&(Digest, u64)> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.layer_tars.get(name)
    }
}

/// What an accepted name is.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// A small JSON document kept in memory.
    Json,
    /// `blobs/sha256/<hex>`.
    Blob(Digest),
    /// `<id>/layer.tar`.
    LayerTar,
    /// A directory or a file of no use here (`<id>/json`, `<id>/VERSION`,
    /// `repositories`, anything a newer writer adds): read past.
    Skip,
}

fn refuse(name: &str, reason: &str) -> ImageStoreError {
    ImageStoreError::BadImage {
        what: "archive".to_string(),
        reason: format!("entry {name:?}: {reason}"),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The name's components, without a leading `./` or a trailing `/`;
/// refuses absolute names, `..`, `.` and empty components.
fn components(name: &str) -> Result<Vec<&str>> {
    if name.starts_with('/') {
        return Err(refuse(name, "absolute names are refused"));
    }
    let mut rest = name;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest == "." {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    for part in &parts {
        match *part {
            ".." => return Err(refuse(name, "names with .. are refused")),
            "" | "." => return Err(refuse(name, "malformed name")),
            _ => {}
        }
    }
    Ok(parts)
}

/// Classifies a (safe) name.
fn classify(name: &str, is_dir: bool) -> Result<(String, Kind)> {
    let parts = components(name)?;
    let clean = parts.join("/");
    if is_dir {
        return Ok((clean, Kind::Skip));
    }
    let kind = match parts.as_slice() {
        ["oci-layout" | "index.json" | "manifest.json"] => Kind::Json,
        [file] if file.strip_suffix(".json").is_some_and(is_hex64) => Kind::Json,
        ["blobs", "sha256", hex] => Kind::Blob(
            format!("sha256:{hex}")
                .parse()
                .map_err(|_| refuse(name, "a blob name must be 64 lowercase hex digits"))?,
        ),
        ["blobs", ..] => return Err(refuse(name, "only sha256 blobs are read")),
        [_, "layer.tar"] => Kind::LayerTar,
        // skopeo's docker-archive keeps layers at the top, `<digest hex>.tar`.
        [file] if file.ends_with(".tar") => Kind::LayerTar,
        _ => Kind::Skip,
    };
    Ok((clean, kind))
}

/// The name a `docker save` layer symlink stands for: it must be
/// `<id>/layer.tar -> ../<other id>/layer.tar` (older Docker) or
/// `<id>/layer.tar -> ../<digest hex>.tar` (skopeo's docker-archive).
fn alias_target(name: &str, target: &str) -> Result<String> {
    match target.split('/').collect::<Vec<_>>().as_slice() {
        ["..", id, "layer.tar"] if !id.is_empty() && *id != "." && *id != ".." => {
            Ok(format!("{id}/layer.tar"))
        }
        ["..", file]
            if file.len() > ".tar".len() && file.ends_with(".tar") && !file.starts_with('.') =>
        {
            Ok((*file).to_string())
        }
        _ => Err(refuse(name, "links are refused")),
    }
}

/// Reads the whole tar stream, storing blobs as they come.
pub(crate) fn read_entries(
    store: &ImageStore,
    reader: impl Read,
    max_blob_bytes: u64,
) -> Result<Contents> {
    let mut archive = tar::Archive::new(reader);
    let mut contents = Contents::default();
    let bad_tar = |e: io::Error| ImageStoreError::BadImage {
        what: "archive".to_string(),
        reason: format!("not a readable tar stream: {e}"),
    };
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let raw = entry.path_bytes();
        let name = std::str::from_utf8(&raw)
            .map_err(|_| refuse(&String::from_utf8_lossy(&raw), "names must be UTF-8"))?
            .to_string();
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        let (clean, kind) = classify(&name, entry_type.is_dir())?;
        if entry_type.is_dir() {
            continue;
        }
        if entry_type.is_symlink() && kind == Kind::LayerTar {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            contents
                .aliases
                .insert(clean, alias_target(&name, &target)?);
            continue;
        }
        if !entry_type.is_file() {
            return Err(refuse(&name, "only regular files and directories are read"));
        }
        let size = entry.size();
        match kind {
            Kind::Skip => {
                tracing::debug!(entry = %clean, "import: entry not used");
            }
            Kind::Json => {
                if size > MAX_DOCUMENT_BYTES {
                    return Err(ImageStoreError::TooLarge {
                        what: format!("archive entry {clean}"),
                        limit: MAX_DOCUMENT_BYTES,
                    });
                }
                let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                entry.read_to_end(&mut bytes).map_err(bad_tar)?;
                if contents.json.insert(clean, bytes).is_some() {
                    return Err(refuse(&name, "appears twice"));
                }
            }
            Kind::Blob(digest) => {
                if size > max_blob_bytes {
                    return Err(ImageStoreError::TooLarge {
                        what: format!("blob {digest}"),
                        limit: max_blob_bytes,
                    });
                }
                // A blob already stored is read past, not written again: a
                // re-import costs no disk writes for it.
                if !store.has_blob(&digest) {
                    let mut writer =
                        store.blob_writer(Some((digest.clone(), size)), max_blob_bytes)?;
                    io::copy(&mut entry, &mut writer)
                        .map_err(ImageStoreError::io("write blob", store.blob_path(&digest)))?;
                    writer.commit()?;
                }
                contents.blobs.insert(digest);
            }
            Kind::LayerTar => {
                if size > max_blob_bytes {
                    return Err(ImageStoreError::TooLarge {
                        what: format!("archive entry {clean}"),
                        limit: max_blob_bytes,
                    });
                }
                let mut writer = store.blob_writer(None, max_blob_bytes)?;
                io::copy(&mut entry, &mut writer)
                    .map_err(ImageStoreError::io("write blob", store.root().join("tmp")))?;
                let stored = writer.commit()?;
                contents.layer_tars.insert(clean, stored);
            }
        }
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_expected_names_are_accepted() {
        let hex = "a".repeat(64);
        assert_eq!(classify("index.json", false).expect("ok").1, Kind::Json);
        assert_eq!(classify("./oci-layout", false).expect("ok").1, Kind::Json);
        assert_eq!(
            classify(&format!("{hex}.json"), false).expect("ok").1,
            Kind::Json
        );
        assert!(matches!(
            classify(&format!("blobs/sha256/{hex}"), false)
                .expect("ok")
                .1,
            Kind::Blob(_)
        ));
        assert_eq!(
            classify("0123abc/layer.tar", false).expect("ok").1,
            Kind::LayerTar
        );
        assert_eq!(classify("0123abc/json", false).expect("ok").1, Kind::Skip);
        assert_eq!(classify("blobs/", true).expect("ok").1, Kind::Skip);
        for bad in [
            "../index.json",
            "/index.json",
            "a/../index.json",
            "blobs/sha256/../../x",
            "blobs/sha256/ABC",
            "blobs/sha512/aa",
            "a//layer.tar",
        ] {
            assert!(classify(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_docker_layer_alias_form_of_link_is_accepted() {
        assert_eq!(
            alias_target("b/layer.tar", "../a/layer.tar").expect("alias"),
            "a/layer.tar"
        );
        for bad in [
            "/etc/passwd",
            "../../etc/passwd",
            "../../a/layer.tar",
            "a/layer.tar",
            "../a/other",
        ] {
            assert!(alias_target("b/layer.tar", bad).is_err(), "{bad}");
        }
    }
}
