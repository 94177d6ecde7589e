//! Commands and background processes of a sandbox (docs/protocol/sandbox-api.md: Run a
//! command, Processes, Managed processes, Process I/O).
//!
//! Every call about one process takes `impl Into<ProcessKey>`: a pid, or a managed
//! process's name.

use std::collections::VecDeque;
use std::time::Duration;

use alcove_wire::process::{
    OutputEvent, OutputResponse, OutputStream, ProcessInfo, ProcessList, SignalRequest,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderValue, Method, header};

use super::Sandbox;
use crate::body::{Lines, Reader};
use crate::command::Command;
use crate::error::{ClientError, TimeoutSetting};
use crate::process_key::ProcessKey;
use crate::sse::{CommandResult, SseDecoder, collect_run, output_events};
use crate::transport::{Call, Kind};

/// Output lines of a process as they come: past ones first, then live ones until it exits.
/// Each item waits at most the client's `stream_idle_timeout`. A connection that breaks
/// meanwhile (the sandbox suspended and resumed, a proxy that drops it) is opened again and the
/// lines go on where they stopped, each once, in order (see [`Sandbox::follow_output`]).
pub type OutputEvents = BoxStream<'static, Result<OutputEvent, ClientError>>;

/// Connections in a row that may break without bringing a new line before a follow gives up
/// with the last [`ClientError::Connection`].
pub const FOLLOW_RECONNECTS: u32 = 5;
/// The pause before each of those reconnections (the proxy's own not-ready replays come on
/// top).
pub const FOLLOW_BACKOFF: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Which follow endpoint, and the stream assumed when an event omits it.
#[derive(Debug, Clone, Copy)]
enum Follow {
    Output,
    Stdout,
    Stderr,
}

impl Follow {
    fn segment(self) -> &'static str {
        match self {
            Self::Output => "output",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    fn default_stream(self) -> Option<OutputStream> {
        match self {
            Self::Output => None,
            Self::Stdout => Some(OutputStream::Stdout),
            Self::Stderr => Some(OutputStream::Stderr),
        }
    }
}

impl Sandbox {
    /// Runs a command to completion and returns its output and exit code.
    ///
    /// `exit_code` is `-signal` when a signal killed the command, e.g. at its
    /// [`Command::timeout`] (the sandbox kills it then). A silent command may run as long as it
    /// likes: the agent keeps the stream alive; an agent that stops answering ends the call
    /// after the client's `stream_idle_timeout` with [`ClientError::Timeout`].
    pub async fn run(&self, command: Command) -> Result<CommandResult, ClientError> {
        let body = command.run_request()?;
        let response = self
            .open_events(Method::POST, &["processes", "run"], Some(&body))
            .await?;
        let mut lines = Lines::new(response);
        collect_run(&mut lines).await
    }

    /// Starts a background process; [`Command::stdin_pipe`] lets you write its stdin later.
    /// With [`Command::name`], [`Command::restart`] or [`Command::health_check`] the process
    /// is managed: the agent supervises it, and its name addresses it in every call.
    pub async fn start_process(&self, command: Command) -> Result<ProcessInfo, ClientError> {
        let body = command.start_request()?;
        let call = self.call(Method::POST, &["processes"])?.json(&body)?;
        self.transport().json(call, "process").await
    }

    /// Sets variables every process started afterwards inherits (a start's own `env` still
    /// wins); processes already running keep theirs.
    pub async fn set_environment(
        &self,
        env: std::collections::BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        let body = alcove_wire::process::SetEnvironmentRequest { env };
        let call = self.call(Method::PUT, &["environment"])?.json(&body)?;
        self.transport().body(call).await.map(drop)
    }

    /// Every process the agent still tracks.
    pub async fn list_processes(&self) -> Result<Vec<ProcessInfo>, ClientError> {
        let call = self.call(Method::GET, &["processes"])?;
        let list: ProcessList = self.transport().json(call, "process list").await?;
        Ok(list.processes)
    }

    /// Describes one process, by pid or by name (a managed process's current run).
    pub async fn get_process(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<ProcessInfo, ClientError> {
        let p = process.into().segment()?;
        let call = self.call(Method::GET, &["processes", &p])?;
        self.transport().json(call, "process").await
    }

    /// Kills a process (SIGKILL to its process tree). A managed process that is still
    /// supervised is stopped instead: supervision ends, then SIGTERM and, 3 s later, SIGKILL.
    pub async fn kill_process(&self, process: impl Into<ProcessKey>) -> Result<(), ClientError> {
        let p = process.into().segment()?;
        let call = self.call(Method::DELETE, &["processes", &p])?;
        self.transport().body(call).await.map(drop)
    }

    /// Restarts a managed process now (a stopped one is started and supervised anew) and
    /// returns the new run. A process that is not managed is refused (`409 NOT_MANAGED`).
    pub async fn restart_process(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<ProcessInfo, ClientError> {
        let p = process.into().segment()?;
        let call = self.call(Method::POST, &["processes", &p, "restart"])?;
        self.transport().json(call, "process").await
    }

    /// Sends a signal (e.g. 15 for SIGTERM) to a process.
    pub async fn send_signal(
        &self,
        process: impl Into<ProcessKey>,
        signal: i32,
    ) -> Result<(), ClientError> {
        let p = process.into().segment()?;
        if signal <= 0 {
            return Err(ClientError::invalid("signal must be a positive number"));
        }
        let call = self
            .call(Method::POST, &["processes", &p, "signal"])?
            .json(&SignalRequest { signal })?;
        self.transport().body(call).await.map(drop)
    }

    /// Writes raw bytes to a process's stdin (started with [`Command::stdin_pipe`]).
    pub async fn write_stdin(
        &self,
        process: impl Into<ProcessKey>,
        data: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let p = process.into().segment()?;
        let call = self
            .call(Method::POST, &["processes", &p, "stdin"])?
            .bytes(data.into());
        self.transport().body(call).await.map(drop)
    }

    /// Closes a process's stdin (it then reads end-of-file).
    pub async fn close_stdin(&self, process: impl Into<ProcessKey>) -> Result<(), ClientError> {
        let p = process.into().segment()?;
        let call = self
            .call(Method::POST, &["processes", &p, "stdin", "close"])?
            .bytes(Bytes::new());
        self.transport().body(call).await.map(drop)
    }

    /// All stdout lines captured so far.
    pub async fn get_stdout(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<OutputResponse, ClientError> {
        self.output(process.into(), Follow::Stdout).await
    }

    /// All stderr lines captured so far.
    pub async fn get_stderr(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<OutputResponse, ClientError> {
        self.output(process.into(), Follow::Stderr).await
    }

    /// All stdout and stderr lines captured so far, interleaved.
    pub async fn get_output(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<OutputResponse, ClientError> {
        self.output(process.into(), Follow::Output).await
    }

    /// Follows stdout and stderr lines until the process exits.
    ///
    /// A connection that breaks meanwhile (the sandbox suspended and resumed, a proxy that
    /// drops it) is opened again, and the lines go on where they stopped: each once, in order.
    /// The follow routes take no cursor, but the agent answers each with every line still in its
    /// buffer first, so the lines already handed out are skipped by count. After
    /// [`FOLLOW_RECONNECTS`] connections in a row that broke without a new line, the last
    /// [`ClientError::Connection`] is the stream's error; an answer that is not a stream (the
    /// process unknown, the sandbox gone: 404) is at once. A silence past
    /// `stream_idle_timeout` is not retried.
    pub async fn follow_output(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<OutputEvents, ClientError> {
        self.follow(process.into(), Follow::Output).await
    }

    /// Follows stdout lines until the process exits (across broken connections, as
    /// [`Self::follow_output`]).
    pub async fn follow_stdout(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<OutputEvents, ClientError> {
        self.follow(process.into(), Follow::Stdout).await
    }

    /// Follows stderr lines until the process exits (across broken connections, as
    /// [`Self::follow_output`]).
    pub async fn follow_stderr(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<OutputEvents, ClientError> {
        self.follow(process.into(), Follow::Stderr).await
    }

    async fn output(
        &self,
        process: ProcessKey,
        which: Follow,
    ) -> Result<OutputResponse, ClientError> {
        let p = process.segment()?;
        let call = self.call(Method::GET, &["processes", &p, which.segment()])?;
        self.transport()
            .json(call, &format!("process {}", which.segment()))
            .await
    }

    async fn follow(
        &self,
        process: ProcessKey,
        which: Follow,
    ) -> Result<OutputEvents, ClientError> {
        let process = process.segment()?;
        let reader = self.open_follow(&process, which, None).await?;
        let state = FollowState {
            sandbox: self.clone(),
            process,
            which,
            lines: Some(Lines::new(reader)),
            decoder: SseDecoder::default(),
            pending: VecDeque::new(),
            eof: false,
            resume: FollowResume::default(),
            done: false,
        };
        Ok(futures::stream::unfold(state, FollowState::next).boxed())
    }

    /// Opens a follow; `last_event_id` (opened again) is where the agent goes on.
    async fn open_follow(
        &self,
        process: &str,
        which: Follow,
        last_event_id: Option<&str>,
    ) -> Result<Reader, ClientError> {
        let segments = ["processes", process, which.segment(), "follow"];
        // Alcove's own: the lines of one read as one `output_batch` event, with an id (a server
        // that does not know it sends `output` events; both are read).
        let mut call = self.call(Method::GET, &segments)?.query("batch", "true");
        if let Some(id) = last_event_id {
            let value = HeaderValue::from_str(id).map_err(|e| ClientError::Decode {
                what: "the follow's event id".into(),
                detail: e.to_string(),
            })?;
            call = call.header(header::HeaderName::from_static("last-event-id"), value);
        }
        self.send_events(call, None::<&()>).await
    }

    /// Opens an event stream: the head within `timeout`, then reads bounded by
    /// `stream_idle_timeout`.
    async fn open_events(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&impl serde::Serialize>,
    ) -> Result<Reader, ClientError> {
        let call = self.call(method, segments)?;
        self.send_events(call, body).await
    }

    /// Sends `call` for an event stream (see [`Self::open_events`]).
    async fn send_events(
        &self,
        call: Call,
        body: Option<&impl serde::Serialize>,
    ) -> Result<Reader, ClientError> {
        let mut call = call.kind(Kind::Events).header(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        if let Some(body) = body {
            call = call.json(body)?;
        }
        let response = self.transport().send(call).await?;
        crate::body::expect_event_stream(&response)?;
        let idle = self.transport().config.stream_idle_timeout;
        Ok(Reader::new(
            response,
            idle,
            TimeoutSetting::StreamIdleTimeout,
        ))
    }
}

/// Where a follow stands across its connections, and whether to open another (decided here
/// without I/O; as the Python SDK's `FollowResume`).
///
/// Each `output_batch` of Alcove's agent carries an SSE `id` (the line after it): a follow
/// opened again sends the last one taken as `Last-Event-ID` and the agent goes on right after
/// it, whatever its buffer dropped meanwhile. A server whose events carry no id says the same
/// lines in the same order (its buffer, then the live ones), so the lines already handed out
/// are then skipped by count.
#[derive(Debug, Default)]
struct FollowResume {
    /// The id of the last event taken that had one: where a follow opened again goes on.
    cursor: Option<String>,
    /// Lines handed out so far.
    delivered: u64,
    /// Lines of the current connection still to skip: handed out before.
    skip: u64,
    /// Whether the current connection brought a line not seen before.
    new_lines: bool,
    /// Connections in a row that brought no new line.
    failures: u32,
    /// The previous connection ended without `eof`.
    quiet: bool,
    /// Lines the agent's buffer let go before this follow read them (its batches' `dropped`).
    dropped: u64,
}

impl FollowResume {
    /// Whether the next line of the current connection is new (else it is skipped); counts it.
    fn take(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        self.delivered += 1;
        self.new_lines = true;
        true
    }

    /// The connection broke, or could not be opened again: whether to open another.
    fn broke(&mut self) -> bool {
        if self.new_lines {
            self.failures = 0;
        }
        self.failures += 1;
        self.quiet = false;
        self.failures <= FOLLOW_RECONNECTS
    }

    /// The connection ended cleanly: whether the follow is over. It is at the `eof` event;
    /// without one the connection was cut and another is opened. A server that sends no `eof`
    /// is recognised when a connection opened again ends too without a new line.
    fn ended(&mut self, eof: bool) -> bool {
        if eof || (self.quiet && !self.new_lines) {
            return true;
        }
        if self.new_lines {
            self.failures = 0;
        }
        self.quiet = true;
        false
    }

    /// Before opening the follow again: the pause first. From then on the lines handed out are
    /// skipped.
    fn pause(&mut self) -> Duration {
        // With a cursor the agent sends only what comes after it; without, everything it keeps.
        self.skip = if self.cursor.is_some() {
            0
        } else {
            self.delivered
        };
        self.new_lines = false;
        match self.failures {
            0 => Duration::ZERO,
            n => FOLLOW_BACKOFF[(n as usize).min(FOLLOW_BACKOFF.len()) - 1],
        }
    }
}

/// What a follow stream keeps between items.
struct FollowState {
    sandbox: Sandbox,
    process: String,
    which: Follow,
    /// The current connection; `None` once it ended or broke (the next is opened on demand).
    lines: Option<Lines<Reader>>,
    decoder: SseDecoder,
    pending: VecDeque<OutputEvent>,
    /// Whether the current connection brought the `eof` event (data `{}`).
    eof: bool,
    resume: FollowResume,
    done: bool,
}

impl FollowState {
    async fn next(mut self) -> Option<(Result<OutputEvent, ClientError>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let Some(lines) = self.lines.as_mut() else {
                match self.reopen().await {
                    Ok(()) => continue,
                    Err(err) => {
                        self.done = true;
                        return Some((Err(err), self));
                    }
                }
            };
            let (events, ended) = match lines.next_line().await {
                Ok(Some(line)) => (self.decoder.feed(&line), false),
                Ok(None) => (self.decoder.flush(), true),
                Err(err @ ClientError::Connection { .. }) => {
                    self.lines = None;
                    if self.resume.broke() {
                        continue;
                    }
                    self.done = true;
                    return Some((Err(err), self));
                }
                Err(err) => {
                    self.done = true;
                    return Some((Err(err), self));
                }
            };
            let default_stream = self.which.default_stream();
            for event in events {
                if event.is_empty() {
                    self.eof = true; // `eof` is `{}`; nothing else is
                    continue;
                }
                if let Some(lost) = crate::sse::dropped_lines(&event) {
                    self.resume.dropped += lost;
                    tracing::warn!(
                        process = %self.process,
                        dropped = lost,
                        total = self.resume.dropped,
                        "output lines were dropped before this follow read them (the process's \
                         output buffer holds the last 16 MiB)"
                    );
                }
                for event in output_events(event, default_stream) {
                    if self.resume.take() {
                        self.pending.push_back(event);
                    }
                }
            }
            // Its lines are all handed out before the next read can find the connection broken.
            if let Some(id) = self.decoder.last_id.take() {
                self.resume.cursor = Some(id);
            }
            if ended {
                self.lines = None;
                self.done = self.resume.ended(self.eof);
            }
        }
    }

    /// Opens the follow again, after the pause the budget asks; connection failures spend it.
    async fn reopen(&mut self) -> Result<(), ClientError> {
        loop {
            let pause = self.resume.pause();
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let cursor = self.resume.cursor.as_deref();
            match self
                .sandbox
                .open_follow(&self.process, self.which, cursor)
                .await
            {
                Ok(reader) => {
                    self.lines = Some(Lines::new(reader));
                    self.decoder = SseDecoder::default();
                    self.eof = false;
                    return Ok(());
                }
                Err(err) => {
                    if matches!(err, ClientError::Connection { .. }) && self.resume.broke() {
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_handed_out_are_skipped_on_the_next_connection() {
        let mut resume = FollowResume::default();
        assert!(resume.take() && resume.take() && resume.take());
        assert!(resume.broke());
        assert_eq!(resume.pause(), FOLLOW_BACKOFF[0]);
        // The replay: three lines seen before, then a new one.
        assert_eq!(
            (0..4).map(|_| resume.take()).collect::<Vec<_>>(),
            [false, false, false, true]
        );
        assert_eq!(resume.delivered, 4);
        assert!(!resume.ended(false), "cut without eof: open again");
        assert_eq!(resume.pause(), Duration::ZERO);
        assert!(
            resume.ended(false),
            "nothing new and no eof again: a server without eof, done"
        );
        assert!(FollowResume::default().ended(true));
    }

    #[test]
    fn breaks_without_a_new_line_are_bounded_and_a_new_line_renews_the_budget() {
        let mut resume = FollowResume::default();
        let mut pauses = Vec::new();
        for _ in 0..FOLLOW_RECONNECTS {
            assert!(resume.broke());
            pauses.push(resume.pause());
        }
        assert_eq!(pauses, FOLLOW_BACKOFF);
        assert!(!resume.broke());
        let mut steady = FollowResume::default();
        for _ in 0..3 * FOLLOW_RECONNECTS {
            assert!(steady.broke());
            let skip = steady.pause();
            assert!(skip <= FOLLOW_BACKOFF[0]);
            while !steady.take() {}
        }
    }
}
