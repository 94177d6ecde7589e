//! Output capture: splitting pipe bytes into lines, the bounded per-process line buffer, and
//! the pump that moves lines from a pipe into a sink (a buffer or a run's SSE stream).
//!
//! Lines never keep their newline; `\r\n` endings lose the `\r`; a last line without a newline
//! is still emitted; bytes that are not UTF-8 are replaced by U+FFFD. A line longer than
//! [`MAX_LINE_BYTES`] is cut into pieces of at most that size (at a character's boundary), so
//! one endless line cannot grow memory; each piece but the last is marked *continued*, so that
//! a reader can put the line together again.
//!
//! The lines of one read are kept together as one [`Lines`] (their texts back to back and where
//! each ends), shared by reference between the buffer and its followers: a chatty process costs
//! an allocation per read, not per line, and a follower encodes lines straight from the buffer
//! without copying them first.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alcove_wire::process::OutputStream;
use alcove_wire::time::{EpochMillis, now_millis};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;

/// Longest line kept whole; longer runs without a newline are split at this size.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Default bound of a process's captured output (both streams together): 16 MiB.
pub const DEFAULT_BUFFER_LIMIT_BYTES: usize = 16 << 20;

/// Bytes read from a pipe at once; one read becomes one batch of lines, which keeps a chatty
/// process from costing one channel message (and one socket write) per line.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// After the process exited, a pipe that stays silent this long is given up on: whatever
/// still holds it open (a background grandchild) is not the process we report on.
pub const EXIT_DRAIN_IDLE: Duration = Duration::from_millis(200);

/// Lines read together: their texts back to back in one string, and the end of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    text: String,
    ends: Vec<usize>,
    /// Indexes of the lines that are pieces of a longer line, continued by the next line of
    /// their stream (ascending; almost always empty).
    continued: Vec<usize>,
}

impl Lines {
    /// No lines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one line (it must not hold the newline that ended it).
    pub fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.ends.push(self.text.len());
    }

    /// Appends raw line bytes, invalid UTF-8 replaced by U+FFFD.
    fn push_bytes(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(line) => self.push(line),
            Err(_) => self.push(&String::from_utf8_lossy(bytes)),
        }
    }

    /// Appends raw bytes of a piece of a longer line, as [`push_bytes`](Self::push_bytes) does.
    fn push_continued_bytes(&mut self, bytes: &[u8]) {
        self.continued.push(self.ends.len());
        self.push_bytes(bytes);
    }

    /// Of the lines in `range`, those that are continued by the next line, as indexes from
    /// the start of `range`.
    pub fn continued_in(&self, range: Range<usize>) -> impl Iterator<Item = usize> + Clone + '_ {
        let from = self.continued.partition_point(|&i| i < range.start);
        let to = self.continued.partition_point(|&i| i < range.end);
        self.continued[from..to]
            .iter()
            .map(move |&i| i - range.start)
    }

    /// Whether line `index` is continued by the next line.
    pub fn is_continued(&self, index: usize) -> bool {
        self.continued.binary_search(&index).is_ok()
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Line `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)?;
        let start = self.start_of(index);
        self.text.get(start..end)
    }

    /// The lines in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        self.slice(0..self.len())
    }

    /// Lines `range` in order (clamped to the lines there are).
    pub fn slice(&self, range: Range<usize>) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        let end = range.end.min(self.len());
        (range.start.min(end)..end).map(|index| self.get(index).unwrap_or_default())
    }

    /// Bytes of text of all lines together.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Bytes of text of the lines from `index` on.
    fn text_len_from(&self, index: usize) -> usize {
        self.text.len() - self.start_of(index).min(self.text.len())
    }

    /// Bytes of text of lines `range`.
    fn text_len_of(&self, range: Range<usize>) -> usize {
        self.start_of(range.end)
            .saturating_sub(self.start_of(range.start))
    }

    fn start_of(&self, index: usize) -> usize {
        match index.checked_sub(1) {
            Some(before) => self.ends.get(before).copied().unwrap_or(self.text.len()),
            None => 0,
        }
    }
}

impl<S: AsRef<str>> FromIterator<S> for Lines {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut lines = Lines::new();
        for line in iter {
            lines.push(line.as_ref());
        }
        lines
    }
}

/// Turns a byte stream into lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Appends `chunk` and pushes every completed line onto `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Lines) {
        let mut rest = chunk;
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(newline);
            if self.pending.is_empty() {
                out.push_bytes(without_cr(line));
            } else {
                self.pending.extend_from_slice(line);
                self.cut_pieces(out);
                out.push_bytes(without_cr(&self.pending));
                self.pending.clear();
            }
            rest = &tail[1..];
        }
        self.pending.extend_from_slice(rest);
        self.cut_pieces(out);
    }

    /// Pushes pieces off the front of the pending line while it is longer than the limit.
    fn cut_pieces(&mut self, out: &mut Lines) {
        while self.pending.len() > MAX_LINE_BYTES {
            let cut = piece_end(&self.pending);
            out.push_continued_bytes(&self.pending[..cut]);
            self.pending.drain(..cut);
        }
    }

    /// Pushes the last, unterminated line (if any) onto `out`.
    pub fn finish(&mut self, out: &mut Lines) {
        if !self.pending.is_empty() {
            out.push_bytes(without_cr(&self.pending));
            self.pending.clear();
        }
    }
}

/// Where the first piece of a line longer than [`MAX_LINE_BYTES`] ends: at most that many
/// bytes, not inside a UTF-8 character (which would turn both halves into U+FFFD), and not
/// right after a `\r` (which belongs with a `\n` that may follow). Falls back to the full size
/// for bytes that are not text.
fn piece_end(bytes: &[u8]) -> usize {
    let is_inside = |at: usize| {
        bytes
            .get(at)
            .is_some_and(|b| b & 0b1100_0000 == 0b1000_0000)
    };
    let mut cut = MAX_LINE_BYTES;
    while cut > MAX_LINE_BYTES - 4 && is_inside(cut) {
        cut -= 1;
    }
    if is_inside(cut) {
        cut = MAX_LINE_BYTES;
    }
    if bytes.get(cut - 1) == Some(&b'\r') {
        cut -= 1;
    }
    cut
}

/// The indexes of the lines continued by the next line of their stream, among the lines of
/// `runs` taken one after another.
pub fn continued_across<'a>(runs: impl IntoIterator<Item = &'a LineRun>) -> Vec<usize> {
    let mut continued = Vec::new();
    let mut offset = 0;
    for run in runs {
        continued.extend(run.continued().map(|i| offset + i));
        offset += run.len();
    }
    continued
}

/// A line's bytes without a trailing `\r`.
fn without_cr(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Lines of one stream read at one time, as kept by an [`OutputBuffer`].
#[derive(Debug, Clone)]
struct Batch {
    stream: OutputStream,
    timestamp: EpochMillis,
    /// Sequence number of the batch's first line.
    first: u64,
    lines: Arc<Lines>,
}

/// Bookkeeping cost charged per line on top of its text (where it ends), so that a flood of
/// empty lines is bounded too.
const LINE_OVERHEAD_BYTES: usize = std::mem::size_of::<usize>();

/// Bookkeeping cost charged per batch (one per read of a pipe).
const BATCH_OVERHEAD_BYTES: usize = std::mem::size_of::<Batch>() + std::mem::size_of::<Lines>();

/// Consecutive lines of one batch, shared with the buffer (see [`OutputBuffer::read_from`]).
#[derive(Debug, Clone)]
pub struct LineRun {
    /// Stream they came from.
    pub stream: OutputStream,
    /// When the agent read them, epoch milliseconds.
    pub timestamp: EpochMillis,
    /// Sequence number of the first line of `lines` (of the batch, not of the run).
    first: u64,
    lines: Arc<Lines>,
    range: Range<usize>,
}

impl LineRun {
    /// The sequence number after the run's last line: where a reader that has the run goes on.
    pub fn end_seq(&self) -> u64 {
        self.first + self.range.end as u64
    }

    /// The lines in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        self.lines.slice(self.range.clone())
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// The lines continued by the next line of their stream, as indexes into the run.
    pub fn continued(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        self.lines.continued_in(self.range.clone())
    }

    /// Whether line `index` of the run is continued by the next line of its stream.
    pub fn is_continued(&self, index: usize) -> bool {
        self.lines.is_continued(self.range.start + index)
    }

    /// Bytes of text of the lines together.
    pub fn text_len(&self) -> usize {
        self.lines.text_len_of(self.range.clone())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// A batch read from an [`OutputBuffer`] by [`OutputBuffer::read_from`].
#[derive(Debug, Default)]
pub struct BufferChunk {
    /// Lines of the requested stream(s), oldest first, in runs of one read each.
    pub runs: Vec<LineRun>,
    /// Cursor to pass to the next `read_from`.
    pub next: u64,
    /// Whether the buffer is finished and `runs` reached its end.
    pub finished: bool,
    /// Lines (of either stream) between the cursor asked for and the oldest line still held:
    /// let go before the reader got to them.
    pub dropped: u64,
}

impl BufferChunk {
    /// Whether no line was read.
    pub fn is_empty(&self) -> bool {
        self.runs.iter().all(LineRun::is_empty)
    }
}

#[derive(Debug)]
struct BufferState {
    batches: VecDeque<Batch>,
    /// Lines of `batches[0]` already dropped.
    front_dropped: usize,
    /// Sequence number of the oldest line kept; grows as old lines are dropped.
    first_seq: u64,
    /// Lines kept.
    held: u64,
    bytes: usize,
    limit_bytes: usize,
    finished: bool,
}

impl BufferState {
    /// Drops the oldest lines until the bytes held are within the limit.
    fn shrink(&mut self) {
        while self.bytes > self.limit_bytes {
            let Some(front) = self.batches.front() else {
                break;
            };
            let lines = Arc::clone(&front.lines);
            let left = lines.len() - self.front_dropped;
            let left_bytes = lines.text_len_from(self.front_dropped)
                + left * LINE_OVERHEAD_BYTES
                + BATCH_OVERHEAD_BYTES;
            if self.bytes.saturating_sub(left_bytes) < self.limit_bytes {
                // Only part of the front batch has to go: line by line.
                while self.bytes > self.limit_bytes && self.front_dropped < lines.len() {
                    let line = lines.get(self.front_dropped).unwrap_or_default();
                    self.bytes -= line.len() + LINE_OVERHEAD_BYTES;
                    self.front_dropped += 1;
                    self.first_seq += 1;
                    self.held -= 1;
                }
                if self.front_dropped < lines.len() {
                    break;
                }
                self.bytes = self.bytes.saturating_sub(BATCH_OVERHEAD_BYTES);
            } else {
                self.bytes -= left_bytes;
                self.first_seq += left as u64;
                self.held -= left as u64;
            }
            self.batches.pop_front();
            self.front_dropped = 0;
        }
    }

    /// Lines kept, oldest first, in runs of one batch each.
    fn runs(&self) -> impl Iterator<Item = LineRun> + '_ {
        self.batches.iter().enumerate().map(|(index, batch)| {
            let from = if index == 0 { self.front_dropped } else { 0 };
            LineRun {
                stream: batch.stream,
                timestamp: batch.timestamp,
                first: batch.first,
                lines: Arc::clone(&batch.lines),
                range: from..batch.lines.len(),
            }
        })
    }
}

/// The captured output of one process: both streams interleaved in read order.
///
/// Bounded: when the lines held exceed the limit (16 MiB by default, counting each line's text
/// plus a small per-line and per-read overhead), the **oldest lines are dropped**. Readers
/// address lines by a sequence number that keeps counting, so a follower that falls behind
/// skips what was dropped instead of seeing lines twice.
#[derive(Debug)]
pub struct OutputBuffer {
    state: Mutex<BufferState>,
    changed: watch::Sender<()>,
}

impl OutputBuffer {
    /// An empty buffer holding at most `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Self {
        Self {
            state: Mutex::new(BufferState {
                batches: VecDeque::new(),
                front_dropped: 0,
                first_seq: 0,
                held: 0,
                bytes: 0,
                limit_bytes,
                finished: false,
            }),
            changed: watch::Sender::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BufferState> {
        // A panic while holding this lock cannot leave the deque inconsistent, so keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends lines read at `timestamp`, dropping the oldest lines past the limit.
    pub fn append(&self, stream: OutputStream, timestamp: EpochMillis, lines: Lines) {
        if lines.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            state.bytes +=
                lines.text_len() + lines.len() * LINE_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES;
            let first = state.first_seq + state.held;
            state.held += lines.len() as u64;
            state.batches.push_back(Batch {
                stream,
                timestamp,
                first,
                lines: Arc::new(lines),
            });
            state.shrink();
        }
        self.changed.send_replace(());
    }

    /// Marks the output complete: the process exited and its pipes are drained. Followers
    /// end once they have read everything.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.changed.send_replace(());
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// The texts of all retained lines of `filter` (`None` = both streams), and the indexes
    /// of those continued by the next line of their stream.
    pub fn texts(&self, filter: Option<OutputStream>) -> (Vec<String>, Vec<usize>) {
        let runs: Vec<LineRun> = self
            .lock()
            .runs()
            .filter(|run| filter.is_none_or(|stream| run.stream == stream))
            .collect();
        let texts = runs
            .iter()
            .flat_map(LineRun::iter)
            .map(str::to_owned)
            .collect();
        (texts, continued_across(&runs))
    }

    /// Up to `max` lines of `filter` at or after sequence number `cursor`. The lines are
    /// shared with the buffer, not copied.
    pub fn read_from(&self, cursor: u64, filter: Option<OutputStream>, max: usize) -> BufferChunk {
        let state = self.lock();
        let start = cursor.max(state.first_seq);
        let end = state.first_seq + state.held;
        // The batch holding `start`: the last one whose first line is at or before it.
        let from = state
            .batches
            .partition_point(|batch| batch.first <= start)
            .saturating_sub(1);
        let mut runs = Vec::new();
        let mut taken = 0;
        let mut next = start;
        for batch in state.batches.iter().skip(from) {
            if taken >= max {
                break;
            }
            let batch_end = batch.first + batch.lines.len() as u64;
            if batch_end <= next {
                continue;
            }
            if filter.is_some_and(|stream| batch.stream != stream) {
                next = batch_end;
                continue;
            }
            // `next - first` is below the batch's length, so it fits in usize.
            let offset = usize::try_from(next - batch.first).unwrap_or(usize::MAX);
            let count = (batch.lines.len() - offset).min(max - taken);
            runs.push(LineRun {
                stream: batch.stream,
                timestamp: batch.timestamp,
                first: batch.first,
                lines: Arc::clone(&batch.lines),
                range: offset..offset + count,
            });
            taken += count;
            next += count as u64;
        }
        BufferChunk {
            runs,
            next,
            finished: state.finished && next >= end,
            dropped: state.first_seq.saturating_sub(cursor),
        }
    }

    /// A receiver that changes on every append and on finish.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// Where a pump delivers lines.
pub trait LineSink: Send {
    /// Delivers one batch; returns `false` when the sink is gone (the pump then only drains).
    fn deliver(
        &mut self,
        stream: OutputStream,
        timestamp: EpochMillis,
        lines: Lines,
    ) -> impl Future<Output = bool> + Send;
}

/// A sink that stores lines in a process's [`OutputBuffer`].
#[derive(Debug, Clone)]
pub struct BufferSink(pub std::sync::Arc<OutputBuffer>);

impl LineSink for BufferSink {
    async fn deliver(
        &mut self,
        stream: OutputStream,
        timestamp: EpochMillis,
        lines: Lines,
    ) -> bool {
        self.0.append(stream, timestamp, lines);
        true
    }
}

/// How a pump ended.
#[derive(Debug)]
pub enum PumpEnd {
    /// The pipe reached end of file.
    Eof,
    /// The process exited and the pipe stayed silent: someone else (a background
    /// grandchild) still holds it. The read end is handed back so the caller can keep draining
    /// it, instead of closing it and killing that writer with SIGPIPE.
    Abandoned(pipe::Receiver),
}

/// Reads `rx` into `sink` until end of file, or until the process has exited (`exited` turns
/// true or its sender is dropped) and the pipe has then been idle for [`EXIT_DRAIN_IDLE`].
pub async fn pump<S: LineSink>(
    mut rx: pipe::Receiver,
    stream: OutputStream,
    mut sink: S,
    mut exited: watch::Receiver<bool>,
) -> PumpEnd {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut splitter = LineSplitter::default();
    let mut sink_open = true;
    let mut process_gone = *exited.borrow();
    let end = loop {
        let read = if process_gone {
            match tokio::time::timeout(EXIT_DRAIN_IDLE, rx.read(&mut buf)).await {
                Ok(read) => read,
                Err(_idle) => break None,
            }
        } else {
            tokio::select! {
                read = rx.read(&mut buf) => read,
                changed = exited.changed() => {
                    process_gone = changed.is_err() || *exited.borrow();
                    continue;
                }
            }
        };
        match read {
            Ok(0) => break Some(()),
            Ok(n) => {
                let mut lines = Lines::new();
                splitter.push(&buf[..n], &mut lines);
                if sink_open && !lines.is_empty() {
                    sink_open = sink.deliver(stream, now_millis(), lines).await;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break Some(()),
        }
    };
    let mut last = Lines::new();
    splitter.finish(&mut last);
    if sink_open && !last.is_empty() {
        sink.deliver(stream, now_millis(), last).await;
    }
    match end {
        Some(()) => PumpEnd::Eof,
        None => PumpEnd::Abandoned(rx),
    }
}

/// Reads and discards `rx` until end of file (see [`PumpEnd::Abandoned`]).
pub async fn drain_to_eof(mut rx: pipe::Receiver) {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Finishes a pump: an abandoned pipe is drained in the background.
pub fn settle(end: PumpEnd) {
    if let PumpEnd::Abandoned(rx) = end {
        tokio::spawn(drain_to_eof(rx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        split_marked(chunks).0
    }

    fn texts(chunk: &BufferChunk) -> Vec<&str> {
        chunk.runs.iter().flat_map(LineRun::iter).collect()
    }

    #[test]
    fn splits_lines_and_keeps_final_partial_line() {
        assert_eq!(split(&[b"a\nb\n", b"c"]), ["a", "b", "c"]);
        assert_eq!(split(&[b"\n\n"]), ["", ""]);
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn joins_lines_across_chunks_and_strips_crlf() {
        assert_eq!(
            split(&[b"hel", b"lo\r", b"\nwor", b"ld\r\n"]),
            ["hello", "world"]
        );
        // A lone carriage return inside a line (progress bars) is kept.
        assert_eq!(split(&[b"50%\r100%\n"]), ["50%\r100%"]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(split(&[b"caf\xc3\xa9 \xff\n"]), ["café \u{fffd}"]);
    }

    #[test]
    fn endless_line_is_cut_at_the_limit() {
        let big = vec![b'x'; MAX_LINE_BYTES + 10];
        let lines = split(&[&big]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1].len(), 10);
    }

    /// Splits `chunks`, then the lines and which of them are continued.
    fn split_marked(chunks: &[&[u8]]) -> (Vec<String>, Vec<usize>) {
        let mut splitter = LineSplitter::default();
        let mut out = Lines::new();
        for chunk in chunks {
            splitter.push(chunk, &mut out);
        }
        splitter.finish(&mut out);
        let continued = out.continued_in(0..out.len()).collect();
        (out.iter().map(str::to_owned).collect(), continued)
    }

    #[test]
    fn the_pieces_of_a_cut_line_are_marked_and_join_back_to_it() {
        // Over three reads, with a line after it: every piece but the last is continued.
        let long: String = "0123456789".repeat(MAX_LINE_BYTES / 4);
        let text = format!("{long}\nnext\n");
        let bytes = text.as_bytes();
        let third = bytes.len() / 3;
        let (lines, continued) = split_marked(&[
            &bytes[..third],
            &bytes[third..2 * third],
            &bytes[2 * third..],
        ]);
        assert_eq!(continued, [0, 1]);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[..3].concat(), long);
        assert_eq!(lines[3], "next");
    }

    #[test]
    fn a_cut_never_splits_a_character_nor_a_crlf() {
        // Two-byte characters after one ASCII byte: the limit falls inside one.
        let long: String = format!("a{}", "é".repeat(MAX_LINE_BYTES));
        let (lines, continued) = split_marked(&[long.as_bytes()]);
        assert_eq!(lines.concat(), long, "no U+FFFD anywhere");
        assert_eq!(lines[0].len(), MAX_LINE_BYTES - 1);
        assert_eq!(continued, (0..lines.len() - 1).collect::<Vec<_>>());
        // A `\r` right at the limit stays with the `\n` after it, which ends the line.
        let mut crlf = vec![b'x'; MAX_LINE_BYTES - 1];
        crlf.extend_from_slice(b"\r");
        let (lines, continued) = split_marked(&[&crlf, b"\nz\n"]);
        assert_eq!(continued, Vec::<usize>::new(), "{:?}", lines.len());
        assert_eq!(
            lines,
            [
                String::from_utf8(crlf[..MAX_LINE_BYTES - 1].to_vec()).expect("ascii"),
                "z".into()
            ]
        );
    }

    #[test]
    fn lines_keep_their_texts_apart() {
        let lines: Lines = ["", "ab", "", "c"].into_iter().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines.iter().collect::<Vec<_>>(), ["", "ab", "", "c"]);
        assert_eq!(lines.slice(1..3).collect::<Vec<_>>(), ["ab", ""]);
        assert_eq!(lines.slice(3..9).collect::<Vec<_>>(), ["c"]);
        assert_eq!(lines.get(4), None);
        assert_eq!(lines.text_len(), 3);
        assert_eq!(lines.text_len_from(2), 1);
        assert_eq!(lines.text_len_of(1..3), 2);
        assert_eq!(lines.text_len_of(1..9), 3);
        assert!(Lines::new().is_empty());
    }

    #[test]
    fn buffer_drops_oldest_lines_past_the_limit() {
        let limit = BATCH_OVERHEAD_BYTES + 10 * (LINE_OVERHEAD_BYTES + 4);
        let buffer = OutputBuffer::new(limit);
        let lines: Lines = (0..25).map(|i| format!("{i:04}")).collect();
        buffer.append(OutputStream::Stdout, 1, lines);
        let kept = buffer.texts(None).0;
        assert_eq!(kept.len(), 10);
        assert_eq!(kept.first().map(String::as_str), Some("0015"));
        assert_eq!(kept.last().map(String::as_str), Some("0024"));

        // A reader that was at the start skips what was dropped.
        let chunk = buffer.read_from(0, None, 100);
        assert_eq!(texts(&chunk).len(), 10);
        assert_eq!(chunk.next, 25);
        assert!(!chunk.finished);
    }

    #[test]
    fn buffer_drops_whole_reads_and_parts_of_reads() {
        // Room for two reads of three 4-byte lines, and the bookkeeping of a third read.
        let read = BATCH_OVERHEAD_BYTES + 3 * (LINE_OVERHEAD_BYTES + 4);
        let buffer = OutputBuffer::new(2 * read + BATCH_OVERHEAD_BYTES);
        for first in [0, 3, 6, 9] {
            let lines: Lines = (first..first + 3).map(|i| format!("{i:04}")).collect();
            buffer.append(OutputStream::Stdout, first, lines);
        }
        // Whole reads went.
        assert_eq!(
            buffer.texts(None).0,
            ["0006", "0007", "0008", "0009", "0010", "0011"]
        );
        // One more line: only the oldest line goes, its read stays.
        buffer.append(OutputStream::Stderr, 12, ["0012"].into_iter().collect());
        assert_eq!(
            buffer.texts(None).0.first().map(String::as_str),
            Some("0007")
        );
        // Cursors inside the partly dropped read and in the middle of the next one.
        let chunk = buffer.read_from(0, None, 4);
        assert_eq!(texts(&chunk), ["0007", "0008", "0009", "0010"]);
        assert_eq!(chunk.next, 11);
        let chunk = buffer.read_from(chunk.next, None, 100);
        assert_eq!(texts(&chunk), ["0011", "0012"]);
        assert_eq!(chunk.runs.len(), 2);
        assert_eq!(
            (chunk.runs[1].stream, chunk.runs[1].timestamp),
            (OutputStream::Stderr, 12)
        );
        assert_eq!(chunk.next, 13);
        // Reading at the end gives nothing and keeps the cursor.
        let chunk = buffer.read_from(13, None, 100);
        assert!(chunk.is_empty());
        assert_eq!(chunk.next, 13);
    }

    #[test]
    fn read_from_filters_streams_and_reports_finish() {
        let buffer = OutputBuffer::new(DEFAULT_BUFFER_LIMIT_BYTES);
        buffer.append(OutputStream::Stdout, 1, ["out1"].into_iter().collect());
        buffer.append(OutputStream::Stderr, 2, ["err1"].into_iter().collect());
        buffer.append(OutputStream::Stdout, 3, ["out2"].into_iter().collect());
        assert_eq!(buffer.texts(Some(OutputStream::Stderr)).0, ["err1"]);
        assert_eq!(buffer.texts(None).0, ["out1", "err1", "out2"]);

        let first = buffer.read_from(0, Some(OutputStream::Stdout), 1);
        assert_eq!(texts(&first), ["out1"]);
        assert_eq!(first.next, 1);
        let rest = buffer.read_from(first.next, Some(OutputStream::Stdout), 10);
        assert_eq!(texts(&rest), ["out2"]);
        assert!(!rest.finished);

        buffer.finish();
        assert!(buffer.read_from(rest.next, None, 10).finished);
        assert!(!buffer.read_from(0, None, 1).finished);
    }
}
