//! The kernel calls behind user-namespaced sandboxes: a user namespace that
//! carries a sandbox's id mapping, idmapped mounts built from it, and the
//! overlay mounted with credentials that fit that mapping.
//!
//! The writable layer and the image are stored with the sandbox's own ids
//! (root is 0 on disk). Idmapped mounts shift them into the sandbox's host
//! range, so the same layer works under any range and nothing is copied or
//! chowned per sandbox.
//!
//! Each helper that needs a single-threaded process (unsharing or entering a
//! user namespace) or process-wide state (the working directory) forks a
//! child that makes raw system calls only, with every buffer prepared before
//! the fork: the server is multi-threaded, and after `fork` only
//! async-signal-safe calls are sound in the child.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::error::{Result, RuntimeError};
use crate::idmap::IdRange;

pub(crate) const OPEN_TREE_CLONE: libc::c_uint = 1;
pub(crate) const AT_EMPTY_PATH: libc::c_uint = 0x1000;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}

pub(crate) fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::Config(format!("path {} contains a NUL", path.display())))
}

pub(crate) fn os_err(op: &'static str, path: &Path) -> RuntimeError {
    RuntimeError::io(op, path)(std::io::Error::last_os_error())
}

/// Waits for a forked child and turns its exit code (an errno, or 0) into a
/// result.
pub(crate) fn wait_child(pid: Pid, op: &'static str, path: &Path) -> Result<()> {
    match waitpid(pid, None) {
        Ok(WaitStatus::Exited(_, 0)) => Ok(()),
        Ok(WaitStatus::Exited(_, errno)) => Err(RuntimeError::io(op, path)(
            std::io::Error::from_raw_os_error(errno),
        )),
        Ok(other) => Err(RuntimeError::io(op, path)(std::io::Error::other(format!(
            "helper process ended with {other:?}"
        )))),
        Err(e) => Err(RuntimeError::io(op, path)(e.into())),
    }
}

/// In a forked child: asks the kernel to SIGKILL it when the thread that
/// forked it ends (a crash of the server included), and ends it at once when
/// that already happened (`parent`: the server's pid, taken before the fork).
/// Without it, the child of a server killed at the wrong moment lives on with
/// every descriptor the server had, its listening socket and its database
/// among them, and the next server cannot bind its address.
///
/// # Safety
///
/// Only raw, async-signal-safe system calls: call it in a forked child only.
pub(crate) unsafe fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl, getppid and _exit are async-signal-safe system calls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(libc::ECHILD);
        }
    }
}

/// The server's pid, for [`die_with_parent`] in a child it forks.
pub(crate) fn own_pid() -> libc::pid_t {
    libc::pid_t::try_from(std::process::id()).unwrap_or(libc::pid_t::MAX)
}

/// The errno of the last failed call, for a child's exit code.
pub(crate) fn child_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
        .clamp(1, 255)
}

/// A user namespace whose mapping is `range`, held by an open descriptor (the
/// namespace lives as long as it). Used to build idmapped mounts; the
/// sandbox's own namespace is created by runc from the same mapping.
pub fn mapping_namespace(range: IdRange) -> Result<OwnedFd> {
    let proc_self = Path::new("/proc/self/ns/user");
    let (ready_r, ready_w) =
        nix::unistd::pipe().map_err(|e| RuntimeError::io("pipe", proc_self)(e.into()))?;
    let parent = own_pid();
    // SAFETY: the child only calls prctl, getppid, unshare, write, pause and
    // _exit (all async-signal-safe) and touches no memory allocated after the fork.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: raw system calls on values owned by this child.
            unsafe {
                // It waits for the server to kill it: it must not outlive a crash.
                die_with_parent(parent);
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                let byte: u8 = if ok { 1 } else { 0 };
                libc::write(ready_w.as_raw_fd(), std::ptr::from_ref(&byte).cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(RuntimeError::io("forking for", proc_self)(e.into())),
    };
    drop(ready_w);
    let result = (|| {
        let mut byte = [0u8; 1];
        let n = nix::unistd::read(&ready_r, &mut byte)
            .map_err(|e| RuntimeError::io("waiting for", proc_self)(e.into()))?;
        if n != 1 || byte[0] != 1 {
            return Err(RuntimeError::Config(
                "creating a user namespace failed (is user.max_user_namespaces 0?)".into(),
            ));
        }
        let proc_dir = Path::new("/proc").join(child.as_raw().to_string());
        for file in ["uid_map", "gid_map"] {
            let path = proc_dir.join(file);
            std::fs::write(&path, range.map_line()).map_err(RuntimeError::io("writing", &path))?;
        }
        let ns = proc_dir.join("ns/user");
        std::fs::File::open(&ns)
            .map(OwnedFd::from)
            .map_err(RuntimeError::io("opening", &ns))
    })();
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    result
}

/// A detached clone of the mount tree at `source` (`open_tree` with
/// `OPEN_TREE_CLONE`), to be changed with `mount_setattr` and attached elsewhere.
pub(crate) fn clone_tree(source: &Path) -> Result<OwnedFd> {
    open_tree_clone(source, 0)
}

/// [`clone_tree`] with everything mounted below `source` too (`AT_RECURSIVE`,
/// as `mount --rbind`); `source` need not be a mount point.
pub(crate) fn clone_tree_recursive(source: &Path) -> Result<OwnedFd> {
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    open_tree_clone(source, AT_RECURSIVE)
}

fn open_tree_clone(source: &Path, flags: libc::c_uint) -> Result<OwnedFd> {
    let src = cstring(source)?;
    // SAFETY: `src` is a valid NUL-terminated path; the flags are plain ints.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | flags | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(os_err("cloning the mount of", source));
    }
    let raw = i32::try_from(tree).map_err(|_| RuntimeError::Config("bad mount fd".into()))?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok(tree)
}

/// Attaches at `target` (an existing empty directory) a clone of the mount
/// tree at `source`, with its ids shifted by the mapping of `userns` and
/// `nosuid,nodev` set, and read-only with `read_only`.
pub fn idmapped_clone(
    source: &Path,
    target: &Path,
    userns: &OwnedFd,
    read_only: bool,
) -> Result<()> {
    let dst = cstring(target)?;
    let tree = clone_tree(source)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP
            | MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: `attr` is a valid mount_attr of the size passed; `empty` is a
    // valid empty C string used with AT_EMPTY_PATH.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(os_err("idmapping the mount of", source));
    }
    // SAFETY: valid descriptors and C strings as above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(os_err("attaching an idmapped mount at", target));
    }
    Ok(())
}

/// Raises every permitted capability into the effective set of the calling
/// thread (after `setfsuid` to a non-zero id dropped the file-system ones).
///
/// # Safety
/// Makes raw system calls only; sound in a forked child.
pub(crate) unsafe fn raise_effective_caps() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are valid for a version-3 capget/capset.
    unsafe {
        if libc::syscall(
            libc::SYS_capget,
            std::ptr::from_mut(&mut header),
            data.as_mut_ptr(),
        ) != 0
        {
            return false;
        }
        for d in &mut data {
            d.effective = d.permitted;
        }
        libc::syscall(
            libc::SYS_capset,
            std::ptr::from_mut(&mut header),
            data.as_ptr(),
        ) == 0
    }
}

/// Mounts the sandbox's overlay at `<dir>/rootfs` from the idmapped layers
/// `<dir>/lower` and `<dir>/upper/{upper,work}`, `nosuid,nodev`.
///
/// overlayfs does its own work (the work directory, copy-up) with the
/// credentials of whoever mounted it. Host root has no id in the sandbox's
/// range, so through the idmapped upper layer its writes fail with
/// `EOVERFLOW`; the mount is therefore made by a child whose file-system ids
/// are the range's root, keeping host root's capabilities. The layer paths
/// are given relative to the sandbox directory, so `/proc/self/mountinfo`
/// inside the sandbox shows `lowerdir=lower/1:lower/0,...` and no host path
/// or id.
pub fn mount_overlay(dir: &Path, range: IdRange, layers: usize) -> Result<()> {
    let cdir = cstring(dir)?;
    let source = c"overlay";
    let target = c"rootfs";
    // Top layer first, as overlayfs wants; relative to `dir` to keep the
    // option string short (it must fit in a page).
    let lowers: Vec<String> = (0..layers).rev().map(|i| format!("lower/{i}")).collect();
    let options = CString::new(format!(
        "lowerdir={},upperdir=upper/upper,workdir=upper/work",
        lowers.join(":")
    ))
    .map_err(|_| RuntimeError::Config("overlay options hold a NUL byte".into()))?;
    let id = range.first;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    let parent = own_pid();
    // SAFETY: the child makes raw system calls on buffers created before the
    // fork and exits with _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: as above.
            unsafe {
                die_with_parent(parent);
                let code = if libc::chdir(cdir.as_ptr()) != 0 {
                    child_errno()
                } else {
                    libc::setfsgid(id);
                    libc::setfsuid(id);
                    let mounted = raise_effective_caps()
                        && libc::mount(
                            source.as_ptr(),
                            target.as_ptr(),
                            source.as_ptr(),
                            flags,
                            options.as_ptr().cast(),
                        ) == 0;
                    if mounted { 0 } else { child_errno() }
                };
                libc::_exit(code);
            }
        }
        Ok(ForkResult::Parent { child }) => {
            wait_child(child, "mounting the overlay on", &dir.join("rootfs"))
        }
        Err(e) => Err(RuntimeError::io("forking to mount", dir)(e.into())),
    }
}

/// Per-user-namespace maxima written into a sandbox's user namespace
/// (`/proc/sys/user/<name>`), as `(file name, value)`.
pub type NamespaceLimits = Vec<(String, u64)>;

/// Writes `limits` into the user namespace of process `pid` from a child that
/// enters it (the values of `/proc/sys/user` are those of the reader's own
/// namespace, and only a process inside with `CAP_SYS_RESOURCE` there may
/// write them).
pub fn write_namespace_limits(pid: i32, limits: &[(String, u64)]) -> Result<()> {
    let ns_path = Path::new("/proc").join(pid.to_string()).join("ns/user");
    let ns = std::fs::File::open(&ns_path).map_err(RuntimeError::io("opening", &ns_path))?;
    let prepared: Vec<(CString, Vec<u8>)> = limits
        .iter()
        .map(|(name, value)| {
            let path = Path::new("/proc/sys/user").join(name);
            Ok((cstring(&path)?, value.to_string().into_bytes()))
        })
        .collect::<Result<_>>()?;
    let parent = own_pid();
    // SAFETY: the child makes raw system calls on buffers created before the
    // fork and exits with _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // SAFETY: as above.
            unsafe {
                die_with_parent(parent);
                let mut code = 0;
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) != 0 {
                    code = child_errno();
                } else {
                    for (path, value) in &prepared {
                        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        if fd < 0
                            || libc::write(fd, value.as_ptr().cast(), value.len())
                                != value.len() as isize
                        {
                            code = child_errno();
                            break;
                        }
                        libc::close(fd);
                    }
                }
                libc::_exit(code);
            }
        }
        Ok(ForkResult::Parent { child }) => {
            wait_child(child, "setting the user-namespace limits of", &ns_path)
        }
        Err(e) => Err(RuntimeError::io("forking to enter", &ns_path)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_dies_with_the_thread_that_forked_it() {
        let parent = own_pid();
        let child = std::thread::spawn(move || {
            let (ready_r, ready_w) = nix::unistd::pipe().expect("pipe");
            // SAFETY: the child only makes async-signal-safe system calls.
            match unsafe { fork() } {
                // SAFETY: raw system calls on values owned by this child.
                Ok(ForkResult::Child) => unsafe {
                    die_with_parent(parent);
                    libc::write(ready_w.as_raw_fd(), [1u8].as_ptr().cast(), 1);
                    loop {
                        libc::pause();
                    }
                },
                Ok(ForkResult::Parent { child }) => {
                    drop(ready_w);
                    let mut byte = [0u8; 1];
                    nix::unistd::read(&ready_r, &mut byte).expect("ready");
                    child
                }
                Err(e) => panic!("fork: {e}"),
            }
        })
        .join()
        .expect("forking thread");
        // The thread that forked it has ended, as a crashed server's would: the
        // kernel kills the child, which would otherwise pause forever.
        let mut status = Ok(WaitStatus::StillAlive);
        for _ in 0..500 {
            status = waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            if status != Ok(WaitStatus::StillAlive) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if status == Ok(WaitStatus::StillAlive) {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
        }
        assert!(
            matches!(status, Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _))),
            "the child outlived the thread that forked it: {status:?}"
        );
    }
}
