//! Where a sandbox's logs live on the host: `<data-dir>/logs/<sandbox-id>/`, two files of
//! JSON lines, `current.jsonl` and `previous.jsonl`. When `current` would pass half the cap,
//! it becomes `previous` (the old `previous` goes), so a sandbox's logs never take more than
//! the cap and always hold its most recent half at least.
//!
//! Every record gets a number (`n`) that grows across rotations: the page tokens of the log
//! query are these numbers. The agent's own sequence number of each record is kept too, so a
//! follower that reconnects (after a resume or a server restart) asks the agent for what came
//! after the last one stored, and a record that arrives twice is stored once.
//!
//! The text in these files comes from the sandbox: it is stored only as JSON string values
//! (escaped), each cut to [`MAX_BODY_BYTES`], under names the server makes itself.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use alcove_runtime::SandboxId;
use alcove_wire::journal::JournalRecord;
use serde::{Deserialize, Serialize};

/// Longest body kept; longer ones are cut with a note of how much was left out.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Default cap of one sandbox's logs: 16 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;

const CURRENT: &str = "current.jsonl";
const PREVIOUS: &str = "previous.jsonl";

/// A stored record: its number and the journal record (whose `seq` is the agent's, or 0 for
/// a record the server wrote).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// Position in the sandbox's logs; grows by one per record.
    pub n: u64,
    /// The record.
    #[serde(flatten)]
    pub record: JournalRecord,
}

/// Why the logs could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("sandbox logs at {path}: {source}")]
pub struct LogFileError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Where one sandbox's logs stand.
#[derive(Debug, Clone, Copy, Default)]
struct Tail {
    next_n: u64,
    last_agent_seq: u64,
    current_bytes: u64,
}

/// The logs of every sandbox on this server.
#[derive(Debug)]
pub struct LogFiles {
    dir: PathBuf,
    max_bytes: u64,
    tails: Mutex<HashMap<String, Tail>>,
}

impl LogFiles {
    /// Logs under `dir`, at most `max_bytes` per sandbox.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self {
            dir,
            max_bytes: max_bytes.max(64 * 1024),
            tails: Mutex::default(),
        }
    }

    /// The directory of all logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sandbox_dir(&self, id: &SandboxId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    fn err(path: &Path) -> impl FnOnce(std::io::Error) -> LogFileError + '_ {
        move |source| LogFileError {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Where the logs of `id` stand, read from its files the first time.
    fn tail(&self, id: &SandboxId) -> Tail {
        if let Some(tail) = self.lock().get(id.as_str()) {
            return *tail;
        }
        let dir = self.sandbox_dir(id);
        let mut tail = Tail::default();
        for name in [PREVIOUS, CURRENT] {
            for record in read_records(&dir.join(name)) {
                tail.next_n = tail.next_n.max(record.n + 1);
                tail.last_agent_seq = tail.last_agent_seq.max(record.record.seq);
            }
        }
        tail.current_bytes = fs::metadata(dir.join(CURRENT)).map_or(0, |m| m.len());
        *self.lock().entry(id.to_string()).or_insert(tail)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tail>> {
        self.tails.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent sequence number of the last agent record stored for `id` (0 for none).
    /// Blocking (may read files).
    pub fn last_agent_seq(&self, id: &SandboxId) -> u64 {
        self.tail(id).last_agent_seq
    }

    /// Appends records; agent records at or below the last stored agent sequence number are
    /// duplicates and skipped. Blocking.
    pub fn append(&self, id: &SandboxId, records: Vec<JournalRecord>) -> Result<(), LogFileError> {
        let mut tail = self.tail(id);
        let first_records = tail.next_n == 0;
        let mut lines = Vec::with_capacity(records.len() * 96);
        for mut record in records {
            if record.seq != 0 {
                if record.seq <= tail.last_agent_seq {
                    continue;
                }
                tail.last_agent_seq = record.seq;
            }
            cut_body(&mut record.body);
            let stored = StoredRecord {
                n: tail.next_n,
                record,
            };
            tail.next_n += 1;
            // Serializing plain data to a Vec cannot fail.
            if serde_json::to_writer(&mut lines, &stored).is_ok() {
                lines.push(b'\n');
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        let dir = self.sandbox_dir(id);
        if first_records {
            // The first records of this sandbox: make its directory, root only, like everything
            // else under the data directory (the text is the sandbox's).
            for path in [&self.dir, &dir] {
                match fs::DirBuilder::new().mode(0o700).create(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Self::err(path)(e)),
                }
            }
        }
        let current = dir.join(CURRENT);
        if tail.current_bytes > 0 && tail.current_bytes + lines.len() as u64 > self.max_bytes / 2 {
            fs::rename(&current, dir.join(PREVIOUS)).map_err(Self::err(&current))?;
            tail.current_bytes = 0;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&current)
            .map_err(Self::err(&current))?;
        file.write_all(&lines).map_err(Self::err(&current))?;
        tail.current_bytes += lines.len() as u64;
        self.lock().insert(id.to_string(), tail);
        Ok(())
    }

    /// Every stored record of `id`, oldest first (none when it has no logs). Blocking.
    #[cfg(test)]
    pub fn read(&self, id: &SandboxId) -> Vec<StoredRecord> {
        self.records(id).collect()
    }

    /// The stored records of `id`, oldest first, read as they are taken: a query holds the
    /// page it keeps, never the whole log (up to `--logs-max-mb` of it). Blocking.
    pub fn records(&self, id: &SandboxId) -> impl Iterator<Item = StoredRecord> + use<> {
        let dir = self.sandbox_dir(id);
        read_records(&dir.join(PREVIOUS)).chain(read_records(&dir.join(CURRENT)))
    }

    /// Removes the logs of `id`. Blocking.
    pub fn remove(&self, id: &SandboxId) {
        self.lock().remove(id.as_str());
        let dir = self.sandbox_dir(id);
        if let Err(e) = fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(sandbox_id = %id, error = %e, "removing sandbox logs");
        }
    }

    /// Removes the logs of every sandbox `known` does not accept (left by purges that a
    /// crash interrupted); returns how many. Blocking.
    pub fn sweep(&self, known: impl Fn(&SandboxId) -> bool) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| SandboxId::parse(n).ok());
            match id {
                Some(id) if known(&id) => {}
                Some(id) => {
                    self.remove(&id);
                    removed += 1;
                }
                // Not ours to judge: leave files the server did not name alone.
                None => {}
            }
        }
        removed
    }
}

/// Records of one file; lines that do not parse (a write cut by a crash) are skipped.
fn read_records(path: &Path) -> impl Iterator<Item = StoredRecord> + use<> {
    File::open(path)
        .ok()
        .map(BufReader::new)
        .into_iter()
        .flat_map(|reader| reader.split(b'\n').map_while(Result::ok))
        .filter_map(|line| serde_json::from_slice(&line).ok())
}

fn cut_body(body: &mut String) {
    if body.len() <= MAX_BODY_BYTES {
        return;
    }
    let mut cut = MAX_BODY_BYTES;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    let left_out = body.len() - cut;
    body.truncate(cut);
    body.push_str(&format!("… [{left_out} more bytes not kept]"));
}

#[cfg(test)]
mod tests {
    use alcove_wire::journal::LogLevel;

    use super::*;

    fn rec(seq: u64, body: &str) -> JournalRecord {
        JournalRecord {
            seq,
            pid: Some(5),
            ..JournalRecord::new(1, LogLevel::Info, body.into())
        }
    }

    fn id() -> SandboxId {
        SandboxId::parse("0b6f2c6e-58b0-4a57-9d0e-6f1c2b7d9a10").expect("id")
    }

    #[test]
    fn appends_number_records_and_skip_duplicates() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = LogFiles::new(dir.path().to_path_buf(), DEFAULT_MAX_BYTES);
        files
            .append(&id(), vec![rec(1, "a"), rec(2, "b"), rec(0, "server")])
            .expect("append");
        files
            .append(&id(), vec![rec(2, "b again"), rec(3, "c")])
            .expect("append");
        let read = files.read(&id());
        let bodies: Vec<&str> = read.iter().map(|r| r.record.body.as_str()).collect();
        assert_eq!(bodies, ["a", "b", "server", "c"]);
        let ns: Vec<u64> = read.iter().map(|r| r.n).collect();
        assert_eq!(ns, [0, 1, 2, 3]);
        // A new server reads where the logs stand from the files.
        let again = LogFiles::new(dir.path().to_path_buf(), DEFAULT_MAX_BYTES);
        assert_eq!(again.last_agent_seq(&id()), 3);
        again.append(&id(), vec![rec(4, "d")]).expect("append");
        assert_eq!(again.read(&id()).last().map(|r| r.n), Some(4));
    }

    #[test]
    fn rotation_keeps_the_logs_under_the_cap() {
        let dir = tempfile::tempdir().expect("tmp");
        let cap = 64 * 1024;
        let files = LogFiles::new(dir.path().to_path_buf(), cap);
        let line = "x".repeat(1000);
        for seq in 1..=400 {
            files.append(&id(), vec![rec(seq, &line)]).expect("append");
        }
        let size: u64 = [CURRENT, PREVIOUS]
            .iter()
            .map(|f| fs::metadata(dir.path().join(id().as_str()).join(f)).map_or(0, |m| m.len()))
            .sum();
        assert!(size <= cap, "{size} > {cap}");
        let read = files.read(&id());
        assert_eq!(read.last().map(|r| r.record.seq), Some(400));
        assert!(read.len() > 20, "keeps at least the recent half");
        // Still in order after rotating.
        assert!(read.windows(2).all(|w| w[0].n + 1 == w[1].n));
    }

    #[test]
    fn long_bodies_are_cut_and_bad_lines_skipped() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = LogFiles::new(dir.path().to_path_buf(), DEFAULT_MAX_BYTES);
        files
            .append(&id(), vec![rec(1, &"é".repeat(MAX_BODY_BYTES))])
            .expect("append");
        let current = dir.path().join(id().as_str()).join(CURRENT);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&current)
            .expect("open");
        file.write_all(b"{\"n\": 1, \"trunc").expect("write");
        let read = files.read(&id());
        assert_eq!(read.len(), 1);
        assert!(read[0].record.body.len() < MAX_BODY_BYTES + 64);
        assert!(read[0].record.body.ends_with("more bytes not kept]"));
    }

    #[test]
    fn sweep_removes_logs_of_unknown_sandboxes_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = LogFiles::new(dir.path().to_path_buf(), DEFAULT_MAX_BYTES);
        files.append(&id(), vec![rec(1, "a")]).expect("append");
        fs::create_dir(dir.path().join("not-a-sandbox")).expect("mkdir");
        assert_eq!(files.sweep(|_| true), 0);
        assert_eq!(files.sweep(|_| false), 1);
        assert!(files.read(&id()).is_empty());
        assert!(dir.path().join("not-a-sandbox").exists());
    }
}
