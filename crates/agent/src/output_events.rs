//! Output lines as SSE events (`output`, `output_batch`), encoded straight from borrowed text.
//!
//! The wire types own their strings; building them would copy every line once more before it
//! is encoded. These borrowed twins serialize to exactly the same JSON (the tests compare them).

use alcove_wire::process::OutputStream;
use alcove_wire::time::EpochMillis;
use serde::Serialize;

use crate::output::{self, LineRun};
use crate::sse;

/// Borrowed twin of `alcove_wire::process::OutputEvent` (same fields, same order).
#[derive(Serialize)]
struct OutputEventRef<'a> {
    line: &'a str,
    timestamp: EpochMillis,
    stream: OutputStream,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    continued: bool,
}

/// Borrowed twin of `alcove_wire::process::OutputBatchEvent` (same fields, same order).
#[derive(Serialize)]
#[serde(bound = "Seq<I>: Serialize")]
struct OutputBatchEventRef<I> {
    stream: OutputStream,
    timestamp: EpochMillis,
    lines: Seq<I>,
    #[serde(skip_serializing_if = "alcove_wire::process::is_zero")]
    dropped: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    continued: Vec<usize>,
}

/// A sequence serialized from a cloneable iterator of lines.
struct Seq<I>(I);

impl<'a, I: Iterator<Item = &'a str> + Clone> Serialize for Seq<I> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
}

/// Appends one `output` event per line; `continued` says which lines (by their index among
/// `lines`) are continued by the next one.
pub fn push_lines<'a>(
    buf: &mut Vec<u8>,
    stream: OutputStream,
    timestamp: EpochMillis,
    lines: impl Iterator<Item = &'a str>,
    continued: impl Fn(usize) -> bool,
) {
    for (index, line) in lines.enumerate() {
        let event = OutputEventRef {
            line,
            timestamp,
            stream,
            continued: continued(index),
        };
        sse::push_event(buf, "output", &event);
    }
}

/// Appends one `output_batch` event holding `lines` (none if there are no lines), with the
/// indexes of those continued by the next line.
pub fn push_batch<'a>(
    buf: &mut Vec<u8>,
    stream: OutputStream,
    timestamp: EpochMillis,
    lines: impl Iterator<Item = &'a str> + Clone,
    continued: Vec<usize>,
) {
    push_batch_with_id(buf, stream, timestamp, (None, 0), lines, continued);
}

fn push_batch_with_id<'a>(
    buf: &mut Vec<u8>,
    stream: OutputStream,
    timestamp: EpochMillis,
    (id, dropped): (Option<u64>, u64),
    lines: impl Iterator<Item = &'a str> + Clone,
    continued: Vec<usize>,
) {
    if lines.clone().next().is_none() {
        return;
    }
    let event = OutputBatchEventRef {
        stream,
        timestamp,
        lines: Seq(lines),
        dropped,
        continued,
    };
    sse::push_event_with_id(buf, "output_batch", id, &event);
}

/// Appends the events of `runs`: with `batch`, one `output_batch` event per stretch of runs of
/// the same stream and read time, each with the SSE `id` of the line after its last one (a
/// follow opened again with that `Last-Event-ID` goes on from there), the first one with
/// `dropped`, the lines the follower lost before it (when any); otherwise one `output` event
/// per line, without ids (the official protocol has none, nor a way to say lines were lost).
pub fn push_runs(buf: &mut Vec<u8>, runs: &[LineRun], batch: bool, mut dropped: u64) {
    if !batch {
        for run in runs {
            push_lines(buf, run.stream, run.timestamp, run.iter(), |i| {
                run.is_continued(i)
            });
        }
        return;
    }
    for group in runs.chunk_by(|a, b| (a.stream, a.timestamp) == (b.stream, b.timestamp)) {
        if let (Some(first), Some(last)) = (group.first(), group.last()) {
            let lines = group.iter().flat_map(LineRun::iter);
            let head = (Some(last.end_seq()), dropped);
            let continued = output::continued_across(group);
            push_batch_with_id(buf, first.stream, first.timestamp, head, lines, continued);
            dropped = 0;
        }
    }
}

/// Bytes to reserve for the events of `lines` lines of `text_bytes` bytes of text.
pub fn capacity_for(lines: usize, text_bytes: usize, batch: bool) -> usize {
    let per_line = if batch { 4 } else { 80 };
    text_bytes + lines * per_line + 96
}

#[cfg(test)]
mod tests {
    use alcove_wire::process::{OutputBatchEvent, OutputEvent};

    use super::*;
    use crate::output::{Lines, OutputBuffer};

    const AWKWARD: [&str; 4] = ["plain", "", "quote \" back\\slash\ttab", "ünï\u{1}code"];

    /// A buffer holding `reads` (stream, read time, lines), one append each.
    fn buffer_of(reads: &[(OutputStream, EpochMillis, &[&str])]) -> OutputBuffer {
        let buffer = OutputBuffer::new(1 << 20);
        for (stream, timestamp, texts) in reads {
            buffer.append(*stream, *timestamp, texts.iter().collect::<Lines>());
        }
        buffer
    }

    /// The `id` fields of an event stream's text.
    fn ids(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|line| line.strip_prefix("id: "))
            .collect()
    }

    #[test]
    fn borrowed_events_encode_like_the_wire_types() {
        let mut ours = Vec::new();
        let second = |i| i == 1;
        push_lines(
            &mut ours,
            OutputStream::Stderr,
            42,
            AWKWARD.into_iter(),
            second,
        );
        let mut theirs = Vec::new();
        for (index, line) in AWKWARD.into_iter().enumerate() {
            let event = OutputEvent {
                line: line.to_owned(),
                timestamp: 42,
                stream: Some(OutputStream::Stderr),
                continued: index == 1,
            };
            sse::push_event(&mut theirs, "output", &event);
        }
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );

        for continued in [vec![], vec![0, 2]] {
            let mut ours = Vec::new();
            let awkward = AWKWARD.into_iter();
            push_batch(
                &mut ours,
                OutputStream::Stdout,
                7,
                awkward,
                continued.clone(),
            );
            let event = OutputBatchEvent {
                stream: OutputStream::Stdout,
                timestamp: 7,
                lines: AWKWARD.map(str::to_owned).to_vec(),
                dropped: 0,
                continued,
            };
            assert_eq!(ours, sse::event("output_batch", &event).to_vec());
        }
    }

    #[test]
    fn runs_of_one_read_time_share_a_batch() {
        let buffer = buffer_of(&[
            (OutputStream::Stdout, 1, &["a", "b"]),
            (OutputStream::Stdout, 1, &["c"]),
            (OutputStream::Stderr, 1, &["d"]),
            (OutputStream::Stdout, 2, &["e"]),
        ]);
        let chunk = buffer.read_from(0, None, 100);

        let mut batched = Vec::new();
        push_runs(&mut batched, &chunk.runs, true, 0);
        let text = String::from_utf8_lossy(&batched);
        assert_eq!(text.matches("event: output_batch").count(), 3, "{text}");
        assert!(text.contains(r#""stream":"stdout","timestamp":1,"lines":["a","b","c"]"#));
        assert!(text.contains(r#""stream":"stderr","timestamp":1,"lines":["d"]"#));

        // Each batch says where the line after it is: a follow opened again goes on there.
        assert_eq!(ids(&text), ["3", "4", "5"], "{text}");

        let mut single = Vec::new();
        push_runs(&mut single, &chunk.runs, false, 0);
        let single = String::from_utf8_lossy(&single);
        assert_eq!(single.matches("event: output\n").count(), 5);
        assert!(
            !single.contains("\nid:"),
            "per-line events carry no id: {single}"
        );
    }

    #[test]
    fn a_filtered_batch_ends_at_its_own_last_line() {
        let buffer = buffer_of(&[
            (OutputStream::Stdout, 1, &["a", "b"]),
            (OutputStream::Stderr, 2, &["c"]),
            (OutputStream::Stdout, 3, &["d"]),
        ]);
        let stdout = buffer.read_from(0, Some(OutputStream::Stdout), 100);
        let mut batched = Vec::new();
        push_runs(&mut batched, &stdout.runs, true, 0);
        let text = String::from_utf8_lossy(&batched);
        assert_eq!(ids(&text), ["2", "4"], "{text}");
        // Going on from the first batch's id skips the other stream's line again.
        let rest = buffer.read_from(2, Some(OutputStream::Stdout), 100);
        let texts: Vec<&str> = rest.runs.iter().flat_map(LineRun::iter).collect();
        assert_eq!(texts, ["d"]);
    }

    #[test]
    fn lines_lost_are_told_by_the_first_batch_only() {
        let buffer = buffer_of(&[
            (OutputStream::Stdout, 1, &["a"]),
            (OutputStream::Stderr, 2, &["b"]),
        ]);
        let chunk = buffer.read_from(0, None, 100);
        let mut batched = Vec::new();
        push_runs(&mut batched, &chunk.runs, true, 7);
        let text = String::from_utf8_lossy(&batched);
        assert_eq!(text.matches(r#""dropped":7"#).count(), 1, "{text}");
        assert!(text.contains(r#""lines":["a"],"dropped":7"#), "{text}");
        let decoded: OutputBatchEvent = serde_json::from_str(
            text.lines()
                .find_map(|line| line.strip_prefix("data: "))
                .expect("data"),
        )
        .expect("the wire type reads it");
        assert_eq!(decoded.dropped, 7);
        let mut plain = Vec::new();
        push_runs(&mut plain, &chunk.runs, false, 7);
        assert!(!String::from_utf8_lossy(&plain).contains("dropped"));
    }

    #[test]
    fn no_lines_make_no_batch() {
        let mut buf = Vec::new();
        push_batch(
            &mut buf,
            OutputStream::Stdout,
            1,
            std::iter::empty(),
            vec![],
        );
        assert!(buf.is_empty());
    }
}
