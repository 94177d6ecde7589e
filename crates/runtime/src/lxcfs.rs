//! lxcfs: the FUSE file system that serves each sandbox its own view of
//! `/proc/meminfo`, `/proc/cpuinfo`, `/proc/stat`, `/proc/uptime`,
//! `/proc/loadavg`, `/proc/diskstats`, `/proc/swaps` and
//! `/sys/devices/system/cpu/online`, computed from the cgroups of whoever
//! reads them. Sandboxes bind-mount its files over their own (see
//! [`crate::bundle::LXCFS_FILES`]).
//!
//! One lxcfs serves the whole host. It must outlive the server (running
//! sandboxes keep its files mounted across restarts of `alcove serve`), so
//! when it is not running the server starts it detached, in its own session.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Result, RuntimeError};

/// Where lxcfs is mounted by default (Debian's own unit uses this path).
pub const DEFAULT_DIR: &str = "/var/lib/lxcfs";

/// Whether an lxcfs file system is mounted at `dir` and answering.
pub fn is_mounted(dir: &Path) -> bool {
    crate::layer::is_mountpoint(dir) && dir.join("proc/meminfo").is_file()
}

/// Makes sure lxcfs serves `dir`, starting it (`lxcfs --enable-loadavg
/// --enable-cfs --enable-pidfd <dir>`, detached) if it does not. Returns
/// whether it had to be started. Blocking (it waits for the mount).
pub fn ensure_running(dir: &Path) -> Result<bool> {
    if is_mounted(dir) {
        return Ok(false);
    }
    if crate::layer::is_mountpoint(dir) {
        // A dead lxcfs leaves its mount behind ("transport endpoint is not
        // connected"); sandboxes started from now on need a live one.
        let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
    }
    std::fs::create_dir_all(dir).map_err(RuntimeError::io("creating", dir))?;
    let pid_file = PathBuf::from("/run/alcove-lxcfs.pid");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/run/alcove-lxcfs.log")
        .map_err(RuntimeError::io("opening", "/run/alcove-lxcfs.log"))?;
    let log_err = log
        .try_clone()
        .map_err(RuntimeError::io("opening", "/run/alcove-lxcfs.log"))?;
    // `setsid --fork`: lxcfs runs in a session of its own, as a child of init,
    // so it neither dies with the server nor lingers as its zombie.
    let mut command = std::process::Command::new("setsid");
    command
        .arg("--fork")
        .arg("lxcfs")
        .arg("--foreground")
        .arg("--enable-loadavg")
        .arg("--enable-cfs")
        .arg("--enable-pidfd")
        .arg("--pidfile")
        .arg(&pid_file)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let started = command.status().map_err(|e| {
        RuntimeError::Config(format!(
            "lxcfs is not mounted at {} and starting it failed ({e}); install the lxcfs \
             package (scripts/setup.sh does) or run with --lxcfs-dir ''",
            dir.display()
        ))
    })?;
    if !started.success() {
        return Err(RuntimeError::Config(format!(
            "starting lxcfs failed ({started}); see /run/alcove-lxcfs.log"
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if is_mounted(dir) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(RuntimeError::Config(format!(
        "lxcfs did not mount {} within 10 s (see /run/alcove-lxcfs.log)",
        dir.display()
    )))
}
