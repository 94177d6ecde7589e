//! A procfs instance of the server's own, for `/proc/sys` files.
//!
//! `/proc/sys` entries are per namespace (the user namespace for
//! `/proc/sys/user`, the network namespace for `/proc/sys/net`), yet through
//! one procfs mount they hang under one `/proc/sys` dentry: every namespace
//! that looked its directory up through the host's `/proc` leaves a dentry of
//! the same name there, and a lookup compares them all, taking the sysctl
//! lock for each. With 1000 sandboxes up, a new namespace's first lookup of
//! `/proc/sys/user` cost ~1.3 ms. A procfs instance made for one write (a
//! superblock, and so a dentry cache, of its own) holds none of them, and
//! goes with its descriptor.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// A new procfs instance (a superblock, and so a dentry cache, of its own)
/// as a detached mount: `fsopen`, `fsconfig(CREATE)`, `fsmount`. It goes
/// with its descriptor.
pub(crate) fn private_instance() -> std::io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;
    let owned = |raw: libc::c_long| -> std::io::Result<OwnedFd> {
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::c_int::try_from(raw).map_err(|_| std::io::Error::other("bad fd"))?;
        // SAFETY: a descriptor the kernel just returned, owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    // SAFETY: a NUL-terminated file system name and flags.
    let context =
        owned(unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: a valid context descriptor; CREATE takes no key or value.
    let created = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if created < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a valid, created context descriptor and flags.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            context.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        )
    })
}

/// Whether `name` is one plain path component: not empty, no `/`, neither
/// `.` nor `..` (a sysctl's file name, a network namespace's name).
pub(crate) fn is_plain_name(name: &str) -> bool {
    !(name.is_empty() || name.contains('/') || name == "." || name == "..")
}

/// Writes `value` to `sys/<path>` (e.g. `net/ipv6/conf/av1/disable_ipv6`) as
/// the calling thread's namespaces see it, through [`private_instance`] or,
/// where one may not be made, the host's `/proc`.
pub(crate) fn write_sysctl(path: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    if !path.split('/').all(is_plain_name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{path:?} is not a plain path under /proc/sys"),
        ));
    }
    let mut file = match private_instance() {
        Ok(root) => {
            let fd = nix::fcntl::openat(
                root.as_fd(),
                Path::new("sys").join(path).as_path(),
                nix::fcntl::OFlag::O_WRONLY
                    | nix::fcntl::OFlag::O_CLOEXEC
                    | nix::fcntl::OFlag::O_NOFOLLOW,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(std::io::Error::from)?;
            std::fs::File::from(fd)
        }
        Err(_) => std::fs::OpenOptions::new()
            .write(true)
            .open(Path::new("/proc/sys").join(path))?,
    };
    file.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_are_written() {
        for bad in ["", "/net", "net//x", "net/../kernel/pid_max", "./x"] {
            let err = write_sysctl(bad, "1").expect_err(bad);
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    #[ignore = "needs root (a procfs instance of its own)"]
    fn a_private_instance_sees_the_callers_sysctls() {
        let own = private_instance().expect("procfs instance");
        let fd = nix::fcntl::openat(
            own.as_fd(),
            "sys/kernel/pid_max",
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .expect("open");
        let mine = std::io::read_to_string(std::fs::File::from(fd)).expect("read");
        let host = std::fs::read_to_string("/proc/sys/kernel/pid_max").expect("read");
        assert_eq!(mine, host);
    }
}
