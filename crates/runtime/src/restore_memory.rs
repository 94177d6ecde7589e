//! Memory for a restore: CRIU rebuilds a sandbox's processes inside the sandbox's cgroups,
//! and while it does, every restored task is a copy of CRIU holding its own share of
//! CRIU's working memory beside the task's pages. Measured on a sandbox of 800 sleeping
//! processes (184 MiB when running), a restore peaked anywhere between 370 MiB and 1.66 GiB
//! (how many tasks are in CRIU's memory-hungry stage at once varies from run to run): a
//! dump the sandbox made within its 1 GiB limit could not always be restored within it,
//! and the kernel either killed a CRIU task (the copy or resume failed) or reclaimed for
//! minutes first.
//!
//! So a restore runs under its limit plus [`allowance_mb`] for the dump's task count, and
//! once CRIU is done (its memory given back) the sandbox is brought down to its own
//! limits with [`Node::settle_restored_limits`]; if it cannot be (the restored processes
//! use more than the limit), the restore fails rather than leaving a sandbox above it.

use std::path::Path;
use std::time::Duration;

use crate::error::{Result, RuntimeError};
use crate::node::Node;
use crate::resize::Resize;

/// Memory allowed beyond the limit for a restore, in MiB, whatever the task count.
const BASE_ALLOWANCE_MB: u64 = 64;

/// Memory allowed beyond the limit for each task (thread) of the dump, in MiB: above the
/// 1.85 MiB a task took at the worst measured peak. It is CRIU's: the sandbox's processes
/// resume only at the end of the restore, and the limit is lowered right after.
const TASK_ALLOWANCE_MB: u64 = 2;

/// Attempts at lowering the limits after a restore, [`SETTLE_RETRY`] apart: the kernel
/// reclaims what it can at each.
const SETTLE_ATTEMPTS: u32 = 20;
const SETTLE_RETRY: Duration = Duration::from_millis(50);

/// Tasks (threads) in the CRIU image directory `dir`: CRIU writes one `core-<tid>.img`
/// for each.
pub fn task_count(dir: &Path) -> Result<u64> {
    let entries = std::fs::read_dir(dir).map_err(RuntimeError::io("listing", dir))?;
    Ok(entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("core-") && name.ends_with(".img")
        })
        .count() as u64)
}

/// The memory, in MiB, a restore of `tasks` tasks may use beyond the sandbox's limit.
pub fn allowance_mb(tasks: u64) -> u64 {
    BASE_ALLOWANCE_MB + tasks * TASK_ALLOWANCE_MB
}

impl Node {
    /// Lowers a just-restored sandbox from the memory it was restored with to `to`: the
    /// user group first (it stays below the sandbox), then the sandbox's cgroups through
    /// `runc update` (so runc's record agrees), then the bundle. Retried while the kernel
    /// reclaims; fails if the sandbox still uses more than `to` after that.
    pub(crate) async fn settle_restored_limits(
        &self,
        id: &str,
        to: Resize,
        cpuset: &str,
    ) -> Result<()> {
        let memory = to.memory_mb << 20;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let lowered = match self.cgroups.set_user_memory(id, memory) {
                Ok(()) => self.update_limits(id, to, cpuset).await,
                Err(e) => Err(e),
            };
            match lowered {
                Ok(()) => return self.record_limits(id, to, cpuset),
                Err(e) if attempt >= SETTLE_ATTEMPTS => {
                    let used = self
                        .cgroups
                        .usage(id)
                        .map(|u| u.memory_bytes >> 20)
                        .unwrap_or_default();
                    return Err(RuntimeError::Capacity(format!(
                        "the restored sandbox uses {used} MiB, more than its {} MiB limit: {e}",
                        to.memory_mb
                    )));
                }
                Err(_) => tokio::time::sleep(SETTLE_RETRY).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_grows_with_the_tasks_of_the_dump() {
        assert_eq!(allowance_mb(0), 64);
        assert_eq!(allowance_mb(800), 1664);
    }

    #[test]
    fn tasks_are_counted_from_the_core_images() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for name in [
            "core-1.img",
            "core-57.img",
            "pstree.img",
            "mm-1.img",
            "core-x.log",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("writing an image name");
        }
        assert_eq!(task_count(dir.path()).expect("counting"), 2);
    }
}
