//! Processes started through `POST /api/v1/processes`: the table that tracks them, their
//! stdin, captured output and exit, and the operations of docs/protocol/sandbox-api.md
//! (Processes, Process I/O).
//!
//! A process stays in the table after it exits, so its status and output can still be read,
//! until `DELETE` removes it or it becomes one of more than [`MAX_EXITED_RETAINED`] exited
//! processes (the oldest exited ones are evicted, bounding memory).
//!
//! A process started with a `name`, a `restart` policy or a `health_check` is managed: see
//! [`managed`] for its supervisor. Every start and exit goes into the sandbox's journal
//! ([`crate::journal`]), and so does its output.

pub mod headroom;
pub mod health;
pub mod managed;
pub mod oom;
pub mod run;
pub mod spawn;
pub mod tree;
pub mod user;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use alcove_wire::journal::{JournalEvent, LogLevel};
use alcove_wire::process::{OutputStream, ProcessInfo, ProcessStatus, StartProcessRequest};
use alcove_wire::time::{EpochMillis, now_millis};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::journal::{self, Journal, JournaledSink, ProcessRef};
use crate::output::{self, BufferSink, OutputBuffer};
use crate::pid1::ExitStatus;
use managed::Managed;
use spawn::{LaunchError, LaunchSpec, Launcher};

/// Exited processes kept for inspection; older ones are evicted.
pub const MAX_EXITED_RETAINED: usize = 256;

/// How a tracked process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code when it exited on its own.
    pub code: Option<i32>,
    /// Signal number when a signal killed it.
    pub signal: Option<i32>,
    /// Whether the OOM killer killed it.
    pub oom_killed: bool,
    /// End time, epoch milliseconds.
    pub ended_at: EpochMillis,
}

impl ExitInfo {
    /// Builds the exit of a process from its wait status and OOM counter baseline.
    pub fn new(status: ExitStatus, oom_baseline: Option<u64>) -> Self {
        Self {
            code: status.code,
            signal: status.signal,
            oom_killed: oom::was_oom_killed(status.signal, oom_baseline),
            ended_at: now_millis(),
        }
    }

    /// The wire status this exit maps to.
    pub fn status(&self) -> ProcessStatus {
        if self.oom_killed {
            ProcessStatus::OomKilled
        } else if self.signal.is_some() {
            ProcessStatus::Signaled
        } else {
            ProcessStatus::Exited
        }
    }
}

/// Why a process operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No tracked process has this pid or name.
    #[error("process {0} not found")]
    NotFound(String),
    /// The process could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A running managed process already holds the name.
    #[error("a running process is already named {0:?}")]
    NameTaken(String),
    /// The name cannot address a process.
    #[error(
        "invalid process name {0:?}: must be 1 to 255 bytes, not all digits, without '/' or control characters, and not \"run\", \".\" or \"..\""
    )]
    InvalidName(String),
    /// The process is not managed, so it cannot be restarted.
    #[error(
        "process {0} is not managed: only processes started with a name, a restart policy or a health check can be restarted"
    )]
    NotManaged(String),
    /// A field of the start request is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The signal number is not a valid signal.
    #[error("invalid signal number {0}: expected 1 to {max}", max = libc::SIGRTMAX())]
    InvalidSignal(i32),
    /// The process has already exited.
    #[error("process {0} has already exited")]
    Exited(u32),
    /// This run of a managed process has exited and its supervisor waits to start the next.
    #[error(
        "{label} (run {pid}) has exited and restarts in {restart_in_ms} ms: signal it once it runs again, or kill it to stop its supervision"
    )]
    Restarting {
        /// The process, as the journal names it.
        label: String,
        /// The run that exited.
        pid: u32,
        /// How long until the supervisor starts the next run.
        restart_in_ms: i64,
    },
    /// Stdin was not piped, was closed, or the process stopped reading it.
    #[error("stdin of process {pid} is not writable: {reason}")]
    StdinNotWritable {
        /// The process.
        pid: u32,
        /// Why.
        reason: &'static str,
    },
    /// Reading the request body failed (the client went away mid-upload).
    #[error("reading request body: {0}")]
    Body(String),
}

/// A process started through `POST /api/v1/processes` (for a managed process: one run).
#[derive(Debug)]
pub struct TrackedProcess {
    /// Process id (also its process group id).
    pub pid: u32,
    command: String,
    args: Vec<String>,
    started_at: EpochMillis,
    managed: Option<Arc<Managed>>,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    stdin_open: AtomicBool,
    /// Cancelled by a close of stdin: a write blocked on a full pipe (the process does not
    /// read) gives up, so that the close never waits behind it.
    stdin_closing: CancellationToken,
    /// Captured output of both streams.
    pub output: Arc<OutputBuffer>,
    exit: watch::Receiver<Option<ExitInfo>>,
}

impl TrackedProcess {
    /// Its exit, once it has exited.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        self.exit_info().is_none()
    }

    /// Waits for its exit.
    pub async fn wait_exit(&self) -> ExitInfo {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(info) => info.unwrap_or_else(lost_exit),
            // The exit task owns the sender and always sends before it ends.
            Err(_) => self.exit_info().unwrap_or_else(lost_exit),
        }
    }

    /// Its supervisor, when it is managed.
    pub fn managed(&self) -> Option<&Arc<Managed>> {
        self.managed.as_ref()
    }

    fn pgid(&self) -> i32 {
        i32::try_from(self.pid).unwrap_or(0)
    }

    fn process_ref(&self) -> ProcessRef {
        self.managed
            .as_ref()
            .map_or_else(|| ProcessRef::plain(self.pid), |m| m.process_ref(self.pid))
    }

    /// Its wire form, `ProcessInfo` (docs/protocol/sandbox-api.md, ProcessInfo).
    /// When this process (this run of a managed one) started, epoch milliseconds.
    pub fn started_at(&self) -> EpochMillis {
        self.started_at
    }

    pub fn info(&self) -> ProcessInfo {
        let exit = self.exit_info();
        ProcessInfo {
            pid: self.pid,
            status: exit.map_or(ProcessStatus::Running, |e| e.status()),
            exit_code: exit.and_then(|e| e.code),
            signal: exit.and_then(|e| e.signal),
            stdin_writable: exit.is_none() && self.stdin_open.load(Ordering::Acquire),
            command: self.command.clone(),
            args: self.args.clone(),
            started_at: self.started_at,
            ended_at: exit.map(|e| e.ended_at),
            oom_killed: exit.is_some_and(|e| e.oom_killed),
            managed: self.managed.as_ref().map(|m| m.info()),
        }
    }

    /// Sends `signal` to its process group.
    pub fn signal(&self, signal: i32) -> Result<(), ProcessError> {
        if !(1..=libc::SIGRTMAX()).contains(&signal) {
            return Err(ProcessError::InvalidSignal(signal));
        }
        if !self.is_running() {
            return Err(self
                .managed
                .as_ref()
                .and_then(|m| m.restarting_after(self.pid))
                .unwrap_or(ProcessError::Exited(self.pid)));
        }
        tree::signal_group(self.pgid(), signal);
        Ok(())
    }

    /// SIGKILLs it and its whole tree (no-op once it has exited).
    pub fn kill(&self) {
        if self.is_running() {
            tree::kill_tree(self.pgid());
        }
    }

    /// Writes a request body to its stdin, chunk by chunk (never the whole body in memory).
    /// Writes wait for each other, and each for the process to read what it wrote (a pipe
    /// holds 64 KiB); a close of stdin ends a waiting or blocked write, which then fails.
    pub async fn write_stdin<S, E>(&self, body: S) -> Result<(), ProcessError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let not_writable = |reason| ProcessError::StdinNotWritable {
            pid: self.pid,
            reason,
        };
        let closed_meanwhile = || not_writable("stdin was closed while this write waited");
        let mut guard = tokio::select! {
            guard = self.stdin.lock() => guard,
            () = self.stdin_closing.cancelled() => return Err(closed_meanwhile()),
        };
        let Some(stdin) = guard.as_mut() else {
            return Err(not_writable("stdin is closed or was not piped"));
        };
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| ProcessError::Body(err.to_string()))?;
            let written = tokio::select! {
                written = stdin.write_all(&chunk) => written,
                () = self.stdin_closing.cancelled() => return Err(closed_meanwhile()),
            };
            if written.is_err() {
                // EPIPE: the process closed its stdin or exited; nothing can be written again.
                *guard = None;
                self.stdin_open.store(false, Ordering::Release);
                return Err(not_writable("the process no longer reads it"));
            }
        }
        Ok(())
    }

    /// Closes its stdin so it reads end of file. A write blocked on a full pipe (or waiting
    /// for one) is ended first, and what it had not written yet is dropped.
    pub async fn close_stdin(&self) -> Result<(), ProcessError> {
        self.stdin_open.store(false, Ordering::Release);
        self.stdin_closing.cancel();
        let mut guard = self.stdin.lock().await;
        if guard.take().is_none() {
            return Err(ProcessError::StdinNotWritable {
                pid: self.pid,
                reason: "stdin is already closed or was not piped",
            });
        }
        Ok(())
    }
}

/// The exit reported when the reaper lost a status (it never does), or a run could not start.
fn lost_exit() -> ExitInfo {
    ExitInfo {
        code: Some(-1),
        signal: None,
        oom_killed: false,
        ended_at: now_millis(),
    }
}

/// A human description of an exit, for the journal.
fn describe_exit(exit: &ExitInfo) -> String {
    match (exit.code, exit.signal) {
        (_, Some(signal)) if exit.oom_killed => {
            format!("was killed by the OOM killer (signal {signal})")
        }
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        (Some(code), None) => format!("exited with code {code}"),
        (None, None) => "exited".to_string(),
    }
}

#[derive(Debug, Default)]
struct Table {
    by_pid: BTreeMap<u32, Arc<TrackedProcess>>,
    /// Managed processes by name (and, when unnamed, by managed id).
    names: HashMap<String, Arc<Managed>>,
    exited: VecDeque<u32>,
}

impl Table {
    fn remove(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
        self.exited.retain(|&p| p != pid);
    }

    /// Drops an old exited process; when it was the last run of a managed process that is no
    /// longer supervised, the name goes too (and its idle supervisor ends), so stopped managed
    /// processes are bounded like any other exited one.
    fn evict(&mut self, pid: u32) {
        let Some(process) = self.by_pid.remove(&pid) else {
            return;
        };
        if let Some(managed) = process.managed()
            && !managed.is_supervising()
            && managed.current().is_some_and(|c| c.pid == pid)
            && self
                .names
                .get(managed.id())
                .is_some_and(|m| Arc::ptr_eq(m, managed))
        {
            self.names.remove(managed.id());
            managed.forget();
        }
    }
}

/// What the table and the supervisors share.
#[derive(Debug)]
pub(crate) struct Inner {
    table: Mutex<Table>,
    launcher: Arc<Launcher>,
    output_limit_bytes: usize,
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // The maps stay consistent even if a holder panicked.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest process name, in bytes: a name is a path segment of every `{p}` route and is
/// written into each of the process's log records.
const MAX_NAME_BYTES: usize = 255;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.bytes().all(|b| b.is_ascii_digit())
        && !name.contains('/')
        && !name.chars().any(char::is_control)
        // `.` and `..` would resolve to another route in any URL that names them.
        && !matches!(name, "run" | "." | "..")
}

impl Inner {
    /// Spawns a run of `req` (for `managed`, if any) and starts watching it.
    fn spawn(
        self: &Arc<Self>,
        req: &StartProcessRequest,
        managed: Option<&Arc<Managed>>,
    ) -> Result<Arc<TrackedProcess>, ProcessError> {
        let mut table = lock(&self.table);
        self.spawn_locked(&mut table, req, managed)
    }

    /// [`spawn`](Self::spawn) with the table already locked (so a name check and the spawn
    /// are one step).
    fn spawn_locked(
        self: &Arc<Self>,
        table: &mut Table,
        req: &StartProcessRequest,
        managed: Option<&Arc<Managed>>,
    ) -> Result<Arc<TrackedProcess>, ProcessError> {
        let spec = LaunchSpec {
            command: &req.command,
            args: &req.args,
            env: &req.env,
            working_dir: req.working_dir.as_deref(),
            user: req.user.as_ref(),
            stdin: req.stdin_mode,
            stdout: req.stdout_mode,
            stderr: req.stderr_mode,
            terminal: None,
        };
        let spawned = self.launcher.launch(&spec)?;
        let (exit_tx, exit_rx) = watch::channel(None);
        let output = Arc::new(OutputBuffer::new(self.output_limit_bytes));
        let process = Arc::new(TrackedProcess {
            pid: spawned.pid,
            command: req.command.clone(),
            args: req.args.clone(),
            started_at: spawned.started_at,
            managed: managed.cloned(),
            stdin_open: AtomicBool::new(spawned.stdin.is_some()),
            stdin_closing: CancellationToken::new(),
            stdin: tokio::sync::Mutex::new(spawned.stdin),
            output: Arc::clone(&output),
            exit: exit_rx,
        });
        // A reused pid replaces the stale entry of the process that had it before.
        table.remove(spawned.pid);
        table.by_pid.insert(spawned.pid, Arc::clone(&process));
        if let Some(managed) = managed {
            managed.set_current(&process);
        }
        let source = process.process_ref();
        journal_started(&source, &req.command, &req.args);

        let (gone_tx, gone_rx) = watch::channel(false);
        let pumps: Vec<_> = [
            (spawned.stdout, OutputStream::Stdout),
            (spawned.stderr, OutputStream::Stderr),
        ]
        .into_iter()
        .filter_map(|(rx, stream)| {
            let sink = JournaledSink {
                inner: BufferSink(Arc::clone(&output)),
                process: source.clone(),
            };
            rx.map(|rx| tokio::spawn(output::pump(rx, stream, sink, gone_rx.clone())))
        })
        .collect();
        let inner = Arc::clone(self);
        let supervisor = managed.cloned();
        let pid = spawned.pid;
        let oom_baseline = spawned.oom_baseline;
        let exit = spawned.exit;
        tokio::spawn(async move {
            // The reaper never drops a registered sender; an error would mean no status.
            let status = exit.await.map_or(
                ExitStatus {
                    code: Some(-1),
                    signal: None,
                },
                ExitStatus::from_raw,
            );
            let info = ExitInfo::new(status, oom_baseline);
            gone_tx.send_replace(true);
            for pump in pumps {
                if let Ok(end) = pump.await {
                    output::settle(end);
                }
            }
            output.finish();
            journal_exit(&source, &info);
            if let Some(managed) = supervisor {
                managed.note_exit(info);
            }
            // Sent last: whoever waits for the exit sees the output and the journal complete.
            exit_tx.send_replace(Some(info));
            let mut table = lock(&inner.table);
            table.exited.push_back(pid);
            while table.exited.len() > MAX_EXITED_RETAINED {
                if let Some(oldest) = table.exited.pop_front() {
                    table.evict(oldest);
                }
            }
        });
        Ok(process)
    }
}

/// Journals the start of a process.
pub(super) fn journal_started(source: &ProcessRef, command: &str, args: &[String]) {
    let mut started = journal::event(
        source,
        LogLevel::Info,
        JournalEvent::ProcessStarted,
        format!(
            "process {} started: {}",
            source.pid,
            command_line(command, args)
        ),
    );
    started.command = Some(command.to_string());
    Journal::global().push(started);
}

/// `command args…` for the journal, cut to a readable length.
fn command_line(command: &str, args: &[String]) -> String {
    let mut line = command.to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// Journals the end of a process (and its OOM kill).
pub(super) fn journal_exit(source: &ProcessRef, info: &ExitInfo) {
    let journal = Journal::global();
    journal.flush_dropped(source.pid);
    let failed = info.code != Some(0);
    let mut record = journal::event(
        source,
        if failed {
            LogLevel::Warn
        } else {
            LogLevel::Info
        },
        JournalEvent::ProcessExited,
        format!("process {} {}", source.pid, describe_exit(info)),
    );
    record.exit_code = info.code;
    record.signal = info.signal;
    journal.push(record);
    if info.oom_killed {
        journal.push(journal::event(
            source,
            LogLevel::Error,
            JournalEvent::OomKilled,
            format!(
                "process {} was killed by the OOM killer: the sandbox ran out of memory",
                source.pid
            ),
        ));
    }
}

/// The processes started through `POST /api/v1/processes`.
#[derive(Debug)]
pub struct ProcessTable {
    inner: Arc<Inner>,
}

impl ProcessTable {
    /// An empty table whose processes keep at most `output_limit_bytes` of output each.
    pub fn new(launcher: Arc<Launcher>, output_limit_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                table: Mutex::default(),
                launcher,
                output_limit_bytes,
            }),
        }
    }

    /// Starts a process (`POST /api/v1/processes`); a managed one gets its supervisor. Must
    /// run inside a tokio runtime.
    pub fn start(&self, req: &StartProcessRequest) -> Result<Arc<TrackedProcess>, ProcessError> {
        if let Some(name) = &req.name
            && !valid_name(name)
        {
            return Err(ProcessError::InvalidName(name.clone()));
        }
        if let Some(why) = managed::invalid_reason(req) {
            return Err(ProcessError::Invalid(why));
        }
        // Held across the spawn so that two starts cannot both take a free name.
        let mut table = lock(&self.inner.table);
        if let Some(name) = &req.name
            && table.names.get(name).is_some_and(|m| m.holds_name())
        {
            return Err(ProcessError::NameTaken(name.clone()));
        }
        if !req.is_managed() {
            return self.inner.spawn_locked(&mut table, req, None);
        }
        let (managed, commands) = Managed::new(req);
        let process = self.inner.spawn_locked(&mut table, req, Some(&managed))?;
        table
            .names
            .insert(managed.id().to_string(), Arc::clone(&managed));
        drop(table);
        tokio::spawn(managed::supervise(
            Arc::clone(&self.inner),
            managed,
            commands,
        ));
        Ok(process)
    }

    /// Looks up `{p}`: an all-digit key is a pid, anything else a managed-process name (the
    /// current run of it).
    pub fn get(&self, key: &str) -> Result<Arc<TrackedProcess>, ProcessError> {
        let table = lock(&self.inner.table);
        let found = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            key.parse::<u32>()
                .ok()
                .and_then(|pid| table.by_pid.get(&pid).cloned())
        } else {
            table.names.get(key).and_then(|m| m.current())
        };
        found.ok_or_else(|| ProcessError::NotFound(key.to_string()))
    }

    /// `ProcessInfo` of every tracked process, by pid.
    pub fn list(&self) -> Vec<ProcessInfo> {
        let processes: Vec<_> = lock(&self.inner.table).by_pid.values().cloned().collect();
        processes.iter().map(|p| p.info()).collect()
    }

    /// `POST /processes/{p}/restart`: restarts a managed process now; returns the new run.
    pub async fn restart(&self, key: &str) -> Result<Arc<TrackedProcess>, ProcessError> {
        let process = self.get(key)?;
        let managed = process
            .managed()
            .cloned()
            .ok_or_else(|| ProcessError::NotManaged(key.to_string()))?;
        managed.restart().await
    }

    /// `DELETE /processes/{p}`: a managed process stops being supervised and is terminated;
    /// a plain running process is killed (it stays listed, as signaled); an exited one is
    /// removed from the table (with its name).
    pub fn delete(&self, key: &str) -> Result<(), ProcessError> {
        let process = self.get(key)?;
        if let Some(managed) = process.managed()
            && managed.is_supervising()
        {
            managed.stop();
            return Ok(());
        }
        if process.is_running() {
            process.kill();
            return Ok(());
        }
        let mut table = lock(&self.inner.table);
        table.remove(process.pid);
        if let Some(managed) = process.managed()
            && managed.current().is_some_and(|c| c.pid == process.pid)
        {
            if table
                .names
                .get(managed.id())
                .is_some_and(|m| Arc::ptr_eq(m, managed))
            {
                table.names.remove(managed.id());
            }
            managed.forget();
        }
        Ok(())
    }

    /// Kills every process of the sandbox except the agent and the running
    /// processes named in `keep` (the image's services) with their trees.
    /// Other managed processes stop being supervised first, so nothing restarts them.
    pub fn stop_all(&self, keep: &[String]) -> usize {
        let kept: Vec<i32> = {
            let table = lock(&self.inner.table);
            for (name, managed) in &table.names {
                if !keep.contains(name) {
                    managed.stop();
                }
            }
            keep.iter()
                .filter_map(|name| table.names.get(name))
                .filter_map(|m| m.current())
                .filter(|p| p.is_running())
                .filter_map(|p| i32::try_from(p.pid).ok())
                .collect()
        };
        tree::kill_all_but(&kept)
    }

    /// (running, tracked) process counts.
    pub fn counts(&self) -> (usize, usize) {
        let table = lock(&self.inner.table);
        let running = table.by_pid.values().filter(|p| p.is_running()).count();
        (running, table.by_pid.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_pids_are_invalid() {
        assert!(valid_name("web"));
        assert!(valid_name("web-1"));
        assert!(!valid_name("1234"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        assert!(!valid_name("run"));
        assert!(!valid_name("."));
        assert!(!valid_name(".."));
        assert!(valid_name("..."));
        assert!(valid_name("wéb server"));
        assert!(valid_name(&"a".repeat(255)));
        assert!(!valid_name(&"a".repeat(256)));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name("a\u{7f}"));
    }

    #[test]
    fn exit_status_maps_to_wire_status() {
        let exited = ExitInfo {
            code: Some(0),
            signal: None,
            oom_killed: false,
            ended_at: 0,
        };
        assert_eq!(exited.status(), ProcessStatus::Exited);
        let signaled = ExitInfo {
            code: None,
            signal: Some(15),
            ..exited
        };
        assert_eq!(signaled.status(), ProcessStatus::Signaled);
        let oom = ExitInfo {
            signal: Some(9),
            oom_killed: true,
            ..signaled
        };
        assert_eq!(oom.status(), ProcessStatus::OomKilled);
    }
}
