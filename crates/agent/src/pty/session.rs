//! One PTY session: the terminal, the process on it, the output no client has received yet,
//! and the one client attached to it (docs/protocol/streaming.md, PTY WebSocket).
//!
//! Two tasks run per session. The **pump** reads the master into the pending queue until the
//! terminal is drained after the process exited (see [`pump`]). The **idle watcher** removes
//! the session once it stayed without a client for too long (see [`watch_idle`]).
//!
//! Output flow: while a client is attached *and* has sent READY, the pump stops reading when
//! [`SessionLimits::buffer_bytes`] are pending, so a slow client slows the program down (as a
//! real terminal does). Otherwise (no client yet, or no READY yet) reading goes on and the
//! oldest pending bytes are dropped past the bound: a program must never block because nobody
//! watches. Output handed to a client's socket is gone from the queue: a client that
//! reattaches gets what was produced since, not a replay.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use alcove_wire::pty::{self, PtySessionInfo};
use alcove_wire::time::{EpochMillis, now_millis};
use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::queue::OutputQueue;
use super::term::Master;
use crate::output::EXIT_DRAIN_IDLE;
use crate::pid1::{ExitStatus, RawWaitStatus};
use crate::process::tree;

/// Bytes read from the master at once (a terminal rarely has more ready; the buffer lives as
/// long as the session's pump).
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Largest output frame sent to a client (pending chunks are merged up to this).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// After the process exited, the terminal is read at most this long: a background process
/// that inherited it and keeps writing must not hold back the exit frame forever.
const EXIT_DRAIN_MAX: Duration = Duration::from_secs(2);

/// Bounds of every session of a table.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Pending output kept per session.
    pub buffer_bytes: usize,
    /// A live session without a client for this long is killed and removed; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// A session whose process exited is removed after this long without a client.
    pub exited_linger: Duration,
}

/// The sessions of a table, by id (the idle watcher removes its session from it).
pub type SessionMap = Mutex<HashMap<String, Arc<PtySession>>>;

/// Locks a mutex, going on if a holder panicked (every update leaves the data consistent).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the session is, as requested.
#[derive(Debug)]
pub struct SessionSpec {
    /// Session id.
    pub id: String,
    /// Secret the WebSocket upgrade must present.
    pub token: String,
    /// The command as requested.
    pub command: String,
    /// The arguments as requested.
    pub args: Vec<String>,
    /// Initial rows.
    pub rows: u16,
    /// Initial columns.
    pub cols: u16,
}

#[derive(Debug)]
struct State {
    rows: u16,
    cols: u16,
    pending: OutputQueue,
    /// Exit code (128+signal after a signal) and time, once the process was reaped.
    exit: Option<(i32, EpochMillis)>,
    /// The pump is done: everything the process wrote is in `pending`.
    drained: bool,
    /// Id of the attached client.
    client: Option<u64>,
    last_client: u64,
    /// The attached client sent READY.
    ready: bool,
    /// When the session last became client-less (or was created).
    detached_at: Instant,
    /// Deleted or reaped: attached clients are told, nothing new starts.
    closed: bool,
}

impl State {
    /// Whether an attached client will take pending output (so the pump may wait for it).
    fn client_will_read(&self) -> bool {
        self.client.is_some() && self.ready && !self.closed
    }
}

/// A PTY session (see the module docs).
#[derive(Debug)]
pub struct PtySession {
    id: String,
    token: String,
    pid: u32,
    command: String,
    args: Vec<String>,
    created_at: EpochMillis,
    master: Master,
    limits: SessionLimits,
    state: Mutex<State>,
    changed: watch::Sender<()>,
}

impl PtySession {
    /// Wraps a started process and starts the session's pump and idle watcher. Must run
    /// inside a tokio runtime.
    pub fn start(
        spec: SessionSpec,
        pid: u32,
        master: Master,
        exit: oneshot::Receiver<RawWaitStatus>,
        limits: SessionLimits,
        table: Weak<SessionMap>,
    ) -> Arc<Self> {
        let session = Arc::new(Self {
            id: spec.id,
            token: spec.token,
            pid,
            command: spec.command,
            args: spec.args,
            created_at: now_millis(),
            master,
            limits,
            state: Mutex::new(State {
                rows: spec.rows,
                cols: spec.cols,
                pending: OutputQueue::default(),
                exit: None,
                drained: false,
                client: None,
                last_client: 0,
                ready: false,
                detached_at: Instant::now(),
                closed: false,
            }),
            changed: watch::Sender::new(()),
        });
        tokio::spawn(pump(Arc::clone(&session), exit));
        tokio::spawn(watch_idle(Arc::clone(&session), table));
        session
    }

    /// Session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `candidate` is the session's token.
    pub fn token_matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.token.as_bytes(), candidate.as_bytes())
    }

    /// Whether the process is still running (not yet reaped).
    pub fn is_alive(&self) -> bool {
        self.state().exit.is_none()
    }

    /// The session as `GET /pty/{id}` reports it.
    pub fn info(&self) -> PtySessionInfo {
        let state = self.state();
        PtySessionInfo {
            session_id: self.id.clone(),
            pid: self.pid,
            command: self.command.clone(),
            args: self.args.clone(),
            rows: state.rows,
            cols: state.cols,
            created_at: self.created_at,
            ended_at: state.exit.map(|(_, at)| at),
            exit_code: state.exit.map(|(code, _)| code),
            is_alive: state.exit.is_none(),
            attached: state.client.is_some(),
        }
    }

    /// Sets the terminal size (callers validate it).
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        let mut state = self.state();
        self.master.resize(rows, cols)?;
        state.rows = rows;
        state.cols = cols;
        Ok(())
    }

    /// Attaches a client, replacing the one attached before (which is told so).
    pub fn attach(self: &Arc<Self>) -> Attachment {
        let id = {
            let mut state = self.state();
            state.last_client += 1;
            state.client = Some(state.last_client);
            state.ready = false;
            state.last_client
        };
        self.changed.send_replace(());
        Attachment {
            session: Arc::clone(self),
            id,
        }
    }

    /// Ends the session: kills the process tree if it still runs and tells an attached
    /// client. The caller removes it from the table.
    pub fn close(&self) {
        let alive = {
            let mut state = self.state();
            state.closed = true;
            state.exit.is_none()
        };
        // Only before the reap: afterwards the pid may already belong to someone else.
        if alive {
            tree::kill_tree(i32::try_from(self.pid).unwrap_or(0));
        }
        self.changed.send_replace(());
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guessed
/// token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What an attached client gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Terminal output.
    Output(Bytes),
    /// The process exited with this code and all its output was delivered.
    Exit(i32),
    /// Another client attached.
    Replaced,
    /// The session was deleted or reaped.
    Terminated,
}

/// One client's hold on a session; dropping it detaches the client.
#[derive(Debug)]
pub struct Attachment {
    session: Arc<PtySession>,
    id: u64,
}

impl Attachment {
    /// A receiver to pass to [`next`](Self::next).
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.session.changed.subscribe()
    }

    /// Waits for the next thing to send to the client. Output is held back until
    /// [`ready`](Self::ready).
    pub async fn next(&self, changes: &mut watch::Receiver<()>) -> Delivery {
        loop {
            // Marked seen before looking, so a change made after the look wakes us.
            changes.borrow_and_update();
            if let Some(delivery) = self.poll() {
                return delivery;
            }
            if changes.changed().await.is_err() {
                return Delivery::Terminated;
            }
        }
    }

    fn poll(&self) -> Option<Delivery> {
        let mut state = self.session.state();
        if state.closed {
            return Some(Delivery::Terminated);
        }
        if state.client != Some(self.id) {
            return Some(Delivery::Replaced);
        }
        if !state.ready {
            return None;
        }
        if let Some(bytes) = state.pending.pop(MAX_FRAME_BYTES) {
            drop(state);
            // There is room again: wake a pump waiting for the client.
            self.session.changed.send_replace(());
            return Some(Delivery::Output(bytes));
        }
        match (state.drained, state.exit) {
            (true, Some((code, _))) => Some(Delivery::Exit(code)),
            _ => None,
        }
    }

    fn is_current(&self) -> bool {
        let state = self.session.state();
        state.client == Some(self.id) && !state.closed
    }

    /// The client sent READY: pending output may flow.
    pub fn ready(&self) {
        {
            let mut state = self.session.state();
            if state.client != Some(self.id) {
                return;
            }
            state.ready = true;
        }
        self.session.changed.send_replace(());
    }

    /// Puts back output that could not be sent, for the next client.
    pub fn unsend(&self, bytes: Bytes) {
        self.session.state().pending.push_front(bytes);
    }

    /// Types `bytes` into the terminal (waits while its input queue is full). Input from a
    /// replaced client is dropped.
    pub async fn input(&self, bytes: &[u8]) -> io::Result<()> {
        if !self.is_current() {
            return Ok(());
        }
        self.session.master.write_all(bytes).await
    }

    /// Resizes the terminal; sizes outside 1..=1000 are ignored (clients send 0×0 while
    /// minimised).
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        if !self.is_current() || !pty::valid_dimension(rows) || !pty::valid_dimension(cols) {
            return Ok(());
        }
        self.session.resize(rows, cols)
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        {
            let mut state = self.session.state();
            if state.client != Some(self.id) {
                return;
            }
            state.client = None;
            state.ready = false;
            state.detached_at = Instant::now();
        }
        self.session.changed.send_replace(());
    }
}

/// What one step of reading the master gave.
enum Chunk {
    Data(Bytes),
    /// `EIO` (every holder of the slave closed it), an error, or the drain after the exit
    /// ended.
    End,
}

/// Reads the terminal into the pending queue until the process was reaped and the terminal
/// is drained: to `EIO`, or until it stayed idle for [`EXIT_DRAIN_IDLE`] after the exit, or
/// [`EXIT_DRAIN_MAX`] passed since the exit. Then marks the session drained.
async fn pump(session: Arc<PtySession>, mut exit: oneshot::Receiver<RawWaitStatus>) {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut changes = session.changed.subscribe();
    let mut reaped = false;
    let mut drain_until = None;
    let mut eof = false;
    while !(eof && reaped) {
        tokio::select! {
            raw = &mut exit, if !reaped => {
                // The reaper never drops a registered sender; an error would mean no status.
                let unknown = ExitStatus { code: Some(-1), signal: None };
                let status = raw.map_or(unknown, ExitStatus::from_raw);
                let code = pty::exit_code(status.code, status.signal);
                session.state().exit = Some((code, now_millis()));
                session.changed.send_replace(());
                reaped = true;
                drain_until = Some(Instant::now() + EXIT_DRAIN_MAX);
            }
            chunk = next_chunk(&session, &mut changes, &mut buf, drain_until), if !eof => {
                match chunk {
                    Chunk::Data(bytes) => {
                        let mut state = session.state();
                        state.pending.push(bytes);
                        if !state.client_will_read() {
                            state.pending.trim_to(session.limits.buffer_bytes);
                        }
                        drop(state);
                        session.changed.send_replace(());
                    }
                    Chunk::End => eof = true,
                }
            }
        }
    }
    session.state().drained = true;
    session.changed.send_replace(());
}

/// Waits until there is room for more output, then reads one chunk (within the drain
/// deadline once the process exited).
async fn next_chunk(
    session: &PtySession,
    changes: &mut watch::Receiver<()>,
    buf: &mut [u8],
    drain_until: Option<Instant>,
) -> Chunk {
    wait_for_room(session, changes).await;
    let read = match drain_until {
        None => session.master.read(buf).await,
        Some(until) => {
            let idle = EXIT_DRAIN_IDLE.min(until.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(idle, session.master.read(buf)).await {
                Ok(read) => read,
                Err(_idle) => return Chunk::End,
            }
        }
    };
    match read {
        Ok(0) | Err(_) => Chunk::End,
        Ok(n) => Chunk::Data(Bytes::copy_from_slice(&buf[..n])),
    }
}

/// Returns once fewer than the buffer bound of bytes are pending. Waits only while a READY
/// client is attached (it will take them); otherwise drops the oldest pending bytes.
async fn wait_for_room(session: &PtySession, changes: &mut watch::Receiver<()>) {
    let limit = session.limits.buffer_bytes;
    loop {
        changes.borrow_and_update();
        {
            let mut state = session.state();
            if state.pending.len() < limit {
                return;
            }
            if !state.client_will_read() {
                state.pending.trim_to(limit);
                return;
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Removes the session once it has been without a client for too long: the exited-linger
/// time after its process exited, the idle timeout while it still runs (the process tree is
/// killed then). Ends when the session is closed by someone else.
async fn watch_idle(session: Arc<PtySession>, table: Weak<SessionMap>) {
    let mut changes = session.changed.subscribe();
    loop {
        changes.borrow_and_update();
        let deadline = {
            let state = session.state();
            if state.closed {
                return;
            }
            let limit = match (state.client, state.exit) {
                (Some(_), _) => None,
                (None, Some(_)) => Some(session.limits.exited_linger),
                (None, None) => session.limits.idle_timeout,
            };
            limit.map(|limit| state.detached_at + limit)
        };
        match deadline {
            Some(deadline) if deadline <= Instant::now() => break,
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
            None => {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        }
    }
    if let Some(table) = table.upgrade() {
        let mut sessions = lock(&table);
        if sessions
            .get(&session.id)
            .is_some_and(|s| Arc::ptr_eq(s, &session))
        {
            sessions.remove(&session.id);
        }
    }
    session.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_an_exact_match() {
        assert!(constant_time_eq(b"abc123", b"abc123"));
        assert!(!constant_time_eq(b"abc123", b"abc124"));
        assert!(!constant_time_eq(b"abc123", b"abc12"));
        assert!(!constant_time_eq(b"abc123", b""));
    }
}
