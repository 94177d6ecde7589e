//! Output capture: splitting pipe bytes into lines, the bounded per-process line buffer, and
//! the pump that moves lines from a pipe into a sink (a buffer or a run's SSE stream).
//!
//! Lines never keep their newline; `\r\n` endings lose the `\r`; a last line without a newline
//! is still emitted; bytes that are not UTF-8 are replaced by U+FFFD. A line longer than
//! [`MAX_LINE_BYTES`] is cut into pieces of that size, so one endless line cannot grow memory.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
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

/// Turns a byte stream into lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Appends `chunk` and pushes every completed line onto `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<String>) {
        let mut rest = chunk;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(newline);
            if self.pending.is_empty() {
                out.push(to_line(line));
            } else {
                self.pending.extend_from_slice(line);
                out.push(to_line(&self.pending));
                self.pending.clear();
            }
            rest = &tail[1..];
        }
        self.pending.extend_from_slice(rest);
        while self.pending.len() > MAX_LINE_BYTES {
            out.push(to_line(&self.pending[..MAX_LINE_BYTES]));
            self.pending.drain(..MAX_LINE_BYTES);
        }
    }

    /// Pushes the last, unterminated line (if any) onto `out`.
    pub fn finish(&mut self, out: &mut Vec<String>) {
        if !self.pending.is_empty() {
            out.push(to_line(&self.pending));
            self.pending.clear();
        }
    }
}

/// One line: without a trailing `\r`, invalid UTF-8 replaced.
fn to_line(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// A captured line with its stream and read time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    /// Stream it came from.
    pub stream: OutputStream,
    /// When the agent read it, epoch milliseconds.
    pub timestamp: EpochMillis,
    /// The text, without newline.
    pub text: String,
}

/// Bookkeeping cost charged per line on top of its text, so that a flood of empty lines is
/// bounded too.
const LINE_OVERHEAD_BYTES: usize = std::mem::size_of::<StoredLine>();

/// A batch read from an [`OutputBuffer`] by [`OutputBuffer::read_from`].
#[derive(Debug, Default)]
pub struct BufferChunk {
    /// Lines of the requested stream(s), oldest first.
    pub lines: Vec<StoredLine>,
    /// Cursor to pass to the next `read_from`.
    pub next: u64,
    /// Whether the buffer is finished and `lines` reached its end.
    pub finished: bool,
}

#[derive(Debug)]
struct BufferState {
    lines: VecDeque<StoredLine>,
    /// Sequence number of `lines[0]`; grows as old lines are dropped.
    first_seq: u64,
    bytes: usize,
    limit_bytes: usize,
    finished: bool,
}

/// The captured output of one process: both streams interleaved in read order.
///
/// Bounded: when the lines held exceed the limit (16 MiB by default, counting each line's text
/// plus a small per-line overhead), the **oldest lines are dropped**. Readers address lines by
/// a sequence number that keeps counting, so a follower that falls behind skips what was
/// dropped instead of seeing lines twice.
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
                lines: VecDeque::new(),
                first_seq: 0,
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
    pub fn append(&self, stream: OutputStream, timestamp: EpochMillis, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            for text in lines {
                state.bytes += text.len() + LINE_OVERHEAD_BYTES;
                state.lines.push_back(StoredLine {
                    stream,
                    timestamp,
                    text,
                });
            }
            while state.bytes > state.limit_bytes {
                let Some(old) = state.lines.pop_front() else {
                    break;
                };
                state.bytes -= old.text.len() + LINE_OVERHEAD_BYTES;
                state.first_seq += 1;
            }
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

    /// The texts of all retained lines of `filter` (`None` = both streams).
    pub fn texts(&self, filter: Option<OutputStream>) -> Vec<String> {
        let state = self.lock();
        state
            .lines
            .iter()
            .filter(|line| filter.is_none_or(|stream| line.stream == stream))
            .map(|line| line.text.clone())
            .collect()
    }

    /// Up to `max` lines of `filter` at or after sequence number `cursor`.
    pub fn read_from(&self, cursor: u64, filter: Option<OutputStream>, max: usize) -> BufferChunk {
        let state = self.lock();
        let start = cursor.max(state.first_seq);
        let end = state.first_seq + state.lines.len() as u64;
        let mut lines = Vec::new();
        let mut next = start;
        // `start - first_seq` fits in usize: it is at most `lines.len()`.
        let skip = usize::try_from(start - state.first_seq).unwrap_or(usize::MAX);
        for line in state.lines.iter().skip(skip) {
            if lines.len() >= max {
                break;
            }
            next += 1;
            if filter.is_none_or(|stream| line.stream == stream) {
                lines.push(line.clone());
            }
        }
        BufferChunk {
            lines,
            next,
            finished: state.finished && next >= end,
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
        lines: Vec<String>,
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
        lines: Vec<String>,
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
                let mut lines = Vec::new();
                splitter.push(&buf[..n], &mut lines);
                if sink_open && !lines.is_empty() {
                    sink_open = sink.deliver(stream, now_millis(), lines).await;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break Some(()),
        }
    };
    let mut last = Vec::new();
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
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut out);
        }
        splitter.finish(&mut out);
        out
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

    #[test]
    fn buffer_drops_oldest_lines_past_the_limit() {
        let limit = 10 * (LINE_OVERHEAD_BYTES + 4);
        let buffer = OutputBuffer::new(limit);
        let lines: Vec<String> = (0..25).map(|i| format!("{i:04}")).collect();
        buffer.append(OutputStream::Stdout, 1, lines);
        let kept = buffer.texts(None);
        assert_eq!(kept.len(), 10);
        assert_eq!(kept.first().map(String::as_str), Some("0015"));
        assert_eq!(kept.last().map(String::as_str), Some("0024"));

        // A reader that was at the start skips what was dropped.
        let chunk = buffer.read_from(0, None, 100);
        assert_eq!(chunk.lines.len(), 10);
        assert_eq!(chunk.next, 25);
        assert!(!chunk.finished);
    }

    #[test]
    fn read_from_filters_streams_and_reports_finish() {
        let buffer = OutputBuffer::new(DEFAULT_BUFFER_LIMIT_BYTES);
        buffer.append(OutputStream::Stdout, 1, vec!["out1".into()]);
        buffer.append(OutputStream::Stderr, 2, vec!["err1".into()]);
        buffer.append(OutputStream::Stdout, 3, vec!["out2".into()]);
        assert_eq!(buffer.texts(Some(OutputStream::Stderr)), ["err1"]);
        assert_eq!(buffer.texts(None), ["out1", "err1", "out2"]);

        let first = buffer.read_from(0, Some(OutputStream::Stdout), 1);
        assert_eq!(first.lines.len(), 1);
        assert_eq!(first.next, 1);
        let rest = buffer.read_from(first.next, Some(OutputStream::Stdout), 10);
        let texts: Vec<_> = rest.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["out2"]);
        assert!(!rest.finished);

        buffer.finish();
        assert!(buffer.read_from(rest.next, None, 10).finished);
        assert!(!buffer.read_from(0, None, 1).finished);
    }
}
