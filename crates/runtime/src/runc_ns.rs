//! The mount namespace runc runs in: the host's, without any sandbox's mounts.
//!
//! Every sandbox holds a handful of mounts on the host (its disk, the idmapped
//! image and writable layer, the overlay, the name of its network namespace).
//! runc reads `/proc/self/mountinfo` several times per call (its cgroup v1
//! manager looks up the controllers' mount points, the root file system setup
//! checks propagation), and its init copies the whole table when it makes the
//! container's mount namespace, so every `runc run`, `delete`, `update` and
//! CRIU call grew slower with every sandbox up: at 5000 host mounts `runc run`
//! took ~130 ms against ~35 ms on an empty host.
//!
//! So runc never runs in the host's mount namespace. At start the node makes a
//! *template*: a private copy of the host's namespace from which every mount
//! under the data directory and under `/var/run/netns` is detached, held open
//! by a descriptor. Each runc call starts in a child that enters the template
//! (without forking the server: see [`crate::spawn`]), unshares a copy of it
//! (a table of constant size: the host's own mounts), and, when the call
//! is about one sandbox's root file system (`run`, `restore`, `checkpoint`),
//! attaches a recursive clone of that sandbox's directory (its overlay,
//! layers, views of volumes) taken in the host namespace just before. The copy
//! dies with runc; the container keeps its own namespace, as before.
//!
//! What runc's children do in that namespace stays there: the `createRuntime`
//! hook therefore does not name the network namespace (a bind mount under
//! `/var/run/netns` would vanish with the copy); the node names it in the host
//! namespace once runc is done (see [`crate::network::Network::name`]).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::error::{Result, RuntimeError};
use crate::spawn::MountEntry;

/// The template namespace runc calls start from.
#[derive(Debug)]
pub struct RuncNamespace {
    template: OwnedFd,
}

impl RuncNamespace {
    /// Makes the template: a private copy of the calling process's mount
    /// namespace without the mounts under each of `hidden` (a directory that
    /// is itself a mount point stays, only what is mounted below it goes), nor
    /// other sandbox-like mounts, except those holding one of `needed` (the
    /// data directory's own file system, the image store's, the binaries').
    pub fn new(hidden: &[PathBuf], needed: &[PathBuf]) -> Result<Arc<Self>> {
        let (hidden, needed) = (hidden.to_vec(), needed.to_vec());
        // A thread of its own: unsharing the mount namespace needs a private
        // `fs_struct`, and the thread ends once the namespace is held by a
        // descriptor (the rest of the process never leaves the host's).
        let made = std::thread::Builder::new()
            .name("runc-ns".into())
            .spawn(move || make_template(&hidden, &needed))
            .map_err(|e| RuntimeError::Config(format!("starting the runc namespace thread: {e}")))?
            .join()
            .map_err(|_| RuntimeError::Config("the runc namespace thread panicked".into()))??;
        Ok(Arc::new(Self { template: made }))
    }

    /// How a program started by [`crate::spawn`] enters a fresh copy of the
    /// template, with a recursive clone of `subtree` (cloned now, in this
    /// process's namespace) attached at the same path. The working directory
    /// is kept (entering a mount namespace resets it to the root).
    pub(crate) fn entry(self: &Arc<Self>, subtree: Option<&Path>) -> Result<MountEntry> {
        let tree = match subtree {
            Some(dir) => Some((crate::userns::clone_tree_recursive(dir)?, cstring(dir)?)),
            None => None,
        };
        let cwd = std::env::current_dir()
            .ok()
            .map(|d| cstring(&d))
            .transpose()?;
        Ok(MountEntry {
            ns: Arc::clone(self),
            tree,
            cwd,
        })
    }

    /// The template's descriptor, for a child about to enter it.
    pub(crate) fn template_fd(&self) -> RawFd {
        self.template.as_raw_fd()
    }
}

/// How a program enters a copy of `ns`, with `subtree` attached (see
/// [`RuncNamespace::entry`]); `None` without a namespace (it runs in the
/// caller's). The error is a command's reason.
pub(crate) fn entry_for(
    ns: Option<&Arc<RuncNamespace>>,
    subtree: Option<&Path>,
) -> std::result::Result<Option<MountEntry>, String> {
    ns.map(|ns| ns.entry(subtree))
        .transpose()
        .map_err(|e| format!("entering the runc mount namespace: {e}"))
}

/// Runs in a thread of its own: unshares, detaches what
/// [`mounts_to_detach`] picks, returns the namespace's descriptor.
fn make_template(hidden: &[PathBuf], needed: &[PathBuf]) -> Result<OwnedFd> {
    let ns_err = |what: &str, e: nix::errno::Errno| {
        RuntimeError::Config(format!("making the runc mount namespace: {what}: {e}"))
    };
    nix::sched::unshare(CloneFlags::CLONE_FS | CloneFlags::CLONE_NEWNS)
        .map_err(|e| ns_err("unshare", e))?;
    // Private first: a detach must not propagate back to the host's mounts.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| ns_err("making / private", e))?;
    let table = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    for mount in mounts_to_detach(&table, hidden, needed) {
        match nix::mount::umount2(&mount, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(ns_err(&format!("detaching {}", mount.display()), e)),
        }
    }
    let path = "/proc/thread-self/ns/mnt";
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(RuntimeError::io("opening", Path::new(path)))
}

/// What the template leaves out, outermost first (detaching a mount takes
/// what is mounted under it along): everything strictly below each of
/// `hidden` (a directory that is itself a mount point stays), and any
/// sandbox-like mount elsewhere (overlays, loop devices, namespace files, as
/// other instances on the host make). The template must not hold those: a
/// mount it kept would keep its file system, and its loop device, alive after
/// the host unmounted it. A mount that holds one of `needed` always stays.
fn mounts_to_detach(table: &str, hidden: &[PathBuf], needed: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| {
            let (mount, kind) = parse_mountinfo(line)?;
            let below_hidden = hidden.iter().any(|h| mount.starts_with(h) && &mount != h);
            let holds_needed = needed.iter().any(|n| n.starts_with(&mount));
            ((below_hidden || kind.is_transient()) && !holds_needed).then_some(mount)
        })
        .collect();
    found.sort_by_key(|p| p.components().count());
    let mut outermost: Vec<PathBuf> = Vec::new();
    for m in found {
        if !outermost.iter().any(|o| m.starts_with(o)) {
            outermost.push(m);
        }
    }
    outermost
}

/// The file system type and source of a mount.
struct MountKind {
    fstype: String,
    source: String,
}

impl MountKind {
    /// A mount a sandbox (of this or another instance) makes.
    fn is_transient(&self) -> bool {
        matches!(self.fstype.as_str(), "overlay" | "nsfs")
            || self.source.starts_with("/dev/loop")
            || self.source == crate::agent_builds::RUN_FS_SOURCE
    }
}

/// The mount point and kind of one `/proc/*/mountinfo` line.
fn parse_mountinfo(line: &str) -> Option<(PathBuf, MountKind)> {
    let mount = line.split(' ').nth(4)?;
    let (_, after) = line.split_once(" - ")?;
    let mut rest = after.split(' ');
    let fstype = rest.next()?.to_string();
    let source = crate::layer::unescape_mountinfo(rest.next()?);
    Some((
        PathBuf::from(crate::layer::unescape_mountinfo(mount)),
        MountKind { fstype, source },
    ))
}

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::Config(format!("{} holds a NUL byte", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mount_points_and_kinds_of_mountinfo_lines() {
        let (mount, kind) =
            parse_mountinfo("47 27 7:0 / /data/sandboxes/a/layer rw,noatime - ext4 /dev/loop0 rw")
                .expect("parsed");
        assert_eq!(mount, Path::new("/data/sandboxes/a/layer"));
        assert!(kind.is_transient(), "a loop device");
        let (mount, kind) =
            parse_mountinfo("134 132 0:4 net:[4026532190] /run/netns/x rw shared:2 - nsfs nsfs rw")
                .expect("parsed");
        assert_eq!(mount, Path::new("/run/netns/x"));
        assert!(kind.is_transient(), "a namespace file");
        let (mount, kind) =
            parse_mountinfo("32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu")
                .expect("parsed");
        assert_eq!(mount, Path::new("/sys/fs/cgroup/cpu"));
        assert!(!kind.is_transient(), "the host's own");
        let (mount, _) =
            parse_mountinfo("1 2 0:5 / /with\\040space rw - tmpfs none rw").expect("parsed");
        assert_eq!(mount, Path::new("/with space"));
        assert!(parse_mountinfo("garbage").is_none());
    }

    #[test]
    fn detaches_the_outermost_sandbox_mounts_and_keeps_what_holds_the_data() {
        let table = [
            "27 1 254:0 / / rw - ext4 /dev/vda rw",
            "40 27 7:9 / /srv/alcove rw - ext4 /dev/loop9 rw",
            "47 40 7:0 / /srv/alcove/sandboxes/a/layer rw - ext4 /dev/loop0 rw",
            "48 40 0:4 / /srv/alcove/sandboxes/a/rootfs rw - overlay overlay rw",
            "49 48 0:5 / /srv/alcove/sandboxes/a/rootfs/proc rw - proc proc rw",
            "50 27 0:6 / /srv/alcove/plain rw - tmpfs tmpfs rw",
            "51 27 7:3 / /tmp/other/sandboxes/b/layer rw - ext4 /dev/loop3 rw",
            "52 27 0:7 / /tmp/other/sandboxes/b/rootfs rw - overlay overlay rw",
            "53 27 0:4 net:[1] /run/netns/x rw - nsfs nsfs rw",
            "54 27 0:8 / /var/lib/lxcfs rw - fuse.lxcfs lxcfs rw",
        ]
        .join("\n");
        let hidden = [PathBuf::from("/srv/alcove"), PathBuf::from("/run/netns")];
        let needed = [
            PathBuf::from("/srv/alcove"),
            PathBuf::from("/var/lib/alcove/images"),
        ];
        let got = mounts_to_detach(&table, &hidden, &needed);
        let want: Vec<PathBuf> = [
            "/run/netns/x",
            "/srv/alcove/plain",
            "/srv/alcove/sandboxes/a/layer",
            "/srv/alcove/sandboxes/a/rootfs",
            "/tmp/other/sandboxes/b/layer",
            "/tmp/other/sandboxes/b/rootfs",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(
            sorted, want,
            "the data directory's loop mount stays, /proc under a rootfs goes with it"
        );
    }

    #[test]
    #[ignore = "needs root (mount namespaces, mounts)"]
    fn runc_calls_see_neither_hidden_mounts_nor_other_sandboxes_but_their_own_subtree() {
        let tmp = tempfile::tempdir().expect("tmp");
        let base = tmp.path().canonicalize().expect("canonical");
        let (mine, other) = (
            base.join("sandboxes/a/rootfs"),
            base.join("sandboxes/b/rootfs"),
        );
        for dir in [&mine, &other] {
            std::fs::create_dir_all(dir).expect("mkdir");
            nix::mount::mount(
                Some("tmpfs"),
                dir,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .expect("mount tmpfs (tests run as root)");
        }
        std::fs::write(mine.join("marker"), b"mine").expect("write");
        let ns = RuncNamespace::new(std::slice::from_ref(&base), &[]).expect("template");

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let run = |argv: &[&str], subtree: Option<&Path>| {
            rt.block_on(crate::cmd::run_spawned(
                argv,
                None,
                (Some(&ns), subtree),
                false,
            ))
            .expect("ran")
        };
        let table = |subtree: Option<&Path>| run(&["cat", "/proc/self/mountinfo"], subtree);
        let bare = table(None);
        assert!(!bare.contains(&*mine.to_string_lossy()), "{bare}");
        assert!(!bare.contains(&*other.to_string_lossy()), "{bare}");
        let with_mine = table(Some(&base.join("sandboxes/a")));
        assert!(with_mine.contains(&*mine.to_string_lossy()), "{with_mine}");
        assert!(
            !with_mine.contains(&*other.to_string_lossy()),
            "{with_mine}"
        );

        let marker = mine.join("marker");
        let out = run(
            &["cat", marker.to_str().expect("utf-8")],
            Some(&base.join("sandboxes/a")),
        );
        assert_eq!(out, "mine", "the subtree's mounts are attached");

        assert!(
            crate::layer::is_mountpoint(&mine),
            "the host keeps its mounts"
        );
        for dir in [&mine, &other] {
            crate::layer::unmount_all(dir).expect("unmount");
        }
    }
}
