//! Host-wide kernel limits that sandboxes share, raised so that no sandbox can
//! exhaust them for the host or for another sandbox, and the host capacity
//! that admission control checks new sandboxes against.
//!
//! * `kernel.pid_max`: every sandbox's tasks are host pids. At the default of
//!   32768, about 16 sandboxes at the default pids limit could use them all.
//! * `fs.file-max`: the host's open-file table. A sandbox's open files are
//!   bounded by its `RLIMIT_NOFILE` per process and, as kernel memory, by its
//!   memory cgroup; the global count is raised out of reach so that the cgroup
//!   is the bound (systemd does the same by default).
//! * `fs.inotify.max_user_instances` / `max_user_watches`: inotify counts are
//!   charged up the user-namespace chain to host root, so the host-wide maxima
//!   are raised out of reach and each sandbox's user namespace gets its own
//!   maxima (see [`namespace_limits`]); its inotify objects are kernel memory
//!   charged to its memory cgroup.
//! * `net.ipv4.neigh.default.gc_thresh1/2/3`: each running sandbox is one entry
//!   of the host's ARP table (its address behind its veth). At the defaults
//!   (128 / 512 / 1024) the table overflows at about 500 sandboxes: new entries
//!   are refused ("neighbor table overflow") and new sandboxes cannot be reached.
//!
//! Values are only ever raised, never lowered.

use std::path::Path;

use crate::error::{Result, RuntimeError};

/// A kernel setting and the floor Alcove needs.
#[derive(Debug, Clone, Copy)]
pub struct KernelFloor {
    /// File under `/proc/sys`.
    pub path: &'static str,
    /// The least value Alcove runs with.
    pub floor: u64,
}

/// The settings of the module doc and their floors.
pub const KERNEL_FLOORS: &[KernelFloor] = &[
    KernelFloor {
        path: "/proc/sys/kernel/pid_max",
        floor: 4_194_304,
    },
    KernelFloor {
        path: "/proc/sys/fs/file-max",
        floor: 9_223_372_036_854_775_807,
    },
    KernelFloor {
        path: "/proc/sys/fs/inotify/max_user_instances",
        floor: 1_048_576,
    },
    KernelFloor {
        path: "/proc/sys/fs/inotify/max_user_watches",
        floor: 16_777_216,
    },
    KernelFloor {
        path: "/proc/sys/net/ipv4/neigh/default/gc_thresh1",
        floor: 16_384,
    },
    KernelFloor {
        path: "/proc/sys/net/ipv4/neigh/default/gc_thresh2",
        floor: 32_768,
    },
    KernelFloor {
        path: "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
        floor: 65_536,
    },
];

/// Per-user-namespace maxima each sandbox gets (`/proc/sys/user/<name>`):
/// the usual host defaults, so programs inside behave as on a normal machine.
/// (Namespace counts are left alone: the sandbox cannot create namespaces,
/// while CRIU creates temporary ones inside it during a restore.)
pub fn namespace_limits() -> Vec<(String, u64)> {
    [
        ("max_inotify_instances", 1024),
        ("max_inotify_watches", 1_048_576),
        ("max_fanotify_groups", 128),
        ("max_fanotify_marks", 65_536),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Raises each setting of [`KERNEL_FLOORS`] that is below its floor. Returns
/// what was changed, for the log; a setting that cannot be raised is an error
/// (isolation depends on it).
pub fn raise_kernel_floors() -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for f in KERNEL_FLOORS {
        let path = Path::new(f.path);
        let Some(now) = read_u64(path) else {
            // A kernel without the knob (no inotify) has nothing to share.
            continue;
        };
        if now >= f.floor {
            continue;
        }
        std::fs::write(path, f.floor.to_string()).map_err(RuntimeError::io("raising", path))?;
        changed.push(format!("{} {now} -> {}", f.path, f.floor));
    }
    Ok(changed)
}

/// The host's `kernel.pid_max`.
pub fn pid_max() -> u64 {
    read_u64(Path::new("/proc/sys/kernel/pid_max")).unwrap_or(32_768)
}

/// Bytes available to unprivileged writers on the file system holding `dir`
/// and its total size, in MiB.
pub fn disk_space_mb(dir: &Path) -> Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| RuntimeError::io("measuring free space of", dir)(e.into()))?;
    let frsize = st.fragment_size();
    let free = st.blocks_available().saturating_mul(frsize) / (1024 * 1024);
    let total = st.blocks().saturating_mul(frsize) / (1024 * 1024);
    Ok((free, total))
}

/// Whether this process may resize a mounted ext4 (`CAP_SYS_RESOURCE` in its effective
/// set; a server in a container may lack it).
pub fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_only_raise_and_namespace_limits_are_sane() {
        for f in KERNEL_FLOORS {
            assert!(f.path.starts_with("/proc/sys/"));
            assert!(f.floor > 0);
        }
        let limits = namespace_limits();
        assert!(limits.iter().all(|(n, _)| !n.contains('/')));
        assert!(
            limits
                .iter()
                .any(|(n, v)| n == "max_inotify_instances" && *v >= 128)
        );
        let (free, total) = disk_space_mb(Path::new("/")).expect("statvfs /");
        assert!(free <= total && total > 0);
    }
}
