//! Commands and background processes of a sandbox (docs/protocol/sandbox-api.md: Run a
//! command, Processes, Managed processes, Process I/O).
//!
//! Every call about one process takes `impl Into<ProcessKey>`: a pid, or a managed
//! process's name.

use std::collections::VecDeque;

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
use crate::sse::{CommandResult, SseDecoder, collect_run, output_event};
use crate::transport::Kind;

/// Output lines of a process as they come: past ones first, then live ones until it exits.
/// Each item waits at most the client's `stream_idle_timeout`.
pub type OutputEvents = BoxStream<'static, Result<OutputEvent, ClientError>>;

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
    pub async fn follow_output(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<OutputEvents, ClientError> {
        self.follow(process.into(), Follow::Output).await
    }

    /// Follows stdout lines until the process exits.
    pub async fn follow_stdout(
        &self,
        process: impl Into<ProcessKey>,
    ) -> Result<OutputEvents, ClientError> {
        self.follow(process.into(), Follow::Stdout).await
    }

    /// Follows stderr lines until the process exits.
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
        let p = process.segment()?;
        let segments = ["processes", p.as_str(), which.segment(), "follow"];
        let reader = self
            .open_events(Method::GET, &segments, None::<&()>)
            .await?;
        let state = FollowState {
            lines: Lines::new(reader),
            decoder: SseDecoder::default(),
            pending: VecDeque::new(),
            default_stream: which.default_stream(),
            done: false,
        };
        Ok(futures::stream::unfold(state, FollowState::next).boxed())
    }

    /// Opens an event stream: the head within `timeout`, then reads bounded by
    /// `stream_idle_timeout`.
    async fn open_events(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&impl serde::Serialize>,
    ) -> Result<Reader, ClientError> {
        let mut call = self.call(method, segments)?.kind(Kind::Events).header(
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

/// What a follow stream keeps between items.
struct FollowState {
    lines: Lines<Reader>,
    decoder: SseDecoder,
    pending: VecDeque<OutputEvent>,
    default_stream: Option<OutputStream>,
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
            let events = match self.lines.next_line().await {
                Ok(Some(line)) => self.decoder.feed(&line),
                Ok(None) => {
                    self.done = true;
                    self.decoder.flush()
                }
                Err(err) => {
                    self.done = true;
                    return Some((Err(err), self));
                }
            };
            let default_stream = self.default_stream;
            self.pending.extend(
                events
                    .into_iter()
                    .filter_map(|e| output_event(e, default_stream)),
            );
        }
    }
}
