//! The image store: read-only root filesystems under `<images_dir>/<name>/rootfs`,
//! each described by a `manifest.json` written by the image's build recipe
//! (`scripts/build_image.sh` with `images/<name>/recipe.txt`). Besides names, a manifest carries what every
//! sandbox of the image gets: a default environment and services to start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ImageError;

/// What `manifest.json` says about an image.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    /// Canonical name, e.g. `alcove/debian`.
    pub name: String,
    /// Other names that select this image (`default`, `debian`, …).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Hash of the recipe the rootfs was built from.
    #[serde(default)]
    pub recipe_sha256: Option<String>,
    /// Environment of every process in a sandbox of this image (a sandbox's
    /// secrets of the same name win).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Programs started when a sandbox of this image boots (not when it is
    /// resumed or restored from memory: those keep theirs running).
    #[serde(default)]
    pub services: Vec<ImageService>,
}

/// A program an image starts in each of its sandboxes at boot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageService {
    /// Name, unique in the image (the process is started under this name).
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
}

/// A resolved image.
#[derive(Debug, Clone)]
pub struct Image {
    /// Canonical name.
    pub name: String,
    /// Read-only root filesystem (the overlay's lower dir).
    pub rootfs: PathBuf,
    /// Default environment of every process (sorted by name).
    pub env: Vec<(String, String)>,
    /// Programs started at boot.
    pub services: Vec<ImageService>,
}

/// Looks images up by name or alias in one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// A store rooted at `dir` (one sub-directory per image).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory images live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All images with a readable manifest and a rootfs.
    pub fn list(&self) -> Vec<(ImageManifest, Image)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut images: Vec<_> = entries
            .flatten()
            .filter_map(|entry| load(&entry.path()).ok())
            .collect();
        images.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        images
    }

    /// Resolves a name or alias (`None` = the image aliased `default`).
    pub fn resolve(&self, name: Option<&str>) -> Result<Image, ImageError> {
        let wanted = name.unwrap_or("default");
        self.list()
            .into_iter()
            .find(|(manifest, _)| {
                manifest.name == wanted || manifest.aliases.iter().any(|a| a == wanted)
            })
            .map(|(_, image)| image)
            .ok_or_else(|| ImageError::NotFound(wanted.to_string()))
    }
}

fn load(dir: &Path) -> Result<(ImageManifest, Image), ImageError> {
    let path = dir.join("manifest.json");
    let bad = |reason: String| ImageError::BadManifest {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let manifest: ImageManifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let rootfs = dir.join("rootfs");
    if !rootfs.is_dir() {
        return Err(bad("rootfs directory missing".into()));
    }
    check_metadata(&manifest).map_err(bad)?;
    let image = Image {
        name: manifest.name.clone(),
        rootfs,
        env: manifest
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        services: manifest.services.clone(),
    };
    Ok((manifest, image))
}

/// Refuses metadata that could not become an environment or a process.
fn check_metadata(m: &ImageManifest) -> Result<(), String> {
    for (key, value) in &m.env {
        let name_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok || value.contains('\0') {
            return Err(format!("env {key:?} is not a valid environment variable"));
        }
    }
    let mut names = std::collections::HashSet::new();
    for service in &m.services {
        if service.name.is_empty() || !names.insert(service.name.as_str()) {
            return Err(format!(
                "service name {:?} is empty or repeated",
                service.name
            ));
        }
        if service.command.first().is_none_or(String::is_empty)
            || service.command.iter().any(|a| a.contains('\0'))
        {
            return Err(format!("service {:?} has no valid command", service.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_image(root: &Path, dir: &str, manifest: &str) {
        let d = root.join(dir);
        std::fs::create_dir_all(d.join("rootfs")).expect("mkdir");
        std::fs::write(d.join("manifest.json"), manifest).expect("write");
    }

    #[test]
    fn resolves_by_name_and_alias_and_default() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_image(
            tmp.path(),
            "debian",
            r#"{"name":"alcove/debian","aliases":["default","debian"]}"#,
        );
        fake_image(tmp.path(), "other", r#"{"name":"alcove/other"}"#);
        let store = ImageStore::new(tmp.path());
        assert_eq!(store.resolve(None).expect("default").name, "alcove/debian");
        assert_eq!(
            store.resolve(Some("debian")).expect("alias").name,
            "alcove/debian"
        );
        assert_eq!(
            store.resolve(Some("alcove/other")).expect("name").name,
            "alcove/other"
        );
        assert!(matches!(
            store.resolve(Some("nope")),
            Err(ImageError::NotFound(n)) if n == "nope"
        ));
    }

    #[test]
    fn carries_the_environment_and_services_of_the_manifest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_image(
            tmp.path(),
            "desktop",
            r#"{"name":"alcove/desktop","env":{"DISPLAY":":1","A":"b"},
                "services":[{"name":"desktop","command":["/usr/local/bin/alcove-desktop"]}]}"#,
        );
        let image = ImageStore::new(tmp.path())
            .resolve(Some("alcove/desktop"))
            .expect("image");
        assert_eq!(
            image.env,
            vec![("A".into(), "b".into()), ("DISPLAY".into(), ":1".into())]
        );
        assert_eq!(image.services.len(), 1);
        assert_eq!(image.services[0].command, ["/usr/local/bin/alcove-desktop"]);
    }

    #[test]
    fn refuses_metadata_that_cannot_run() {
        for manifest in [
            r#"{"name":"x/a","env":{"1BAD":"v"}}"#,
            r#"{"name":"x/a","env":{"A=B":"v"}}"#,
            r#"{"name":"x/a","services":[{"name":"s","command":[]}]}"#,
            r#"{"name":"x/a","services":[{"name":"s","command":["a"]},{"name":"s","command":["b"]}]}"#,
        ] {
            let tmp = tempfile::tempdir().expect("tempdir");
            fake_image(tmp.path(), "a", manifest);
            let store = ImageStore::new(tmp.path());
            assert!(store.list().is_empty(), "{manifest}");
            assert!(matches!(
                load(&tmp.path().join("a")),
                Err(ImageError::BadManifest { .. })
            ));
        }
    }

    #[test]
    fn skips_directories_without_rootfs_or_manifest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("half")).expect("mkdir");
        std::fs::write(
            tmp.path().join("half/manifest.json"),
            r#"{"name":"alcove/half"}"#,
        )
        .expect("write");
        let store = ImageStore::new(tmp.path());
        assert!(store.list().is_empty());
    }
}
