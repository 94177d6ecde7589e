//! The user cgroup of a sandbox: a child `user` of the sandbox's cgroup in the pids, memory
//! and cpu hierarchies (cgroup v1 and hybrid hosts), where the agent puts every process it
//! starts. Its limits sit below the sandbox's, so whatever user processes do (a fork bomb, a
//! memory bomb, a busy loop on every CPU) the agent, alone in the parent, keeps:
//!
//! * tasks: [`PIDS_HEADROOM`] of the sandbox's pids limit;
//! * memory: [`memory_headroom`] of its memory limit, so the agent's allocations never wait
//!   for reclaim in a cgroup that user processes keep at its limit;
//! * CPU: the group weighs [`USER_CPU_SHARES`] against each busy agent thread's 1024 inside
//!   the sandbox's CPU quota;
//! * socket buffers: at most [`socket_memory_limit`], which cgroup v1 does not count in the
//!   memory limit (nor at all, unless asked to).
//!
//! The directories are made before runc starts (or restores) the container and bind-mounted
//! read-write at `/.alcove/cgroup/<controller>`; only their `cgroup.procs` and `tasks` are
//! handed to the sandbox's root, so a process inside may move itself (or its own processes)
//! into the group but change no limit and make no cgroup. The agent writes each child into
//! them between fork and exec. CRIU dumps and restores the membership with the rest
//! (runc gives it the new cgroup roots), into directories made here again before a restore.

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};

use crate::cgroups::{CgroupSetup, CgroupTree};
use crate::error::{Result, RuntimeError};

/// Name of the child cgroup.
pub const USER_CGROUP: &str = "user";

/// Tasks of the sandbox's pids limit that user processes cannot take.
pub const PIDS_HEADROOM: i64 = 64;

/// CPU weight of the user group (`cpu.shares`) against the agent's threads (1024 each).
pub const USER_CPU_SHARES: u64 = 128;

/// Where the user cgroup of each controller appears inside the sandbox.
pub const MOUNTS: [(&str, &str); 3] = [
    ("pids", "/.alcove/cgroup/pids"),
    ("memory", "/.alcove/cgroup/memory"),
    ("cpu", "/.alcove/cgroup/cpu"),
];

/// Memory kept for the agent below the sandbox's limit: a sixteenth, between 16 and 64 MiB.
pub fn memory_headroom(memory_bytes: u64) -> u64 {
    (memory_bytes / 16).clamp(16 << 20, 64 << 20)
}

/// The file that switches on, and bounds, the accounting of socket buffers (TCP and UDP) in
/// a cgroup v1 memory group. Without it they are charged to no group at all: a sandbox could
/// queue gigabytes in sockets it never reads, outside its memory limit, until the host's
/// `tcp_mem` refuses socket memory to everyone.
const SOCKET_MEMORY_FILE: &str = "memory.kmem.tcp.limit_in_bytes";

/// Socket buffers the user group may hold for a sandbox limit of `memory_bytes`: a quarter
/// of it, at least 16 MiB. A separate counter in cgroup v1, so this comes on top of the
/// memory limit; past it the kernel holds sockets back (their windows shrink), it does not
/// fail them.
pub fn socket_memory_limit(memory_bytes: u64) -> u64 {
    (memory_bytes / 4).max(16 << 20)
}

/// Writes the user group's socket-buffer limit in `dir` (a kernel without the file, which
/// then has nothing to switch on, is fine).
fn write_socket_limit(dir: &Path, memory_bytes: u64) -> Result<()> {
    let path = dir.join(SOCKET_MEMORY_FILE);
    match std::fs::write(&path, socket_memory_limit(memory_bytes).to_string()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(RuntimeError::io("writing", &path)),
    }
}

/// The limits of a sandbox, from which the user group's are derived.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Tasks.
    pub pids: i64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// A user-cgroup directory to bind into the sandbox: host directory and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCgroupMount {
    /// The `user` directory on the host.
    pub source: PathBuf,
    /// Where the sandbox sees it.
    pub destination: &'static str,
}

impl CgroupTree {
    /// Makes the sandbox's cgroups (in every hierarchy) and their `user` children with
    /// limits below `limits`, hands the children's `cgroup.procs` and `tasks` to `root_uid`
    /// (the sandbox's root on the host), and returns what to bind into the sandbox. cgroup
    /// v2 hosts get none (the agent then keeps processes in the sandbox's own group).
    pub fn prepare_user(
        &self,
        sandbox_id: &str,
        limits: SandboxLimits,
        root_uid: u32,
    ) -> Result<Vec<UserCgroupMount>> {
        if self.setup() == CgroupSetup::Unified {
            return Ok(Vec::new());
        }
        let rel = self.path_for(sandbox_id);
        let rel = rel.trim_start_matches('/');
        // The sandbox's own directory in every hierarchy too: its `/sys/fs/cgroup` binds
        // them (crate::sys_view), and runc checks a bind's source before it makes the
        // cgroups of a restored container.
        for entry in crate::sys_view::host_cgroup_layout() {
            if let crate::sys_view::CgroupEntry::Hierarchy(name) = entry {
                let hierarchy = Path::new("/sys/fs/cgroup").join(name);
                let dir = hierarchy.join(rel);
                std::fs::create_dir_all(&dir).map_err(RuntimeError::io("creating", &dir))?;
                crate::cgroups::stay_out_of_sched_domains(&hierarchy, &dir);
            }
        }
        let mut mounts = Vec::new();
        for (controller, destination) in MOUNTS {
            let hierarchy = Path::new("/sys/fs/cgroup").join(controller);
            if !hierarchy.is_dir() {
                continue;
            }
            let dir = hierarchy.join(rel).join(USER_CGROUP);
            std::fs::create_dir_all(&dir).map_err(RuntimeError::io("creating", &dir))?;
            let setting = match controller {
                "pids" => Some((
                    "pids.max",
                    (limits.pids - PIDS_HEADROOM)
                        .max(limits.pids / 2)
                        .max(1)
                        .to_string(),
                )),
                "memory" => Some((
                    "memory.limit_in_bytes",
                    limits
                        .memory_bytes
                        .saturating_sub(memory_headroom(limits.memory_bytes))
                        .to_string(),
                )),
                "cpu" => Some(("cpu.shares", USER_CPU_SHARES.to_string())),
                _ => None,
            };
            if let Some((file, value)) = setting {
                let path = dir.join(file);
                std::fs::write(&path, &value).map_err(RuntimeError::io("writing", &path))?;
            }
            if controller == "memory" {
                // Before any process joins: only sockets made afterwards are accounted.
                write_socket_limit(&dir, limits.memory_bytes)?;
            }
            for file in ["cgroup.procs", "tasks"] {
                let path = dir.join(file);
                chown(&path, Some(root_uid), Some(root_uid))
                    .map_err(RuntimeError::io("handing over", &path))?;
            }
            mounts.push(UserCgroupMount {
                source: dir,
                destination,
            });
        }
        Ok(mounts)
    }
}

impl CgroupTree {
    /// Sets the user group's memory limit for a sandbox limit of `memory_bytes` (a live
    /// resize). Nothing to do where there is no user group (cgroup v2, or none made).
    pub fn set_user_memory(&self, sandbox_id: &str, memory_bytes: u64) -> Result<()> {
        if self.setup() == CgroupSetup::Unified {
            return Ok(());
        }
        let rel = self.path_for(sandbox_id);
        let dir = Path::new("/sys/fs/cgroup/memory")
            .join(rel.trim_start_matches('/'))
            .join(USER_CGROUP);
        if !dir.is_dir() {
            return Ok(());
        }
        let path = dir.join("memory.limit_in_bytes");
        let value = memory_bytes.saturating_sub(memory_headroom(memory_bytes));
        std::fs::write(&path, value.to_string()).map_err(RuntimeError::io("writing", &path))?;
        write_socket_limit(&dir, memory_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_keeps_a_bounded_share_of_memory() {
        assert_eq!(memory_headroom(1 << 30), 64 << 20);
        assert_eq!(memory_headroom(256 << 20), 16 << 20);
        assert_eq!(memory_headroom(128 << 20), 16 << 20);
    }

    #[test]
    fn socket_buffers_get_a_quarter_of_the_memory_limit() {
        assert_eq!(socket_memory_limit(1 << 30), 256 << 20);
        assert_eq!(socket_memory_limit(32 << 20), 16 << 20);
    }
}
