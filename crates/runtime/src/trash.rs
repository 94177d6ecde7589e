//! Files of deleted sandboxes, and dumps a resume has used, on their way out.
//!
//! Unlinking a deleted sandbox's files (its disk image above all, whose extents
//! the host file system frees one by one) and tearing down its file systems (the
//! ext4 disk, shut down first so that nothing left unwritten is written, and its
//! loop device) took a good part of every delete, and more of it with many
//! sandboxes up. Once every mount of a sandbox
//! is detached from the host (see [`crate::layer::Layer::detach`]), its
//! directory is renamed in here (one atomic step on the same file system: the
//! sandbox's directory is gone when the delete answers), and on the blocking
//! pool afterwards its files are removed and its file systems let go. What a
//! crash leaves in here is removed when the node starts again (the kernel tears
//! down the file systems of a server that died); an orderly shutdown waits for
//! it ([`Trash::drained`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Result, RuntimeError};
use crate::layer::DetachedMounts;

/// A root-only directory of sandbox trees being removed in the background.
#[derive(Debug)]
pub struct Trash {
    dir: PathBuf,
    /// Tells entries apart (a sandbox's files may be discarded more than once
    /// in its life: a half-done restore, then its delete).
    next: AtomicU64,
    pending: Arc<Pending>,
}

/// The removals not finished yet.
#[derive(Debug, Default)]
struct Pending {
    state: Mutex<PendingState>,
    idle: tokio::sync::Notify,
}

#[derive(Debug, Default, Clone, Copy)]
struct PendingState {
    entries: usize,
    /// Bytes the entries still take on disk: free space about to be.
    bytes: u64,
}

impl Trash {
    /// Opens `dir` (made root-only if missing) and starts removing what an
    /// earlier run left in it. Call from within a tokio runtime.
    pub fn open(dir: PathBuf) -> Result<Self> {
        crate::layer::create_private_dir(&dir)?;
        let trash = Self {
            next: AtomicU64::new(0),
            pending: Arc::default(),
            dir,
        };
        let left: Vec<PathBuf> = std::fs::read_dir(&trash.dir)
            .map_err(RuntimeError::io("reading", &trash.dir))?
            .flatten()
            .map(|e| e.path())
            .collect();
        if !left.is_empty() {
            tracing::info!(
                entries = left.len(),
                "removing the files of sandboxes deleted before a crash"
            );
        }
        for entry in left {
            let bytes = tree_bytes(&entry);
            trash.remove_in_background(entry, bytes, DetachedMounts::default());
        }
        Ok(trash)
    }

    /// Moves `tree` (a sandbox directory or a used dump, with nothing mounted in
    /// it) out of the way and removes it in the background, after tearing down
    /// `held`, the file systems detached from it (whose images it may hold); its
    /// entry in here is named after `label` (a sandbox id, for whoever looks).
    /// Refuses a tree with a mount in it, as
    /// [`crate::layer::remove_unmounted_tree`] does; a tree that is already gone
    /// is fine.
    pub fn discard(&self, tree: &Path, label: &str, held: DetachedMounts) -> Result<()> {
        if std::fs::symlink_metadata(tree).is_err() {
            return Ok(());
        }
        crate::layer::refuse_mounts(tree)?;
        let name: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let entry = self.dir.join(format!("{name}.{stamp}.{seq}"));
        let bytes = tree_bytes(tree);
        std::fs::rename(tree, &entry).map_err(RuntimeError::io("moving to the trash", tree))?;
        self.remove_in_background(entry, bytes, held);
        Ok(())
    }

    /// Bytes that removals under way are about to free.
    pub fn pending_bytes(&self) -> u64 {
        self.pending.lock().bytes
    }

    /// Waits until every removal started so far has finished.
    pub async fn drained(&self) {
        loop {
            let idle = self.pending.idle.notified();
            if self.pending.lock().entries == 0 {
                return;
            }
            idle.await;
        }
    }

    fn remove_in_background(&self, entry: PathBuf, bytes: u64, held: DetachedMounts) {
        {
            let mut state = self.pending.lock();
            state.entries += 1;
            state.bytes = state.bytes.saturating_add(bytes);
        }
        let pending = Arc::clone(&self.pending);
        tokio::task::spawn_blocking(move || {
            // The files first (an image still attached to its loop device is only
            // unlinked; its blocks are freed when the device lets go of it), then
            // the file systems: a disk's shutdown writes its journal's superblock
            // once, which forces a commit of the host's file system, and coming
            // this much later it no longer stalls the delete's own last writes.
            // The entry's own directory goes last, so that an entry is listed
            // until nothing of it is left, its loop device included.
            let emptied = crate::layer::empty_unmounted_tree(&entry);
            drop(held);
            if let Err(e) = emptied.and_then(|()| crate::layer::remove_unmounted_tree(&entry)) {
                tracing::warn!(path = %entry.display(), error = %e, "removing a deleted sandbox's files");
            }
            let mut state = pending.lock();
            state.entries -= 1;
            state.bytes = state.bytes.saturating_sub(bytes);
            drop(state);
            pending.idle.notify_waiters();
        });
    }
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the files directly in `tree` take on disk: a sandbox's disk image, a
/// dump's memory pages. What lies deeper (a layer's upper directory, small next
/// to its image) is not counted, so that this stays one directory read.
fn tree_bytes(tree: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(tree) else {
        return 0;
    };
    entries
        .flatten()
        // `metadata` of a directory entry does not follow symlinks.
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.blocks() * 512)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn discarded_trees_leave_at_once_and_are_removed_in_the_background() {
        let tmp = tempfile::tempdir().expect("tmp");
        let trash = Trash::open(tmp.path().join("trash")).expect("open");
        let tree = tmp.path().join("sandboxes/sb1");
        std::fs::create_dir_all(tree.join("upper/a/b")).expect("mkdir");
        std::fs::write(tree.join("disk.img"), vec![7u8; 64 * 1024]).expect("write");
        trash
            .discard(&tree, "sb1", DetachedMounts::default())
            .expect("discard");
        assert!(!tree.exists(), "gone from its place when discard returns");
        trash.drained().await;
        assert_eq!(trash.pending_bytes(), 0);
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("trash"))
            .expect("read")
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // Gone already: nothing to do.
        trash
            .discard(&tree, "sb1", DetachedMounts::default())
            .expect("discard again");
    }

    #[tokio::test]
    async fn what_a_crash_left_is_removed_on_open() {
        let tmp = tempfile::tempdir().expect("tmp");
        let left = tmp.path().join("trash/sb2.1.0/upper");
        std::fs::create_dir_all(&left).expect("mkdir");
        std::fs::write(left.join("disk.img"), b"x").expect("write");
        let trash = Trash::open(tmp.path().join("trash")).expect("open");
        trash.drained().await;
        assert!(!tmp.path().join("trash/sb2.1.0").exists());
    }

    #[tokio::test]
    async fn a_symlinked_tree_is_moved_not_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let trash = Trash::open(tmp.path().join("trash")).expect("open");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), b"k").expect("write");
        let tree = tmp.path().join("sandboxes/sb3");
        std::fs::create_dir_all(&tree).expect("mkdir");
        std::os::unix::fs::symlink(&outside, tree.join("link")).expect("symlink");
        trash
            .discard(&tree, "sb3", DetachedMounts::default())
            .expect("discard");
        trash.drained().await;
        assert_eq!(std::fs::read(outside.join("keep")).expect("kept"), b"k");
    }
}
