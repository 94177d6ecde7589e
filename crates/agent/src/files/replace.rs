//! Uploads that replace a file whole or not at all.
//!
//! Written in place, an upload that breaks off (the client goes away, the disk fills) has
//! already truncated the old content, and a program that reads the file meanwhile (a dev
//! server reloading its configuration) sees half of the new one. So an upload to a regular
//! file, or to a path where nothing is yet, goes to a temporary file beside it, given the old
//! file's owner, mode, access ACL and user attributes (`xattrs`), synced, and renamed over the
//! target: readers see the old content or the new one, and a failed upload leaves the old file
//! as it was and no temporary file.
//!
//! A replacement needs room for both versions until the rename. When the upload says its
//! length (`Content-Length`) and only the space the old file frees would make room for it,
//! the file is written in place as before, so that a file still fits wherever it used to.
//!
//! What a rename would change is written in place as before too: devices (`/dev/null`), files
//! with other hard links (a rename would part them), mount points (a bind-mounted file cannot
//! be renamed over), kernel and FUSE files, a symbolic link that leads nowhere (the write
//! creates its target), and a file whose owner or ACL cannot be given to a new file (an id
//! that the sandbox's user namespace does not map). A symbolic link to a file is followed:
//! the file it leads to is replaced and the link kept.

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::Stream;
use tokio::fs;

use super::{FileError, blocking, is_plain_fs, map_io, path_fs_magic, write_body, xattrs};

/// Where an upload's bytes go.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Destination {
    /// A temporary file beside `target`, renamed over it once the body is complete.
    Replace {
        /// The file to replace (the one a symbolic link at the path leads to), or the path
        /// itself when nothing is there yet.
        target: PathBuf,
        /// The owner and mode of the file being replaced; `None` for a new file.
        keep: Option<Owner>,
    },
    /// The path itself, truncated and written in place.
    InPlace,
}

/// The owner and permission bits a replacement takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

/// Room kept free beside a replacement's data for the file system's own blocks: 1 MiB, and
/// 1/128 of the data for its extent tree and such.
fn slack(len: u64) -> u64 {
    (1 << 20) + len / 128
}

/// Decides where an upload to `path` of `declared` bytes (when the request says) goes
/// (blocking: a few `stat`s).
pub(super) fn destination(path: &Path, declared: Option<u64>) -> Destination {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match path.parent() {
                Some(dir) if replaceable_dir(dir) => Destination::Replace {
                    target: path.to_path_buf(),
                    keep: None,
                },
                _ => Destination::InPlace,
            };
        }
        // The open in place reports what is wrong with the path.
        Err(_) => return Destination::InPlace,
    };
    let (target, meta) = if meta.file_type().is_symlink() {
        let Ok(target) = std::fs::canonicalize(path) else {
            return Destination::InPlace;
        };
        match std::fs::metadata(&target) {
            Ok(meta) => (target, meta),
            Err(_) => return Destination::InPlace,
        }
    } else {
        (path.to_path_buf(), meta)
    };
    let replaceable = meta.is_file()
        && meta.nlink() == 1
        && !is_mount_root(&target)
        && target.parent().is_some_and(replaceable_dir);
    if !replaceable || fits_only_in_place(&target, meta.len(), declared) {
        return Destination::InPlace;
    }
    Destination::Replace {
        target,
        keep: Some(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }),
    }
}

/// Writes `body` to a temporary file beside `target` and renames it over `target`. Returns
/// `None`, having read nothing of the body, when the temporary file cannot take the old
/// file's owner: the caller then writes in place.
pub(super) async fn replace<S, E>(
    shown: &Path,
    target: PathBuf,
    keep: Option<Owner>,
    body: S,
) -> Option<Result<u64, FileError>>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let dir = target.parent()?.to_path_buf();
    let shown_owned = shown.to_path_buf();
    let replaced = target.clone();
    let made = blocking(shown, "creating", move || {
        create_temp(&dir, &replaced, keep).map_err(|e| map_io(e, &shown_owned, "creating"))
    })
    .await;
    let (temp, file) = match made {
        Ok(Some(made)) => made,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    let mut file = fs::File::from_std(file);
    let written = match write_body(&mut file, shown, body).await {
        Ok(written) => written,
        // `temp` is dropped here, and the temporary file with it.
        Err(FileError::NoSpace(path)) if keep.is_some() => {
            return Some(Err(FileError::NoSpaceToReplace(path)));
        }
        Err(e) => return Some(Err(e)),
    };
    drop(file);
    let shown_owned = shown.to_path_buf();
    Some(
        blocking(shown, "replacing", move || {
            put_in_place(temp, &target, keep).map_err(|e| map_io(e, &shown_owned, "replacing"))
        })
        .await
        .map(|()| written),
    )
}

/// A temporary file that is removed when dropped, unless it was renamed into place. The
/// drop also covers an upload whose request is dropped mid-body.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where a temporary file's name comes from: the agent's pid, a counter and the clock make
/// names that rarely meet; `create_new` settles the rest.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates the temporary file in `dir` for `target`, owned as `keep` says (write access for
/// its owner only until it is renamed), with the access ACL and user attributes of the file
/// it replaces (when `keep` says there is one). `Ok(None)` when that owner or that ACL cannot
/// be given.
fn create_temp(
    dir: &Path,
    target: &Path,
    keep: Option<Owner>,
) -> io::Result<Option<(TempFile, std::fs::File)>> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mode = if keep.is_some() { 0o600 } else { 0o666 };
    for _ in 0..16 {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(".alcove-upload-{}-{n}-{nanos:08x}", std::process::id());
        let path = dir.join(name);
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let temp = TempFile {
            path,
            renamed: false,
        };
        if let Some(owner) = keep
            && std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid)).is_err()
        {
            return Ok(None);
        }
        // (A new file keeps the ACL it inherits from a default one of the directory, as it
        // would written in place.)
        if keep.is_some() && xattrs::copy_kept(target, &file).is_err() {
            return Ok(None);
        }
        return Ok(Some((temp, file)));
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free name for a temporary file",
    ))
}

/// Gives the written temporary file the old mode and renames it over `target`. Where the
/// rename is refused (`target` became a mount point, or moved to another file system since
/// it was looked at), the content is copied into `target` in place instead.
fn put_in_place(mut temp: TempFile, target: &Path, keep: Option<Owner>) -> io::Result<()> {
    if let Some(owner) = keep {
        // After the chown at creation, which clears set-user-id and set-group-id bits.
        std::fs::set_permissions(&temp.path, std::fs::Permissions::from_mode(owner.mode))?;
    }
    match std::fs::rename(&temp.path, target) {
        Ok(()) => {
            temp.renamed = true;
            Ok(())
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EXDEV)) => {
            let mut from = std::fs::File::open(&temp.path)?;
            let mut to = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(target)?;
            io::copy(&mut from, &mut to)?;
            to.sync_all()
        }
        Err(e) => Err(e),
    }
}

/// Whether `declared` bytes fit on `target`'s file system only once its `old_len` bytes are
/// freed, that is, only when written in place. Unknown lengths and free space are taken to fit.
fn fits_only_in_place(target: &Path, old_len: u64, declared: Option<u64>) -> bool {
    let (Some(len), Some(free)) = (declared, target.parent().and_then(free_bytes)) else {
        return false;
    };
    let needed = len.saturating_add(slack(len));
    free < needed && free.saturating_add(old_len) >= needed
}

/// The bytes an unprivileged writer may still use on `dir`'s file system: the agent is root
/// of a user namespace, which the blocks ext4 keeps for the real root are not for.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Whether a new file in `dir` can be renamed into place: not on a kernel or FUSE file
/// system, where files are not made this way.
fn replaceable_dir(dir: &Path) -> bool {
    path_fs_magic(dir).is_some_and(is_plain_fs)
}

/// Whether `path` is the root of a mount (a file bind-mounted over another). When the kernel
/// does not say, it is taken for one, which only means a write in place.
fn is_mount_root(path: &Path) -> bool {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags};
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    match rustix::fs::statx(rustix::fs::CWD, path, flags, StatxFlags::empty()) {
        Ok(st) => {
            !st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                || st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn body(
        chunks: Vec<Result<&'static str, &'static str>>,
    ) -> impl Stream<Item = Result<Bytes, &'static str>> {
        futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| c.map(|text| Bytes::from_static(text.as_bytes()))),
        )
    }

    /// Where an upload to `path` goes, which must be a replacement.
    fn replaced(path: &Path) -> (PathBuf, Option<Owner>) {
        match destination(path, None) {
            Destination::Replace { target, keep } => (target, keep),
            Destination::InPlace => panic!("{} would be written in place", path.display()),
        }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".alcove-upload-"))
            .collect()
    }

    #[test]
    fn regular_files_and_new_paths_are_replaced_the_rest_written_in_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        assert!(matches!(
            destination(&file, None),
            Destination::Replace { keep: Some(_), .. }
        ));
        assert!(matches!(
            destination(&dir.path().join("new"), None),
            Destination::Replace { keep: None, .. }
        ));
        // A link to a file replaces the file it leads to.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        match destination(&link, None) {
            Destination::Replace { target, .. } => {
                assert_eq!(target, std::fs::canonicalize(&file).expect("real"))
            }
            other => panic!("link: {other:?}"),
        }
        // A link that leads nowhere, a second hard link, a device: in place.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).expect("symlink");
        assert_eq!(destination(&dangling, None), Destination::InPlace);
        let twin = dir.path().join("twin");
        std::fs::hard_link(&file, &twin).expect("hard link");
        assert_eq!(destination(&file, None), Destination::InPlace);
        assert_eq!(
            destination(Path::new("/dev/null"), None),
            Destination::InPlace
        );
        // Kernel files.
        assert_eq!(
            destination(Path::new("/proc/sys/kernel/hostname"), None),
            Destination::InPlace
        );
    }

    #[tokio::test]
    async fn a_broken_body_leaves_the_old_file_and_no_temporary_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("config.json");
        std::fs::write(&file, b"old content").expect("write");
        let (target, keep) = replaced(&file);
        let outcome = replace(
            &file,
            target,
            keep,
            body(vec![Ok("new "), Err("connection reset")]),
        )
        .await;
        assert!(matches!(outcome, Some(Err(FileError::Body(_)))));
        assert_eq!(std::fs::read(&file).expect("read"), b"old content");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_dropped_upload_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("f");
        std::fs::write(&file, b"old").expect("write");
        let (target, keep) = replaced(&file);
        // A body that never ends: the upload is dropped while it waits for more.
        let endless = futures::stream::iter([Ok::<_, &str>(Bytes::from_static(b"new"))])
            .chain(futures::stream::pending());
        let upload = replace(&file, target, keep, endless);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(200), upload).await;
        assert!(waited.is_err(), "the upload was still waiting for its body");
        assert_eq!(std::fs::read(&file).expect("read"), b"old");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_replacement_keeps_mode_and_owner_and_the_link_to_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("run.sh");
        std::fs::write(&file, b"old").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o4750)).expect("chmod");
        let before = std::fs::metadata(&file).expect("stat");
        let link = dir.path().join("current");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let (target, keep) = replaced(&link);
        let written = replace(&link, target, keep, body(vec![Ok("new"), Ok(" content")])).await;
        assert_eq!(written.map(|r| r.ok()), Some(Some(11)));
        let after = std::fs::metadata(&file).expect("stat");
        assert_eq!(std::fs::read(&link).expect("read"), b"new content");
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("lstat")
                .file_type()
                .is_symlink()
        );
        assert_eq!(after.mode() & 0o7777, 0o4750);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        assert_ne!(
            after.ino(),
            before.ino(),
            "a new file took the old one's place"
        );
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }
}
