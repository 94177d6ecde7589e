//! Mounting a volume into, and out of, a running sandbox's mount namespace.
//!
//! The server is multi-threaded and `setns(CLONE_NEWNS)` needs a
//! single-threaded caller, so each operation runs in a child of its own that
//! makes raw system calls only, on buffers prepared beforehand: a
//! [`crate::userns::VmChild`] sharing the server's memory (a `fork` would copy
//! the server's page tables, which grow with every sandbox up), the calling
//! thread paused until it exits (`CLONE_VFORK`). The child enters the sandbox's mount namespace and
//! resolves the mount path one component at a time from the sandbox's root
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`:
//! a symlink the sandbox planted anywhere on the path is refused (`ELOOP`),
//! never followed, so the mount cannot be redirected onto its `/proc`, `/etc`
//! or anything else. The mount is then attached to (or detached from) the
//! directory the child holds open, not to a path looked up again.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path};

use nix::sys::wait::WaitStatus;

use crate::error::{Result, RuntimeError};
use crate::userns::{
    AT_EMPTY_PATH, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, MOVE_MOUNT_F_EMPTY_PATH,
    MountAttr, VmChild, child_errno, cstring, os_err, raise_effective_caps,
};

const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const UMOUNT_NOFOLLOW: libc::c_int = 0x8;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// The components of an absolute, normalized mount path, as C strings (the
/// control plane has checked it; anything but plain names is refused again).
fn components(mount_path: &str) -> Result<Vec<CString>> {
    if !mount_path.starts_with('/') {
        return Err(RuntimeError::Config(format!(
            "mount path {mount_path:?} is not absolute"
        )));
    }
    let mut out = Vec::new();
    for c in Path::new(mount_path).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(name) => out.push(cstring(Path::new(name))?),
            _ => {
                return Err(RuntimeError::Config(format!(
                    "mount path {mount_path:?} is not absolute and normalized"
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(RuntimeError::Config(
            "a volume cannot be mounted on /".into(),
        ));
    }
    Ok(out)
}

/// Opens `name` (one component) under `dir` as an `O_PATH` directory without
/// following any symlink; returns the descriptor or -errno.
///
/// # Safety
/// Raw system calls only; sound in a [`VmChild`].
unsafe fn open_component(dir: libc::c_int, name: &CString) -> libc::c_int {
    let how = OpenHow {
        // No O_NOFOLLOW: it would open a final symlink itself (and fail with ENOTDIR);
        // RESOLVE_NO_SYMLINKS refuses a symlink in every position with ELOOP.
        flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `name` is NUL-terminated and `how` is a valid open_how of the size passed.
    unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            std::ptr::from_ref(&how),
            std::mem::size_of::<OpenHow>(),
        ) as libc::c_int
    }
}

/// What a child needs to reach into a sandbox: its mount namespace and root,
/// opened through its init process.
struct SandboxFds {
    mnt_ns: OwnedFd,
    root: OwnedFd,
}

fn sandbox_fds(pid: i32) -> Result<SandboxFds> {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let ns = proc_dir.join("ns/mnt");
    let mnt_ns = std::fs::File::open(&ns)
        .map(OwnedFd::from)
        .map_err(RuntimeError::io("opening", &ns))?;
    let root_path = proc_dir.join("root");
    let root_c = cstring(&root_path)?;
    // SAFETY: a NUL-terminated path and plain flags.
    let fd = unsafe {
        libc::open(
            root_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(os_err("opening", &root_path));
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    let root = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(SandboxFds { mnt_ns, root })
}

/// Turns a child's exit code into a result, with the errors a sandbox can
/// provoke (a symlink or a file in the way, open files) told apart.
fn child_result(status: std::io::Result<WaitStatus>, op: &str, mount_path: &str) -> Result<()> {
    let errno = match status {
        Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
        Ok(WaitStatus::Exited(_, errno)) => errno,
        other => {
            return Err(RuntimeError::Config(format!(
                "{op} {mount_path}: helper process ended with {other:?}"
            )));
        }
    };
    Err(match errno {
        libc::ELOOP => RuntimeError::Refused(format!(
            "{mount_path} (or a directory above it) is a symbolic link in the sandbox; \
             volumes are never mounted through one"
        )),
        libc::ENOTDIR | libc::EEXIST => RuntimeError::Refused(format!(
            "{mount_path} (or a directory above it) is not a directory in the sandbox"
        )),
        libc::EBUSY => RuntimeError::Busy(format!(
            "files or directories on the volume at {mount_path} are in use in the sandbox \
             (open files, working directories); close them and detach again"
        )),
        libc::ESTALE => RuntimeError::Refused(format!(
            "{mount_path} in the sandbox is not the volume it should be"
        )),
        _ => RuntimeError::Io {
            op: "mounting a volume in the sandbox at",
            path: mount_path.into(),
            source: std::io::Error::from_raw_os_error(errno),
        },
    })
}

/// Attaches a clone of the mount at `view` (the sandbox's idmapped view of a
/// volume) at `mount_path` inside the sandbox whose init is `pid`,
/// `nosuid,nodev` and read-only with `read_only`. Missing directories of the
/// path are created, owned by the sandbox's root (`range_root`, a host id).
pub fn attach(
    pid: i32,
    range_root: u32,
    view: &Path,
    mount_path: &str,
    read_only: bool,
) -> Result<()> {
    let parts = components(mount_path)?;
    let fds = sandbox_fds(pid)?;
    let tree = crate::userns::clone_tree(view)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: `attr` is a valid mount_attr of the size passed.
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
        return Err(os_err("setting the attributes of a clone of", view));
    }
    let job = AttachJob {
        parent: crate::userns::own_pid(),
        fds: &fds,
        parts: &parts,
        tree: tree.as_raw_fd(),
        range_root,
    };
    let status = run_child(attach_child, std::ptr::from_ref(&job).cast_mut().cast());
    child_result(status, "attaching", mount_path)
}

/// Runs `f(arg)` in a [`VmChild`] and reaps it; returns once it has exited.
fn run_child(
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> std::io::Result<WaitStatus> {
    VmChild::spawn(f, arg, libc::CLONE_VFORK)?.wait()
}

/// What [`attach_child`] works on, all owned by the caller.
struct AttachJob<'a> {
    parent: libc::pid_t,
    fds: &'a SandboxFds,
    parts: &'a [CString],
    tree: libc::c_int,
    range_root: u32,
}

/// The child of [`attach`]; returns its exit code (0 or an errno).
extern "C" fn attach_child(job: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `job` is the caller's AttachJob, alive until this child is
    // reaped; only raw system calls follow (see VmChild).
    unsafe {
        let job = &*job.cast::<AttachJob>();
        crate::userns::die_with_parent(job.parent);
        attach_in_child(job.fds, job.parts, job.tree, job.range_root)
    }
}

/// What [`attach_child`] does.
///
/// # Safety
/// Raw system calls only, on descriptors and buffers the caller keeps.
unsafe fn attach_in_child(
    fds: &SandboxFds,
    parts: &[CString],
    tree: libc::c_int,
    range_root: u32,
) -> i32 {
    // SAFETY: raw system calls on descriptors and buffers the caller keeps.
    unsafe {
        if libc::setns(fds.mnt_ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
            return child_errno();
        }
        // Directories made on the way belong to the sandbox's root: host root
        // has no id in the sandbox's range, and the overlay refuses it.
        libc::setfsgid(range_root);
        libc::setfsuid(range_root);
        if !raise_effective_caps() {
            return child_errno();
        }
        let mut dir = fds.root.as_raw_fd();
        for name in parts {
            let mut fd = open_component(dir, name);
            if fd == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                if libc::mkdirat(dir, name.as_ptr(), 0o755) != 0
                    && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return child_errno();
                }
                fd = open_component(dir, name);
            }
            if fd < 0 {
                return child_errno();
            }
            dir = fd;
        }
        let empty = c"";
        if libc::syscall(
            libc::SYS_move_mount,
            tree,
            empty.as_ptr(),
            dir,
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        ) != 0
        {
            return child_errno();
        }
        0
    }
}

/// Unmounts the volume at `mount_path` inside the sandbox whose init is
/// `pid`. `expect` is the `(st_dev, st_ino)` of the volume's root: what is
/// mounted there must be it (a sandbox that moved directories around cannot
/// make this unmount something else). Files in use on it make this fail
/// with [`RuntimeError::Busy`] and leave it mounted: never a lazy unmount.
pub fn detach(pid: i32, mount_path: &str, expect: (u64, u64)) -> Result<()> {
    let mut parts = components(mount_path)?;
    let Some(last) = parts.pop() else {
        return Err(RuntimeError::Config(
            "a volume is never mounted on /".into(),
        ));
    };
    let fds = sandbox_fds(pid)?;
    let job = DetachJob {
        parent: crate::userns::own_pid(),
        fds: &fds,
        parents: &parts,
        last: &last,
        expect,
    };
    let status = run_child(detach_child, std::ptr::from_ref(&job).cast_mut().cast());
    child_result(status, "detaching", mount_path)
}

/// What [`detach_child`] works on, all owned by the caller.
struct DetachJob<'a> {
    parent: libc::pid_t,
    fds: &'a SandboxFds,
    parents: &'a [CString],
    last: &'a CString,
    expect: (u64, u64),
}

/// The child of [`detach`]; returns its exit code (0 or an errno).
extern "C" fn detach_child(job: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `job` is the caller's DetachJob, alive until this child is
    // reaped; only raw system calls follow (see VmChild).
    unsafe {
        let job = &*job.cast::<DetachJob>();
        crate::userns::die_with_parent(job.parent);
        detach_in_child(job.fds, job.parents, job.last, job.expect)
    }
}

/// What [`detach_child`] does.
///
/// # Safety
/// Raw system calls only, on descriptors and buffers the caller keeps.
unsafe fn detach_in_child(
    fds: &SandboxFds,
    parents: &[CString],
    last: &CString,
    expect: (u64, u64),
) -> i32 {
    // SAFETY: raw system calls on descriptors and buffers the caller keeps.
    unsafe {
        if libc::setns(fds.mnt_ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
            return child_errno();
        }
        let mut dir = fds.root.as_raw_fd();
        for name in parents {
            let fd = open_component(dir, name);
            if fd < 0 {
                return child_errno();
            }
            dir = fd;
        }
        let target = open_component(dir, last);
        if target < 0 {
            return child_errno();
        }
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(target, &mut st) != 0 {
            return child_errno();
        }
        if (st.st_dev, st.st_ino) != expect {
            return libc::ESTALE;
        }
        libc::close(target);
        // The parent is held open and the last component is looked up in it
        // without following a symlink; a sandbox cannot rename a mount point.
        if libc::fchdir(dir) != 0 {
            return child_errno();
        }
        if libc::umount2(last.as_ptr(), UMOUNT_NOFOLLOW) != 0 {
            return child_errno();
        }
        0
    }
}

/// Whether something is mounted at `mount_path` in the mount namespace of
/// process `pid` with the device `dev` (`/proc/<pid>/mountinfo` shows paths
/// as that process sees them).
pub fn is_mounted_in(pid: i32, mount_path: &str, dev: u64) -> bool {
    mount_points_of(pid, dev).iter().any(|p| p == mount_path)
}

/// Where file systems of device `dev` are mounted in the mount namespace of
/// process `pid`, as that process sees the paths. A sandbox cannot mount or
/// unmount, but renaming a directory above a mount point carries the mount
/// along: a volume is wherever this says, not only where it was attached.
pub fn mount_points_of(pid: i32, dev: u64) -> Vec<String> {
    let path = Path::new("/proc").join(pid.to_string()).join("mountinfo");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let want = format!(
        "{}:{}",
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t)
    );
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let (devno, point) = (f.nth(2)?, f.nth(1)?);
            (devno == want).then(|| crate::layer::unescape_mountinfo(point))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_absolute_paths_have_components() {
        let names = |p: &str| {
            components(p).map(|v| {
                v.iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(names("/mnt/data").expect("ok"), ["mnt", "data"]);
        assert!(names("/").is_err());
        assert!(names("/mnt/../etc").is_err());
        assert!(names("mnt").is_err(), "relative");
    }

    /// A process in its own mount namespace (`unshare -m`), killed on drop.
    struct Namespaced(std::process::Child);

    impl Drop for Namespaced {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    #[ignore = "needs root (mount namespaces, mounts)"]
    fn attaches_into_another_mount_namespace_and_never_through_a_symlink() {
        let tmp = tempfile::tempdir().expect("tmp");
        let base = tmp.path().canonicalize().expect("canonical");
        let view = base.join("view");
        std::fs::create_dir_all(&view).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            &view,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount tmpfs (tests run as root)");
        std::fs::write(view.join("marker"), b"volume").expect("write");
        std::fs::create_dir_all(base.join("elsewhere")).expect("mkdir");
        std::os::unix::fs::symlink(base.join("elsewhere"), base.join("trap")).expect("symlink");
        let child = std::process::Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "60"])
            .spawn()
            .expect("unshare");
        let ns = Namespaced(child);
        let pid = i32::try_from(ns.0.id()).expect("pid");
        // unshare execs sleep once the namespace is made.
        for _ in 0..100 {
            if std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
                != std::fs::read_link("/proc/self/ns/mnt").ok()
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&view).expect("stat"));
        let target = format!("{}/made/here", base.display());
        attach(pid, 0, &view, &target, true).expect("attach");
        assert!(
            is_mounted_in(pid, &target, dev),
            "mounted in the other namespace"
        );
        assert!(
            !crate::layer::is_mountpoint(Path::new(&target)),
            "not in ours"
        );
        assert!(Path::new(&target).is_dir(), "the path was made");

        let trap = format!("{}/trap/x", base.display());
        let err = attach(pid, 0, &view, &trap, false).expect_err("a symlink on the path");
        assert!(matches!(err, RuntimeError::Refused(_)), "{err:?}");
        assert!(
            !base.join("elsewhere/x").exists(),
            "nothing made through the symlink"
        );

        let meta = std::fs::metadata(&view).expect("stat");
        let expect = (dev, std::os::unix::fs::MetadataExt::ino(&meta));
        assert!(
            matches!(
                detach(pid, &format!("{}/elsewhere", base.display()), expect),
                Err(RuntimeError::Refused(_))
            ),
            "a directory that is not the volume is left alone"
        );
        detach(pid, &target, expect).expect("detach");
        assert!(!is_mounted_in(pid, &target, dev));
        drop(ns);
        crate::layer::unmount_all(&view).expect("unmount");
    }
}
