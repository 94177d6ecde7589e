//! Room the agent keeps for itself when user processes take everything: every
//! process it starts runs with a task limit below the sandbox's (so a fork bomb
//! stops short and the agent can still start `run`s and answer), at a lower CPU
//! priority than the agent's (so the agent is scheduled among thousands of busy
//! tasks), and first in line for the OOM killer (see `spawn.rs`).
//!
//! Both only weigh against the agent and its own kind: CPU priority counts
//! inside the sandbox's cgroup, and the task limit is per user of the sandbox.
//!
//! Where the host gives the sandbox a user cgroup (bound at [`USER_CGROUP_DIR`], cgroup v1
//! hosts), every child joins it before it execs: its task, memory and CPU limits sit below
//! the sandbox's, so the agent keeps tasks, memory and CPU time whatever user processes do.

use std::ffi::CString;
use std::path::Path;

/// Where the sandbox's user cgroup of each controller is bound, if the host made one.
pub const USER_CGROUP_DIR: &str = "/.alcove/cgroup";

/// The user cgroup's `cgroup.procs` files that exist, ready to be written between fork and
/// exec (no allocation there).
#[derive(Debug, Clone, Default)]
pub struct UserCgroup {
    procs: Vec<CString>,
}

impl UserCgroup {
    /// The user cgroup the host bound into this sandbox (none outside a sandbox, or on a
    /// cgroup v2 host).
    pub fn detect() -> Self {
        Self::under(Path::new(USER_CGROUP_DIR))
    }

    fn under(dir: &Path) -> Self {
        let procs = ["pids", "memory", "cpu"]
            .iter()
            .map(|c| dir.join(c).join("cgroup.procs"))
            .filter(|p| p.exists())
            .filter_map(|p| CString::new(p.into_os_string().into_encoded_bytes()).ok())
            .collect();
        Self { procs }
    }

    /// Whether there is one.
    pub fn exists(&self) -> bool {
        !self.procs.is_empty()
    }

    /// In the child between fork and exec, before it gives up root: moves it into the user
    /// cgroup. Async-signal-safe (open, write, close); best effort.
    pub fn join_in_child(&self) {
        for path in &self.procs {
            // SAFETY: `path` is a NUL-terminated string that outlives the call; the buffer is
            // a static byte; the fd is ours and closed once.
            unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                }
            }
        }
    }
}

/// Tasks kept for the agent below the sandbox's pids limit.
pub const AGENT_TASK_RESERVE: u64 = 64;

/// Nice value of every process the agent starts. Inside the sandbox's cgroup
/// the kernel weighs a nice-19 task at 15 against the agent's 1024, so a
/// thousand busy tasks cannot starve the agent; against other sandboxes the
/// cgroup's own weight counts, not this.
pub const USER_NICE: libc::c_int = 19;

/// The task limit of user processes: the sandbox's pids limit less the
/// reserve (`None` when the sandbox has no pids limit or it cannot be read).
pub fn user_task_limit() -> Option<u64> {
    // The user cgroup's own limit, already below the sandbox's.
    if let Some(limit) = read_number(&Path::new(USER_CGROUP_DIR).join("pids/pids.max")) {
        return Some(limit);
    }
    // cgroup v1 (the pids controller mounted at its own directory) or v2, both
    // seen from inside the sandbox's cgroup namespace.
    ["/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"]
        .iter()
        .find_map(|p| read_number(Path::new(p)))
        .map(task_limit_below)
}

/// Tasks of user processes now: the user cgroup's, else the whole sandbox's (`None` when
/// it cannot be read).
pub fn current_tasks() -> Option<u64> {
    [
        "/.alcove/cgroup/pids/pids.current",
        "/sys/fs/cgroup/pids/pids.current",
        "/sys/fs/cgroup/pids.current",
    ]
    .iter()
    .find_map(|p| read_number(Path::new(p)))
}

/// Whether user processes already fill their task limit, or come within [`full_margin`] of
/// it: a process started now would only queue behind them (a fork bomb holds its limit
/// nearly full with thousands of runnable tasks at the same priority), so a start is refused
/// at once instead.
pub fn user_tasks_full(task_limit: Option<u64>) -> bool {
    matches!((task_limit, current_tasks()), (Some(limit), Some(now)) if now >= limit.saturating_sub(full_margin(limit)))
}

/// How close to its task limit the sandbox counts as full: a thirty-second of the limit, at
/// least 8 tasks. A fork bomb hovers within a few tasks of the limit (tasks die and are forked
/// again), while work that is merely busy rarely comes this close.
pub fn full_margin(limit: u64) -> u64 {
    (limit / 32).max(8).min(limit.saturating_sub(1))
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `pids_max` less the reserve, never below a usable minimum.
fn task_limit_below(pids_max: u64) -> u64 {
    pids_max
        .saturating_sub(AGENT_TASK_RESERVE)
        .max(pids_max / 2)
        .max(1)
}

/// In the child between fork and exec: lowers its priority and caps its tasks.
/// Async-signal-safe: two system calls. Best effort, like the OOM score: a
/// refusal leaves the child as the agent is.
pub fn apply_in_child(task_limit: Option<u64>) {
    // SAFETY: setpriority takes plain integers (0 = the calling process).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, USER_NICE);
    }
    if let Some(n) = task_limit {
        let limit = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // SAFETY: the pointer is to a live rlimit on this stack.
        unsafe {
            libc::setrlimit(libc::RLIMIT_NPROC, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_cgroup_is_found_by_its_files() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(!UserCgroup::under(dir.path()).exists());
        std::fs::create_dir(dir.path().join("pids")).expect("mkdir");
        std::fs::write(dir.path().join("pids/cgroup.procs"), "").expect("write");
        assert!(UserCgroup::under(dir.path()).exists());
    }

    #[test]
    fn a_limit_counts_as_full_a_little_before_it_is() {
        assert_eq!(full_margin(1984), 62);
        assert_eq!(full_margin(100), 8);
        assert_eq!(full_margin(1), 0);
    }

    #[test]
    fn the_reserve_comes_off_the_limit_but_never_all_of_it() {
        assert_eq!(task_limit_below(2048), 2048 - AGENT_TASK_RESERVE);
        assert_eq!(task_limit_below(100), 50);
        assert_eq!(task_limit_below(1), 1);
    }
}
