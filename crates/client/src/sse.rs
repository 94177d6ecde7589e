//! Server-sent events of `run` and `follow_*`: decoding, collecting a run, output events.
//!
//! As the Python SDK's `_protocol/_sse.py`: only `data:` lines count (`event:`, `id:`,
//! `retry:` and `:` comments such as the agent's keep-alives are skipped), an event's data must
//! be a JSON object, and a server that forgets the blank line between events still yields one
//! object per data line. Run events are recognised by shape: `{"line", "stream"}` output,
//! `{"pid", "started_at"}` start, `{"exit_code"|"signal", ...}` exit, `{"error", "code"}`.

use alcove_wire::process::{ExitReason, OutputEvent, OutputStream};
use serde_json::{Map, Value};

use crate::body::{ChunkSource, Lines};
use crate::error::ClientError;

/// A JSON object carried by one event.
pub(crate) type Event = Map<String, Value>;

/// Line-based SSE decoder: feed it lines without their endings.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    data: Vec<String>,
    /// The `id` field of the event being read.
    id: Option<String>,
    /// The `id` of the last event dispatched that had one (SSE's "last event ID").
    pub last_id: Option<String>,
}

impl SseDecoder {
    /// Takes one line; returns the events it completes.
    pub fn feed(&mut self, line: &str) -> Vec<Event> {
        if line.is_empty() {
            return self.flush();
        }
        if line.starts_with(':') {
            return Vec::new();
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "data" => self.data.push(value.to_string()),
            "id" => self.id = Some(value.to_string()),
            _ => {}
        }
        Vec::new()
    }

    /// Ends the pending event (at a blank line or the end of the stream).
    pub fn flush(&mut self) -> Vec<Event> {
        if let Some(id) = self.id.take() {
            self.last_id = Some(id);
        }
        if self.data.is_empty() {
            return Vec::new();
        }
        let lines = std::mem::take(&mut self.data);
        if let Ok(Value::Object(event)) = serde_json::from_str(&lines.join("\n")) {
            return vec![event];
        }
        lines
            .iter()
            .filter_map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(event)) => Some(event),
                _ => None,
            })
            .collect()
    }
}

/// What a finished `run` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// Standard output lines joined with `\n` (no final newline).
    pub stdout: String,
    /// Standard error lines joined with `\n`.
    pub stderr: String,
    /// The exit code; `-signal` when a signal killed the command (e.g. at its timeout).
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Why it ended, when the agent said.
    pub reason: Option<ExitReason>,
    /// Its process id, from the start event.
    pub pid: Option<u32>,
}

/// Accumulates the events of `processes/run` into a [`CommandResult`].
#[derive(Debug, Default)]
pub(crate) struct RunCollector {
    stdout: Vec<String>,
    stderr: Vec<String>,
    /// Whether the last line of stdout (stderr) is a piece of a longer line, which the next
    /// line of that stream continues (the agent cuts lines over 1 MiB).
    stdout_open: bool,
    stderr_open: bool,
    pid: Option<u32>,
    exit: Option<Event>,
}

impl RunCollector {
    /// Takes one event; `Ok(true)` once the exit event arrived.
    pub fn add(&mut self, event: Event) -> Result<bool, ClientError> {
        if let Some(Value::String(line)) = event.get("line") {
            let is_stderr = event.get("stream").and_then(Value::as_str) == Some("stderr");
            let (out, open) = if is_stderr {
                (&mut self.stderr, &mut self.stderr_open)
            } else {
                (&mut self.stdout, &mut self.stdout_open)
            };
            match out.last_mut() {
                Some(last) if *open => last.push_str(line),
                _ => out.push(line.clone()),
            }
            *open = event.get("continued") == Some(&Value::Bool(true));
            return Ok(false);
        }
        let set = |key: &str| event.get(key).is_some_and(|v| !v.is_null());
        if set("exit_code") || set("signal") {
            self.exit = Some(event);
            return Ok(true);
        }
        if let Some(pid) = event.get("pid").and_then(Value::as_u64) {
            self.pid = self.pid.or(u32::try_from(pid).ok());
            return Ok(false);
        }
        if let Some(Value::String(error)) = event.get("error")
            && !error.is_empty()
        {
            return Err(ClientError::CommandFailed {
                code: event
                    .get("code")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                message: error.clone(),
            });
        }
        Ok(false)
    }

    /// The result, once the exit event arrived.
    pub fn result(self) -> Result<CommandResult, ClientError> {
        let Some(exit) = self.exit else {
            return Err(ClientError::Connection {
                what: "running a command".into(),
                detail: "the output stream ended without an exit event".into(),
            });
        };
        let number = |key: &str| {
            exit.get(key)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        };
        let signal = number("signal");
        let exit_code = match (number("exit_code"), signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => -signal,
            (None, None) => {
                return Err(ClientError::decode(
                    "the exit event",
                    "neither exit_code nor signal is a number",
                ));
            }
        };
        let reason = exit
            .get("reason")
            .and_then(|r| serde_json::from_value(r.clone()).ok());
        Ok(CommandResult {
            stdout: self.stdout.join("\n"),
            stderr: self.stderr.join("\n"),
            exit_code,
            signal,
            reason,
            pid: self.pid,
        })
    }
}

/// Reads a run's event stream to its exit event.
pub(crate) async fn collect_run<S: ChunkSource>(
    lines: &mut Lines<S>,
) -> Result<CommandResult, ClientError> {
    let mut decoder = SseDecoder::default();
    let mut collector = RunCollector::default();
    while let Some(line) = lines.next_line().await? {
        for event in decoder.feed(&line) {
            if collector.add(event)? {
                return collector.result();
            }
        }
    }
    for event in decoder.flush() {
        if collector.add(event)? {
            break;
        }
    }
    collector.result()
}

/// The [`OutputEvent`]s of an event: one per line of an `output_batch` (`{"stream",
/// "timestamp", "lines"}`), else [`output_event`]'s.
pub(crate) fn output_events(
    mut event: Event,
    default_stream: Option<OutputStream>,
) -> Vec<OutputEvent> {
    let Some(Value::Array(lines)) = event.remove("lines") else {
        return output_event(event, default_stream).into_iter().collect();
    };
    // The indexes of the pieces of a cut line: each becomes an event marked `continued`.
    let continued: Vec<u64> = match event.remove("continued") {
        Some(Value::Array(indexes)) => indexes.iter().filter_map(Value::as_u64).collect(),
        _ => Vec::new(),
    };
    lines
        .into_iter()
        .enumerate()
        .filter_map(|(index, line)| {
            let mut one = event.clone();
            one.insert("line".into(), line);
            if continued.contains(&(index as u64)) {
                one.insert("continued".into(), Value::Bool(true));
            }
            output_event(one, default_stream)
        })
        .collect()
}

/// The `dropped` of an `output_batch` of a follow: lines the agent's buffer let go before this
/// follower read them (`None` when it has none, or none that is a positive count).
pub(crate) fn dropped_lines(event: &Event) -> Option<u64> {
    event
        .get("dropped")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
}

/// An [`OutputEvent`] for a line event (`None` for anything else, e.g. an `eof` `{}`); a
/// missing `stream` is `default_stream`.
pub(crate) fn output_event(
    mut event: Event,
    default_stream: Option<OutputStream>,
) -> Option<OutputEvent> {
    if !event.get("line").is_some_and(Value::is_string) {
        return None;
    }
    if event.get("stream").is_none_or(Value::is_null)
        && let Some(stream) = default_stream
    {
        event.insert("stream".into(), serde_json::to_value(stream).ok()?);
    }
    serde_json::from_value(Value::Object(event)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::tests::Chunks;
    use serde_json::json;

    async fn run_of(parts: &[&str]) -> Result<CommandResult, ClientError> {
        collect_run(&mut Lines::new(Chunks::of(parts))).await
    }

    #[test]
    fn the_decoder_skips_comments_and_tolerates_missing_blank_lines() {
        let mut d = SseDecoder::default();
        assert!(d.feed(": keep-alive").is_empty());
        assert!(d.feed("event: output").is_empty());
        assert!(d.feed("data: {\"a\":").is_empty());
        assert!(d.feed("data: 1}").is_empty());
        assert_eq!(d.feed("").len(), 1);
        d.feed("data:{\"a\":1}");
        d.feed("data: {\"b\":2}");
        d.feed("data: not json");
        assert_eq!(d.flush().len(), 2);
        assert!(d.flush().is_empty());
    }

    #[tokio::test]
    async fn a_run_is_collected_across_split_chunks() {
        let result = run_of(&[
            "data: {\"pid\":7,\"started_at\":1}\n\n: keep-alive\n\n",
            "data: {\"line\":\"out 1\",\"timestamp\":1,\"stream\":\"stdout\"}\n\ndata: {\"li",
            "ne\":\"err\",\"timestamp\":2,\"stream\":\"stderr\"}\r\n\r\n",
            "data: {\"line\":\"out 2\",\"timestamp\":3}\n\n",
            "data: {\"exit_code\":3,\"signal\":null,\"oom_killed\":false,\"reason\":\"exited\"}\n\n",
        ])
        .await
        .expect("collected");
        assert_eq!(result.stdout, "out 1\nout 2");
        assert_eq!(result.stderr, "err");
        assert_eq!(result.exit_code, 3);
        assert_eq!(result.pid, Some(7));
        assert_eq!(result.reason, Some(ExitReason::Exited));
    }

    #[tokio::test]
    async fn the_pieces_of_a_cut_line_are_put_back_together_per_stream() {
        let result = run_of(&[
            "data: {\"line\":\"aa\",\"timestamp\":1,\"stream\":\"stdout\",\"continued\":true}\n\n",
            "data: {\"line\":\"e1\",\"timestamp\":1,\"stream\":\"stderr\",\"continued\":true}\n\n",
            "data: {\"line\":\"bb\",\"timestamp\":1,\"stream\":\"stdout\"}\n\n",
            "data: {\"line\":\"e2\",\"timestamp\":1,\"stream\":\"stderr\"}\n\n",
            "data: {\"line\":\"next\",\"timestamp\":1,\"stream\":\"stdout\"}\n\n",
            "data: {\"exit_code\":0,\"signal\":null}\n\n",
        ])
        .await
        .expect("collected");
        assert_eq!(result.stdout, "aabb\nnext");
        assert_eq!(result.stderr, "e1e2");
    }

    #[test]
    fn a_batch_marks_its_continued_pieces() {
        let Value::Object(batch) =
            json!({"stream": "stdout", "timestamp": 1, "lines": ["a", "b", "c"], "continued": [1]})
        else {
            unreachable!("an object");
        };
        let marks: Vec<(String, bool)> = output_events(batch, None)
            .into_iter()
            .map(|event| (event.line, event.continued))
            .collect();
        assert_eq!(
            marks,
            [("a".into(), false), ("b".into(), true), ("c".into(), false)]
        );
    }

    #[tokio::test]
    async fn a_signal_death_is_a_negative_exit_code() {
        let result = run_of(&["data: {\"exit_code\":null,\"signal\":9,\"reason\":\"timed_out\"}"])
            .await
            .expect("collected at the end of the stream");
        assert_eq!((result.exit_code, result.signal), (-9, Some(9)));
        assert_eq!(result.reason, Some(ExitReason::TimedOut));
    }

    #[tokio::test]
    async fn errors_and_truncated_streams_are_reported() {
        let err =
            run_of(&["data: {\"error\":\"no such program\",\"code\":\"COMMAND_NOT_FOUND\"}\n\n"])
                .await
                .expect_err("error event");
        assert_eq!(err.code(), Some("COMMAND_NOT_FOUND"));
        let err = run_of(&["data: {\"line\":\"x\",\"timestamp\":1}\n\n"])
            .await
            .expect_err("no exit");
        assert!(matches!(err, ClientError::Connection { .. }), "{err}");
    }

    #[test]
    fn ids_count_once_their_event_is_dispatched_and_batches_are_lines() {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        for line in [
            "event: output_batch",
            "id: 7",
            r#"data: {"stream":"stderr","timestamp":5,"lines":["a","b"]}"#,
        ] {
            events.extend(decoder.feed(line));
        }
        assert_eq!(decoder.last_id, None, "not before the event ends");
        events.extend(decoder.feed(""));
        assert_eq!(decoder.last_id.as_deref(), Some("7"));
        decoder.feed(r#"data: {"line":"c","timestamp":6}"#);
        events.extend(decoder.flush());
        assert_eq!(
            decoder.last_id.as_deref(),
            Some("7"),
            "an event without id keeps it"
        );
        let got: Vec<(String, OutputStream)> = events
            .into_iter()
            .flat_map(|event| output_events(event, Some(OutputStream::Stdout)))
            .map(|event| (event.line, event.stream.unwrap_or(OutputStream::Stdout)))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), OutputStream::Stderr),
                ("b".to_string(), OutputStream::Stderr),
                ("c".to_string(), OutputStream::Stdout),
            ]
        );
    }

    #[test]
    fn a_batch_tells_the_lines_it_follows_a_gap_of() {
        let event = |data: Value| match data {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        };
        let batch =
            event(json!({"stream": "stdout", "timestamp": 1, "lines": ["a"], "dropped": 9}));
        assert_eq!(dropped_lines(&batch), Some(9));
        assert_eq!(output_events(batch, None).len(), 1, "its lines still count");
        for data in [
            json!({"lines": ["a"]}),
            json!({"lines": ["a"], "dropped": 0}),
            json!({"lines": ["a"], "dropped": -3}),
            json!({"lines": ["a"], "dropped": "9"}),
        ] {
            assert_eq!(dropped_lines(&event(data)), None);
        }
    }

    #[test]
    fn output_events_take_the_default_stream() {
        let event = |json: &str| match serde_json::from_str(json) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let got = output_event(
            event(r#"{"line":"x","timestamp":5}"#),
            Some(OutputStream::Stderr),
        )
        .expect("line event");
        assert_eq!(got.stream, Some(OutputStream::Stderr));
        let got = output_event(
            event(r#"{"line":"x","timestamp":5,"stream":"stdout"}"#),
            Some(OutputStream::Stderr),
        )
        .expect("line event");
        assert_eq!(got.stream, Some(OutputStream::Stdout));
        assert!(output_event(event("{}"), None).is_none());
    }
}
