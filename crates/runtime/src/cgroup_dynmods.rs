//! The cgroup2 hierarchy's `favordynmods` option, which takes a kernel wait out of
//! every sandbox start.
//!
//! `runc run` moves the container's first process into its cgroups by writing
//! `cgroup.procs`. The kernel serialises such moves against fork and exit with a
//! global per-CPU rwsem; by default a writer first waits for an RCU grace period so
//! that fork and exit can take the read side without atomics. On a 2-CPU host that
//! wait was about 12 ms of each start with 600 sandboxes up (an off-CPU profile,
//! `docs/benchmarks.md`). With `favordynmods` on the cgroup2 hierarchy the kernel
//! keeps the rwsem in its slow mode, so moves do not wait and fork and exit pay a few
//! atomic operations instead: the right trade for a host whose job is starting
//! containers. The option is host-wide (one hierarchy per host), so it can be turned
//! off with `--cgroup-favor-dynmods false`, and it is never cleared by Alcove.
//!
//! A remount of cgroup2 replaces all of its options (`nsdelegate`,
//! `memory_recursiveprot`, ...) and a legacy remount also the mount's own flags
//! (`nosuid`, `nodev`, ...), so both are read from `/proc/self/mountinfo` and given
//! back unchanged, with `favordynmods` added.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use crate::error::{Result, RuntimeError};
use crate::layer::unescape_mountinfo;

/// The option's name, as the kernel parses and shows it.
const OPTION: &str = "favordynmods";

/// A cgroup2 mount as `/proc/self/mountinfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cgroup2Mount {
    /// Where it is mounted.
    target: PathBuf,
    /// The mount's own flags (`nosuid`, `relatime`, ...), to keep them on remount.
    flags: MsFlags,
    /// The hierarchy's options, without `rw`/`ro`.
    options: Vec<String>,
}

/// What [`favor_dynamic_moves`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynmodsOutcome {
    /// The option was already on.
    AlreadyOn(PathBuf),
    /// Alcove turned it on (remounted this mount point).
    TurnedOn(PathBuf),
    /// The host has no cgroup2 mount in this mount namespace (pure cgroup v1).
    NoCgroup2,
    /// The remount succeeded but the option did not take (the server is not in
    /// the host's cgroup namespace, where the kernel ignores root options).
    NotApplied(PathBuf),
}

/// Turns `favordynmods` on for the cgroup2 hierarchy if it is off. An error means
/// the kernel refused (too old a kernel, no `CAP_SYS_ADMIN`); callers treat it
/// as a warning, since sandboxes work the same without it, only start slower.
pub fn favor_dynamic_moves() -> Result<DynmodsOutcome> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(RuntimeError::io("reading", path))?;
    let Some(found) = find_cgroup2(&text) else {
        return Ok(DynmodsOutcome::NoCgroup2);
    };
    if found.options.iter().any(|o| o == OPTION) {
        return Ok(DynmodsOutcome::AlreadyOn(found.target));
    }
    let mut data = found.options.clone();
    data.push(OPTION.to_string());
    mount(
        None::<&str>,
        &found.target,
        None::<&str>,
        found.flags | MsFlags::MS_REMOUNT,
        Some(data.join(",").as_str()),
    )
    .map_err(|e| RuntimeError::io("remounting with favordynmods", &found.target)(e.into()))?;
    let text = std::fs::read_to_string(path).map_err(RuntimeError::io("reading", path))?;
    let on = find_cgroup2(&text).is_some_and(|m| m.options.iter().any(|o| o == OPTION));
    Ok(if on {
        DynmodsOutcome::TurnedOn(found.target)
    } else {
        DynmodsOutcome::NotApplied(found.target)
    })
}

/// The first cgroup2 mount of a mountinfo text: `/sys/fs/cgroup` on a v2 host,
/// `/sys/fs/cgroup/unified` on a hybrid one. Every cgroup2 mount of a cgroup
/// namespace shows the one hierarchy, so the first will do.
fn find_cgroup2(mountinfo: &str) -> Option<Cgroup2Mount> {
    mountinfo.lines().find_map(parse_cgroup2_line)
}

/// One mountinfo line, if it is a cgroup2 mount: `id parent dev root target
/// mount-options [optional fields] - fstype source super-options`.
fn parse_cgroup2_line(line: &str) -> Option<Cgroup2Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mut tail = after.split(' ');
    if tail.next()? != "cgroup2" {
        return None;
    }
    let super_options = tail.nth(1)?;
    let mut head = before.split(' ');
    let target = head.nth(4)?;
    let mount_options = head.next()?;
    Some(Cgroup2Mount {
        target: PathBuf::from(unescape_mountinfo(target)),
        flags: mount_options.split(',').fold(MsFlags::empty(), |flags, o| {
            flags | mount_flag(o).unwrap_or(MsFlags::empty())
        }),
        options: super_options
            .split(',')
            .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
            .map(str::to_string)
            .collect(),
    })
}

/// The `mount(2)` flag of a per-mount option mountinfo shows.
fn mount_flag(option: &str) -> Option<MsFlags> {
    Some(match option {
        "ro" => MsFlags::MS_RDONLY,
        "nosuid" => MsFlags::MS_NOSUID,
        "nodev" => MsFlags::MS_NODEV,
        "noexec" => MsFlags::MS_NOEXEC,
        "noatime" => MsFlags::MS_NOATIME,
        "nodiratime" => MsFlags::MS_NODIRATIME,
        "relatime" => MsFlags::MS_RELATIME,
        "strictatime" => MsFlags::MS_STRICTATIME,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
31 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,memory
";

    const SYSTEMD_V2: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn finds_the_unified_mount_of_a_hybrid_host() {
        let found = find_cgroup2(HYBRID).expect("a cgroup2 mount");
        assert_eq!(found.target, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(found.flags, MsFlags::MS_RELATIME);
        assert!(found.options.is_empty());
    }

    #[test]
    fn keeps_a_v2_hosts_flags_and_options_for_the_remount() {
        let found = find_cgroup2(SYSTEMD_V2).expect("a cgroup2 mount");
        assert_eq!(found.target, Path::new("/sys/fs/cgroup"));
        assert_eq!(
            found.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME
        );
        assert_eq!(found.options, ["nsdelegate", "memory_recursiveprot"]);
    }

    #[test]
    fn a_v1_only_host_has_none() {
        assert_eq!(find_cgroup2(&HYBRID.replace("cgroup2", "cgroup")), None);
        assert_eq!(find_cgroup2(""), None);
        assert_eq!(find_cgroup2("garbage without a separator"), None);
    }
}
