//! Telling an OOM kill from any other SIGKILL: the memory cgroup's `oom_kill` counter.
//!
//! The kernel does not mark a process killed by the OOM killer; its parent only sees SIGKILL.
//! The sandbox's memory cgroup counts OOM kills, so a SIGKILL death during which the counter
//! grew is reported as `oom_killed`. Best effort: another process of the same sandbox being
//! OOM-killed at the same moment is indistinguishable, and without the files it is never OOM.

use std::path::Path;

/// cgroup v2 (seen from inside the container's cgroup namespace).
const V2_EVENTS: &str = "/sys/fs/cgroup/memory.events";
/// cgroup v1 memory controller.
const V1_OOM_CONTROL: &str = "/sys/fs/cgroup/memory/memory.oom_control";
/// The user cgroup's (see `headroom`): v1 counts a kill only in the group whose limit was
/// hit, so both are added up.
const V1_USER_OOM_CONTROL: &str = "/.alcove/cgroup/memory/memory.oom_control";

/// Finds the value of the line `<key> <n>` in a cgroup flat-keyed file.
pub fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_ascii_whitespace();
        (parts.next()? == key).then_some(())?;
        parts.next()?.parse().ok()
    })
}

fn read_counter(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_counter(&text, "oom_kill")
}

/// The current OOM kill count of the agent's memory cgroup, if the kernel exposes one.
pub fn oom_kill_count() -> Option<u64> {
    if let Some(count) = read_counter(Path::new(V2_EVENTS)) {
        return Some(count);
    }
    let sandbox = read_counter(Path::new(V1_OOM_CONTROL));
    let user = read_counter(Path::new(V1_USER_OOM_CONTROL));
    match (sandbox, user) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// Whether a process that died of `signal` was OOM-killed, given the counter at its start.
pub fn was_oom_killed(signal: Option<i32>, baseline: Option<u64>) -> bool {
    if signal != Some(libc::SIGKILL) {
        return false;
    }
    match (baseline, oom_kill_count()) {
        (Some(before), Some(now)) => now > before,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_counter(v1, "oom_kill"), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_counter(v2, "oom_kill"), Some(2));
        assert_eq!(parse_counter("oom 1\n", "oom_kill"), None);
    }

    #[test]
    fn only_sigkill_can_be_oom() {
        assert!(!was_oom_killed(Some(libc::SIGTERM), Some(0)));
        assert!(!was_oom_killed(None, Some(0)));
    }
}
