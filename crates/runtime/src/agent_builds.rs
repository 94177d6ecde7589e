//! The agent builds a node has run, kept by content.
//!
//! A running sandbox maps its agent binary, and CRIU records that file by
//! path, size and build id: a dump of a sandbox whose binary was replaced on
//! the host fails (the mapped file is deleted), and a restore with another
//! build fails too. So a node never binds the configured `--agent-path`
//! itself: it copies each build it starts with to `agents/<sha256>` under its
//! data directory, binds that copy, and records in every dump which build made
//! it ([`MARKER`], beside CRIU's images). Replacing the agent (an upgrade, a
//! rebuild) then leaves running, suspended and snapshotted sandboxes with the
//! build they were made with.

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

/// The store: `agents/` under the node's data directory.
#[derive(Debug, Clone)]
pub struct AgentBuilds {
    dir: PathBuf,
}

impl AgentBuilds {
    /// The store under `data_dir`, made if missing (root-only).
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("agents");
        std::fs::create_dir_all(&dir).map_err(RuntimeError::io("creating", &dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .map_err(RuntimeError::io("restricting", &dir))?;
        Ok(Self { dir })
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
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
            return Ok(AgentBuild { digest, path });
        }
        let partial = self.dir.join(format!(".{digest}.partial"));
        std::fs::write(&partial, &bytes).map_err(RuntimeError::io("writing", &partial))?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o555))
            .map_err(RuntimeError::io("setting the mode of", &partial))?;
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(RuntimeError::io("syncing", &partial))?;
        std::fs::rename(&partial, &path).map_err(RuntimeError::io("renaming", &partial))?;
        Ok(AgentBuild { digest, path })
    }

    /// The stored build with this digest, if the store has it.
    pub fn get(&self, digest: &str) -> Option<AgentBuild> {
        if !is_digest(digest) {
            return None;
        }
        let path = self.dir.join(digest);
        path.is_file().then(|| AgentBuild {
            digest: digest.to_string(),
            path,
        })
    }

    /// Removes every stored build but those in `keep` (and copies left
    /// half-written by a crash); answers how many went.
    pub fn retain(&self, keep: &HashSet<String>) -> usize {
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

/// Writes the [`MARKER`] naming `digest` in `dir`.
pub fn write_marker(dir: &Path, digest: &str) -> Result<()> {
    let path = dir.join(MARKER);
    std::fs::write(&path, format!("{digest}\n")).map_err(RuntimeError::io("writing", &path))
}

/// Whether `s` is a SHA-256 in lowercase hex (and so a safe file name).
fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_is_stored_once_by_content_and_survives_its_source() {
        let data = tempfile::tempdir().expect("tempdir");
        let builds = AgentBuilds::open(data.path()).expect("open");
        let source = data.path().join("alcove-agent");
        std::fs::write(&source, b"build one").expect("write");
        let one = builds.install(&source).expect("install");
        assert_eq!(builds.install(&source).expect("again"), one);
        // The source replaced, as an upgrade does: the first build stays as it was.
        std::fs::write(&source, b"build two").expect("write");
        let two = builds.install(&source).expect("install");
        assert_ne!(one.digest, two.digest);
        assert_eq!(std::fs::read(&one.path).expect("read"), b"build one");
        assert_eq!(builds.get(&one.digest), Some(one.clone()));
        assert_eq!(
            std::fs::metadata(&two.path)
                .expect("stat")
                .permissions()
                .mode()
                & 0o777,
            0o555
        );
        // Only what is kept stays.
        assert_eq!(builds.retain(&HashSet::from([two.digest.clone()])), 1);
        assert_eq!(builds.get(&one.digest), None);
        assert!(builds.get(&two.digest).is_some());
    }

    #[test]
    fn a_damaged_copy_is_replaced_and_bad_markers_name_nothing() {
        let data = tempfile::tempdir().expect("tempdir");
        let builds = AgentBuilds::open(data.path()).expect("open");
        let source = data.path().join("alcove-agent");
        std::fs::write(&source, b"the build").expect("write");
        let build = builds.install(&source).expect("install");
        std::fs::remove_file(&build.path).expect("remove");
        std::fs::write(&build.path, b"truncat").expect("write");
        assert_eq!(builds.install(&source).expect("install"), build);
        assert_eq!(std::fs::read(&build.path).expect("read"), b"the build");

        let dir = data.path();
        assert_eq!(read_marker(dir), None);
        write_marker(dir, &build.digest).expect("marker");
        assert_eq!(read_marker(dir), Some(build.digest.clone()));
        for bad in ["../../etc/passwd", "", &build.digest.to_uppercase()] {
            std::fs::write(dir.join(MARKER), bad).expect("write");
            assert_eq!(read_marker(dir), None, "{bad:?}");
            assert_eq!(builds.get(bad), None);
        }
    }
}
