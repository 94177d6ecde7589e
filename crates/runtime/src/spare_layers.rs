//! Writable layers formatted ahead of time, so that formatting (`mkfs.ext4`, a
//! fifth of a cold start) is off a create's critical path.
//!
//! A spare is a fresh sparse ext4 image of one size in `<data-dir>/spare-layers/`,
//! named `<disk_mb>-<random>.img`; a create of that size renames one into its
//! sandbox directory (the same file system, so the rename is atomic) and asks for
//! a replacement, formatted by a background task. Spares are kept for the sizes
//! asked for most recently ([`KEPT_SIZES`]), [`SPARES_PER_SIZE`] each; those of
//! other sizes are removed. A spare is written as `*.tmp` and renamed when
//! formatted, so one cut short by a crash is never taken (and is removed at start).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Result, RuntimeError};

/// Spares kept of each size.
pub const SPARES_PER_SIZE: usize = 2;

/// How many distinct sizes have spares (the most recently asked for).
pub const KEPT_SIZES: usize = 2;

/// How long a refill waits, while a spare of its size is left, before it
/// formats: about a start's length.
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(150);

/// The pool of formatted spare layers of one node.
#[derive(Debug)]
pub struct SpareLayers {
    dir: PathBuf,
    /// Where `mkfs.ext4` runs (see [`crate::layer::format_image`]).
    ns: Option<Arc<crate::runc_ns::RuncNamespace>>,
    /// Sizes asked for, most recent first, and whether a task is filling each.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    recent: VecDeque<u64>,
    filling: Vec<u64>,
}

impl SpareLayers {
    /// The pool in `dir` (created 0700), without any spare cut short by a crash;
    /// spares are formatted in `ns` when given.
    pub fn open(dir: PathBuf, ns: Option<Arc<crate::runc_ns::RuncNamespace>>) -> Result<Self> {
        crate::layer::create_private_dir(&dir)?;
        for entry in std::fs::read_dir(&dir).map_err(RuntimeError::io("reading", &dir))? {
            let path = entry.map_err(RuntimeError::io("reading", &dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Self {
            dir,
            ns,
            state: Mutex::default(),
        })
    }

    /// The namespace spares are formatted in, if not the caller's.
    pub fn namespace(&self) -> Option<&Arc<crate::runc_ns::RuncNamespace>> {
        self.ns.as_ref()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The formatted spares of `disk_mb`.
    fn spares_of(&self, disk_mb: u64) -> Vec<PathBuf> {
        let prefix = format!("{disk_mb}-");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "img")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .collect()
    }

    /// Moves a formatted spare of `disk_mb` to `dest`; whether there was one.
    pub fn take(&self, disk_mb: u64, dest: &Path) -> bool {
        for spare in self.spares_of(disk_mb) {
            // Another create may have taken this one: try the next.
            if std::fs::rename(&spare, dest).is_ok() {
                return true;
            }
        }
        false
    }

    /// Notes that `disk_mb` was asked for, removes the spares of sizes no longer
    /// kept, and starts a task formatting spares of `disk_mb` up to
    /// [`SPARES_PER_SIZE`] (one task per size at a time). Needs a tokio runtime.
    pub fn refill(self: &Arc<Self>, disk_mb: u64) {
        let dropped = {
            let mut state = self.state();
            state.recent.retain(|s| *s != disk_mb);
            state.recent.push_front(disk_mb);
            let keep = KEPT_SIZES.min(state.recent.len());
            let dropped: Vec<u64> = state.recent.drain(keep..).collect();
            if state.filling.contains(&disk_mb) {
                None
            } else {
                state.filling.push(disk_mb);
                Some(dropped)
            }
        };
        let Some(dropped) = dropped else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            for size in dropped {
                for spare in this.spares_of(size) {
                    let _ = std::fs::remove_file(spare);
                }
            }
            // While a spare is left, the create that took one boots first: a
            // format beside its `runc run` takes CPU and disk from it even at idle
            // priority (the loop device's writes run in kernel workers).
            if !this.spares_of(disk_mb).is_empty() {
                tokio::time::sleep(REFILL_DELAY).await;
            }
            while this.spares_of(disk_mb).len() < SPARES_PER_SIZE {
                if let Err(e) = this.make_one(disk_mb).await {
                    tracing::warn!(disk_mb, error = %e, "formatting a spare layer");
                    break;
                }
            }
            this.state().filling.retain(|s| *s != disk_mb);
        });
    }

    /// Formats one spare of `disk_mb`.
    async fn make_one(&self, disk_mb: u64) -> Result<()> {
        let name = format!("{disk_mb}-{}", uuid::Uuid::new_v4().simple());
        let tmp = self.dir.join(format!("{name}.tmp"));
        let made = crate::layer::format_image(&tmp, disk_mb, self.ns.as_ref(), true).await;
        if let Err(e) = made {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let done = self.dir.join(format!("{name}.img"));
        std::fs::rename(&tmp, &done).map_err(RuntimeError::io("renaming", &tmp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_taken_once_and_unfinished_ones_are_never_taken() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("spares");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("64-a.img"), b"formatted").expect("write");
        std::fs::write(dir.join("64-b.tmp"), b"half").expect("write");
        std::fs::write(dir.join("128-c.img"), b"other size").expect("write");
        let spares = SpareLayers::open(dir.clone(), None).expect("open");
        assert!(
            !dir.join("64-b.tmp").exists(),
            "a spare cut short is removed"
        );
        let dest = tmp.path().join("disk.img");
        assert!(spares.take(64, &dest));
        assert_eq!(std::fs::read(&dest).expect("read"), b"formatted");
        assert!(
            !spares.take(64, &tmp.path().join("again.img")),
            "taken once"
        );
        assert!(!spares.take(6, &tmp.path().join("x.img")), "64 is not 6");
        assert!(spares.take(128, &tmp.path().join("y.img")));
    }
}
