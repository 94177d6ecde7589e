//! `POST /api/v1/processes/run`: run a command to completion, streaming its output as SSE
//! (docs/protocol/sandbox-api.md, Run a command; docs/protocol/streaming.md, The run stream).
//!
//! Order of events: `started`, then output lines of both streams in read order, then exactly
//! one `exit`. The exit event is sent after the process exited *and* its pipes are drained:
//! to end of file, or until they stayed idle for [`EXIT_DRAIN_IDLE`] after the exit (a
//! background grandchild may hold them open forever; its later output is read and dropped,
//! not cut off with SIGPIPE).
//!
//! On timeout the whole process tree is killed and the exit reason is `timed_out`. If the
//! client goes away before the end, the tree is killed too, [`CLIENT_GONE_GRACE`] later
//! unless it ends first: nobody can see the result.
//!
//! [`EXIT_DRAIN_IDLE`]: crate::output::EXIT_DRAIN_IDLE

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alcove_wire::process::{
    ExitEvent, ExitReason, OutputMode, OutputStream, RunRequest, StartedEvent, StdinMode,
};
use alcove_wire::time::EpochMillis;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::ExitInfo;
use super::spawn::{LaunchError, LaunchSpec, Launcher, Spawned};
use super::tree;
use crate::journal::{JournaledSink, ProcessRef};
use crate::output::{self, LineSink, Lines};
use crate::output_events;
use crate::pid1::ExitStatus;
use crate::sse;

/// Encoded SSE chunks queued between the pumps and the HTTP body. Small on purpose: a slow
/// client slows the process down (its pipe fills) instead of growing agent memory.
const QUEUE_CHUNKS: usize = 16;

/// Delivers lines as encoded events into the run's SSE channel: one `output` event each, or
/// one `output_batch` event per read when the client asked for batches.
#[derive(Debug, Clone)]
struct SseSink {
    tx: mpsc::Sender<Bytes>,
    batch: bool,
}

impl LineSink for SseSink {
    async fn deliver(
        &mut self,
        stream: OutputStream,
        timestamp: EpochMillis,
        lines: Lines,
    ) -> bool {
        let capacity = output_events::capacity_for(lines.len(), lines.text_len(), self.batch);
        let mut buf = Vec::with_capacity(capacity);
        let all = 0..lines.len();
        if self.batch {
            let continued = lines.continued_in(all).collect();
            output_events::push_batch(&mut buf, stream, timestamp, lines.iter(), continued);
        } else {
            let continued = |i| lines.is_continued(i);
            output_events::push_lines(&mut buf, stream, timestamp, lines.iter(), continued);
        }
        self.tx.send(Bytes::from(buf)).await.is_ok()
    }
}

/// Decrements the count of runs in progress when a run ends, however it ends.
#[derive(Debug)]
struct ActiveRun(Arc<AtomicUsize>);

impl Drop for ActiveRun {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts the command and returns the channel of encoded SSE chunks (the `started` event is
/// already queued). Fails before anything is streamed when the command cannot start.
pub fn start(
    launcher: &Launcher,
    req: &RunRequest,
    active_runs: &Arc<AtomicUsize>,
) -> Result<mpsc::Receiver<Bytes>, LaunchError> {
    let spawned = launcher.launch(&LaunchSpec {
        command: &req.command,
        args: &req.args,
        env: &req.env,
        working_dir: req.working_dir.as_deref(),
        user: req.user.as_ref(),
        stdin: StdinMode::Closed,
        stdout: OutputMode::Capture,
        stderr: OutputMode::Capture,
        terminal: None,
    })?;
    super::journal_started(&ProcessRef::plain(spawned.pid), &req.command, &req.args);
    active_runs.fetch_add(1, Ordering::AcqRel);
    let active = ActiveRun(Arc::clone(active_runs));
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    let started = sse::event(
        "started",
        &StartedEvent {
            pid: spawned.pid,
            started_at: spawned.started_at,
        },
    );
    // The channel is new and empty, so this cannot fail for lack of room.
    let _ = tx.try_send(started);
    let timeout = req
        .effective_timeout_secs()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
    tokio::spawn(supervise(spawned, timeout, tx, req.batch_output, active));
    Ok(rx)
}

/// Why the wait for the process ended.
enum Ending {
    Exited,
    TimedOut,
    ClientGone,
}

/// How long a run whose client went away may still end on its own before its tree is
/// killed. A restored copy of a sandbox (a copy, a memory snapshot) gets every connection
/// back closed, and its agent runs while CRIU is still letting the other restored processes
/// go, one by one: a process killed in between makes CRIU fail the whole restore. A second
/// is ample for CRIU, and nothing for a run nobody reads.
const CLIENT_GONE_GRACE: Duration = Duration::from_secs(1);

async fn supervise(
    spawned: Spawned,
    timeout: Option<Duration>,
    tx: mpsc::Sender<Bytes>,
    batch: bool,
    _active: ActiveRun,
) {
    let (gone_tx, gone_rx) = watch::channel(false);
    let pumps: Vec<_> = [
        (spawned.stdout, OutputStream::Stdout),
        (spawned.stderr, OutputStream::Stderr),
    ]
    .into_iter()
    .filter_map(|(rx, stream)| {
        let sink = JournaledSink {
            inner: SseSink {
                tx: tx.clone(),
                batch,
            },
            process: ProcessRef::plain(spawned.pid),
        };
        rx.map(|rx| tokio::spawn(output::pump(rx, stream, sink, gone_rx.clone())))
    })
    .collect();

    let pgid = i32::try_from(spawned.pid).unwrap_or(0);
    let mut exit = spawned.exit;
    let deadline = async {
        match timeout {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    let (ending, raw) = tokio::select! {
        raw = &mut exit => (Ending::Exited, raw.ok()),
        () = deadline => {
            tree::kill_tree(pgid);
            (Ending::TimedOut, exit.await.ok())
        }
        () = tx.closed() => {
            let raw = match tokio::time::timeout(CLIENT_GONE_GRACE, &mut exit).await {
                Ok(raw) => raw.ok(),
                Err(_) => {
                    tree::kill_tree(pgid);
                    exit.await.ok()
                }
            };
            (Ending::ClientGone, raw)
        }
    };
    // The reaper never drops a registered sender; an error would mean no status at all.
    let status = raw.map_or(
        ExitStatus {
            code: Some(-1),
            signal: None,
        },
        ExitStatus::from_raw,
    );
    gone_tx.send_replace(true);
    drop(gone_rx);
    for pump in pumps {
        if let Ok(end) = pump.await {
            output::settle(end);
        }
    }
    let info = ExitInfo::new(status, spawned.oom_baseline);
    super::journal_exit(&ProcessRef::plain(spawned.pid), &info);
    if matches!(ending, Ending::ClientGone) {
        return;
    }
    let _ = tx
        .send(sse::event("exit", &exit_event(&ending, info)))
        .await;
}

fn exit_event(ending: &Ending, info: ExitInfo) -> ExitEvent {
    let reason = match ending {
        Ending::TimedOut => ExitReason::TimedOut,
        _ if info.oom_killed => ExitReason::OomKilled,
        _ if info.signal.is_some() => ExitReason::Signaled,
        _ => ExitReason::Exited,
    };
    ExitEvent {
        exit_code: info.code,
        signal: info.signal,
        oom_killed: info.oom_killed && !matches!(ending, Ending::TimedOut),
        reason,
    }
}
