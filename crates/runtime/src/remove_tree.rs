//! Removing a directory tree that someone else wrote (a sandbox's files, an
//! image's unpacked layer, a build's work): of any depth, never following a
//! symlink, never crossing a mount.
//!
//! `std::fs::remove_dir_all` recurses once per level and keeps a descriptor
//! open per level: a tree a few thousand levels deep runs the process out of
//! descriptors, and one some 14,000 deep overflows a 2 MiB stack (a tokio
//! worker's, a blocking thread's), which aborts the whole server. This walk
//! is a loop over an explicit stack of names. Only the root and the innermost
//! directories stay open; an outer one is found again through `..` of its
//! child (or by name from the nearest open one), checked by device and inode,
//! so neither stack nor descriptors grow with depth: at most 16 descriptors
//! at once.
//!
//! The walk goes by directory descriptors (`openat` with `O_NOFOLLOW`,
//! `unlinkat`), so a symlink is unlinked, never followed, even one swapped in
//! while the walk runs. A directory that refuses (no read, write or search
//! permission for us) is made `0700` and the removal goes on, as a hostile
//! layer's `0000` directories need. What vanishes meanwhile is fine.
//!
//! `alcove-images` compiles this file as a module of its own (neither crate
//! depends on the other), so it uses nothing but std, libc and nix.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::NixPath;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode};
use nix::unistd::UnlinkatFlags;

/// Directories kept open below the root: the innermost ones. With the root,
/// a child being opened (and its `O_PATH` handle when it refuses us) the walk
/// never holds more than 16 descriptors.
const KEEP_OPEN: usize = 13;

/// Times a directory found not empty after its walk is walked again: a live
/// tree may add entries behind the walk, but not forever.
const MAX_PASSES: u8 = 3;

/// Tries at one entry that keeps changing kind under the walk.
const MAX_TRIES: usize = 6;

/// Bytes of directory entries read at a time.
const LISTING_BYTES: usize = 8192;

/// Removes whatever is at `path`: a directory with everything below it, or
/// a file or symlink (a symlink is unlinked, never followed). Nothing at
/// `path` is fine. Refuses (`ResourceBusy`) to cross a mount point, `path`
/// itself included, leaving what the mount holds.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    for _ in 0..MAX_PASSES {
        let Some(root) = open_root(path)? else {
            return Ok(());
        };
        empty(root)?;
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // Entries added meanwhile: walk it again.
            Err(e) if is_not_empty(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from(Errno::ENOTEMPTY))
}

fn is_not_empty(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST))
}

/// A descriptor the walk opened (tests count them against the bound).
struct Fd(OwnedFd);

impl Fd {
    fn new(fd: OwnedFd) -> Self {
        #[cfg(test)]
        tests::opened();
        Self(fd)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        #[cfg(test)]
        tests::closed();
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// An 8-byte aligned buffer: the kernel writes `linux_dirent64` records,
/// whose 64-bit fields it aligns relative to the buffer's start.
#[repr(C, align(8))]
struct Buf([u8; LISTING_BYTES]);

/// An open directory and where its listing stands.
struct Listing {
    fd: Fd,
    buf: Box<Buf>,
    /// Unread records are `buf[start..end]`.
    start: usize,
    end: usize,
    done: bool,
}

impl Listing {
    fn new(fd: Fd) -> Self {
        Self {
            fd,
            buf: Box::new(Buf([0; LISTING_BYTES])),
            start: 0,
            end: 0,
            done: false,
        }
    }

    /// The next entry's name and `d_type` (`.` and `..` left out).
    fn next(&mut self) -> io::Result<Option<(CString, u8)>> {
        loop {
            if self.start >= self.end && (self.done || !self.fill()?) {
                self.done = true;
                return Ok(None);
            }
            let (name, kind, len) = parse_record(&self.buf.0[self.start..self.end])?;
            self.start += len;
            if name != c"." && name != c".." {
                return Ok(Some((name.to_owned(), kind)));
            }
        }
    }

    /// Reads the next records; false at the end of the directory.
    fn fill(&mut self) -> io::Result<bool> {
        let buf = &mut self.buf.0;
        // SAFETY: the descriptor is open and `buf` is valid for writes of the
        // length passed; the kernel writes no more than that.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                self.fd.as_fd().as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.start = 0;
        self.end = usize::try_from(n).unwrap_or(0).min(buf.len());
        Ok(self.end > 0)
    }
}

/// Splits the first `linux_dirent64` record off `bytes`: its name, its
/// `d_type` and its length.
fn parse_record(bytes: &[u8]) -> io::Result<(&CStr, u8, usize)> {
    // d_ino (8), d_off (8), d_reclen (2), d_type (1), then the name.
    const NAME_AT: usize = 19;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed directory entry");
    let len = match bytes.get(16..18) {
        Some(&[lo, hi]) => usize::from(u16::from_ne_bytes([lo, hi])),
        _ => return Err(bad()),
    };
    let record = bytes.get(..len).filter(|_| len > NAME_AT).ok_or_else(bad)?;
    let name = CStr::from_bytes_until_nul(&record[NAME_AT..]).map_err(|_| bad())?;
    Ok((name, record[18], len))
}

/// (device, inode) of a directory: what a reopened one must match.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Id {
    dev: (u32, u32),
    ino: u64,
}

/// A directory on the walk's stack.
struct Frame {
    /// `None` while closed for [`KEEP_OPEN`]; the innermost frame's and the
    /// root's are always open.
    dir: Option<Listing>,
    id: Id,
    /// Its name in its parent (empty for the root).
    name: CString,
    /// Made `0700` already: it refused us once.
    opened_up: bool,
    /// Walks of it so far beyond the first.
    passes: u8,
}

impl Frame {
    fn new(fd: Fd, id: Id, name: CString) -> Self {
        Self {
            dir: Some(Listing::new(fd)),
            id,
            name,
            opened_up: false,
            passes: 0,
        }
    }

    fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        // A closed innermost frame would be a bug of the walk, not a panic.
        self.dir
            .as_ref()
            .map(|d| d.fd.as_fd())
            .ok_or_else(|| io::Error::other("directory walk lost its place"))
    }

    /// Makes the directory `0700`, once: it refused to have entries removed.
    fn open_up(&mut self) -> io::Result<()> {
        nix::sys::stat::fchmod(self.fd()?, Mode::S_IRWXU)?;
        self.opened_up = true;
        Ok(())
    }
}

/// Opens the directory `name` below `dir` without following a symlink.
fn open_dir_at<P: ?Sized + NixPath>(dir: BorrowedFd<'_>, name: &P) -> nix::Result<Fd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::openat(dir, name, flags, Mode::empty()).map(Fd::new)
}

/// Opens the directory `name` below `dir` that refused to be opened: makes
/// it `0700` first, through an `O_PATH` handle of it (so a symlink swapped
/// in meanwhile is never what is changed). `None` when it is gone or no
/// longer a directory.
fn open_refusing_dir<P: ?Sized + NixPath>(dir: BorrowedFd<'_>, name: &P) -> io::Result<Option<Fd>> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let handle = match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => Fd::new(fd),
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // fchmod refuses an O_PATH descriptor; its /proc link names the inode
    // itself, not a path through the tree.
    let link = format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd());
    nix::sys::stat::fchmodat(
        AT_FDCWD,
        link.as_str(),
        Mode::S_IRWXU,
        FchmodatFlags::FollowSymlink,
    )?;
    Ok(Some(open_dir_at(handle.as_fd(), c".")?))
}

/// The identity of an open directory, and whether it is the root of a mount
/// (`None` when the kernel does not say).
fn inspect(fd: BorrowedFd<'_>) -> io::Result<(Id, Option<bool>)> {
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: an open descriptor with an empty, NUL-terminated path
    // (AT_EMPTY_PATH: the descriptor's own file) and a buffer of the right
    // type, both live for the call.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_INO,
            st.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed before (every field is an integer) and filled by statx.
    let st = unsafe { st.assume_init() };
    let id = Id {
        dev: (st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
    };
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    let mount_root = (st.stx_attributes_mask & flag != 0).then_some(st.stx_attributes & flag != 0);
    Ok((id, mount_root))
}

/// The error for a mount point met at `name`: never crossed, since what a
/// mount holds (an image's shared layer, say) is not the tree's.
fn mount_point(name: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        format!(
            "{} is a mount point: not removing through it",
            String::from_utf8_lossy(name)
        ),
    )
}

/// Opens the tree's root as the walk's first frame; `None` when there is no
/// directory to walk (nothing at `path`, or a file or symlink, unlinked).
fn open_root(path: &Path) -> io::Result<Option<Frame>> {
    let fd = match open_dir_at(AT_FDCWD, path) {
        Ok(fd) => Some(fd),
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ENOTDIR | Errno::ELOOP) => None,
        Err(Errno::EACCES) => open_refusing_dir(AT_FDCWD, path)?,
        Err(e) => return Err(e.into()),
    };
    let Some(fd) = fd else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(None),
        };
    };
    let (id, mount_root) = inspect(fd.as_fd())?;
    let is_mount = match mount_root {
        Some(known) => known,
        None => inspect(open_dir_at(fd.as_fd(), c"..")?.as_fd())?.0.dev != id.dev,
    };
    if is_mount {
        return Err(mount_point(path.as_os_str().as_bytes()));
    }
    Ok(Some(Frame::new(fd, id, CString::default())))
}

/// Removes everything below the root frame, leaving it empty.
fn empty(root: Frame) -> io::Result<()> {
    let mut stack = vec![root];
    while let Some(top) = stack.last_mut() {
        let Some(listing) = top.dir.as_mut() else {
            return Err(io::Error::other("directory walk lost its place"));
        };
        match listing.next()? {
            Some((name, kind)) => remove_entry(&mut stack, &name, kind)?,
            None => leave(&mut stack)?,
        }
    }
    Ok(())
}

/// Removes the entry `name` of the innermost directory; a directory that is
/// not empty is pushed to be walked instead (and removed on the way out).
fn remove_entry(stack: &mut Vec<Frame>, name: &CStr, kind: u8) -> io::Result<()> {
    let Some(top) = stack.last_mut() else {
        return Ok(());
    };
    // `d_type` is a hint (some file systems leave it unknown, and a live
    // tree may change the entry): the kernel's answers decide.
    let mut as_dir = kind == libc::DT_DIR;
    for _ in 0..MAX_TRIES {
        let flag = if as_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match nix::unistd::unlinkat(top.fd()?, name, flag) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EISDIR) if !as_dir => as_dir = true,
            Err(Errno::ENOTDIR) if as_dir => as_dir = false,
            Err(Errno::ENOTEMPTY | Errno::EEXIST) if as_dir => {
                if let Some(child) = open_child(top, name)? {
                    push(stack, child);
                    return Ok(());
                }
                // Gone or no longer a directory: try again.
            }
            Err(Errno::EACCES) if !top.opened_up => top.open_up()?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(format!(
        "{} kept changing while being removed",
        name.to_string_lossy()
    )))
}

/// Opens the directory `name` of `parent` as a frame to walk; `None` when it
/// is gone or no longer a directory.
fn open_child(parent: &Frame, name: &CStr) -> io::Result<Option<Frame>> {
    let fd = match open_dir_at(parent.fd()?, name) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => return Ok(None),
        Err(Errno::EACCES) => match open_refusing_dir(parent.fd()?, name)? {
            Some(fd) => fd,
            None => return Ok(None),
        },
        Err(e) => return Err(e.into()),
    };
    let (id, mount_root) = inspect(fd.as_fd())?;
    // Without the kernel's word, another device is another mount; a bind
    // mount of the same file system would also have failed its rmdir with
    // EBUSY before this.
    if mount_root.unwrap_or(id.dev != parent.id.dev) {
        return Err(mount_point(name.to_bytes()));
    }
    Ok(Some(Frame::new(fd, id, name.to_owned())))
}

/// Pushes `child` to be walked next, closing the outermost open frame past
/// [`KEEP_OPEN`] (never the root's: reopening starts from it).
fn push(stack: &mut Vec<Frame>, child: Frame) {
    stack.push(child);
    if let Some(i) = stack.len().checked_sub(KEEP_OPEN + 1)
        && i > 0
    {
        stack[i].dir = None;
    }
}

/// Done listing the innermost directory: drops its frame, makes sure its
/// parent is open again and removes it from there.
fn leave(stack: &mut Vec<Frame>) -> io::Result<()> {
    let Some(mut done) = stack.pop() else {
        return Ok(());
    };
    let depth = stack.len();
    let Some(parent) = stack.last_mut() else {
        // The root: the caller removes it by its path.
        return Ok(());
    };
    if parent.dir.is_none() {
        let back = match done.dir.as_ref().map(|d| open_dir_at(d.fd.as_fd(), c"..")) {
            Some(Ok(fd)) if inspect(fd.as_fd())?.0 == parent.id => Some(fd),
            // Moved or removed meanwhile: find it again by name.
            Some(Ok(_) | Err(Errno::ENOENT)) | None => None,
            Some(Err(e)) => return Err(e.into()),
        };
        // Closed before any reopening, to stay within the bound.
        done.dir = None;
        match back {
            Some(fd) => parent.dir = Some(Listing::new(fd)),
            None => reopen(stack)?,
        }
    }
    done.dir = None;
    if stack.len() != depth {
        // Its ancestors moved (a live tree): what is left of it is found
        // by the walks of the ones still in place, or not ours any more.
        return Ok(());
    }
    remove_walked(stack, done)
}

/// Removes the directory of `done`, just walked, from the innermost frame;
/// walks it again when entries came meanwhile.
fn remove_walked(stack: &mut Vec<Frame>, done: Frame) -> io::Result<()> {
    let Some(parent) = stack.last_mut() else {
        return Ok(());
    };
    loop {
        match nix::unistd::unlinkat(parent.fd()?, done.name.as_c_str(), UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) if done.passes + 1 < MAX_PASSES => {
                if let Some(mut again) = open_child(parent, &done.name)? {
                    again.passes = done.passes + 1;
                    again.opened_up = done.opened_up;
                    push(stack, again);
                }
                return Ok(());
            }
            Err(Errno::EACCES) if !parent.opened_up => parent.open_up()?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reopens the innermost frame by name from the nearest open frame out,
/// checking each directory on the way is the one walked before. Frames that
/// cannot be found again (a live tree moved or removed them) are dropped.
fn reopen(stack: &mut Vec<Frame>) -> io::Result<()> {
    let Some(start) = stack.iter().rposition(|f| f.dir.is_some()) else {
        return Err(io::Error::other("directory walk lost its root"));
    };
    let mut current: Option<Fd> = None;
    for i in start + 1..stack.len() {
        let dir = match current.as_ref() {
            Some(fd) => fd.as_fd(),
            None => stack[start].fd()?,
        };
        let next = match open_dir_at(dir, stack[i].name.as_c_str()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {
                stack.truncate(i);
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if inspect(next.as_fd())?.0 != stack[i].id {
            stack.truncate(i);
            break;
        }
        current = Some(next);
    }
    if let Some(top) = stack.last_mut()
        && top.dir.is_none()
    {
        top.dir = current.map(Listing::new);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::os::unix::fs::PermissionsExt;

    thread_local! {
        /// Descriptors the walk holds on this thread, and the most it held.
        static OPEN: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    pub(super) fn opened() {
        OPEN.with(|c| {
            let (now, peak) = c.get();
            c.set((now + 1, peak.max(now + 1)));
        });
    }

    pub(super) fn closed() {
        OPEN.with(|c| {
            let (now, peak) = c.get();
            c.set((now.saturating_sub(1), peak));
        });
    }

    fn reset_count() {
        OPEN.with(|c| c.set((0, 0)));
    }

    fn count() -> (usize, usize) {
        OPEN.with(Cell::get)
    }

    /// Makes `levels` nested directories `d` below `top` (every 16th with a
    /// file `f` too), by descriptor: the path is far longer than PATH_MAX.
    fn nest(top: &Path, levels: usize) {
        let dir_mode = Mode::from_bits_truncate(0o755);
        let mut dir = nix::fcntl::open(top, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
            .expect("open top");
        for level in 0..levels {
            if level % 16 == 0 {
                let file = nix::fcntl::openat(
                    &dir,
                    c"f",
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                );
                drop(file.expect("create f"));
            }
            nix::sys::stat::mkdirat(&dir, c"d", dir_mode).expect("mkdirat");
            dir = nix::fcntl::openat(
                &dir,
                c"d",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .expect("openat");
        }
    }

    #[test]
    fn remove_tree_takes_a_20000_level_tree_on_a_small_stack_with_few_descriptors() {
        // In memory where there is a tmpfs: 20,000 directories on a busy
        // disk take long to make.
        let tmp = tempfile::Builder::new()
            .tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("tmp");
        let top = tmp.path().join("deep");
        std::fs::create_dir(&top).expect("mkdir");
        nest(&top, 20_000);
        // A second deep branch after the first: found by walking the root
        // again once the first is gone.
        std::fs::create_dir(top.join("e")).expect("mkdir");
        nest(&top.join("e"), 100);
        let path = top.clone();
        let (result, (open, peak)) = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                reset_count();
                let result = remove_tree(&path);
                (result, count())
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow");
        result.expect("removed");
        assert!(!top.exists());
        assert_eq!(open, 0, "every descriptor closed");
        assert!(peak <= 16, "held {peak} descriptors at once");
    }

    #[test]
    fn remove_tree_unlinks_symlinks_and_leaves_their_targets() {
        let tmp = tempfile::tempdir().expect("tmp");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).expect("mkdir");
        std::fs::write(outside.join("keep"), b"k").expect("write");
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, tree.join("a/b/to-dir")).expect("symlink");
        std::os::unix::fs::symlink(outside.join("keep"), tree.join("to-file")).expect("symlink");
        std::os::unix::fs::symlink("/nowhere", tree.join("dangling")).expect("symlink");
        remove_tree(&tree).expect("removed");
        assert!(!tree.exists());
        // The root itself a symlink: the link goes, its target stays.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        remove_tree(&link).expect("removed");
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert_eq!(std::fs::read(outside.join("keep")).expect("kept"), b"k");
        assert!(outside.join("sub").is_dir());
    }

    #[test]
    fn remove_tree_takes_directories_that_refuse() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tree = tmp.path().join("tree");
        // As root the modes bind nobody: check them as another user (this
        // thread's file-system uid only, which drops root's overrides).
        let uid = 4242;
        let as_root = nix::unistd::geteuid().is_root();
        if as_root {
            std::os::unix::fs::chown(tmp.path(), Some(uid), Some(uid)).expect("chown");
        }
        let path = tree.clone();
        let result = std::thread::spawn(move || {
            if as_root {
                // SAFETY: setfsuid only changes this thread's credentials.
                unsafe { libc::setfsuid(uid) };
            }
            for (dir, mode) in [("none", 0o000), ("read-only", 0o500), ("no-read", 0o300)] {
                let d = path.join(dir);
                std::fs::create_dir_all(d.join("inner")).expect("mkdir");
                std::fs::write(d.join("file"), b"x").expect("write");
                std::fs::write(d.join("inner/file"), b"x").expect("write");
                std::fs::set_permissions(d.join("inner"), PermissionsExt::from_mode(mode))
                    .expect("chmod");
                std::fs::set_permissions(&d, PermissionsExt::from_mode(mode)).expect("chmod");
            }
            std::fs::set_permissions(&path, PermissionsExt::from_mode(0o500)).expect("chmod");
            remove_tree(&path)
        })
        .join()
        .expect("thread");
        result.expect("removed");
        assert!(!tree.exists());
    }

    #[test]
    fn remove_tree_takes_files_fifos_sockets_and_nothing() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
        std::fs::write(tree.join("file"), b"x").expect("write");
        std::fs::hard_link(tree.join("file"), tree.join("sub/link")).expect("link");
        nix::unistd::mkfifo(&tree.join("sub/fifo"), Mode::S_IRWXU).expect("mkfifo");
        let socket = std::os::unix::net::UnixListener::bind(tree.join("sub/socket")).expect("bind");
        remove_tree(&tree).expect("removed");
        drop(socket);
        assert!(!tree.exists());
        // Nothing there: nothing to do.
        remove_tree(&tree).expect("missing is fine");
        // A file at the path itself.
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        remove_tree(&file).expect("removed");
        assert!(!file.exists());
    }

    #[test]
    #[ignore = "needs root (mount)"]
    fn remove_tree_does_not_cross_mounts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let tree = tmp.path().join("tree");
        let inner = tree.join("a/mnt");
        std::fs::create_dir_all(&inner).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            &inner,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount tmpfs");
        std::fs::write(inner.join("shared"), b"s").expect("write");
        let inside = remove_tree(&tree);
        let root = remove_tree(&inner);
        let kept = inner.join("shared").exists();
        nix::mount::umount(&inner).expect("umount");
        assert_eq!(
            inside.expect_err("refused").kind(),
            io::ErrorKind::ResourceBusy
        );
        assert_eq!(
            root.expect_err("refused").kind(),
            io::ErrorKind::ResourceBusy
        );
        assert!(kept, "nothing removed through the mount");
        remove_tree(&tree).expect("removed once unmounted");
        assert!(!tree.exists());
    }
}
