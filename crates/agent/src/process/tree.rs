//! Process trees: finding a process's descendants through `/proc` and killing all of them.
//!
//! Every process the agent starts leads its own session and process group (pid = pgid = sid),
//! so `killpg` reaches everything that stayed in the group. Descendants that called `setsid`
//! or `setpgid` left the group; they are found by following parent links in `/proc`. To stop a
//! member from forking new children between the scan and the kill, members are first frozen
//! with SIGSTOP (the group at once, with one `killpg`, then each straggler found outside it)
//! and the scan is repeated until it finds nobody new; then all get SIGKILL.
//!
//! Limit: a descendant whose parent already died was reparented to the agent and no longer
//! links to the tree; if it also left the session and group, it cannot be found.

use std::collections::BTreeSet;

/// The fields of `/proc/<pid>/stat` the tree walk needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// State letter (`R`, `S`, `Z`, …).
    pub state: u8,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// Session id.
    pub session: i32,
}

/// Parses the contents of a `/proc/<pid>/stat` file.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name sits in parentheses and may itself contain spaces or ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
        session,
    })
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone.
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Every process visible in `/proc`.
pub fn scan() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// The members of `root`'s tree among `procs`: `root`, its process group and session, and
/// every descendant of any member. Never includes `exclude` (the agent itself) or pid 1.
pub fn tree_members(root: i32, procs: &[ProcStat], exclude: i32) -> BTreeSet<i32> {
    let mut members = BTreeSet::new();
    let mut grew = true;
    while grew {
        grew = false;
        for proc in procs {
            if proc.pid == exclude || proc.pid == 1 || members.contains(&proc.pid) {
                continue;
            }
            let belongs = proc.pid == root
                || proc.pgrp == root
                || proc.session == root
                || members.contains(&proc.ppid);
            if belongs {
                members.insert(proc.pid);
                grew = true;
            }
        }
    }
    members
}

fn send(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes plain integers; a stale pid only yields ESRCH.
    unsafe { libc::kill(pid, signal) };
}

/// Sends `signal` to the process group led by `pgid` (ignoring a group that is gone).
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg(2) takes plain integers; a missing group only yields ESRCH.
        unsafe { libc::killpg(pgid, signal) };
    }
}

/// SIGKILLs every process of the sandbox but the agent and the trees of `keep`;
/// returns how many were killed. Each round first stops every process at once
/// with `kill(-1, SIGSTOP)` (as PID 1 of the sandbox's pid namespace, that is
/// every process but the agent), so a fork bomb cannot outrun the scan, then
/// lets the kept trees go on and kills the rest.
///
/// Only PID 1 may do this: anywhere else `kill(-1)` would reach the host's
/// processes, so it does nothing there and returns 0.
pub fn kill_all_but(keep: &[i32]) -> usize {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    if me != 1 {
        return 0;
    }
    let mut killed = BTreeSet::new();
    let mut kept = BTreeSet::new();
    for _ in 0..8 {
        // SAFETY: kill(2) with plain integers; -1 means every process we may signal but us.
        unsafe { libc::kill(-1, libc::SIGSTOP) };
        let procs = scan();
        kept.clear();
        for &root in keep {
            kept.insert(root);
            kept.extend(tree_members(root, &procs, me));
        }
        for &pid in &kept {
            send(pid, libc::SIGCONT);
        }
        let victims: Vec<i32> = procs
            .iter()
            .map(|p| p.pid)
            .filter(|&pid| pid > 1 && pid != me && !kept.contains(&pid))
            .collect();
        if victims.is_empty() {
            break;
        }
        for &pid in &victims {
            send(pid, libc::SIGKILL);
        }
        killed.extend(victims);
    }
    killed.len()
}

/// SIGKILLs `root`, its group, its session and all its descendants (see the module docs).
pub fn kill_tree(root: i32) {
    if root <= 1 {
        return;
    }
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    // Stop the whole group at once first: the kernel delivers a group signal to
    // every member, forks in progress included, so a fork bomb stops growing
    // here instead of racing the scans below.
    signal_group(root, libc::SIGSTOP);
    let mut frozen = BTreeSet::new();
    // Each round can only find children forked before the previous round's SIGSTOPs landed,
    // so a handful of rounds is plenty; the bound keeps a fork bomb from pinning us here.
    for _ in 0..16 {
        let found = tree_members(root, &scan(), me);
        let fresh: Vec<i32> = found.difference(&frozen).copied().collect();
        if fresh.is_empty() {
            break;
        }
        for &pid in &fresh {
            send(pid, libc::SIGSTOP);
        }
        frozen.extend(fresh);
    }
    signal_group(root, libc::SIGKILL);
    for &pid in &frozen {
        send(pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, ppid: i32, pgrp: i32, session: i32) -> ProcStat {
        ProcStat {
            pid,
            state: b'S',
            ppid,
            pgrp,
            session,
        }
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let text = "4242 (my (odd) prog) S 100 4242 4242 0 -1 4194304 0 0";
        assert_eq!(parse_stat(text), Some(stat(4242, 100, 4242, 4242)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_stat_is_readable() {
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let own = read_stat(me).expect("own stat");
        assert_eq!(own.pid, me);
        assert!(scan().iter().any(|p| p.pid == me));
    }

    #[test]
    fn tree_includes_group_session_and_escaped_descendants() {
        let agent = 50;
        let procs = [
            stat(1, 0, 1, 1),
            stat(agent, 1, agent, agent),
            stat(100, agent, 100, 100), // root
            stat(101, 100, 100, 100),   // child in the group
            stat(102, 101, 102, 102),   // grandchild that called setsid
            stat(103, 102, 102, 102),   // its child
            stat(104, agent, 100, 100), // orphan reparented to the agent, still in the group
            stat(105, 104, 105, 105),   // the orphan's child, escaped by setsid
            stat(200, agent, 200, 200), // an unrelated process
        ];
        let members = tree_members(100, &procs, agent);
        assert_eq!(
            members.into_iter().collect::<Vec<_>>(),
            [100, 101, 102, 103, 104, 105]
        );
    }
}
