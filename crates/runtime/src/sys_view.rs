//! The parts of a sandbox's `/sys` that are bind mounts instead of file systems of their
//! own: the masked directories (`/sys/firmware`, the block-device trees …) and, on a
//! cgroup v1 host, `/sys/fs/cgroup`.
//!
//! runc masks a directory with a fresh tmpfs and mounts each cgroup v1 hierarchy anew in
//! the sandbox's cgroup namespace. Both cost more the more sandboxes are up: every
//! superblock registers a memory-cgroup-aware shrinker and two reclaim lists, which the
//! kernel walks or grows for every memory cgroup made or removed on the host, and every
//! cgroup v1 mount first drains the whole cgroup2 tree of dying groups. A read-only bind
//! of a directory makes neither. So a sandbox's disk holds, outside its overlay:
//!
//! * `sys-view/masked/<name>`, an empty directory per masked directory of `/sys`, bound
//!   read-only over it (one each: CRIU restores binds that share a source as binds of
//!   one another, and loses their flags);
//! * `sys-view/cgroup`, one empty directory per cgroup v1 hierarchy of the host (and the
//!   host's links between them, as `cpu -> cpu,cpuacct`), bound read-only at
//!   `/sys/fs/cgroup`, with the sandbox's own cgroup directory of each hierarchy bound
//!   read-only on it. In the sandbox's cgroup namespace those show as `/`, as the mounts
//!   runc made did.
//!
//! The sources are taken through the idmapped view of the disk, so the directories belong
//! to the sandbox's root, as runc's tmpfs did; and from the sandbox's own disk, so
//! `/proc/self/mountinfo` names no host path. The sandbox cannot write them: they are
//! outside its overlay and bound read-only.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Result, RuntimeError};
use crate::layer::ensure_real_dir;

/// Where the host's cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The directory in a sandbox's disk (outside its overlay) holding the bind sources.
pub const DIR: &str = "sys-view";

/// `statfs` magic of a cgroup v1 hierarchy.
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;

/// An entry of the host's `/sys/fs/cgroup` that sandboxes get too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupEntry {
    /// A cgroup v1 hierarchy mounted at `/sys/fs/cgroup/<name>`.
    Hierarchy(String),
    /// A link `/sys/fs/cgroup/<name> -> <target>` between co-mounted hierarchies.
    Link(String, PathBuf),
}

/// The host's cgroup v1 hierarchies and links, read once: empty on a cgroup v2 host.
pub fn host_cgroup_layout() -> &'static [CgroupEntry] {
    static LAYOUT: OnceLock<Vec<CgroupEntry>> = OnceLock::new();
    LAYOUT.get_or_init(|| read_cgroup_layout(Path::new(CGROUP_ROOT)))
}

fn read_cgroup_layout(root: &Path) -> Vec<CgroupEntry> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut layout: Vec<CgroupEntry> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            if !crate::procfs::is_plain_name(&name) {
                return None;
            }
            let kind = entry.file_type().ok()?;
            if kind.is_symlink() {
                let target = std::fs::read_link(entry.path()).ok()?;
                // Only links between hierarchies, never out of the directory.
                let plain = target.to_str().is_some_and(crate::procfs::is_plain_name);
                return plain.then_some(CgroupEntry::Link(name, target));
            }
            let stat = nix::sys::statfs::statfs(&entry.path()).ok()?;
            (kind.is_dir() && stat.filesystem_type().0 as i64 == CGROUP_SUPER_MAGIC)
                .then_some(CgroupEntry::Hierarchy(name))
        })
        .collect();
    // Links only to hierarchies that are there.
    let names: Vec<String> = layout
        .iter()
        .filter_map(|e| match e {
            CgroupEntry::Hierarchy(n) => Some(n.clone()),
            CgroupEntry::Link(..) => None,
        })
        .collect();
    layout.retain(|e| match e {
        CgroupEntry::Hierarchy(_) => true,
        CgroupEntry::Link(_, target) => target
            .to_str()
            .is_some_and(|t| names.iter().any(|n| n == t)),
    });
    layout.sort_by(|a, b| entry_name(a).cmp(entry_name(b)));
    layout
}

fn entry_name(entry: &CgroupEntry) -> &str {
    match entry {
        CgroupEntry::Hierarchy(n) | CgroupEntry::Link(n, _) => n,
    }
}

/// Whether `source` is one of the directories a sys view binds, which may not exist yet
/// when the spec is written (the idmapped view of the disk is attached later, runc makes
/// the cgroups).
pub fn is_dir_source(source: &Path) -> bool {
    source.starts_with(CGROUP_ROOT) || source.components().any(|c| c.as_os_str() == DIR)
}

/// What a sandbox's spec binds instead of mounting (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysView {
    /// Masked directories of `/sys` and the empty directory bound over each.
    pub masked: Vec<(String, PathBuf)>,
    /// On a cgroup v1 host: what is bound at `/sys/fs/cgroup`, and each hierarchy's name
    /// with the sandbox's own directory in it.
    pub cgroup: Option<(PathBuf, Vec<(String, PathBuf)>)>,
}

/// The masked paths ([`crate::security::masked_paths`]) that are directories of `/sys`
/// on this host (and so in every sandbox's `/sys`, which shows the host's devices): those
/// a sys view binds over. Read once, as the cgroup layout is.
pub fn host_masked_sys_dirs() -> &'static [String] {
    static DIRS: OnceLock<Vec<String>> = OnceLock::new();
    DIRS.get_or_init(|| {
        crate::security::masked_paths()
            .into_iter()
            .filter(|p| p.starts_with("/sys/"))
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
            .collect()
    })
}

/// Makes `<disk>/sys-view` for a sandbox whose cgroups are at `cgroups_path` in every
/// hierarchy and whose `/sys` directories `masked` are masked, and returns the sources as
/// seen through `view` (the idmapped mount of the same disk). Idempotent: a disk from
/// before, a spare or a restored one get what is missing.
pub fn prepare(
    disk: &Path,
    view: &Path,
    layout: &[CgroupEntry],
    cgroups_path: &str,
    masked: &[String],
) -> Result<SysView> {
    let dir = disk.join(DIR);
    ensure_real_dir(&dir, 0o755)?;
    ensure_real_dir(&dir.join("masked"), 0o755)?;
    let mut binds = Vec::new();
    for path in masked {
        let name = path.trim_start_matches('/').replace('/', "_");
        if !crate::procfs::is_plain_name(&name) {
            return Err(RuntimeError::Config(format!("cannot mask {path}")));
        }
        ensure_real_dir(&dir.join("masked").join(&name), 0o555)?;
        binds.push((path.clone(), view.join(DIR).join("masked").join(name)));
    }
    let cgroup = if layout
        .iter()
        .any(|e| matches!(e, CgroupEntry::Hierarchy(_)))
    {
        let skeleton = dir.join("cgroup");
        ensure_real_dir(&skeleton, 0o555)?;
        let rel = cgroups_path.trim_start_matches('/');
        let mut hierarchies = Vec::new();
        for entry in layout {
            match entry {
                CgroupEntry::Hierarchy(name) => {
                    ensure_real_dir(&skeleton.join(name), 0o555)?;
                    hierarchies.push((name.clone(), Path::new(CGROUP_ROOT).join(name).join(rel)));
                }
                CgroupEntry::Link(name, target) => link(&skeleton.join(name), target)?,
            }
        }
        Some((view.join(DIR).join("cgroup"), hierarchies))
    } else {
        None
    };
    Ok(SysView {
        masked: binds,
        cgroup,
    })
}

fn link(path: &Path, target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(_) if std::fs::read_link(path).is_ok_and(|t| t == target) => Ok(()),
        Ok(_) => Err(RuntimeError::Config(format!(
            "{} is not the link expected",
            path.display()
        ))),
        Err(_) => {
            std::os::unix::fs::symlink(target, path).map_err(RuntimeError::io("linking", path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn layout() -> Vec<CgroupEntry> {
        vec![
            CgroupEntry::Link("cpu".into(), "cpu,cpuacct".into()),
            CgroupEntry::Hierarchy("cpu,cpuacct".into()),
            CgroupEntry::Hierarchy("memory".into()),
        ]
    }

    #[test]
    fn prepares_the_skeleton_and_the_sources() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (disk, view) = (tmp.path().join("layer"), tmp.path().join("upper"));
        std::fs::create_dir(&disk).expect("disk");
        let masked = ["/sys/firmware".to_string(), "/sys/class/block".to_string()];
        let got = prepare(&disk, &view, &layout(), "/alcove-ab/s1", &masked).expect("prepare");
        assert_eq!(
            got.masked,
            vec![
                (
                    "/sys/firmware".to_string(),
                    view.join("sys-view/masked/sys_firmware")
                ),
                (
                    "/sys/class/block".to_string(),
                    view.join("sys-view/masked/sys_class_block")
                ),
            ]
        );
        let (skeleton, hierarchies) = got.cgroup.clone().expect("cgroup v1 layout");
        assert_eq!(skeleton, view.join("sys-view/cgroup"));
        assert_eq!(
            hierarchies,
            vec![
                (
                    "cpu,cpuacct".to_string(),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/alcove-ab/s1")
                ),
                (
                    "memory".to_string(),
                    PathBuf::from("/sys/fs/cgroup/memory/alcove-ab/s1")
                ),
            ]
        );
        let made = disk.join("sys-view");
        let empty = made.join("masked/sys_firmware");
        assert_eq!(std::fs::read_dir(&empty).expect("empty").count(), 0);
        assert!(made.join("cgroup/memory").is_dir());
        assert_eq!(
            std::fs::read_link(made.join("cgroup/cpu")).expect("link"),
            PathBuf::from("cpu,cpuacct")
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777;
        assert_eq!(mode(&empty), 0o555);
        assert_eq!(mode(&made.join("cgroup")), 0o555);
        // Again, on the same disk: same answer, nothing in the way.
        let again = prepare(&disk, &view, &layout(), "/alcove-ab/s1", &masked).expect("again");
        assert_eq!(again, got);
        assert_eq!(mode(&made.join("cgroup")), 0o555);
    }

    #[test]
    fn a_cgroup_v2_host_gets_no_cgroup_skeleton() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let got = prepare(tmp.path(), Path::new("/v"), &[], "/x", &[]).expect("prepare");
        assert!(got.cgroup.is_none() && got.masked.is_empty());
        assert!(!tmp.path().join("sys-view/cgroup").exists());
    }

    #[test]
    fn refuses_what_is_not_a_directory_where_one_belongs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("sys-view/masked")).expect("dir");
        std::os::unix::fs::symlink("/etc", tmp.path().join("sys-view/masked/sys_firmware"))
            .expect("link");
        let masked = ["/sys/firmware".to_string()];
        let err = prepare(tmp.path(), Path::new("/v"), &[], "/x", &masked).expect_err("a link");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn reads_hierarchies_and_links_of_a_cgroup_root() {
        // Not a cgroup file system: directories are not hierarchies, links to them drop.
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("memory")).expect("dir");
        std::os::unix::fs::symlink("memory", tmp.path().join("mem")).expect("link");
        std::os::unix::fs::symlink("/etc", tmp.path().join("out")).expect("link");
        assert!(read_cgroup_layout(tmp.path()).is_empty());
        // The host's own, where it is v1: every link names a hierarchy listed.
        let host = read_cgroup_layout(Path::new(CGROUP_ROOT));
        for e in &host {
            if let CgroupEntry::Link(_, target) = e {
                assert!(host.contains(&CgroupEntry::Hierarchy(target.display().to_string())));
            }
        }
    }
}
