//! Host uid/gid ranges for sandbox user namespaces.
//!
//! Root in a sandbox is host uid `first` of its range, and the sandbox's uids
//! 0..65535 are `first..first + 65536` on the host. Every running container
//! holds a range of its own; a range is taken when a container starts (create,
//! resume, restore) and given back when it stops (delete, suspend). Nothing on
//! disk depends on the range: the writable layer is stored with the sandbox's
//! own ids through an idmapped mount, so a sandbox may come back from a
//! suspend or a snapshot under any range.
//!
//! Ranges are shared by every Alcove instance on the host (a dev server and
//! test servers run side by side), so the allocator is a host-wide directory
//! in which a range is taken by creating the file named after its index with
//! `O_EXCL`; the file says which instance and sandbox hold it, so that a
//! restarted instance can give back what its dead containers held.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError};

/// Ids in one sandbox's range (uids 0..65535 inside).
pub const RANGE_SIZE: u32 = 65_536;

/// Default host-wide directory of taken ranges (a tmpfs: containers do not
/// outlive a reboot, and neither do their ranges).
pub const DEFAULT_DIR: &str = "/run/alcove/idmap";

/// First host id of range 0: 0x2000_0000, far above the ids of host users and
/// below the 0x8000_0000 and up that some tools print as negative.
pub const DEFAULT_FIRST_ID: u32 = 0x2000_0000;

/// How many ranges exist (0x2000_0000 .. 0x4000_0000): concurrent running
/// sandboxes per host.
pub const DEFAULT_COUNT: u32 = 8192;

/// One sandbox's id range on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdRange {
    /// Index in the allocator.
    pub index: u32,
    /// Host id that is uid/gid 0 in the sandbox.
    pub first: u32,
}

impl IdRange {
    /// The `uid_map`/`gid_map` line of this range.
    pub fn map_line(&self) -> String {
        format!("0 {} {}\n", self.first, RANGE_SIZE)
    }
}

/// The host-wide allocator of id ranges.
#[derive(Debug, Clone)]
pub struct IdAllocator {
    dir: PathBuf,
    first_id: u32,
    count: u32,
    /// Written into every range file: the instance tag.
    owner_tag: String,
}

impl IdAllocator {
    /// An allocator of `count` ranges from `first_id`, keeping its files in
    /// `dir`, for the instance tagged `owner_tag`.
    pub fn new(dir: impl Into<PathBuf>, first_id: u32, count: u32, owner_tag: &str) -> Self {
        Self {
            dir: dir.into(),
            first_id,
            count,
            owner_tag: owner_tag.to_string(),
        }
    }

    /// Checks the configuration: the last range must end within u32 and
    /// before the invalid id `u32::MAX`.
    pub fn validate(&self) -> Result<()> {
        let end = u64::from(self.first_id) + u64::from(self.count) * u64::from(RANGE_SIZE);
        if self.count == 0 || end >= u64::from(u32::MAX) || self.first_id < RANGE_SIZE {
            return Err(RuntimeError::Config(format!(
                "uid ranges {:#x} + {} x {RANGE_SIZE} do not fit between 65536 and 2^32-1",
                self.first_id, self.count
            )));
        }
        Ok(())
    }

    fn range(&self, index: u32) -> IdRange {
        IdRange {
            index,
            first: self.first_id + index * RANGE_SIZE,
        }
    }

    fn file(&self, index: u32) -> PathBuf {
        self.dir.join(index.to_string())
    }

    fn owner_line(&self, sandbox_id: &str) -> String {
        format!("{} {sandbox_id}\n", self.owner_tag)
    }

    /// Takes a free range for `sandbox_id`, starting the search at a spot
    /// derived from the id so that instances rarely race for one file.
    pub fn allocate(&self, sandbox_id: &str) -> Result<IdRange> {
        std::fs::create_dir_all(&self.dir).map_err(RuntimeError::io("creating", &self.dir))?;
        let start = sandbox_id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % self.count;
        for step in 0..self.count {
            let index = (start + step) % self.count;
            let path = self.file(index);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(self.owner_line(sandbox_id).as_bytes())
                        .map_err(RuntimeError::io("writing", &path))?;
                    return Ok(self.range(index));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RuntimeError::io("creating", &path)(e)),
            }
        }
        Err(RuntimeError::Config(format!(
            "all {} uid ranges of this host are in use",
            self.count
        )))
    }

    /// Records that `sandbox_id` holds the range starting at host id `first`
    /// (a container adopted after a restart). Fails if another holds it.
    pub fn claim(&self, sandbox_id: &str, first: u32) -> Result<IdRange> {
        let Some(index) = first
            .checked_sub(self.first_id)
            .filter(|d| d.is_multiple_of(RANGE_SIZE))
            .map(|d| d / RANGE_SIZE)
            .filter(|i| *i < self.count)
        else {
            return Err(RuntimeError::Config(format!(
                "host id {first} is not the start of an Alcove uid range"
            )));
        };
        std::fs::create_dir_all(&self.dir).map_err(RuntimeError::io("creating", &self.dir))?;
        let path = self.file(index);
        let line = self.owner_line(sandbox_id);
        match std::fs::read_to_string(&path) {
            Ok(text) if text == line => return Ok(self.range(index)),
            Ok(text) => {
                return Err(RuntimeError::Config(format!(
                    "uid range {index} is held by {:?}",
                    text.trim()
                )));
            }
            Err(_) => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(RuntimeError::io("creating", &path))?;
        f.write_all(line.as_bytes())
            .map_err(RuntimeError::io("writing", &path))?;
        Ok(self.range(index))
    }

    /// Gives a range back, if `sandbox_id` of this instance holds it.
    pub fn release(&self, sandbox_id: &str, range: IdRange) {
        let path = self.file(range.index);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == self.owner_line(sandbox_id)) {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Gives back every range of this instance whose sandbox is not in `keep`;
    /// returns the ids of the sandboxes whose ranges were given back.
    pub fn release_all_but(&self, keep: &[&str]) -> Vec<String> {
        let mut released = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return released;
        };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let mut words = text.split_whitespace();
            let (Some(tag), Some(id)) = (words.next(), words.next()) else {
                continue;
            };
            if tag == self.owner_tag && !keep.contains(&id) {
                let _ = std::fs::remove_file(entry.path());
                released.push(id.to_string());
            }
        }
        released
    }

    /// The directory of range files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator(dir: &Path, tag: &str) -> IdAllocator {
        IdAllocator::new(dir, DEFAULT_FIRST_ID, 4, tag)
    }

    #[test]
    fn ranges_are_distinct_until_exhausted_and_come_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = allocator(tmp.path(), "aaaa");
        let taken: Vec<IdRange> = (0..4)
            .map(|i| a.allocate(&format!("sb{i}")).expect("range"))
            .collect();
        let mut firsts: Vec<u32> = taken.iter().map(|r| r.first).collect();
        firsts.sort();
        firsts.dedup();
        assert_eq!(firsts.len(), 4);
        assert!(
            firsts
                .iter()
                .all(|f| (f - DEFAULT_FIRST_ID).is_multiple_of(RANGE_SIZE))
        );
        assert!(a.allocate("sb4").is_err(), "only four ranges exist");
        a.release("sb2", taken[2]);
        assert_eq!(a.allocate("sb5").expect("freed range"), taken[2]);
    }

    #[test]
    fn instances_share_the_directory_and_never_share_a_range() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = allocator(tmp.path(), "aaaa");
        let b = allocator(tmp.path(), "bbbb");
        let ra = a.allocate("x").expect("a");
        let rb = b.allocate("x").expect("b");
        assert_ne!(ra, rb);
        // b cannot give back a's range, even for the same sandbox id.
        b.release("x", ra);
        assert!(tmp.path().join(ra.index.to_string()).exists());
        assert!(b.claim("y", ra.first).is_err());
    }

    #[test]
    fn claims_and_sweeps() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = allocator(tmp.path(), "aaaa");
        let r = a
            .claim("kept", DEFAULT_FIRST_ID + RANGE_SIZE)
            .expect("claim");
        assert_eq!(r.index, 1);
        assert_eq!(a.claim("kept", r.first).expect("again"), r);
        assert!(a.claim("odd", DEFAULT_FIRST_ID + 5).is_err());
        let gone = a.allocate("gone").expect("range");
        let released = a.release_all_but(&["kept"]);
        assert_eq!(released, vec!["gone".to_string()]);
        assert!(!tmp.path().join(gone.index.to_string()).exists());
        assert!(tmp.path().join(r.index.to_string()).exists());
    }

    #[test]
    fn validates_bounds() {
        assert!(
            IdAllocator::new("/x", DEFAULT_FIRST_ID, DEFAULT_COUNT, "t")
                .validate()
                .is_ok()
        );
        assert!(
            IdAllocator::new("/x", 0xFFFF_0000, 1, "t")
                .validate()
                .is_err()
        );
        assert!(IdAllocator::new("/x", 0, 1, "t").validate().is_err());
        assert!(
            IdAllocator::new("/x", DEFAULT_FIRST_ID, 0, "t")
                .validate()
                .is_err()
        );
    }
}
