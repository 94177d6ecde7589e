//! The `/proc` and `/sys` paths a sandbox may not see ([`masked_paths`]) or
//! write ([`readonly_paths`]).

use std::path::Path;

/// Paths masked in every sandbox: host-wide kernel state that is not
/// namespaced, or hardware knobs. Docker's list.
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
    // Not Docker's: the host's block devices, whose loop devices name every
    // sandbox's disk image (`loop/backing_file`) with its id and host path,
    // and their I/O counters (a side channel on other sandboxes).
    "/proc/diskstats",
    "/sys/block",
    "/sys/class/block",
    "/sys/dev/block",
    "/sys/devices/virtual/block",
];

/// Where the host lists its CPUs, each of which may have a `thermal_throttle`
/// directory of interrupt counters (a side channel Docker masks too).
const SYS_CPU: &str = "/sys/devices/system/cpu";

/// Paths runc masks in a sandbox (an empty read-only tmpfs over a directory,
/// `/dev/null` over a file; paths absent in the sandbox are skipped).
///
/// Docker's list: `/proc/acpi`, `/proc/asound`, `/proc/interrupts`,
/// `/proc/kcore`, `/proc/keys`, `/proc/latency_stats`, `/proc/sched_debug`,
/// `/proc/scsi`, `/proc/timer_list`, `/proc/timer_stats`,
/// `/sys/devices/virtual/powercap`, `/sys/firmware`, and every
/// `/sys/devices/system/cpu/cpuN/thermal_throttle` this host has; plus the
/// block-device trees of `/sys`.
pub fn masked_paths() -> Vec<String> {
    let mut paths: Vec<String> = MASKED.iter().map(|p| (*p).to_owned()).collect();
    paths.extend(thermal_throttle_paths(Path::new(SYS_CPU)));
    paths
}

/// `<cpu_root>/cpuN/thermal_throttle` for each CPU under `cpu_root` that has
/// one, sorted. Best effort: an unreadable `cpu_root` yields nothing.
fn thermal_throttle_paths(cpu_root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cpu_root) else {
        return Vec::new();
    };
    let mut paths: Vec<String> = entries
        .flatten()
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|name| {
                name.strip_prefix("cpu")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .map(|entry| entry.path().join("thermal_throttle"))
        .filter(|path| path.exists())
        .filter_map(|path| path.to_str().map(str::to_owned))
        .collect();
    paths.sort();
    paths
}

/// Paths runc remounts read-only in a sandbox: kernel tunables and triggers
/// that are not namespaced. Docker's list: `/proc/bus`, `/proc/fs`,
/// `/proc/irq`, `/proc/sys`, `/proc/sysrq-trigger`.
pub fn readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_and_readonly_paths() {
        let masked = masked_paths();
        for path in [
            "/proc/acpi",
            "/proc/asound",
            "/proc/interrupts",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/sys/devices/virtual/powercap",
            "/sys/firmware",
            "/sys/block",
            "/sys/devices/virtual/block",
        ] {
            assert!(masked.iter().any(|p| p == path), "{path}");
        }
        assert!(masked.iter().all(|p| p.starts_with('/')));
        assert_eq!(
            readonly_paths(),
            [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]
        );
    }

    #[test]
    fn thermal_throttle_paths_found() {
        let root = tempfile::tempdir().expect("tempdir");
        for dir in [
            "cpu0/thermal_throttle",
            "cpu1",
            "cpu12/thermal_throttle",
            "cpufreq/thermal_throttle",
            "cpuidle",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        let found = thermal_throttle_paths(root.path());
        let base = root.path().to_str().expect("utf-8 tempdir");
        assert_eq!(
            found,
            [
                format!("{base}/cpu0/thermal_throttle"),
                format!("{base}/cpu12/thermal_throttle"),
            ]
        );
        assert!(thermal_throttle_paths(&root.path().join("missing")).is_empty());
    }
}
