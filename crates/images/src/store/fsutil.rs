//! File-system helpers of the store: the lock, work names under `tmp/`,
//! atomic writes and robust removal.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{ImageStoreError, Result};

/// The store's mutation lock: an in-process mutex (threads of one server) and
/// `flock` on `<root>/lock` (other servers sharing the directory).
#[derive(Debug, Clone)]
pub(crate) struct StoreLock {
    mutex: Arc<Mutex<()>>,
    path: PathBuf,
}

/// Held while a mutation runs; dropping it releases the `flock`, then the
/// mutex (fields drop in declaration order).
pub(crate) struct LockGuard<'a> {
    _flock: Flock<File>,
    _mutex: MutexGuard<'a, ()>,
}

impl StoreLock {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            mutex: Arc::new(Mutex::new(())),
            path,
        }
    }

    /// Blocks until both locks are held.
    pub(crate) fn lock(&self) -> Result<LockGuard<'_>> {
        // A panic while holding the mutex leaves no state behind it to
        // protect (the files are the state), so a poisoned mutex is fine.
        let mutex = self.mutex.lock().unwrap_or_else(|p| p.into_inner());
        // A fresh open file description per acquisition: flock excludes other
        // descriptions, in this process too.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.path)
            .map_err(ImageStoreError::io("open", &self.path))?;
        let flock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            ImageStoreError::Io {
                op: "flock",
                path: self.path.clone(),
                source: errno.into(),
            }
        })?;
        Ok(LockGuard {
            _flock: flock,
            _mutex: mutex,
        })
    }
}

/// A name for new work under `tmp/`: `<pid>.<counter>.<nanos>`. The pid lets
/// [`ImageStore::open`](super::ImageStore::open) tell a crash's leftovers
/// from the work of another live server sharing the store.
pub(crate) fn tmp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}.{n}.{nanos}", std::process::id())
}

/// Whether a `tmp/` entry may belong to a live process (and must be kept).
pub(crate) fn tmp_owner_alive(name: &str) -> bool {
    let Some(pid) = name
        .split('.')
        .next()
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|p| *p > 0)
    else {
        return false;
    };
    if pid as u32 == std::process::id() {
        return true;
    }
    // Signal 0 checks existence only; EPERM still means the process exists.
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Creates `path` (and missing parents) as directories of mode 0700.
pub(crate) fn mkdir_private(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(ImageStoreError::io("create directory", path))?;
    // DirBuilder's mode is masked by the umask and leaves existing
    // directories alone: set it explicitly.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(ImageStoreError::io("chmod", path))
}

/// Flushes a directory's entries (after a rename into it).
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageStoreError::io("fsync", dir))
}

/// Writes `bytes` to `dest` atomically: a synced file under `tmp_dir`,
/// renamed over `dest`, then the directory synced. Mode 0600.
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_dir.join(tmp_name());
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(ImageStoreError::io("create", &tmp))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(ImageStoreError::io("write", &tmp))?;
        fs::rename(&tmp, dest).map_err(ImageStoreError::io("rename", dest))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Some(parent) = dest.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Reads a file of at most `limit` bytes; `None` when it does not exist.
pub(crate) fn read_small(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageStoreError::io("open", path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ImageStoreError::io("read", path))?;
    if bytes.len() as u64 > limit {
        return Err(ImageStoreError::TooLarge {
            what: path.display().to_string(),
            limit,
        });
    }
    Ok(Some(bytes))
}

/// Removes a file or a whole tree without following symlinks or crossing a
/// mount, at any depth. Layer trees hold read-only directories (a hostile
/// layer's 0000 directories, or any directory when not running as root):
/// one that refuses is made writable.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    crate::remove_tree::remove_tree(path).map_err(ImageStoreError::io("remove", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_carry_our_pid_and_are_unique() {
        let (a, b) = (tmp_name(), tmp_name());
        assert_ne!(a, b);
        assert!(tmp_owner_alive(&a));
        assert!(!tmp_owner_alive("leftover"));
        // Pid 4194304 is past the kernel's maximum (2^22): never alive.
        assert!(!tmp_owner_alive("4194304.0.0"));
    }

    #[test]
    fn remove_tree_handles_read_only_dirs_and_keeps_symlink_targets() {
        let t = tempfile::tempdir().expect("tempdir");
        let outside = t.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        fs::write(outside.join("keep"), b"x").expect("write");
        let tree = t.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        fs::write(tree.join("a/b/f"), b"x").expect("write");
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).expect("symlink");
        fs::set_permissions(tree.join("a/b"), fs::Permissions::from_mode(0o500)).expect("chmod");
        fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o000)).expect("chmod");
        remove_tree(&tree).expect("remove");
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
    }
}
