//! Detached clones of the image layers, kept open to be cloned again for each sandbox.
//!
//! Cloning the mount at a path (`open_tree` with `OPEN_TREE_CLONE`) makes the kernel look
//! through every mount attached below the mount the path is on for a locked one in the way
//! (`has_locked_children`). The image layers sit on the host's file system, below whose
//! mount every sandbox's disk, overlay and idmapped mounts hang: with 1000 sandboxes up that
//! look took about 1.5 ms of each create. A detached clone has no mounts below it, so
//! cloning one costs the same however many sandboxes are up.
//!
//! Each kept clone is checked against the layer's path (device and inode) before use, so a
//! layer replaced at the same path is cloned anew. Linux allows a clone of a detached mount
//! of one's own mount namespace since 6.15; on an older kernel every clone is taken from
//! the path, as before.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use crate::error::{Result, RuntimeError};
use crate::userns;

struct Kept {
    dev: u64,
    ino: u64,
    tree: OwnedFd,
}

static KEPT: LazyLock<Mutex<HashMap<PathBuf, Kept>>> = LazyLock::new(Default::default);

/// Set once the kernel refuses to clone a detached mount.
static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// A detached clone of the mount at `layer` (an image layer's directory), made from a kept
/// clone of it when the kernel allows.
pub(crate) fn clone_layer(layer: &Path) -> Result<OwnedFd> {
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return userns::clone_tree(layer);
    }
    let meta = std::fs::metadata(layer).map_err(RuntimeError::io("reading", layer))?;
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let current = kept
        .get(layer)
        .is_some_and(|k| (k.dev, k.ino) == (meta.dev(), meta.ino()));
    if !current {
        let tree = userns::clone_tree(layer)?;
        let made = nix::sys::stat::fstat(tree.as_fd())
            .map_err(|e| RuntimeError::io("reading", layer)(e.into()))?;
        if (made.st_dev, made.st_ino) != (meta.dev(), meta.ino()) {
            // Replaced between the two looks: use this clone once, keep nothing.
            kept.remove(layer);
            return Ok(tree);
        }
        kept.insert(
            layer.to_path_buf(),
            Kept {
                dev: meta.dev(),
                ino: meta.ino(),
                tree,
            },
        );
    }
    let Some(k) = kept.get(layer) else {
        return userns::clone_tree(layer);
    };
    match userns::clone_detached(&k.tree) {
        Ok(tree) => Ok(tree),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!(error = %e, "this kernel clones no detached mount: image layers are cloned from their paths");
            UNSUPPORTED.store(true, Ordering::Relaxed);
            kept.clear();
            drop(kept);
            userns::clone_tree(layer)
        }
        Err(e) => Err(RuntimeError::io("cloning the kept mount of", layer)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs root (open_tree)"]
    fn clones_come_from_a_kept_tree_and_follow_a_replaced_layer() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let layer = tmp.path().join("layer");
        std::fs::create_dir(&layer).expect("dir");
        std::fs::write(layer.join("a"), "1").expect("file");
        let ino = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_fd()).expect("fstat").st_ino;
        let first = clone_layer(&layer).expect("clone");
        let second = clone_layer(&layer).expect("clone again");
        let want = std::fs::metadata(&layer).expect("meta").ino();
        assert_eq!((ino(&first), ino(&second)), (want, want));
        // The same path, another directory: the next clone shows the new one.
        std::fs::rename(&layer, tmp.path().join("old")).expect("rename");
        std::fs::create_dir(&layer).expect("dir");
        let third = clone_layer(&layer).expect("clone the new one");
        assert_eq!(ino(&third), std::fs::metadata(&layer).expect("meta").ino());
        assert_ne!(ino(&third), want);
    }
}
