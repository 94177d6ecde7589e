//! Room the agent keeps for itself when user processes take everything: every
//! process it starts runs with a task limit below the sandbox's (so a fork bomb
//! stops short and the agent can still start `run`s and answer), at a lower CPU
//! priority than the agent's (so the agent is scheduled among thousands of busy
//! tasks), and first in line for the OOM killer (see `spawn.rs`).
//!
//! Both only weigh against the agent and its own kind: CPU priority counts
//! inside the sandbox's cgroup, and the task limit is per user of the sandbox.

use std::path::Path;

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
    // cgroup v1 (the pids controller mounted at its own directory) or v2, both
    // seen from inside the sandbox's cgroup namespace.
    ["/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"]
        .iter()
        .find_map(|p| read_number(Path::new(p)))
        .map(task_limit_below)
}

/// Tasks in the sandbox now (`None` when it cannot be read).
pub fn current_tasks() -> Option<u64> {
    [
        "/sys/fs/cgroup/pids/pids.current",
        "/sys/fs/cgroup/pids.current",
    ]
    .iter()
    .find_map(|p| read_number(Path::new(p)))
}

/// Whether user processes already fill their task limit: a process started now
/// would only queue behind them (a fork bomb holds thousands of runnable tasks at
/// the same priority), so a start is refused at once instead.
pub fn user_tasks_full(task_limit: Option<u64>) -> bool {
    matches!((task_limit, current_tasks()), (Some(limit), Some(now)) if now >= limit)
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
    fn the_reserve_comes_off_the_limit_but_never_all_of_it() {
        assert_eq!(task_limit_below(2048), 2048 - AGENT_TASK_RESERVE);
        assert_eq!(task_limit_below(100), 50);
        assert_eq!(task_limit_below(1), 1);
    }
}
