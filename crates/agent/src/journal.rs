//! The sandbox's event journal: output lines of every process and the events around them
//! (started, exited, restarted, health checks, OOM kills, the agent's own problems), each
//! with a level and a sequence number. The server follows it (`GET /api/v1/journal`) and
//! keeps it as the sandbox's logs, so it outlives the sandbox.
//!
//! Bounded twice: the journal holds at most [`DEFAULT_LIMIT_BYTES`] of records (the oldest
//! go first; a reader that fell behind is told how many it missed), and output enters it at
//! most at [`OUTPUT_RATE_BYTES_PER_SEC`] with bursts of [`OUTPUT_BURST_BYTES`]. A process
//! that writes faster keeps all its output in its own buffer (the process API still has it);
//! the log gets a warning with the number of lines it left out. Without that budget a
//! flood of output would cost the server as much as the sandbox.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use alcove_wire::journal::{JournalEvent, JournalRecord, LogLevel};
use alcove_wire::process::OutputStream;
use alcove_wire::time::{EpochMillis, now_millis};
use tokio::sync::watch;

use crate::output::{LineSink, Lines};

/// Records kept for readers: 4 MiB.
pub const DEFAULT_LIMIT_BYTES: usize = 4 << 20;

/// Sustained rate at which output lines enter the journal.
pub const OUTPUT_RATE_BYTES_PER_SEC: usize = 256 << 10;

/// Output that may enter the journal at once after a quiet spell.
pub const OUTPUT_BURST_BYTES: usize = 1 << 20;

/// Bookkeeping charged per record beside its text: about what its other fields take as
/// JSON (sequence number, time, level, pid, stream) on the wire and in the server's log.
const RECORD_OVERHEAD_BYTES: usize = 96;

/// What a record costs to keep and to send: its text, the names and command it carries, and
/// the fixed bookkeeping. An empty line of a managed process with a long name costs the
/// server as much as a line of that length, so it is charged as much.
fn charged_bytes(record: &JournalRecord) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    record.body.len()
        + text(&record.managed_id)
        + text(&record.managed_name)
        + text(&record.command)
        + RECORD_OVERHEAD_BYTES
}

/// The process a record is about.
#[derive(Debug, Clone, Default)]
pub struct ProcessRef {
    /// Its pid.
    pub pid: u32,
    /// Managed-process id, if managed.
    pub managed_id: Option<Arc<str>>,
    /// Managed-process name, if it has one.
    pub managed_name: Option<Arc<str>>,
}

impl ProcessRef {
    /// A plain process.
    pub fn plain(pid: u32) -> Self {
        Self {
            pid,
            ..Self::default()
        }
    }

    /// A record about this process.
    pub fn record(&self, level: LogLevel, body: impl Into<String>) -> JournalRecord {
        let mut record = record(level, body);
        record.pid = Some(self.pid);
        record.managed_id = self.managed_id.as_deref().map(str::to_string);
        record.managed_name = self.managed_name.as_deref().map(str::to_string);
        record
    }
}

/// A record (its `seq` is set when it is pushed).
pub fn record(level: LogLevel, body: impl Into<String>) -> JournalRecord {
    JournalRecord::new(now_millis(), level, body.into())
}

/// An event record about `process`.
pub fn event(
    process: &ProcessRef,
    level: LogLevel,
    event: JournalEvent,
    body: impl Into<String>,
) -> JournalRecord {
    let mut record = process.record(level, body);
    record.event = Some(event);
    record
}

#[derive(Debug)]
struct Budget {
    tokens: usize,
    refilled: Instant,
}

impl Budget {
    /// Takes `bytes` if the budget has them.
    fn take(&mut self, bytes: usize) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_micros() as usize
            * OUTPUT_RATE_BYTES_PER_SEC
            / 1_000_000;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(OUTPUT_BURST_BYTES);
            self.refilled = now;
        }
        if self.tokens >= bytes {
            self.tokens -= bytes;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct State {
    records: VecDeque<JournalRecord>,
    next_seq: u64,
    bytes: usize,
    limit_bytes: usize,
    budget: Budget,
    /// Output lines left out, per process, not yet reported.
    dropped: BTreeMap<u32, (u64, ProcessRef)>,
}

impl State {
    fn push(&mut self, mut record: JournalRecord) {
        record.seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += charged_bytes(&record);
        self.records.push_back(record);
        while self.bytes > self.limit_bytes {
            let Some(old) = self.records.pop_front() else {
                break;
            };
            self.bytes -= charged_bytes(&old);
        }
    }

    fn report_dropped(&mut self, pid: u32) {
        if let Some((lines, process)) = self.dropped.remove(&pid) {
            self.push(event(
                &process,
                LogLevel::Warn,
                JournalEvent::OutputDropped,
                format!(
                    "{lines} lines of output of process {pid} are not in the log: it wrote \
                     faster than the log keeps ({} KiB/s); the process API still has them",
                    OUTPUT_RATE_BYTES_PER_SEC >> 10
                ),
            ));
        }
    }
}

/// Records read by [`Journal::read_after`].
#[derive(Debug, Default)]
pub struct JournalRead {
    /// Records after the position, oldest first.
    pub records: Vec<JournalRecord>,
    /// Records between the position and the first returned one that are gone.
    pub missed: u64,
}

/// The journal of one sandbox.
#[derive(Debug)]
pub struct Journal {
    state: Mutex<State>,
    changed: watch::Sender<()>,
}

impl Journal {
    /// An empty journal holding at most `limit_bytes` of records.
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                records: VecDeque::new(),
                next_seq: 1,
                bytes: 0,
                limit_bytes,
                budget: Budget {
                    tokens: OUTPUT_BURST_BYTES,
                    refilled: Instant::now(),
                },
                dropped: BTreeMap::new(),
            }),
            changed: watch::Sender::new(()),
        }
    }

    /// The journal of this agent.
    pub fn global() -> &'static Journal {
        static JOURNAL: OnceLock<Journal> = OnceLock::new();
        JOURNAL.get_or_init(|| Journal::new(DEFAULT_LIMIT_BYTES))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Pushing cannot leave the deque inconsistent halfway; keep going after a panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a record (its `seq` is assigned here).
    pub fn push(&self, record: JournalRecord) {
        self.lock().push(record);
        self.changed.send_replace(());
    }

    /// Appends output lines of `process`, if the output budget allows; otherwise counts them
    /// as left out.
    pub fn output(
        &self,
        process: &ProcessRef,
        stream: OutputStream,
        timestamp: EpochMillis,
        lines: &Lines,
    ) {
        if lines.is_empty() {
            return;
        }
        let level = match stream {
            OutputStream::Stdout => LogLevel::Info,
            OutputStream::Stderr => LogLevel::Warn,
        };
        // Each line becomes a record, charged as one (and its line end, as before).
        let per_line = charged_bytes(&process.record(level, String::new())) + 1;
        let bytes = lines.text_len() + lines.len() * per_line;
        {
            let mut state = self.lock();
            if !state.budget.take(bytes) {
                let entry = state
                    .dropped
                    .entry(process.pid)
                    .or_insert_with(|| (0, process.clone()));
                entry.0 += lines.len() as u64;
                return;
            }
            state.report_dropped(process.pid);
            for line in lines.iter() {
                let mut record = process.record(level, line);
                record.timestamp = timestamp;
                record.stream = Some(stream);
                state.push(record);
            }
        }
        self.changed.send_replace(());
    }

    /// Reports output of `pid` that was left out (call when the process has exited).
    pub fn flush_dropped(&self, pid: u32) {
        let mut state = self.lock();
        if state.dropped.contains_key(&pid) {
            state.report_dropped(pid);
            drop(state);
            self.changed.send_replace(());
        }
    }

    /// Up to `max` records with a sequence number above `after`.
    pub fn read_after(&self, after: u64, max: usize) -> JournalRead {
        // Nothing comes after the last sequence number there can be.
        let Some(next) = after.checked_add(1) else {
            return JournalRead {
                records: Vec::new(),
                missed: 0,
            };
        };
        let state = self.lock();
        let first = state.records.front().map_or(state.next_seq, |r| r.seq);
        let start = next.max(first);
        let missed = start - next.min(start);
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        JournalRead {
            records: state.records.iter().skip(skip).take(max).cloned().collect(),
            missed,
        }
    }

    /// Sequence number of the last record pushed (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// A receiver that changes on every push.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// Reports a problem of the agent itself: on its stderr and in the journal.
pub fn agent_problem(level: LogLevel, message: impl Into<String>) {
    let message = message.into();
    eprintln!("alcove-agent: {message}");
    let mut record = record(level, message);
    record.event = Some(JournalEvent::Agent);
    Journal::global().push(record);
}

/// A line sink that copies lines into the journal before handing them on.
#[derive(Debug)]
pub struct JournaledSink<S> {
    /// The sink that gets the lines.
    pub inner: S,
    /// Whose lines they are.
    pub process: ProcessRef,
}

impl<S: LineSink> LineSink for JournaledSink<S> {
    async fn deliver(
        &mut self,
        stream: OutputStream,
        timestamp: EpochMillis,
        lines: Lines,
    ) -> bool {
        Journal::global().output(&self.process, stream, timestamp, &lines);
        self.inner.deliver(stream, timestamp, lines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, text: &str) -> Lines {
        (0..n).map(|i| format!("{text}{i}")).collect()
    }

    #[test]
    fn records_get_growing_sequence_numbers() {
        let journal = Journal::new(DEFAULT_LIMIT_BYTES);
        let p = ProcessRef::plain(7);
        journal.push(event(&p, LogLevel::Info, JournalEvent::ProcessStarted, "a"));
        journal.output(&p, OutputStream::Stderr, 5, &lines(2, "l"));
        let read = journal.read_after(0, 10);
        let seqs: Vec<u64> = read.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(read.missed, 0);
        assert_eq!(read.records[1].level, LogLevel::Warn);
        assert_eq!(read.records[1].stream, Some(OutputStream::Stderr));
        assert_eq!(read.records[1].pid, Some(7));
        assert_eq!(journal.read_after(2, 10).records.len(), 1);
        assert!(journal.read_after(3, 10).records.is_empty());
        let last = journal.read_after(u64::MAX, 10);
        assert!(
            last.records.is_empty() && last.missed == 0,
            "no wrap to the start"
        );
        assert_eq!(journal.last_seq(), 3);
    }

    #[test]
    fn a_reader_that_fell_behind_is_told_what_it_missed() {
        let journal = Journal::new(10 * (RECORD_OVERHEAD_BYTES + 4));
        let p = ProcessRef::plain(1);
        for i in 0..25 {
            journal.push(p.record(LogLevel::Info, format!("{i:04}")));
        }
        let read = journal.read_after(0, 100);
        assert_eq!(read.records.len(), 10);
        assert_eq!(read.records[0].seq, 16);
        assert_eq!(read.missed, 15);
        assert_eq!(journal.read_after(20, 100).missed, 0);
    }

    #[test]
    fn output_past_the_budget_is_counted_and_reported() {
        let journal = Journal::new(64 << 20);
        let p = ProcessRef::plain(9);
        let big: Lines = ["x".repeat(400 << 10)].into_iter().collect();
        // The burst lets two 400 KiB lines in; the third does not fit.
        journal.output(&p, OutputStream::Stdout, 1, &big);
        journal.output(&p, OutputStream::Stdout, 1, &big);
        journal.output(&p, OutputStream::Stdout, 1, &big);
        journal.flush_dropped(9);
        let read = journal.read_after(0, 100);
        assert_eq!(read.records.len(), 3);
        let note = &read.records[2];
        assert_eq!(note.event, Some(JournalEvent::OutputDropped));
        assert!(note.body.starts_with("1 lines"), "{}", note.body);
    }

    #[test]
    fn empty_lines_and_long_names_are_charged_as_the_records_they_become() {
        let journal = Journal::new(64 << 20);
        let named = ProcessRef {
            pid: 3,
            managed_id: Some("p-1".into()),
            managed_name: Some("n".repeat(255).into()),
        };
        // A burst of empty lines: each costs a whole record (~350 bytes with the name), so
        // about 3,000 fit in the 1 MiB burst, not a million.
        let empty: Lines = std::iter::repeat_n(String::new(), 1000).collect();
        for _ in 0..1000 {
            journal.output(&named, OutputStream::Stdout, 1, &empty);
        }
        let kept = journal.read_after(0, usize::MAX).records.len();
        assert!((2_000..=4_000).contains(&kept), "{kept} records");
        let record = named.record(LogLevel::Info, "");
        assert_eq!(charged_bytes(&record), 3 + 255 + RECORD_OVERHEAD_BYTES);
    }
}
