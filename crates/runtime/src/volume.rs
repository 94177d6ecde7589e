//! Persistent volumes: ext4 images that outlive sandboxes and are mounted into
//! them, at boot or live.
//!
//! A volume is a sparse ext4 image of its size on a loop device (the kernel
//! enforces the size), stored like a writable layer with the sandbox-relative
//! ids (root is 0 on disk). While any sandbox uses it, it is mounted once on
//! the host, as is; each sandbox gets an idmapped view of that mount for its
//! own uid range, which runc (at boot and restore) or [`crate::volume_ns`]
//! (live) mounts inside the sandbox:
//!
//! ```text
//! volumes/<key>/disk.img               ext4 image, 0600
//!               mnt/                   the image, mounted as is (host view, root only)
//! sandboxes/<id>/vols/<key>/           mnt/, idmapped for the sandbox (nosuid,nodev[,ro])
//!          in the sandbox: <mount_path> a clone of vols/<key> (nosuid,nodev[,ro])
//! ```
//!
//! Its loop device is made as a writable layer's is ([`crate::loopdev`]), with
//! autoclear, so it goes away with the last mount of the file system, wherever
//! that mount was.
//!
//! Making the host mount and a view from it is one step under the node's
//! `volume_mounts` lock, and so is releasing host mounts no view uses. Without
//! it, two sandboxes attaching one volume at once could each mount the image,
//! two ext4 instances writing one file; and a release between a host mount
//! and its view would leave the view a clone of the empty directory beneath.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, RuntimeError};
use crate::idmap::IdRange;
use crate::layer::{self, is_mountpoint, mounts_under, unmount_all};
use crate::node::Node;
use crate::sandbox_id::SandboxId;
use crate::{blocking, userns, volume_ns};

/// Where the views of a sandbox's volumes are, under its directory.
pub const VIEWS_DIR: &str = "vols";

/// One volume attached to a sandbox, as the node needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's directory name under `volumes/` (lower-case hex).
    pub key: String,
    /// Absolute, normalized path inside the sandbox.
    pub mount_path: String,
    /// Whether the sandbox may only read it.
    pub read_only: bool,
}

/// A sandbox-side view of a volume, for the bundle: a bind mount of `source`
/// at `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeBind {
    /// The idmapped view on the host.
    pub source: PathBuf,
    /// Path inside the sandbox.
    pub destination: String,
    /// Read-only bind.
    pub read_only: bool,
}

/// Checks that `key` is a plain directory name (lower-case hex, 1-64 chars).
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Config(format!("bad volume key {key:?}")))
    }
}

/// The CRIU option that names a live-attached volume mount for a dump, the
/// way runc names the bind mounts of `config.json` (the mount point is the
/// key, and the name a restore maps back to the bind mount's source).
fn criu_external(mount_path: &str) -> String {
    format!("external mnt[{mount_path}]:{mount_path}")
}

/// The mount point a line written by [`criu_external`] names (`external mnt[P]:P`).
fn external_mount_point(line: &str) -> Option<String> {
    let rest = line.strip_prefix("external mnt[")?;
    // The path is there twice around `]:`, and may itself hold `]:`.
    let n = rest.len().checked_sub(2)? / 2;
    (rest.get(n..n + 2)? == "]:" && rest[..n] == rest[n + 2..]).then(|| rest[..n].to_string())
}

impl Node {
    /// The directory of volume `key`.
    fn volume_dir(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.cfg.data_dir.join("volumes").join(key))
    }

    fn volume_view(&self, id: &str, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.sandbox_dir(id).join(VIEWS_DIR).join(key))
    }

    /// Creates volume `key`: a sparse ext4 image of `size_mb` MiB. The host
    /// must have room for it next to what sandboxes may still write (as for
    /// a new layer). On failure nothing is left.
    pub async fn create_volume(&self, key: &str, size_mb: u64) -> Result<()> {
        let dir = self.volume_dir(key)?;
        self.admit_disk(size_mb)?;
        if dir.exists() {
            return Err(RuntimeError::Config(format!(
                "volume directory {} exists already",
                dir.display()
            )));
        }
        let made = layer::Layer::new(&dir)
            .create_disk(size_mb, self.runc.namespace())
            .await;
        if made.is_err() {
            let _ = blocking::remove_dir_all(dir).await;
        }
        made
    }

    /// Deletes volume `key` and its data. Refused while any sandbox on this
    /// host has it mounted.
    pub async fn delete_volume(&self, key: &str) -> Result<()> {
        let dir = self.volume_dir(key)?;
        {
            let _held = self
                .volume_mounts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if self.volume_in_use(key) {
                return Err(RuntimeError::Busy(format!("volume {key} is mounted")));
            }
            unmount_all(&dir.join("mnt"))?;
            // The last mount gone, the kernel frees the loop device; one still holding the
            // image is a mount somewhere the node does not know of, still writing it.
            if crate::loopdev::is_attached(&dir.join("disk.img")) {
                return Err(RuntimeError::Busy(format!(
                    "volume {key} is still mounted where the server did not mount it; it can \
                     be deleted once the sandbox holding it ends"
                )));
            }
        }
        let removed = blocking::run(move || layer::remove_unmounted_tree(&dir)).await?;
        self.disk_promises.forget();
        removed
    }

    /// MiB the volume's files take (from its file system while mounted, else
    /// from the blocks its image has allocated).
    pub fn volume_used_mb(&self, key: &str) -> Option<u64> {
        let dir = self.volume_dir(key).ok()?;
        let mnt = dir.join("mnt");
        // Unmounted, `mnt` is a directory of the host's file system: its use is the host's.
        if is_mountpoint(&mnt)
            && let Some((used, _)) = crate::usage::disk_use(&mnt)
        {
            return Some(used / (1024 * 1024));
        }
        let meta = std::fs::metadata(dir.join("disk.img")).ok()?;
        Some(meta.blocks() * 512 / (1024 * 1024))
    }

    /// Whether any sandbox's view of volume `key` is mounted.
    fn volume_in_use(&self, key: &str) -> bool {
        let sandboxes = self.cfg.data_dir.join("sandboxes");
        mounts_under(&sandboxes).iter().any(|m| {
            m.file_name().is_some_and(|n| n == key)
                && m.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == VIEWS_DIR)
        })
    }

    /// Mounts the volume in `dir` on the host unless it is (once, shared by
    /// every sandbox using it); its mount point. The caller holds
    /// `volume_mounts`.
    fn mount_volume_host(dir: &Path) -> Result<PathBuf> {
        let image = dir.join("disk.img");
        if !image.is_file() {
            let key = dir.file_name().unwrap_or_default().to_string_lossy();
            return Err(RuntimeError::Config(format!("volume {key} has no image")));
        }
        let mnt = dir.join("mnt");
        // Only an empty mount point is made private: made while mounted, the mode would land
        // on the volume's own root directory, which belongs to its users.
        if !is_mountpoint(&mnt) {
            // Not mounted here, but a loop device still holds the image: a mount the node
            // lost track of lives on somewhere. A second one would be a second ext4
            // instance writing the same image.
            if crate::loopdev::is_attached(&image) {
                let key = dir.file_name().unwrap_or_default().to_string_lossy();
                return Err(RuntimeError::Busy(format!(
                    "volume {key} is still mounted where the server did not mount it; it is \
                     freed when the sandbox holding it ends"
                )));
            }
            layer::create_private_dir(&mnt)?;
            crate::loopdev::mount_image_now(&image, &mnt)?;
        }
        Ok(mnt)
    }

    /// Unmounts the host mounts of volumes no sandbox has a view of (their
    /// loop devices go with them); returns the keys unmounted.
    pub fn release_unused_volumes(&self) -> Vec<String> {
        let _held = self
            .volume_mounts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let root = self.cfg.data_dir.join("volumes");
        let mut released = Vec::new();
        // Each volume's host mount is `<root>/<key>/mnt`: found with one `statx` per
        // volume, not a read of the host's whole mount table at every delete.
        let mounted: Vec<PathBuf> = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("mnt"))
            .filter(|mnt| is_mountpoint(mnt))
            .collect();
        for mnt in mounted {
            let Some(key) = mnt
                .parent()
                .and_then(Path::file_name)
                .map(|k| k.to_string_lossy().into_owned())
            else {
                continue;
            };
            if mnt.file_name().is_some_and(|n| n == "mnt") && !self.volume_in_use(&key) {
                match unmount_all(&mnt) {
                    Ok(()) => released.push(key),
                    Err(e) => tracing::warn!(volume = %key, error = %e, "unmounting a volume"),
                }
            }
        }
        released
    }

    /// Mounts the sandbox's idmapped view of volume `key` (for `range`).
    async fn mount_view(
        &self,
        id: &str,
        key: &str,
        range: IdRange,
        read_only: bool,
    ) -> Result<PathBuf> {
        let dir = self.volume_dir(key)?;
        let view = self.volume_view(id, key)?;
        let target = view.clone();
        let lock = Arc::clone(&self.volume_mounts);
        blocking::run(move || -> Result<()> {
            let _held = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let host = Self::mount_volume_host(&dir)?;
            if let Some(parent) = target.parent() {
                // Searchable by the sandbox's root: a restore (CRIU) opens the view from
                // inside the sandbox's user namespace. Nothing here is listable.
                layer::create_private_dir(parent)?;
                std::fs::set_permissions(
                    parent,
                    std::os::unix::fs::PermissionsExt::from_mode(0o711),
                )
                .map_err(RuntimeError::io("setting the mode of", parent))?;
            }
            // Already mounted (a recovery, a second attach): the view is the volume's root,
            // which a chmod would change for everyone, and a read-only one would refuse.
            if is_mountpoint(&target) {
                return Ok(());
            }
            layer::create_private_dir(&target)?;
            let ns = userns::mapping_namespace(range)?;
            userns::idmapped_clone(&host, &target, &ns, read_only)
        })
        .await??;
        Ok(view)
    }

    /// Mounts the views of `volumes` for a sandbox about to boot in `range`;
    /// returns the binds its bundle lists.
    pub(crate) async fn prepare_volume_views(
        &self,
        id: &str,
        volumes: &[VolumeMount],
        range: IdRange,
    ) -> Result<Vec<VolumeBind>> {
        let mut binds = Vec::new();
        for v in volumes {
            let source = self.mount_view(id, &v.key, range, v.read_only).await?;
            binds.push(VolumeBind {
                source,
                destination: v.mount_path.clone(),
                read_only: v.read_only,
            });
        }
        Ok(binds)
    }

    /// The host pid of a running sandbox's init and its uid range.
    async fn init_of(&self, id: &SandboxId) -> Result<(i32, IdRange)> {
        let range = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(id.as_str()).map(|h| h.range))
            .ok_or_else(|| RuntimeError::Config(format!("sandbox {id} is not running here")))?;
        let state = self
            .runc
            .state(id)
            .await?
            .ok_or_else(|| RuntimeError::Config(format!("sandbox {id} has no container")))?;
        let pid = i32::try_from(state.pid)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| RuntimeError::Config(format!("sandbox {id} has no init process")))?;
        Ok((pid, range))
    }

    /// Mounts a volume into a running sandbox without stopping it. On failure
    /// nothing of it stays mounted.
    pub async fn attach_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<()> {
        let (pid, range) = self.init_of(id).await?;
        let view = self
            .mount_view(id, &mount.key, range, mount.read_only)
            .await?;
        let (path, ro) = (mount.mount_path.clone(), mount.read_only);
        let inside = if volume_ns::is_mounted_in(pid, &path, dev_of(&view)?) {
            Ok(())
        } else {
            let view = view.clone();
            blocking::run(move || volume_ns::attach(pid, range.first, &view, &path, ro)).await?
        };
        if let Err(e) = inside {
            let _ = unmount_all(&view);
            self.release_unused_volumes();
            return Err(e);
        }
        self.set_criu_external(id, &mount.mount_path, true)
    }

    /// Unmounts a volume from a running sandbox. Files in use on it refuse
    /// this ([`RuntimeError::Busy`]) and leave it mounted.
    pub async fn detach_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<()> {
        let view = self.volume_view(id, &mount.key)?;
        if let Ok((pid, _)) = self.init_of(id).await
            && is_mountpoint(&view)
        {
            let meta = std::fs::metadata(&view).map_err(RuntimeError::io("inspecting", &view))?;
            detach_everywhere(pid, (meta.dev(), meta.ino())).await?;
        }
        unmount_all(&view)?;
        let _ = std::fs::remove_dir(&view);
        self.release_unused_volumes();
        self.set_criu_external(id, &mount.mount_path, false)
    }

    /// Mounts whatever of `mounts` a running sandbox lacks (an attach that a
    /// crash of the server interrupted); returns those that could not be.
    pub async fn ensure_volumes(
        &self,
        id: &SandboxId,
        mounts: &[VolumeMount],
    ) -> Vec<(VolumeMount, RuntimeError)> {
        let mut failed = Vec::new();
        for m in mounts {
            if let Err(e) = self.attach_volume(id, m).await {
                failed.push((m.clone(), e));
            }
        }
        failed
    }

    /// Checks, while the sandbox is frozen for a dump, that each of its volumes is mounted
    /// only where it was made: at a mount point of its `config.json` or one `criu.conf`
    /// names. CRIU dumps a bind mount by the path it was given, and one that a rename of a
    /// directory above it carried elsewhere fails the dump with nothing the user can read;
    /// this says what to do instead ([`RuntimeError::Refused`]).
    pub(crate) async fn check_volumes_in_place(&self, id: &SandboxId) -> Result<()> {
        let views = self.sandbox_dir(id).join(VIEWS_DIR);
        let mounted: Vec<PathBuf> = std::fs::read_dir(&views)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|v| is_mountpoint(v))
            .collect();
        if mounted.is_empty() {
            return Ok(());
        }
        let (pid, _) = self.init_of(id).await?;
        let expected = self.dumped_mount_points(id);
        for view in mounted {
            let moved: Vec<String> = volume_ns::mount_points_of(pid, dev_of(&view)?)
                .into_iter()
                .filter(|point| !expected.iter().any(|e| e == point))
                .collect();
            if !moved.is_empty() {
                return Err(RuntimeError::Refused(format!(
                    "a volume was moved inside the sandbox to {} (a directory above its mount \
                     point was renamed), and a dump keeps mounts only where they were made; \
                     rename it back or detach the volume, then try again",
                    moved.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The mount points a dump of sandbox `id` names: those of its `config.json` (runc
    /// names its bind mounts) and those `criu.conf` adds for live-attached volumes.
    fn dumped_mount_points(&self, id: &str) -> Vec<String> {
        let dir = self.sandbox_dir(id);
        let mut points: Vec<String> = std::fs::read(dir.join("bundle/config.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|config| {
                config["mounts"].as_array().map(|mounts| {
                    mounts
                        .iter()
                        .filter_map(|m| m["destination"].as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default();
        if let Ok(text) = std::fs::read_to_string(dir.join("criu.conf")) {
            points.extend(text.lines().filter_map(external_mount_point));
        }
        points
    }

    /// Adds (or removes) the CRIU option naming a live-attached volume's mount
    /// in the sandbox's `criu.conf`, which runc hands CRIU on every dump: runc
    /// itself only names the bind mounts `config.json` had when the
    /// container started. A boot writes the file afresh (see
    /// [`Node::write_bundle`]), when the volumes are in `config.json`.
    fn set_criu_external(&self, id: &str, mount_path: &str, present: bool) -> Result<()> {
        let path = self.sandbox_dir(id).join("criu.conf");
        let text = std::fs::read_to_string(&path).map_err(RuntimeError::io("reading", &path))?;
        let line = criu_external(mount_path);
        let mut lines: Vec<&str> = text.lines().filter(|l| *l != line).collect();
        if present {
            lines.push(&line);
        }
        let mut out = lines.join("\n");
        out.push('\n');
        std::fs::write(&path, out).map_err(RuntimeError::io("writing", &path))
    }

    /// Removes the directories of volumes not in `known` (a create or delete
    /// cut short by a crash) and unmounts volumes nothing uses; returns what
    /// was removed, for the log.
    pub async fn sweep_volumes(&self, known: &[String]) -> Vec<String> {
        let mut swept: Vec<String> = self
            .release_unused_volumes()
            .into_iter()
            .map(|k| format!("mount of volume {k}"))
            .collect();
        let root = self.cfg.data_dir.join("volumes");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return swept;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if known.contains(&name) || self.volume_in_use(&name) {
                continue;
            }
            let path = entry.path();
            let _ = unmount_all(&path.join("mnt"));
            match blocking::run(move || layer::remove_unmounted_tree(&path)).await {
                Ok(Ok(())) => swept.push(format!("volume files {name}")),
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(volume = %name, error = %e, "removing leftover volume")
                }
            }
        }
        swept
    }
}

/// How often a detach looks for the volume's mounts again after one moved away
/// under it (a rename in the sandbox between the look and the unmount).
const DETACH_ROUNDS: usize = 4;

/// Unmounts every mount of the volume whose root is `expect` (`(st_dev,
/// st_ino)`) from the mount namespace of the sandbox whose init is `pid`: where
/// it was attached, and wherever renaming a directory above it has carried it.
/// A mount left behind while the server released the volume would be an ext4
/// instance writing its image beside the next sandbox's, and would outlive the
/// volume's deletion. Files in use refuse it ([`RuntimeError::Busy`]); so does a
/// sandbox that keeps moving the mount away.
async fn detach_everywhere(pid: i32, expect: (u64, u64)) -> Result<()> {
    for _ in 0..DETACH_ROUNDS {
        let points = volume_ns::mount_points_of(pid, expect.0);
        if points.is_empty() {
            return Ok(());
        }
        for point in points {
            match blocking::run(move || volume_ns::detach(pid, &point, expect)).await? {
                Ok(()) => {}
                Err(busy @ RuntimeError::Busy(_)) => return Err(busy),
                // Moved or renamed since mountinfo was read: look again.
                Err(e) => tracing::debug!(pid, error = %e, "a volume mount moved during a detach"),
            }
        }
    }
    let left = volume_ns::mount_points_of(pid, expect.0);
    if left.is_empty() {
        return Ok(());
    }
    Err(RuntimeError::Busy(format!(
        "the volume is still mounted in the sandbox at {}: the sandbox moved it (renaming a \
         directory above it) while it was being detached; detach again",
        left.join(", ")
    )))
}

/// The device of the file system mounted at `path`.
fn dev_of(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.dev())
        .map_err(RuntimeError::io("inspecting", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_hex_names() {
        assert!(check_key("0123abcd").is_ok());
        for bad in ["", "../x", "ABC", "a/b", "zz", &"a".repeat(65)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_criu_options_mount_point_is_read_back() {
        for path in ["/data", "/a/b", "/odd]:name"] {
            assert_eq!(
                external_mount_point(&criu_external(path)).as_deref(),
                Some(path)
            );
        }
        for other in ["network-lock skip", "external mnt[/a]:/b", "external mnt["] {
            assert_eq!(external_mount_point(other), None, "{other}");
        }
    }

    #[test]
    fn the_criu_option_names_the_mount_point_as_runc_does() {
        assert_eq!(
            criu_external("/mnt/data"),
            "external mnt[/mnt/data]:/mnt/data"
        );
    }
}
