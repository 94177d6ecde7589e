//! The kernel calls behind user-namespaced sandboxes: a user namespace that
//! carries a sandbox's id mapping, idmapped mounts built from it, and the
//! overlay mounted with credentials that fit that mapping.
//!
//! The writable layer and the image are stored with the sandbox's own ids
//! (root is 0 on disk). Idmapped mounts shift them into the sandbox's host
//! range, so the same layer works under any range and nothing is copied or
//! chowned per sandbox.
//!
//! The server is multi-threaded, so what needs a process of its own (a new
//! user namespace, entering one) runs in a child that makes raw system calls
//! only, with every buffer prepared beforehand: after `fork` only
//! async-signal-safe calls are sound. Where a thread is enough (file-system
//! ids, capabilities and, after `unshare(CLONE_FS)`, the working directory
//! belong to a thread), a short-lived thread does the work instead, and the
//! holder of a mapping namespace shares the server's memory (`CLONE_VM`):
//! a `fork` copies the server's page tables, whose size grows with every
//! sandbox up.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

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
    // The child is made in its new user namespace by `clone` itself and
    // shares the server's memory and descriptor table (it opens nothing), so
    // nothing is copied, nor closed again when it is killed.
    let flags = libc::CLONE_NEWUSER | libc::CLONE_FILES;
    let child = VmChild::spawn(hold_namespace, std::ptr::null_mut(), flags).map_err(|e| {
        RuntimeError::Config(format!(
            "creating a user namespace failed (is user.max_user_namespaces 0?): {e}"
        ))
    })?;
    let result = (|| {
        let proc_dir = Path::new("/proc").join(child.pid.as_raw().to_string());
        for file in ["uid_map", "gid_map"] {
            let path = proc_dir.join(file);
            std::fs::write(&path, range.map_line()).map_err(RuntimeError::io("writing", &path))?;
        }
        let ns = proc_dir.join("ns/user");
        std::fs::File::open(&ns)
            .map(OwnedFd::from)
            .map_err(RuntimeError::io("opening", &ns))
    })();
    let _ = kill(child.pid, Signal::SIGKILL);
    child
        .wait()
        .map_err(|e| RuntimeError::io("reaping the holder of", proc_self)(e))?;
    result
}

/// A child process sharing the caller's memory (`CLONE_VM`), running an
/// `extern "C"` function on a stack of its own. Unlike `fork`, making it
/// copies nothing: a fork of the server copies its page tables, which grow
/// with every sandbox up. Unlike a thread, it may enter a user namespace,
/// and its credentials are its own.
///
/// The function runs in the caller's memory with the calling thread's TLS:
/// it must make raw system calls only (`libc::syscall`, whose only other
/// effect is `errno`), touch only what its argument points to, and never
/// allocate. The stack is freed only once the child has been reaped.
pub(crate) struct VmChild {
    /// The child's pid.
    pub(crate) pid: Pid,
    stack: Option<Vec<u8>>,
}

/// Stack size of a [`VmChild`]: its functions make a few system calls.
const VM_CHILD_STACK: usize = 64 * 1024;

impl VmChild {
    /// Starts `f(arg)` in a child made with `CLONE_VM | extra_flags`.
    pub(crate) fn spawn(
        f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
        arg: *mut libc::c_void,
        extra_flags: libc::c_int,
    ) -> std::io::Result<Self> {
        let mut stack = vec![0u8; VM_CHILD_STACK];
        // SAFETY: the stack is valid and outlives the child (see `wait` and
        // `Drop`); `f`'s contract is documented on the type.
        let pid = unsafe {
            libc::clone(
                f,
                stack.as_mut_ptr().add(stack.len()).cast(),
                libc::CLONE_VM | libc::SIGCHLD | extra_flags,
                arg,
            )
        };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            pid: Pid::from_raw(pid),
            stack: Some(stack),
        })
    }

    /// Reaps the child: its exit code (an errno, or 0), or how it ended.
    pub(crate) fn wait(mut self) -> std::io::Result<WaitStatus> {
        let status = waitpid(self.pid, None).map_err(std::io::Error::from)?;
        // Reaped: nothing runs on the stack any more.
        drop(self.stack.take());
        Ok(status)
    }
}

impl Drop for VmChild {
    fn drop(&mut self) {
        if let Some(stack) = self.stack.take() {
            // Not reaped (an error path): never free a stack a child may still
            // run on.
            let _ = kill(self.pid, Signal::SIGKILL);
            if waitpid(self.pid, None).is_ok() {
                drop(stack);
            } else {
                std::mem::forget(stack);
            }
        }
    }
}

/// The holder of [`mapping_namespace`]'s user namespace: blocks every signal
/// and sleeps until SIGKILL.
extern "C" fn hold_namespace(_: *mut libc::c_void) -> libc::c_int {
    // SAFETY: raw system calls on this frame's own values (see VmChild).
    unsafe {
        // It waits for the server to kill it: it must not outlive a crash.
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL,
            0,
            0,
            0,
        );
        let all: [u64; 1] = [u64::MAX];
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            all.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        loop {
            libc::syscall(libc::SYS_pause);
        }
    }
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

/// A detached clone of the detached mount `tree` (Linux 6.15 and later allow one of
/// this mount namespace's own; before, `EINVAL`).
pub(crate) fn clone_detached(tree: &OwnedFd) -> std::io::Result<OwnedFd> {
    open_tree_at(tree.as_raw_fd(), c"", AT_EMPTY_PATH)
}

fn open_tree_clone(source: &Path, flags: libc::c_uint) -> Result<OwnedFd> {
    let src = cstring(source)?;
    open_tree_at(libc::AT_FDCWD, &src, flags)
        .map_err(|e| RuntimeError::io("cloning the mount of", source)(e))
}

/// `open_tree(dir, path, OPEN_TREE_CLONE | flags)`, close-on-exec.
fn open_tree_at(
    dir: libc::c_int,
    path: &std::ffi::CStr,
    flags: libc::c_uint,
) -> std::io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string; `dir` and the flags are plain ints.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir,
            path.as_ptr(),
            OPEN_TREE_CLONE | flags | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let raw = i32::try_from(tree).map_err(|_| std::io::Error::other("bad mount fd"))?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
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
    attach_idmapped(clone_tree(source)?, source, target, userns, read_only)
}

/// [`idmapped_clone`] of a detached clone `tree` already made of `source`.
pub(crate) fn attach_idmapped(
    tree: OwnedFd,
    source: &Path,
    target: &Path,
    userns: &OwnedFd,
    read_only: bool,
) -> Result<()> {
    let dst = cstring(target)?;
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
    // Top layer first, as overlayfs wants; relative to `dir` to keep the
    // option string short (it must fit in a page).
    let lowers: Vec<String> = (0..layers).rev().map(|i| format!("lower/{i}")).collect();
    let options = CString::new(format!(
        "lowerdir={},upperdir=upper/upper,workdir=upper/work",
        lowers.join(":")
    ))
    .map_err(|_| RuntimeError::Config("overlay options hold a NUL byte".into()))?;
    let id = range.first;
    // A thread of its own, not a child process: file-system ids and
    // capabilities belong to a thread, and after `unshare(CLONE_FS)` so does
    // its working directory. The thread ends right after the mount, so the
    // changed credentials never serve anything else. (A fork of the server
    // copies its page tables, which grow with every sandbox up.)
    let mounted = std::thread::Builder::new()
        .name("overlay-mount".into())
        .spawn(move || -> std::io::Result<()> {
            // SAFETY: raw system calls on values owned by this thread; every
            // change is to this thread's own state, which ends with it.
            unsafe {
                if libc::unshare(libc::CLONE_FS) != 0 || libc::chdir(cdir.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The raw calls: they change this thread's ids only.
                libc::syscall(libc::SYS_setfsgid, id);
                libc::syscall(libc::SYS_setfsuid, id);
                if !raise_effective_caps() {
                    return Err(std::io::Error::last_os_error());
                }
                let source = c"overlay";
                if libc::mount(
                    source.as_ptr(),
                    c"rootfs".as_ptr(),
                    source.as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    options.as_ptr().cast(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
        .map_err(RuntimeError::io("starting a thread to mount", dir))?
        .join()
        .map_err(|_| RuntimeError::Config("the overlay mount thread panicked".into()))?;
    mounted.map_err(RuntimeError::io(
        "mounting the overlay on",
        &dir.join("rootfs"),
    ))
}

/// Per-user-namespace maxima written into a sandbox's user namespace
/// (`/proc/sys/user/<name>`), as `(file name, value)`.
pub type NamespaceLimits = Vec<(String, u64)>;

/// Writes `limits` into the user namespace of process `pid` from a child that
/// enters it (the values of `/proc/sys/user` are those of the reader's own
/// namespace, and only a process inside with `CAP_SYS_RESOURCE` there may
/// write them).
///
/// The files are looked up through a procfs instance of their own, made for
/// this write and gone after it. Through the host's `/proc`, every user
/// namespace that ever read its `/proc/sys/user` keeps a dentry of that name
/// under the one `/proc/sys` dentry, and the first lookup from a new
/// namespace compares all of them: with 1000 sandboxes up, that cost ~5 ms
/// per start against ~0.2 ms on an empty host. Where a new procfs instance
/// may not be made (a server in a user namespace whose `/proc` is partly
/// hidden), the host's `/proc` is used.
pub fn write_namespace_limits(pid: i32, limits: &[(String, u64)]) -> Result<()> {
    let ns_path = Path::new("/proc").join(pid.to_string()).join("ns/user");
    let ns = std::fs::File::open(&ns_path).map_err(RuntimeError::io("opening", &ns_path))?;
    let own_proc = crate::procfs::private_instance();
    let (root, dir) = match &own_proc {
        Ok(fd) => (fd.as_raw_fd(), c"sys/user"),
        Err(e) => {
            tracing::debug!(error = %e, "no procfs instance of our own: using /proc");
            (libc::AT_FDCWD, c"/proc/sys/user")
        }
    };
    let prepared: Vec<(CString, Vec<u8>)> = limits
        .iter()
        .map(|(name, value)| {
            if !crate::procfs::is_plain_name(name) {
                return Err(RuntimeError::Config(format!(
                    "{name:?} is not a file of /proc/sys/user"
                )));
            }
            Ok((cstring(Path::new(name))?, value.to_string().into_bytes()))
        })
        .collect::<Result<_>>()?;
    let job = LimitsJob {
        ns: ns.as_raw_fd(),
        root,
        dir: dir.as_ptr(),
        files: prepared
            .iter()
            .map(|(path, value)| (path.as_ptr(), value.as_ptr(), value.len()))
            .collect(),
    };
    // It shares the server's descriptor table (no copy of a table holding a
    // descriptor per sandbox, closed again at its exit): it closes what it opens.
    let child = VmChild::spawn(
        write_limits_in_child,
        std::ptr::from_ref(&job).cast_mut().cast(),
        libc::CLONE_FILES,
    )
    .map_err(RuntimeError::io("starting a child to enter", &ns_path))?;
    let status = child
        .wait()
        .map_err(RuntimeError::io("reaping the child that entered", &ns_path))?;
    // `job` and `prepared` are read by the child: they live until it is reaped.
    drop(job);
    drop(prepared);
    exit_status(status, "setting the user-namespace limits of", &ns_path)
}

/// What [`write_limits_in_child`] does: the user namespace to enter, the
/// directory of the files, and the `(name, value, length)` of each file to
/// write, all in the parent's memory.
struct LimitsJob {
    ns: libc::c_int,
    /// What `dir` is relative to: a procfs mount, or `AT_FDCWD`.
    root: libc::c_int,
    dir: *const libc::c_char,
    files: Vec<(*const libc::c_char, *const u8, usize)>,
}

/// Enters `job.ns` and writes each file; exits with 0 or the errno of the
/// first failure.
extern "C" fn write_limits_in_child(job: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `job` points to a LimitsJob the parent keeps until this child is
    // reaped; only raw system calls are made (see VmChild).
    unsafe {
        let job = &*job.cast::<LimitsJob>();
        let errno = || *libc::__errno_location();
        if libc::syscall(libc::SYS_setns, job.ns, libc::CLONE_NEWUSER) != 0 {
            return errno();
        }
        let dir = libc::syscall(
            libc::SYS_openat,
            job.root,
            job.dir,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return errno();
        }
        // The descriptor table is the server's: every path closes what it opened.
        let mut code = 0;
        for &(name, value, len) in &job.files {
            let fd = libc::syscall(
                libc::SYS_openat,
                dir,
                name,
                libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            );
            if fd < 0 {
                code = errno();
                break;
            }
            let written = libc::syscall(libc::SYS_write, fd, value, len);
            code = if written == len as libc::c_long {
                0
            } else if written < 0 {
                errno()
            } else {
                libc::EIO
            };
            libc::syscall(libc::SYS_close, fd);
            if code != 0 {
                break;
            }
        }
        libc::syscall(libc::SYS_close, dir);
        code
    }
}

/// A child's exit code (an errno, or 0) as a result.
fn exit_status(status: WaitStatus, op: &'static str, path: &Path) -> Result<()> {
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, errno) => Err(RuntimeError::io(op, path)(
            std::io::Error::from_raw_os_error(errno),
        )),
        other => Err(RuntimeError::io(op, path)(std::io::Error::other(format!(
            "helper process ended with {other:?}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{ForkResult, fork};

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

    /// Output of `argv` run in the user namespace `ns` (entered between fork and exec).
    fn run_in_userns(ns: std::os::fd::RawFd, argv: &[&str]) -> String {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(argv[0]);
        command.args(&argv[1..]);
        // SAFETY: setns is async-signal-safe; the forked child is single-threaded.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(ns, libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = command.output().expect("run in user namespace");
        assert!(out.status.success(), "{argv:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `body` in a process of its own: this test binary again, for the one test named
    /// `name` (its path below the crate). Under plain `cargo test` the tests are threads of
    /// one process, and a test that checks process-wide state (its children, its open
    /// descriptors) would see the others'; nextest already gives each test a process, and
    /// then this costs one more.
    fn in_own_process(name: &str, body: impl FnOnce()) {
        const ALONE: &str = "ALCOVE_TEST_IN_OWN_PROCESS";
        if std::env::var_os(ALONE).is_some() {
            body();
            return;
        }
        let exe = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new(exe)
            .args([name, "--exact", "--include-ignored", "--test-threads=1"])
            .env(ALONE, "1")
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        // A name that matches no test would pass with nothing run.
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} in a process of its own: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    #[ignore = "needs root (uid maps of another range, entering a user namespace)"]
    fn clone_vm_children_map_a_range_and_write_namespace_limits() {
        in_own_process(
            "userns::tests::clone_vm_children_map_a_range_and_write_namespace_limits",
            clone_vm_children_map_a_range_and_write_namespace_limits_alone,
        );
    }

    fn clone_vm_children_map_a_range_and_write_namespace_limits_alone() {
        let range = IdRange {
            index: 0,
            first: 3_000_000_000,
        };
        let ns = mapping_namespace(range).expect("mapping namespace");
        let map = run_in_userns(ns.as_raw_fd(), &["cat", "/proc/self/uid_map"]);
        let fields: Vec<&str> = map.split_whitespace().collect();
        assert_eq!(fields[..2], ["0", "3000000000"], "{map}");
        // The holder that made the namespace is reaped: the descriptor alone keeps it.
        assert_eq!(
            waitpid(
                Pid::from_raw(-1),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG)
            ),
            Err(nix::errno::Errno::ECHILD)
        );

        let mut sandbox = std::process::Command::new("unshare")
            .args(["--user", "sleep", "30"])
            .spawn()
            .expect("unshare");
        let pid = i32::try_from(sandbox.id()).expect("pid");
        // `unshare` has made its namespace once `sleep` runs in it.
        let own = std::fs::read_link("/proc/self/ns/user").expect("own ns");
        for _ in 0..200 {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap_or_default();
            if exe.ends_with("sleep") && ns != own {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let limits = vec![("max_inotify_instances".to_string(), 77)];
        // The writer shares this process's descriptor table: it must leave none open.
        let open_fds = || std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        let before = open_fds();
        let written = write_namespace_limits(pid, &limits);
        let after_written = open_fds();
        let inside = std::fs::File::open(format!("/proc/{pid}/ns/user")).expect("ns");
        let value = run_in_userns(
            inside.as_raw_fd(),
            &["cat", "/proc/sys/user/max_inotify_instances"],
        );
        let before_refused = open_fds();
        let refused = write_namespace_limits(pid, &[("no_such_limit".into(), 1)]);
        assert_eq!(
            (after_written, open_fds()),
            (before, before_refused),
            "descriptors left open by the writer"
        );
        let escaped = write_namespace_limits(pid, &[("../../kernel/pid_max".into(), 1)]);
        let _ = sandbox.kill();
        let _ = sandbox.wait();
        written.expect("write limits");
        assert_eq!(value.trim(), "77");
        assert!(refused.is_err(), "a missing limit file is an error");
        assert!(escaped.is_err(), "a name is one file of /proc/sys/user");
        // As root in the host's user namespace, the limits go through a
        // procfs instance of their own (not the host's /proc).
        let own = crate::procfs::private_instance().expect("a procfs instance of our own");
        let dir = nix::fcntl::openat(
            std::os::fd::AsFd::as_fd(&own),
            "sys/user",
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        );
        assert!(dir.is_ok(), "{dir:?}");
    }
}
