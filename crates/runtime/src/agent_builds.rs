//! The agent builds a node has run, kept by content.
//!
//! A running sandbox maps its agent binary, and CRIU records that file by
//! path, size and build id: a dump of a sandbox whose binary was replaced on
//! the host fails (the mapped file is deleted), and a restore with another
//! build fails too. So a node never binds the configured `--agent-path`
//! itself: it copies each build it starts with to `agents/<sha256>` under its
//! data directory (root-only, like the rest of it), and records in every dump
//! which build made it ([`MARKER`], beside CRIU's images). Replacing the agent
//! (an upgrade, a rebuild) then leaves running, suspended and snapshotted
//! sandboxes with the build they were made with.
//!
//! Sandboxes bind the build from a tmpfs at `agent-run/` (its own file
//! system, 0711, binaries 0555: each sandbox's init runs one from inside its
//! user namespace), filled from `agents/` as builds are needed. A bind mount
//! shows its source path within its file system in the sandbox's
//! `/proc/self/mountinfo`: from the tmpfs that is `/<sha256>`, where a bind
//! from the data directory would show the host's path to it.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Result, RuntimeError};

/// The file naming the agent build (its SHA-256, in hex) that a sandbox runs,
/// in its directory, and that made a dump, in the dump's directory. A dump
/// without one predates the store and is restored with the current build.
pub const MARKER: &str = "alcove-agent.sha256";

/// One build in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentBuild {
    /// SHA-256 of the binary, lowercase hex.
    pub digest: String,
    /// The stored copy, the file sandboxes bind.
    pub path: PathBuf,
}

/// The source name of the tmpfs builds are run from: how a node tells it
/// from other mounts (see `crate::runc_ns`).
pub const RUN_FS_SOURCE: &str = "alcove-agents";

/// The store: `agents/` under the node's data directory, and the tmpfs at
/// `agent-run/` that sandboxes bind builds from.
#[derive(Debug, Clone)]
pub struct AgentBuilds {
    dir: PathBuf,
    run: PathBuf,
}

impl AgentBuilds {
    /// The store under `data_dir`, made if missing (root-only), with its tmpfs
    /// mounted (kept from an earlier run of the server while it is mounted).
    pub fn open(data_dir: &Path) -> Result<Self> {
        let builds = Self::in_dirs(data_dir.join("agents"), data_dir.join("agent-run"))?;
        let run = &builds.run;
        if !crate::layer::is_mountpoint(run) {
            // The directory under the tmpfs, root-only as the rest of the data directory (the
            // tmpfs's own root is what sandboxes enter).
            std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o700))
                .map_err(RuntimeError::io("restricting", run))?;
            nix::mount::mount(
                Some(RUN_FS_SOURCE),
                run.as_path(),
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                Some("mode=0711,size=2g,nr_inodes=4096"),
            )
            .map_err(|e| {
                RuntimeError::Config(format!("mounting a tmpfs at {}: {e}", run.display()))
            })?;
        }
        Ok(builds)
    }

    /// The store in `dir`, run from `run` as it is (a plain directory in tests).
    fn in_dirs(dir: PathBuf, run: PathBuf) -> Result<Self> {
        for d in [&dir, &run] {
            std::fs::create_dir_all(d).map_err(RuntimeError::io("creating", d))?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(RuntimeError::io("restricting", &dir))?;
        Ok(Self { dir, run })
    }

    /// Where sandboxes bind builds from (a mount point: see the module doc).
    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    /// Unmounts the tmpfs (when no sandbox runs: a running one keeps its file
    /// system through its own bind, a later start mounts a new one).
    pub fn unmount_run(&self) {
        if let Err(e) = nix::mount::umount2(&self.run, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(dir = %self.run.display(), error = %e, "unmounting the agent builds' tmpfs");
        }
    }

    /// The runnable copy of the stored build `digest` in the tmpfs, copied
    /// there (aside, then renamed) if it is not yet.
    fn runnable(&self, digest: &str) -> Result<PathBuf> {
        let path = self.run.join(digest);
        if path.is_file() {
            return Ok(path);
        }
        let stored = self.dir.join(digest);
        let partial = self
            .run
            .join(format!(".{digest}.{}.partial", std::process::id()));
        std::fs::copy(&stored, &partial).map_err(RuntimeError::io("copying", &stored))?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o555))
            .map_err(RuntimeError::io("setting the mode of", &partial))?;
        std::fs::rename(&partial, &path).map_err(RuntimeError::io("renaming", &partial))?;
        Ok(path)
    }

    /// Copies `source` into the store unless a copy of the same content is
    /// there, and answers the stored build. The copy is written aside and
    /// renamed into place, so a crash never leaves half a binary under a digest.
    pub fn install(&self, source: &Path) -> Result<AgentBuild> {
        let bytes = std::fs::read(source).map_err(RuntimeError::io("reading", source))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let path = self.dir.join(&digest);
        // A stored copy only ever appears whole (by rename): its size is check enough, and
        // spares hashing it again at every start.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
            let partial = self.dir.join(format!(".{digest}.partial"));
            std::fs::write(&partial, &bytes).map_err(RuntimeError::io("writing", &partial))?;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))
                .map_err(RuntimeError::io("setting the mode of", &partial))?;
            std::fs::File::open(&partial)
                .and_then(|f| f.sync_all())
                .map_err(RuntimeError::io("syncing", &partial))?;
            std::fs::rename(&partial, &path).map_err(RuntimeError::io("renaming", &partial))?;
        }
        let path = self.runnable(&digest)?;
        Ok(AgentBuild { digest, path })
    }

    /// The stored build with this digest, runnable, if the store has it.
    pub fn get(&self, digest: &str) -> Result<Option<AgentBuild>> {
        if self.stored(digest).is_none() {
            return Ok(None);
        }
        Ok(Some(AgentBuild {
            digest: digest.to_string(),
            path: self.runnable(digest)?,
        }))
    }

    /// The stored file of build `digest`, if the store has it (what a node
    /// shares with others through a blob store).
    pub fn stored(&self, digest: &str) -> Option<PathBuf> {
        let path = self.dir.join(digest);
        (is_digest(digest) && path.is_file()).then_some(path)
    }

    /// Where a build fetched from elsewhere is written before [`Self::adopt`]
    /// takes it in; `None` for a name that is no digest.
    pub fn incoming(&self, digest: &str) -> Option<PathBuf> {
        is_digest(digest).then(|| self.dir.join(format!(".{digest}.incoming")))
    }

    /// Takes the file at `incoming` (from [`Self::incoming`]) in as build
    /// `digest` once its content is checked to be that build.
    pub fn adopt(&self, digest: &str, incoming: &Path) -> Result<()> {
        let bytes = std::fs::read(incoming).map_err(RuntimeError::io("reading", incoming))?;
        if !is_digest(digest) || hex::encode(Sha256::digest(&bytes)) != digest {
            let _ = std::fs::remove_file(incoming);
            return Err(RuntimeError::Config(format!(
                "a fetched agent build is not build {digest}"
            )));
        }
        std::fs::set_permissions(incoming, std::fs::Permissions::from_mode(0o600))
            .map_err(RuntimeError::io("setting the mode of", incoming))?;
        let path = self.dir.join(digest);
        std::fs::rename(incoming, &path).map_err(RuntimeError::io("renaming", incoming))
    }

    /// Removes every stored build but those in `keep` (and copies left
    /// half-written by a crash), from the store and the tmpfs; answers how
    /// many went from the store.
    pub fn retain(&self, keep: &HashSet<String>) -> usize {
        if let Ok(entries) = std::fs::read_dir(&self.run) {
            for entry in entries.flatten() {
                if !keep.contains(entry.file_name().to_string_lossy().as_ref()) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(build = %name, error = %e, "removing an unused agent build")
                }
            }
        }
        removed
    }
}

/// The digest named by the [`MARKER`] in `dir`, if it holds a valid one.
pub fn read_marker(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    let digest = text.trim();
    is_digest(digest).then(|| digest.to_string())
}

/// Writes the [`MARKER`] naming `digest` in `dir`, with the mode of the files beside it
/// (see `crate::perms`).
pub fn write_marker(dir: &Path, digest: &str) -> Result<()> {
    let mode = if crate::perms::is_criu_images(dir) {
        0o644
    } else {
        0o600
    };
    crate::perms::write_file(&dir.join(MARKER), format!("{digest}\n").as_bytes(), mode)
}

/// Whether `s` is a SHA-256 in lowercase hex (and so a safe file name).
fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a new directory, and a source file there holding `content`, installed.
    fn store_with(content: &[u8]) -> (tempfile::TempDir, AgentBuilds, PathBuf, AgentBuild) {
        let data = tempfile::tempdir().expect("tempdir");
        let builds =
            AgentBuilds::in_dirs(data.path().join("agents"), data.path().join("agent-run"))
                .expect("open");
        let source = data.path().join("alcove-agent");
        std::fs::write(&source, content).expect("write");
        let build = builds.install(&source).expect("install");
        (data, builds, source, build)
    }

    #[test]
    fn a_build_is_stored_once_by_content_and_survives_its_source() {
        let (_data, builds, source, one) = store_with(b"build one");
        assert_eq!(builds.install(&source).expect("again"), one);
        assert!(one.path.starts_with(builds.run_dir()), "{one:?}");
        // The source replaced, as an upgrade does: the first build stays as it was.
        std::fs::write(&source, b"build two").expect("write");
        let two = builds.install(&source).expect("install");
        assert_ne!(one.digest, two.digest);
        assert_eq!(std::fs::read(&one.path).expect("read"), b"build one");
        assert_eq!(builds.get(&one.digest).expect("get"), Some(one.clone()));
        assert_eq!(
            std::fs::metadata(&two.path)
                .expect("stat")
                .permissions()
                .mode()
                & 0o777,
            0o555
        );
        // The runnable copy is made again from the store when it is gone (a new tmpfs).
        std::fs::remove_file(&one.path).expect("remove");
        assert_eq!(builds.get(&one.digest).expect("get"), Some(one.clone()));
        assert_eq!(std::fs::read(&one.path).expect("read"), b"build one");
        // Only what is kept stays, in both places.
        assert_eq!(builds.retain(&HashSet::from([two.digest.clone()])), 1);
        assert_eq!(builds.get(&one.digest).expect("get"), None);
        assert!(!one.path.exists());
        assert!(builds.get(&two.digest).expect("get").is_some());
    }

    #[test]
    fn a_fetched_build_is_taken_in_only_if_it_is_that_build() {
        let (data, builds, _, build) = store_with(b"shared build");
        let other = AgentBuilds::in_dirs(data.path().join("b/agents"), data.path().join("b/run"))
            .expect("open");
        let incoming = other.incoming(&build.digest).expect("a digest");
        std::fs::write(&incoming, b"tampered").expect("write");
        assert!(other.adopt(&build.digest, &incoming).is_err());
        assert!(!incoming.exists() && other.stored(&build.digest).is_none());
        let stored = builds.stored(&build.digest).expect("stored");
        std::fs::copy(&stored, &incoming).expect("copy");
        other.adopt(&build.digest, &incoming).expect("adopt");
        assert_eq!(
            other.get(&build.digest).expect("get").map(|b| b.digest),
            Some(build.digest)
        );
        assert_eq!(other.incoming("../x"), None);
    }

    #[test]
    fn a_damaged_copy_is_replaced_and_bad_markers_name_nothing() {
        let (data, builds, source, build) = store_with(b"the build");
        let stored = data.path().join("agents").join(&build.digest);
        std::fs::write(&stored, b"truncat").expect("write");
        assert_eq!(builds.install(&source).expect("install"), build);
        assert_eq!(std::fs::read(&stored).expect("read"), b"the build");

        let dir = data.path();
        assert_eq!(read_marker(dir), None);
        write_marker(dir, &build.digest).expect("marker");
        assert_eq!(read_marker(dir), Some(build.digest.clone()));
        for bad in ["../../etc/passwd", "", &build.digest.to_uppercase()] {
            std::fs::write(dir.join(MARKER), bad).expect("write");
            assert_eq!(read_marker(dir), None, "{bad:?}");
            assert_eq!(builds.get(bad).expect("get"), None);
        }
    }
}
