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
//! child reaches its `exec`) and freezes it again. A child that never reaches
//! it (a program that calls `vfork` and then does something else) is caught
//! every time: the freeze then gives up at once with an error that names the
//! process, where CRIU would have failed after its timeout with a host-side one.

use std::time::Duration;

use crate::error::{Result, RuntimeError};
use crate::node::Node;
use crate::sandbox_id::SandboxId;

/// Freezes tried before the dump is refused.
const ATTEMPTS: u32 = 8;

/// Where a task waiting for its `vfork` child sleeps, as `/proc/<tid>/wchan`
/// names it: `wait_for_vfork_done`, or its caller where the compiler inlined it.
const VFORK_WAITS: [&str; 2] = ["wait_for_vfork_done", "kernel_clone"];

impl Node {
    /// Freezes a running sandbox for a dump (`runc pause`) with no process
    /// caught waiting for a `vfork` child. When every attempt catches one, the
    /// sandbox is thawed and [`RuntimeError::Busy`] names the process (if even
    /// the thaw fails, it stays frozen and CRIU reports what it cannot dump).
    pub(crate) async fn freeze_for_dump(&self, id: &SandboxId) -> Result<()> {
        for attempt in 1..=ATTEMPTS {
            self.runc.pause(id).await?;
            let (cgroups, sandbox) = (self.cgroups.clone(), id.to_string());
            let waiting =
                crate::blocking::run(move || vfork_parents(&cgroups.frozen_threads(&sandbox)))
                    .await?;
            if waiting.is_empty() {
                // Frozen, the sandbox cannot move a mount while it is looked at.
                if let Err(e) = self.check_volumes_in_place(id).await {
                    if let Err(thaw) = self.runc.resume(id).await {
                        tracing::warn!(sandbox_id = %id, error = %thaw, "thawing after a refused dump");
                    }
                    return Err(e);
                }
                return Ok(());
            }
            tracing::debug!(sandbox_id = %id, tids = ?waiting, attempt, "frozen inside vfork; thawing");
            if let Err(e) = self.runc.resume(id).await {
                // Still frozen: the dump goes ahead as it is.
                tracing::warn!(sandbox_id = %id, error = %e, "thawing to freeze again");
                return Ok(());
            }
            if attempt == ATTEMPTS {
                let named = crate::blocking::run(move || describe(&waiting)).await?;
                tracing::warn!(sandbox_id = %id, processes = %named, "frozen inside vfork on every attempt");
                return Err(RuntimeError::Busy(format!(
                    "{named} waits for a vfork child that has not called exec, and CRIU \
                     cannot dump a process in that state; the sandbox keeps running"
                )));
            }
            tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
        }
        Ok(())
    }
}

/// The processes of host thread ids `tids` as the sandbox sees them: "process 12 (sh)",
/// "processes 12 (sh), 40 (make)".
fn describe(tids: &[i32]) -> String {
    let names: Vec<String> = tids
        .iter()
        .map(|tid| {
            let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
            let pid = innermost_pid(&status).map_or_else(|| "?".to_string(), |p| p.to_string());
            let comm = std::fs::read_to_string(format!("/proc/{tid}/comm")).unwrap_or_default();
            format!("{pid} ({})", comm.trim())
        })
        .collect();
    let noun = if names.len() == 1 {
        "process"
    } else {
        "processes"
    };
    format!("{noun} {}", names.join(", "))
}

/// The pid in the innermost pid namespace, from the `NSpid:` line of a `/proc/<pid>/status`.
fn innermost_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

/// Of `threads`, those that sleep waiting for a `vfork` child.
fn vfork_parents(threads: &[i32]) -> Vec<i32> {
    threads
        .iter()
        .copied()
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{tid}/wchan"))
                .is_ok_and(|wchan| is_vfork_wait(&wchan))
        })
        .collect()
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
    fn the_pid_named_is_the_sandbox_s() {
        let status = "Name:\tsh\nTgid:\t4242\nNSpid:\t4242\t12\nNSpgid:\t4242\t12\n";
        assert_eq!(innermost_pid(status), Some(12));
        assert_eq!(innermost_pid("NSpid:\t7\n"), Some(7));
        assert_eq!(innermost_pid("Name:\tsh\n"), None);
        let me = i32::try_from(std::process::id()).expect("pid");
        assert!(describe(&[me]).starts_with(&format!("process {me} (")));
    }

    #[test]
    fn threads_not_in_a_vfork_wait_or_gone_are_not_found() {
        // This test's own thread sleeps nowhere near a vfork; the other id is no thread.
        let me = i32::try_from(std::process::id()).expect("pid");
        assert!(vfork_parents(&[me, i32::MAX]).is_empty());
    }
}
