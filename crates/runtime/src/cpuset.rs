//! Which host CPUs each sandbox may run on.
//!
//! The CFS quota limits how much CPU time a sandbox gets, but programs size
//! themselves by how many CPUs they see (`nproc`, `os.cpu_count()`, `make
//! -j`, JVM and Node heaps, worker pools). A sandbox with `cpus = 1.5` is
//! therefore pinned (cgroup cpuset) to two CPUs, `ceil(cpus)`, chosen among
//! the host's least used, so `sched_getaffinity` and lxcfs's views of
//! `/proc/cpuinfo` and `/sys/devices/system/cpu/online` show what it can use.

use std::collections::HashMap;
use std::sync::Mutex;

/// Assigns CPUs to sandboxes, spreading them over the host's CPUs.
#[derive(Debug)]
pub struct CpuPlan {
    /// Online host CPU numbers.
    online: Vec<u32>,
    state: Mutex<Pinning>,
}

/// Sandboxes pinned to each CPU (by index in `online`), and who holds what.
type Pinning = (Vec<u32>, HashMap<String, Vec<usize>>);

impl CpuPlan {
    /// A plan over the CPUs listed in `online` (the format of
    /// `/sys/devices/system/cpu/online`, e.g. `0-3,6`).
    pub fn new(online: &str) -> Self {
        let online = parse_list(online);
        let n = online.len();
        Self {
            online,
            state: Mutex::new((vec![0; n], HashMap::new())),
        }
    }

    /// The plan of this host.
    pub fn of_host() -> Self {
        let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
        let plan = Self::new(text.trim());
        if plan.online.is_empty() {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return Self::new(&format!("0-{}", n.saturating_sub(1)));
        }
        plan
    }

    /// Number of online CPUs.
    pub fn host_cpus(&self) -> usize {
        self.online.len()
    }

    /// Pins `sandbox_id` to `ceil(cpus)` CPUs and returns them as a cpuset
    /// list, or `None` when that is every CPU (no pinning needed).
    pub fn assign(&self, sandbox_id: &str, cpus: f64) -> Option<String> {
        let want = (cpus.ceil().max(1.0) as usize).min(self.online.len());
        if want >= self.online.len() {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (load, held) = &mut *state;
        if let Some(previous) = held.remove(sandbox_id) {
            for i in previous {
                load[i] = load[i].saturating_sub(1);
            }
        }
        let mut order: Vec<usize> = (0..load.len()).collect();
        order.sort_by_key(|&i| (load[i], i));
        let mut chosen: Vec<usize> = order.into_iter().take(want).collect();
        chosen.sort_unstable();
        for &i in &chosen {
            load[i] += 1;
        }
        let list = chosen
            .iter()
            .map(|&i| self.online[i].to_string())
            .collect::<Vec<_>>()
            .join(",");
        held.insert(sandbox_id.to_string(), chosen);
        Some(list)
    }

    /// Like [`CpuPlan::assign`], but names every CPU when no pinning is needed, so that a
    /// running sandbox moving up to all of them leaves its narrower cpuset.
    pub fn assign_list(&self, sandbox_id: &str, cpus: f64) -> String {
        self.assign(sandbox_id, cpus).unwrap_or_else(|| {
            self.release(sandbox_id);
            self.online
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// Records an existing pinning (a container adopted after a restart).
    pub fn adopt(&self, sandbox_id: &str, list: &str) {
        let cpus = parse_list(list);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (load, held) = &mut *state;
        let chosen: Vec<usize> = cpus
            .iter()
            .filter_map(|c| self.online.iter().position(|o| o == c))
            .collect();
        for &i in &chosen {
            load[i] += 1;
        }
        held.insert(sandbox_id.to_string(), chosen);
    }

    /// Forgets `sandbox_id`'s pinning.
    pub fn release(&self, sandbox_id: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (load, held) = &mut *state;
        if let Some(previous) = held.remove(sandbox_id) {
            for i in previous {
                load[i] = load[i].saturating_sub(1);
            }
        }
    }
}

/// Parses a kernel CPU list (`0-3,6`); bad parts are skipped.
pub fn parse_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
                    && b >= a
                    && b - a < 65_536
                {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_cpu_lists() {
        assert_eq!(parse_list("0-3,6"), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_list("1"), vec![1]);
        assert_eq!(parse_list(""), Vec::<u32>::new());
        assert_eq!(parse_list("x,2,3-1"), vec![2]);
    }

    #[test]
    fn spreads_sandboxes_and_skips_pinning_when_all_cpus_are_wanted() {
        let plan = CpuPlan::new("0-3");
        assert_eq!(plan.assign("a", 1.0).as_deref(), Some("0"));
        assert_eq!(plan.assign("b", 1.0).as_deref(), Some("1"));
        assert_eq!(plan.assign("c", 1.5).as_deref(), Some("2,3"));
        assert_eq!(plan.assign("d", 0.25).as_deref(), Some("0"));
        assert_eq!(plan.assign("e", 4.0), None);
        assert_eq!(plan.assign("f", 16.0), None);
        plan.release("b");
        assert_eq!(plan.assign("g", 1.0).as_deref(), Some("1"));
        plan.adopt("h", "1");
        // CPUs 0 and 1 now hold two sandboxes each, 2 and 3 one.
        assert_eq!(plan.assign("i", 1.0).as_deref(), Some("2"));
    }

    #[test]
    fn a_list_names_every_cpu_when_all_are_wanted() {
        let plan = CpuPlan::new("0-1");
        assert_eq!(plan.assign_list("a", 0.5), "0");
        assert_eq!(plan.assign_list("a", 2.0), "0,1");
        // Growing to every CPU gave the pinned one back.
        assert_eq!(plan.assign_list("b", 1.0), "0");
    }
}
