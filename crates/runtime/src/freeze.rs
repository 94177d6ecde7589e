//! Freezing a sandbox for a CRIU dump without catching a process inside
//! `vfork`.
//!
//! Shells (dash, busybox) and glibc's `posix_spawn` start programs with
//! `vfork`: the parent sleeps in the kernel until its child calls `exec`. A
//! freeze that lands in that window (a few microseconds per command) leaves the
//! parent waiting for a child that is frozen, and the freezer counts such a
//! parent as frozen. CRIU cannot stop it to dump it: it waits out its whole
//! seize timeout (10 s) and the dump fails. A sandbox running a loop of short
//! commands hit this about one dump in six. So a freeze for a dump looks for
//! such a parent and, while it finds one, thaws the sandbox for a moment (the
//! child reaches its `exec`) and freezes it again.

use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::node::Node;
use crate::sandbox_id::SandboxId;

/// Freezes tried before the dump is left to CRIU as it is.
const ATTEMPTS: u32 = 8;

/// Where a task waiting for its `vfork` child sleeps, as `/proc/<tid>/wchan`
/// names it: `wait_for_vfork_done`, or its caller where the compiler inlined it.
const VFORK_WAITS: [&str; 2] = ["wait_for_vfork_done", "kernel_clone"];

impl Node {
    /// Freezes a running sandbox for a dump (`runc pause`) with no process
    /// caught waiting for a `vfork` child. When every attempt catches one, it
    /// stays frozen anyway and CRIU reports what it cannot dump.
    pub(crate) async fn freeze_for_dump(&self, id: &SandboxId) -> Result<()> {
        for attempt in 1..=ATTEMPTS {
            self.runc.pause(id).await?;
            let threads = self.cgroups.frozen_threads_dir(id);
            let waiting = crate::blocking::run(move || vfork_parents(&threads)).await?;
            if waiting.is_empty() {
                return Ok(());
            }
            if attempt == ATTEMPTS {
                tracing::warn!(sandbox_id = %id, tids = ?waiting, "frozen inside vfork on every attempt");
                return Ok(());
            }
            tracing::debug!(sandbox_id = %id, tids = ?waiting, attempt, "frozen inside vfork; thawing");
            if let Err(e) = self.runc.resume(id).await {
                // Still frozen: the dump goes ahead as it is.
                tracing::warn!(sandbox_id = %id, error = %e, "thawing to freeze again");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
        }
        Ok(())
    }
}

/// The thread ids under the cgroup directory `dir` (and the cgroups below it)
/// that sleep waiting for a `vfork` child.
fn vfork_parents(dir: &Path) -> Vec<i32> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
            } else if name == "tasks" || name == "cgroup.threads" {
                let listed = std::fs::read_to_string(&path).unwrap_or_default();
                found.extend(parse_tids(&listed).filter(|tid| {
                    std::fs::read_to_string(format!("/proc/{tid}/wchan"))
                        .is_ok_and(|wchan| is_vfork_wait(&wchan))
                }));
            }
        }
    }
    found
}

/// The thread ids of a cgroup's `tasks` (v1) or `cgroup.threads` (v2) file.
fn parse_tids(listed: &str) -> impl Iterator<Item = i32> + '_ {
    listed.lines().filter_map(|line| line.trim().parse().ok())
}

/// Whether a `/proc/<tid>/wchan` names the wait for a `vfork` child.
fn is_vfork_wait(wchan: &str) -> bool {
    VFORK_WAITS.contains(&wchan.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vfork_wait_is_told_from_a_frozen_sleep() {
        assert!(is_vfork_wait("kernel_clone"));
        assert!(is_vfork_wait("wait_for_vfork_done\n"));
        for other in [
            "__refrigerator",
            "do_epoll_wait",
            "hrtimer_nanosleep",
            "0",
            "",
        ] {
            assert!(!is_vfork_wait(other), "{other}");
        }
    }

    #[test]
    fn thread_lists_skip_what_is_not_a_number() {
        let tids: Vec<i32> = parse_tids("12\n 13 \n\nx\n-\n").collect();
        assert_eq!(tids, [12, 13]);
    }

    #[test]
    fn threads_are_read_from_nested_cgroups_and_missing_ones_are_skipped() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(tmp.path().join("child")).expect("mkdir");
        // This test's own thread sleeps nowhere near a vfork: nothing is found.
        let me = std::process::id().to_string();
        std::fs::write(tmp.path().join("tasks"), &me).expect("write");
        std::fs::write(tmp.path().join("child/cgroup.threads"), &me).expect("write");
        assert!(vfork_parents(tmp.path()).is_empty());
        assert!(vfork_parents(&tmp.path().join("gone")).is_empty());
    }
}
