//! cgroups: which hierarchy the host has, where the instance's sandboxes live in
//! it, and sweeping leftovers. runc itself creates, limits and removes each
//! sandbox's cgroup from the `cgroupsPath` we give it.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup layout of the host (youki's `Legacy`/`Hybrid`/`Unified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupSetup {
    /// v1 controllers only.
    Legacy,
    /// v1 controllers plus a cgroup2 mount at `unified/` (limits go through v1).
    Hybrid,
    /// cgroup v2 only.
    Unified,
}

impl CgroupSetup {
    /// Detects the host's layout from `/sys/fs/cgroup`.
    pub fn detect() -> Self {
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            Self::Unified
        } else if root.join("unified").exists() {
            Self::Hybrid
        } else {
            Self::Legacy
        }
    }

    /// Whether memory+swap can be limited (v1 needs swap accounting; v2 always can).
    pub fn has_swap_limit(self) -> bool {
        match self {
            Self::Unified => true,
            Self::Legacy | Self::Hybrid => Path::new(ROOT)
                .join("memory/memory.memsw.limit_in_bytes")
                .exists(),
        }
    }
}

/// Where one runtime instance keeps its sandboxes' cgroups.
#[derive(Debug, Clone)]
pub struct CgroupTree {
    setup: CgroupSetup,
    parent: String,
}

impl CgroupTree {
    /// The tree `/alcove-<tag>` on this host.
    pub fn new(tag: &str) -> Self {
        Self {
            setup: CgroupSetup::detect(),
            parent: format!("alcove-{tag}"),
        }
    }

    /// The host's layout.
    pub fn setup(&self) -> CgroupSetup {
        self.setup
    }

    /// `cgroupsPath` for runc: the same for a sandbox across suspend/resume.
    pub fn path_for(&self, sandbox_id: &str) -> String {
        format!("/{}/{sandbox_id}", self.parent)
    }

    /// The thread ids the freezer stops for a sandbox: its `freezer/` cgroup's
    /// `tasks` on cgroup v1, its own cgroup's `cgroup.threads` on v2 (and the
    /// cgroups below either), blocking the calling thread.
    pub fn frozen_threads(&self, sandbox_id: &str) -> Vec<i32> {
        let (root, listing) = match self.setup {
            CgroupSetup::Unified => (PathBuf::from(ROOT), "cgroup.threads"),
            CgroupSetup::Legacy | CgroupSetup::Hybrid => (Path::new(ROOT).join("freezer"), "tasks"),
        };
        ids_below(&root.join(&self.parent).join(sandbox_id), listing).unwrap_or_default()
    }

    /// Every directory that holds this instance's sandbox cgroups.
    fn parents(&self) -> Vec<PathBuf> {
        match self.setup {
            CgroupSetup::Unified => vec![Path::new(ROOT).join(&self.parent)],
            CgroupSetup::Legacy | CgroupSetup::Hybrid => {
                let Ok(entries) = std::fs::read_dir(ROOT) else {
                    return Vec::new();
                };
                entries
                    .flatten()
                    .map(|e| e.path().join(&self.parent))
                    .filter(|p| p.is_dir())
                    .collect()
            }
        }
    }

    /// Sandbox ids that have a cgroup under this instance.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .parents()
            .iter()
            .filter_map(|p| std::fs::read_dir(p).ok())
            .flat_map(|entries| entries.flatten())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Kills what is left in a sandbox's cgroups and removes them, on the
    /// blocking pool (killing waits for the tasks to die).
    pub async fn remove(&self, sandbox_id: &str) {
        let tree = self.clone();
        let id = sandbox_id.to_string();
        if let Err(e) = crate::blocking::run(move || tree.remove_now(&id)).await {
            tracing::warn!(sandbox_id, error = %e, "removing cgroups");
        }
    }

    /// [`CgroupTree::remove`], blocking the calling thread.
    fn remove_now(&self, sandbox_id: &str) {
        for parent in self.parents() {
            let dir = parent.join(sandbox_id);
            if !dir.exists() {
                continue;
            }
            kill_tasks(&dir);
            if let Err(e) = remove_tree(&dir) {
                tracing::warn!(path = %dir.display(), error = %e, "removing cgroup");
            }
        }
    }

    /// Removes the instance's parent cgroups once they are empty.
    pub fn remove_parent_if_empty(&self) {
        for parent in self.parents() {
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

/// Clears `cpuset.sched_load_balance` of a cgroup v1 cpuset made just now, below the
/// hierarchy mounted at `hierarchy` (a no-op in other hierarchies), before runc gives it CPUs.
///
/// On cgroup v1 every change to the CPUs of a cpuset that has the flag set, and the removal
/// of such a cpuset, makes the kernel rebuild the scheduler domains, and each rebuild walks
/// every cpuset on the host (the deadline bandwidth accounting): one walk per create, resume
/// and delete, longer with every sandbox up. While the root cpuset's own flag is set (the
/// default), the flag of a cpuset below it changes nothing: the root's one domain spans
/// every CPU and the scheduler balances across it as before. A host whose root has it
/// cleared builds its domains from the cpusets below, so there the flag is left alone.
/// Cleared while the cpuset has no CPUs yet, the change itself rebuilds nothing. Best
/// effort: a kernel without the file, or a write that fails, only keeps the slower path.
pub fn stay_out_of_sched_domains(hierarchy: &Path, dir: &Path) {
    let flag = dir.join("cpuset.sched_load_balance");
    // Checked first: every hierarchy but the cpuset one stops here, without a read.
    if !flag.exists() {
        return;
    }
    let root_balances = std::fs::read_to_string(hierarchy.join("cpuset.sched_load_balance"))
        .is_ok_and(|v| v.trim() == "1");
    if !root_balances {
        return;
    }
    if let Err(e) = std::fs::write(&flag, "0") {
        tracing::debug!(path = %flag.display(), error = %e, "clearing sched_load_balance");
    }
}

/// The ids listed in the file `listing` (`cgroup.procs`, `tasks`, `cgroup.threads`) of `dir`
/// and of every cgroup below it (the sandbox's user group); `None` when `dir` has no such file.
fn ids_below(dir: &Path, listing: &str) -> Option<Vec<i32>> {
    let text = std::fs::read_to_string(dir.join(listing)).ok()?;
    let mut ids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                ids.extend(ids_below(&entry.path(), listing).unwrap_or_default());
            }
        }
    }
    Some(ids)
}

fn kill_tasks(dir: &Path) {
    for attempt in 0..50 {
        let Some(pids) = ids_below(dir, "cgroup.procs") else {
            return;
        };
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A frozen cgroup cannot die: thaw it (v1 freezer / v2 cgroup.freeze).
        let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
        let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
        std::thread::sleep(std::time::Duration::from_millis(2 * (attempt + 1)));
    }
}

/// cgroup directories are removed bottom-up with rmdir (their files cannot be unlinked).
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path())?;
            }
        }
    }
    // A cgroup whose last task is still on its way out is busy for a moment.
    for attempt in 1..=10 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(5 * attempt));
            }
            done => return done,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_nested_cgroups_skipping_what_is_not_a_number() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(tmp.path().join("child")).expect("mkdir");
        std::fs::write(tmp.path().join("tasks"), "12\n 13 \n\nx\n-\n").expect("write");
        std::fs::write(tmp.path().join("child/tasks"), "14\n").expect("write");
        let mut ids = ids_below(tmp.path(), "tasks").expect("listed");
        ids.sort_unstable();
        assert_eq!(ids, [12, 13, 14]);
        assert_eq!(ids_below(tmp.path(), "cgroup.threads"), None);
        assert_eq!(ids_below(&tmp.path().join("gone"), "tasks"), None);
    }
}
