//! File operations of docs/protocol/sandbox-api.md (Files): read, write, delete and list,
//! always streamed.
//!
//! Paths must be absolute and must not contain `..` components (403 `PATH_TRAVERSAL`, as
//! indexify). The agent is the sandbox's root, so this is not a security boundary (the user
//! can run any command); it keeps clients from building surprising paths by accident.
//! Symbolic links are followed.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use alcove_wire::files::{FileEntry, listing_order};
use alcove_wire::time::EpochMillis;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::fs;
use tokio::io::AsyncWriteExt;

mod replace;
mod xattrs;

/// Why a file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path is empty.
    #[error("path must not be empty")]
    Empty,
    /// The path is relative.
    #[error("path must be absolute: {0:?}")]
    NotAbsolute(String),
    /// The path has a `..` component.
    #[error("path must not contain '..' components: {0:?}")]
    Traversal(String),
    /// The path contains a NUL byte.
    #[error("path must not contain NUL bytes")]
    Nul,
    /// Nothing exists at the path.
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// The path is a directory where a file is needed.
    #[error("is a directory: {0}")]
    IsDirectory(String),
    /// The path (or one of its parents) is not a directory where one is needed.
    #[error("not a directory: {0}")]
    NotADirectory(String),
    /// The agent may not access the path.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The path is on a read-only file system (a read-only mount such as `/sys`).
    #[error("read-only file system: {0}")]
    ReadOnly(String),
    /// The path is a kernel file (`/proc`, `/sys`, cgroups) that does not take this write.
    #[error("cannot write kernel file {0}: it is not a regular file")]
    KernelFile(String),
    /// The path is a kernel or FUSE file whose read the kernel refuses (`/proc/self/mem`,
    /// `/proc/kmsg`): it serves something other than a file's bytes.
    #[error("cannot read kernel file {path}: {source}")]
    KernelRead {
        /// The path.
        path: String,
        /// What the read said.
        source: io::Error,
    },
    /// The path is a device, FIFO or socket: reading one could block forever or never end.
    #[error("not a regular file: {0} (a device, FIFO or socket)")]
    NotRegular(String),
    /// The file system (or the sandbox's disk) is full, or the file too large for it.
    #[error("no space left for {0}")]
    NoSpace(String),
    /// The disk filled while a file was replaced; the old file is left as it was.
    #[error(
        "no space left for {0}: replacing a file needs room for the old and the new content until the new one is complete; the old file is unchanged"
    )]
    NoSpaceToReplace(String),
    /// Something already exists where a new entry was to be made.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The file is busy (a running program's executable, a mount point).
    #[error("file is busy: {0}")]
    Busy(String),
    /// The path cannot name a file (too long, too many symbolic links).
    #[error("unusable path {path}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// The upload body broke off.
    #[error("reading request body: {0}")]
    Body(String),
    /// Any other I/O failure.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// Checks a `?path=` value (see the module docs).
pub fn validate(path: &str) -> Result<PathBuf, FileError> {
    if path.is_empty() {
        return Err(FileError::Empty);
    }
    if path.contains('\0') {
        return Err(FileError::Nul);
    }
    if !path.starts_with('/') {
        return Err(FileError::NotAbsolute(path.to_string()));
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(FileError::Traversal(path.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// What a failed read of the file at `path` means for the caller (a kernel file that serves
/// no bytes is the caller's doing; a failing disk is not).
pub fn read_error(err: io::Error, path: &Path) -> FileError {
    map_io(err, path, "reading")
}

/// Maps an OS error to what the caller did wrong, where it is the caller's doing;
/// only the rest stays an internal failure (500).
fn map_io(err: io::Error, path: &Path, action: &'static str) -> FileError {
    let shown = path.display().to_string();
    match err.raw_os_error() {
        // ESRCH: a /proc file of a process that has exited since.
        Some(libc::ENOENT) | Some(libc::ESRCH) => FileError::NotFound(shown),
        // A component of the path is a file, not a directory.
        Some(libc::ENOTDIR) => FileError::NotADirectory(shown),
        Some(libc::EISDIR) => FileError::IsDirectory(shown),
        Some(libc::EACCES) | Some(libc::EPERM) => FileError::PermissionDenied(shown),
        Some(libc::EROFS) => FileError::ReadOnly(shown),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => FileError::NoSpace(shown),
        Some(libc::EEXIST) => FileError::AlreadyExists(shown),
        Some(libc::ETXTBSY) | Some(libc::EBUSY) => FileError::Busy(shown),
        Some(libc::ENAMETOOLONG) => FileError::BadPath {
            path: shown,
            reason: "a name in it is too long",
        },
        // A device with nothing behind it (`/dev/tty` without a terminal), a socket.
        Some(libc::ENXIO) | Some(libc::ENODEV) => FileError::NotRegular(shown),
        Some(libc::ELOOP) => FileError::BadPath {
            path: shown,
            reason: "too many levels of symbolic links",
        },
        // Kernel files (/proc, /sys) refuse reads and writes they do not serve with EIO or
        // EINVAL (EAGAIN: one that would wait, opened without blocking): the caller's doing,
        // not a failing disk.
        Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::EAGAIN)
            if action == "reading" && !path_fs_magic(path).is_some_and(is_plain_fs) =>
        {
            FileError::KernelRead {
                path: shown,
                source: err,
            }
        }
        Some(libc::EIO) | Some(libc::EINVAL) if on_kernel_fs(path) => FileError::KernelFile(shown),
        _ => FileError::Io {
            action,
            path: shown,
            source: err,
        },
    }
}

/// File system magic numbers (`statfs.f_type`) of kernel pseudo file systems: procfs,
/// sysfs, cgroupfs and the like.
const KERNEL_FS: [i64; 11] = [
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x0027_e0eb, // cgroup
    0x6367_7270, // cgroup2
    0x6462_6720, // debugfs
    0x7363_6673, // securityfs
    0x7472_6163, // tracefs
    0xcafe_4a11, // bpf
    0x6265_6570, // configfs
    0xde5e_81e4, // efivarfs
    0x6165_676c, // pstore
];

/// FUSE's magic number: lxcfs serves `/proc/cpuinfo`, `/proc/meminfo` and the like
/// through it, with sizes that are not their contents' lengths.
const FUSE_FS: i64 = 0x6573_5546;

/// The magic number (`f_type`) of a file system, from `statfs` or `fstatfs` filling the
/// struct `fill` is given; `None` if the call failed.
fn fs_magic(fill: impl FnOnce(&mut libc::statfs) -> libc::c_int) -> Option<i64> {
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if fill(&mut stat) != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64 but not on every target
    Some(stat.f_type as i64)
}

/// Whether `path` (or, when it does not exist, its parent) is on a kernel pseudo
/// file system.
fn on_kernel_fs(path: &Path) -> bool {
    let probe = if path.exists() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    path_fs_magic(probe).is_some_and(|kind| KERNEL_FS.contains(&kind))
}

/// The magic number of the file system `path` is on (`statfs`); `None` if the call failed.
fn path_fs_magic(path: &Path) -> Option<i64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: c_path is a NUL-terminated string and stat a struct fs_magic owns; statfs
    // writes only into it.
    fs_magic(|stat| unsafe { libc::statfs(c_path.as_ptr(), stat) })
}

/// Whether a file system (by magic number) holds plain files: not a kernel pseudo file
/// system, not FUSE.
fn is_plain_fs(kind: i64) -> bool {
    kind != FUSE_FS && !KERNEL_FS.contains(&kind)
}

/// Whether the size `fstat` gives for the open `file` is the number of bytes a read
/// of it yields. It is not on kernel pseudo file systems (procfs says 0, sysfs 4096,
/// whatever the contents) nor on FUSE (lxcfs); when unsure, it is not.
fn size_is_length(file: &impl AsRawFd) -> bool {
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and stat a struct
    // fs_magic owns; fstatfs writes only into it.
    fs_magic(|stat| unsafe { libc::fstatfs(file.as_raw_fd(), stat) }).is_some_and(is_plain_fs)
}

fn millis(time: io::Result<std::time::SystemTime>) -> Option<EpochMillis> {
    let since = time.ok()?.duration_since(UNIX_EPOCH).ok()?;
    EpochMillis::try_from(since.as_millis()).ok()
}

/// Opens a regular file for streaming; returns it with its length where its size says
/// how many bytes a read yields (not for kernel and FUSE files: those are read to their
/// end, however long that turns out to be). The sandbox may swap
/// what is at `path` at any time, so the check is made on what was opened: the open itself
/// never blocks (`O_NONBLOCK`, which a FIFO would otherwise do), and a device, FIFO or socket
/// is refused before a byte is read.
pub async fn open_for_read(path: &Path) -> Result<(fs::File, Option<u64>), FileError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .await
        .map_err(|e| map_io(e, path, "opening"))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| map_io(e, path, "reading"))?;
    if meta.is_dir() {
        return Err(FileError::IsDirectory(path.display().to_string()));
    }
    if !meta.is_file() {
        return Err(FileError::NotRegular(path.display().to_string()));
    }
    let len = size_is_length(&file).then_some(meta.len());
    Ok((file, len))
}

/// Writes `body` to `path` chunk by chunk: parents are created, and the data is fsynced
/// before returning. A regular file (or a new one) is replaced whole or not at all, keeping
/// its owner and mode ([`replace`]); anything else is written in place, and there, when the
/// file system fills up, the partial file is removed.
pub async fn write<S, E>(path: &Path, body: S, declared: Option<u64>) -> Result<u64, FileError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    if let Ok(meta) = fs::metadata(path).await {
        if meta.is_dir() {
            return Err(FileError::IsDirectory(path.display().to_string()));
        }
        // Refused before an open, which would end a FIFO's reader with an end of file.
        if is_fifo_or_socket(&meta) {
            return Err(FileError::NotRegular(path.display().to_string()));
        }
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .await
            .map_err(|e| match e.raw_os_error() {
                // A component of the parent chain is a file.
                Some(libc::ENOTDIR) | Some(libc::EEXIST) => {
                    FileError::NotADirectory(parent.display().to_string())
                }
                _ => map_io(e, parent, "creating directory"),
            })?;
    }
    let owned = path.to_path_buf();
    let destination = blocking(path, "creating", move || {
        Ok(replace::destination(&owned, declared))
    })
    .await?;
    let mut body = Box::pin(body);
    if let replace::Destination::Replace { target, keep } = destination
        && let Some(outcome) = replace::replace(path, target, keep, &mut body).await
    {
        return outcome;
    }
    // In place: nothing of the body was read when the replacement could not be made.
    let mut file = open_for_write(path).await?;
    let outcome = write_body(&mut file, path, body).await;
    if matches!(outcome, Err(FileError::NoSpace(_))) {
        // A write that ran out of space leaves no partial file taking that space.
        drop(file);
        if fs::symlink_metadata(path)
            .await
            .is_ok_and(|m| m.file_type().is_file())
        {
            let _ = fs::remove_file(path).await;
        }
    }
    outcome
}

/// Creates or truncates `path` for writing. As for reads, the open never blocks: a FIFO
/// without a reader would hold the call (and its request) until one came, so the open is
/// `O_NONBLOCK` and a FIFO or socket, which the sandbox may have put at `path` since [`write`]
/// looked, is refused on what was opened. Devices (`/dev/null`) still take writes, blocking as they do.
/// One blocking task: open, check and flags are one trip to the blocking pool, not four.
async fn open_for_write(path: &Path) -> Result<fs::File, FileError> {
    let owned = path.to_path_buf();
    let file = blocking(path, "creating", move || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&owned)
            .map_err(|e| map_io(e, &owned, "creating"))?;
        let meta = file.metadata().map_err(|e| map_io(e, &owned, "creating"))?;
        if is_fifo_or_socket(&meta) {
            return Err(FileError::NotRegular(owned.display().to_string()));
        }
        // Writes block again (only a device is affected: the flag means nothing to a regular file).
        // SAFETY: F_SETFL on a descriptor this closure owns; no memory is passed.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) } == -1 {
            return Err(map_io(io::Error::last_os_error(), &owned, "creating"));
        }
        Ok(file)
    })
    .await?;
    Ok(fs::File::from_std(file))
}

/// Runs `work` on the blocking pool; a task that died is an I/O failure of `action` on `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    action: &'static str,
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(joined) => Err(FileError::Io {
            action,
            path: path.display().to_string(),
            source: io::Error::other(joined.to_string()),
        }),
    }
}

fn is_fifo_or_socket(meta: &std::fs::Metadata) -> bool {
    let kind = meta.file_type();
    kind.is_fifo() || kind.is_socket()
}

async fn write_body<S, E>(file: &mut fs::File, path: &Path, body: S) -> Result<u64, FileError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| FileError::Body(e.to_string()))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| map_io(e, path, "writing"))?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(|e| map_io(e, path, "writing"))?;
    match file.sync_all().await {
        // EINVAL: a special file (a device, a pipe) that has nothing to sync.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !on_kernel_fs(path) => {}
        other => other.map_err(|e| map_io(e, path, "syncing"))?,
    }
    Ok(written)
}

/// Deletes a file (or a symbolic link); directories are refused.
pub async fn delete(path: &Path) -> Result<(), FileError> {
    let meta = fs::symlink_metadata(path)
        .await
        .map_err(|e| map_io(e, path, "deleting"))?;
    if meta.is_dir() {
        return Err(FileError::IsDirectory(path.display().to_string()));
    }
    fs::remove_file(path)
        .await
        .map_err(|e| map_io(e, path, "deleting"))
}

/// Lists a directory: directories first, then by name; sizes only for non-directories.
///
/// The whole listing is one blocking task: through `tokio::fs`, each entry's `stat` was a
/// round trip to the blocking pool, and 100,000 entries took 0.6 s.
pub async fn list(path: &Path) -> Result<Vec<FileEntry>, FileError> {
    let owned = path.to_path_buf();
    blocking(path, "listing", move || list_blocking(&owned)).await
}

fn list_blocking(path: &Path) -> Result<Vec<FileEntry>, FileError> {
    let meta = std::fs::metadata(path).map_err(|e| map_io(e, path, "listing"))?;
    if !meta.is_dir() {
        return Err(FileError::NotADirectory(path.display().to_string()));
    }
    let dir = std::fs::read_dir(path).map_err(|e| map_io(e, path, "listing"))?;
    let mut entries = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| map_io(e, path, "listing"))?;
        // Follow links (a link to a directory lists as a directory); a dangling link is
        // described by the link itself. An entry deleted meanwhile is skipped. Anything but
        // a link is described relative to the open directory, without resolving its path.
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        let described = if is_link {
            std::fs::metadata(entry.path()).or_else(|_| entry.metadata())
        } else {
            entry.metadata()
        };
        let Ok(meta) = described else {
            continue;
        };
        let is_dir = meta.is_dir();
        entries.push(FileEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            is_dir,
            size: (!is_dir).then_some(meta.len()),
            modified_at: millis(meta.modified()),
        });
    }
    entries.sort_by(listing_order);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_requires_absolute_paths_without_parent_components() {
        assert_eq!(
            validate("/tmp/a b.txt").ok(),
            Some(PathBuf::from("/tmp/a b.txt"))
        );
        assert_eq!(
            validate("/tmp/ünï/x").ok(),
            Some(PathBuf::from("/tmp/ünï/x"))
        );
        assert!(matches!(validate("tmp/x"), Err(FileError::NotAbsolute(_))));
        assert!(matches!(validate(""), Err(FileError::Empty)));
        assert!(matches!(
            validate("/tmp/../etc/passwd"),
            Err(FileError::Traversal(_))
        ));
        assert!(matches!(validate("/tmp/.."), Err(FileError::Traversal(_))));
        // Dots inside a name are not traversal.
        assert!(validate("/tmp/..hidden/a..b").is_ok());
        assert!(matches!(validate("/tmp/a\0b"), Err(FileError::Nul)));
    }

    #[tokio::test]
    async fn write_creates_parents_and_refuses_file_parents() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("a/b/c.txt");
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("hi"))]);
        assert_eq!(write(&target, body, None).await.expect("written"), 2);
        assert_eq!(std::fs::read(&target).expect("read back"), b"hi");

        let below_file = target.join("d.txt");
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("x"))]);
        assert!(matches!(
            write(&below_file, body, None).await,
            Err(FileError::NotADirectory(_))
        ));
    }

    #[tokio::test]
    async fn write_refuses_fifos_and_sockets_at_once_and_takes_devices() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let body = || futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("x"))]);
        // No reader: the open would block until one came; it is refused instead.
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            write(&fifo, body(), None),
        );
        assert!(matches!(refused.await, Ok(Err(FileError::NotRegular(_)))));
        // A reader does not make it a file.
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("reader");
        assert!(matches!(
            write(&fifo, body(), None).await,
            Err(FileError::NotRegular(_))
        ));
        let socket = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        assert!(matches!(
            write(&socket, body(), None).await,
            Err(FileError::NotRegular(_))
        ));
        assert_eq!(
            write(Path::new("/dev/null"), body(), None)
                .await
                .expect("/dev/null"),
            1
        );
    }

    #[test]
    fn os_errors_map_to_caller_faults() {
        let path = Path::new("/x/y");
        let map = |errno| map_io(io::Error::from_raw_os_error(errno), path, "writing");
        assert!(matches!(map(libc::ENOENT), FileError::NotFound(_)));
        assert!(matches!(map(libc::ENOTDIR), FileError::NotADirectory(_)));
        assert!(matches!(map(libc::EISDIR), FileError::IsDirectory(_)));
        assert!(matches!(map(libc::EACCES), FileError::PermissionDenied(_)));
        assert!(matches!(map(libc::EPERM), FileError::PermissionDenied(_)));
        assert!(matches!(map(libc::EROFS), FileError::ReadOnly(_)));
        assert!(matches!(map(libc::ENOSPC), FileError::NoSpace(_)));
        assert!(matches!(map(libc::EDQUOT), FileError::NoSpace(_)));
        assert!(matches!(map(libc::EEXIST), FileError::AlreadyExists(_)));
        assert!(matches!(map(libc::ETXTBSY), FileError::Busy(_)));
        assert!(matches!(map(libc::ENAMETOOLONG), FileError::BadPath { .. }));
        // EIO off a kernel file system is a real I/O failure.
        assert!(matches!(map(libc::EIO), FileError::Io { .. }));
        let proc_file = Path::new("/proc/version");
        let eio = map_io(
            io::Error::from_raw_os_error(libc::EIO),
            proc_file,
            "writing",
        );
        assert!(matches!(eio, FileError::KernelFile(_)));
        // Read, the same is a kernel file that serves no bytes; on disk, a failing disk.
        let read = |errno, path| read_error(io::Error::from_raw_os_error(errno), path);
        assert!(matches!(
            read(libc::EIO, proc_file),
            FileError::KernelRead { .. }
        ));
        assert!(matches!(
            read(libc::EAGAIN, proc_file),
            FileError::KernelRead { .. }
        ));
        assert!(matches!(
            read(libc::EIO, Path::new("/")),
            FileError::Io { .. }
        ));
        assert!(matches!(
            read(libc::ESRCH, proc_file),
            FileError::NotFound(_)
        ));
    }

    #[tokio::test]
    async fn writing_a_device_skips_the_sync_it_cannot_do() {
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("gone"))]);
        assert_eq!(
            write(Path::new("/dev/null"), body, None)
                .await
                .expect("written"),
            4
        );
    }

    #[tokio::test]
    async fn list_and_delete_report_wrong_kinds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("f");
        std::fs::write(&file, "x").expect("write");
        assert!(matches!(
            list(&file).await,
            Err(FileError::NotADirectory(_))
        ));
        assert!(matches!(
            delete(dir.path()).await,
            Err(FileError::IsDirectory(_))
        ));
        assert!(matches!(
            open_for_read(&dir.path().join("missing")).await,
            Err(FileError::NotFound(_))
        ));
    }
}
