//! What a running sandbox uses now, against its limits: read from its cgroups
//! (CPU time, memory, tasks) and from its writable layer (disk), never
//! estimated.

use std::path::Path;

use crate::cgroups::{CgroupSetup, CgroupTree};

/// A sandbox's use of the machine, with its limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxUsage {
    /// CPU time used since it started (user + system), in seconds.
    pub cpu_seconds: f64,
    /// Memory in use (without the page cache the kernel can drop), in bytes.
    pub memory_bytes: u64,
    /// Memory limit in bytes (`None` = none).
    pub memory_limit_bytes: Option<u64>,
    /// Tasks (processes and threads) now.
    pub pids: u64,
    /// Task limit (`None` = none).
    pub pids_limit: Option<u64>,
    /// Bytes written to the writable layer.
    pub disk_used_bytes: u64,
    /// Size of the writable layer in bytes.
    pub disk_limit_bytes: u64,
}

impl CgroupTree {
    /// The cgroup figures of a sandbox (`None` when it has no cgroup).
    pub fn usage(&self, sandbox_id: &str) -> Option<SandboxUsage> {
        let rel = self.path_for(sandbox_id);
        let rel = rel.trim_start_matches('/');
        let root = Path::new("/sys/fs/cgroup");
        let mut usage = SandboxUsage::default();
        match self.setup() {
            CgroupSetup::Unified => {
                let dir = root.join(rel);
                if !dir.is_dir() {
                    return None;
                }
                let usec = stat_field(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0);
                usage.cpu_seconds = usec as f64 / 1e6;
                let current = read_u64(&dir.join("memory.current")).unwrap_or(0);
                let inactive = stat_field(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
                usage.memory_bytes = current.saturating_sub(inactive);
                // A limit file holds a number, or `max` for none (which does not parse).
                usage.memory_limit_bytes = read_u64(&dir.join("memory.max"));
                usage.pids = read_u64(&dir.join("pids.current")).unwrap_or(0);
                usage.pids_limit = read_u64(&dir.join("pids.max"));
            }
            CgroupSetup::Legacy | CgroupSetup::Hybrid => {
                let memory = root.join("memory").join(rel);
                if !memory.is_dir() {
                    return None;
                }
                let cpu = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
                    .iter()
                    .map(|c| root.join(c).join(rel))
                    .find(|d| d.is_dir());
                let ns = cpu
                    .and_then(|d| read_u64(&d.join("cpuacct.usage")))
                    .unwrap_or(0);
                usage.cpu_seconds = ns as f64 / 1e9;
                let current = read_u64(&memory.join("memory.usage_in_bytes")).unwrap_or(0);
                let inactive =
                    stat_field(&memory.join("memory.stat"), "total_inactive_file").unwrap_or(0);
                usage.memory_bytes = current.saturating_sub(inactive);
                // v1 writes "no limit" as a huge page-aligned number.
                usage.memory_limit_bytes =
                    read_u64(&memory.join("memory.limit_in_bytes")).filter(|&l| l < (1 << 62));
                let pids = root.join("pids").join(rel);
                usage.pids = read_u64(&pids.join("pids.current")).unwrap_or(0);
                usage.pids_limit = read_u64(&pids.join("pids.max"));
            }
        }
        Some(usage)
    }
}

/// Used and total bytes of the file system mounted at `dir`.
pub fn disk_use(dir: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let frsize = st.fragment_size();
    let total = st.blocks().saturating_mul(frsize);
    let used = st
        .blocks()
        .saturating_sub(st.blocks_free())
        .saturating_mul(frsize);
    Some((used, total))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file (`cpu.stat`, `memory.stat`).
fn stat_field(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_stat_field(&text, key)
}

fn parse_stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_files_are_read_by_key() {
        let text = "cache 4096\nrss 8192\ntotal_inactive_file 1024\n";
        assert_eq!(parse_stat_field(text, "rss"), Some(8192));
        assert_eq!(parse_stat_field(text, "total_inactive_file"), Some(1024));
        assert_eq!(parse_stat_field(text, "inactive_file"), None);
        assert_eq!(parse_stat_field("usage_usec x\n", "usage_usec"), None);
    }

    #[test]
    fn the_disk_of_the_root_is_measured() {
        let (used, total) = disk_use(Path::new("/")).expect("statvfs /");
        assert!(total > 0 && used <= total);
    }

    #[test]
    fn a_sandbox_without_a_cgroup_has_no_usage() {
        let tree = CgroupTree::new("usage-test-none");
        assert_eq!(tree.usage("00000000-0000-4000-8000-000000000000"), None);
    }
}
