//! Supervised ("managed") processes: a process started with a `name`, a `restart` policy or a
//! `health_check` gets a supervisor task that restarts it after it ends (as its policy says,
//! with a growing back-off, at most `max_restarts` times), probes its health and restarts it
//! when the probes keep failing, and stops it for good on `DELETE`.
//!
//! Each run of the command is its own tracked process with its own pid; the name (or the
//! managed id) always addresses the current run. The supervisor's state is shared by all
//! runs, so every run's `ProcessInfo` shows the same `managed` section.
//!
//! Rules (docs/protocol/sandbox-api.md, Managed processes):
//! * `on_failure` restarts after a non-zero exit, a signal, or failed health checks;
//!   `always` after every exit; `never` does not restart (a failing health check then only
//!   marks the process unhealthy).
//! * The n-th restart waits `min(initial_backoff_ms * 2^(n-1), max_backoff_ms)`.
//! * A run that stayed up for [`STABLE_RUN_MS`] was no crash loop: when it ends, the count
//!   that `max_restarts` and the back-off go by starts again, as after a user's restart (a
//!   server that fails once a day is restarted after the initial back-off every time, and
//!   is never given up on for failures weeks apart). `restart_count` keeps counting.
//! * `POST /restart` restarts at once (SIGTERM, then SIGKILL after [`STOP_GRACE`]), also a
//!   stopped process, whose supervision then resumes; it counts as a restart.
//! * `DELETE` stops supervision first, then the process (SIGTERM, then SIGKILL).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use alcove_wire::journal::{JournalEvent, LogLevel};
use alcove_wire::process::{
    HealthCheck, HealthStatus, ManagedExit, ManagedInfo, ManagedStatus, RestartConfig,
    RestartPolicy, StartProcessRequest,
};
use alcove_wire::time::{EpochMillis, now_millis};
use tokio::sync::{mpsc, oneshot};

use super::{ExitInfo, Inner, ProcessError, TrackedProcess, health, tree};
use crate::journal::{self, Journal, ProcessRef};

/// Time a stopped or restarted process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How long a run must stay up for its end to start the restart budget afresh.
pub const STABLE_RUN_MS: i64 = 60_000;

/// Largest accepted back-off (one day): beyond it a restart is never in practice.
const MAX_BACKOFF_MS: u64 = 86_400_000;

/// What the API asks of a supervisor.
#[derive(Debug)]
pub(super) enum Command {
    /// Restart now; the new run (or why it could not start) is sent back.
    Restart(oneshot::Sender<Result<Arc<TrackedProcess>, ProcessError>>),
    /// Stop the process and do not restart it.
    Stop,
    /// The entry was removed or its name reused: end the supervisor.
    Forget,
}

#[derive(Debug)]
struct State {
    status: ManagedStatus,
    restart_count: u32,
    /// Restarts the policy made since a user last started the process (at start or with
    /// `restart_process`): what `max_restarts` and the back-off count, so a user's restart
    /// of a process that was given up on gives it its whole budget again.
    policy_restarts: u32,
    health_status: HealthStatus,
    consecutive_health_failures: u32,
    last_exit: Option<ExitInfo>,
    last_error: Option<String>,
    next_restart_at: Option<EpochMillis>,
    current: Arc<TrackedProcess>,
}

/// The supervisor state of one managed process.
#[derive(Debug)]
pub struct Managed {
    /// Stable id: the name, or `process-<first pid>` (set at the first spawn).
    id: OnceLock<String>,
    /// The name given at start.
    pub name: Option<String>,
    restart: RestartConfig,
    health_check: Option<HealthCheck>,
    request: StartProcessRequest,
    state: Mutex<Option<State>>,
    commands: mpsc::UnboundedSender<Command>,
}

/// Why a start request's supervision settings are unusable; `None` when they are fine.
pub fn invalid_reason(req: &StartProcessRequest) -> Option<String> {
    if let Some(restart) = &req.restart {
        if restart.initial_backoff_ms > MAX_BACKOFF_MS || restart.max_backoff_ms > MAX_BACKOFF_MS {
            return Some(format!(
                "restart.initial_backoff_ms and restart.max_backoff_ms must be at most {MAX_BACKOFF_MS}"
            ));
        }
        if restart.max_backoff_ms < restart.initial_backoff_ms {
            return Some(format!(
                "restart.max_backoff_ms ({}) must not be below restart.initial_backoff_ms ({})",
                restart.max_backoff_ms, restart.initial_backoff_ms
            ));
        }
    }
    req.health_check.as_ref().and_then(health::invalid_reason)
}

impl Managed {
    /// A supervisor entry for `req`, whose first run is to be spawned; the receiver goes to
    /// [`supervise`].
    pub(super) fn new(req: &StartProcessRequest) -> (Arc<Self>, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let restart = req.restart.clone().unwrap_or(RestartConfig {
            policy: RestartPolicy::Never,
            ..RestartConfig::default()
        });
        let managed = Arc::new(Self {
            id: OnceLock::new(),
            name: req.name.clone(),
            restart,
            health_check: req.health_check.clone(),
            request: req.clone(),
            state: Mutex::new(None),
            commands: tx,
        });
        (managed, rx)
    }

    /// Stable id: the name, or `process-<first pid>`.
    pub fn id(&self) -> &str {
        self.id.get().map_or("", String::as_str)
    }

    fn lock(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `process` as the current run (called under the table lock at spawn).
    pub(super) fn set_current(&self, process: &Arc<TrackedProcess>) {
        self.id.get_or_init(|| {
            self.name
                .clone()
                .unwrap_or_else(|| format!("process-{}", process.pid))
        });
        let (status, health) = if self.health_check.is_some() {
            (ManagedStatus::Starting, HealthStatus::Starting)
        } else {
            (ManagedStatus::Running, HealthStatus::Disabled)
        };
        let mut state = self.lock();
        match state.as_mut() {
            Some(state) => {
                state.current = Arc::clone(process);
                state.status = status;
                state.health_status = health;
                state.consecutive_health_failures = 0;
                state.next_restart_at = None;
            }
            None => {
                *state = Some(State {
                    status,
                    restart_count: 0,
                    policy_restarts: 0,
                    health_status: health,
                    consecutive_health_failures: 0,
                    last_exit: None,
                    last_error: None,
                    next_restart_at: None,
                    current: Arc::clone(process),
                });
            }
        }
    }

    /// The current run.
    pub fn current(&self) -> Option<Arc<TrackedProcess>> {
        self.lock().as_ref().map(|s| Arc::clone(&s.current))
    }

    /// Whether the supervisor still restarts the process (it is not stopped).
    pub fn is_supervising(&self) -> bool {
        self.lock()
            .as_ref()
            .is_some_and(|s| s.status != ManagedStatus::Stopped)
    }

    /// Whether the name is still in use: supervised, or its current run still runs.
    pub fn holds_name(&self) -> bool {
        self.is_supervising() || self.current().is_some_and(|p| p.is_running())
    }

    /// The wire form of the supervisor state.
    pub fn info(&self) -> ManagedInfo {
        let state = self.lock();
        let state = state.as_ref();
        ManagedInfo {
            id: self.id().to_string(),
            name: self.name.clone(),
            status: state.map_or(ManagedStatus::Starting, |s| s.status),
            restart_count: state.map_or(0, |s| s.restart_count),
            restart: self.restart.clone(),
            health_check: self.health_check.clone(),
            health_status: state.map_or(HealthStatus::Disabled, |s| s.health_status),
            consecutive_health_failures: state.map_or(0, |s| s.consecutive_health_failures),
            last_exit: state.and_then(|s| s.last_exit).map(|e| ManagedExit {
                exit_code: e.code,
                signal: e.signal,
                oom_killed: e.oom_killed,
                ended_at: e.ended_at,
            }),
            last_error: state.and_then(|s| s.last_error.clone()),
            next_restart_at: state.and_then(|s| s.next_restart_at),
        }
    }

    /// A reference to run `pid` of this process for journal records.
    pub fn process_ref(&self, pid: u32) -> ProcessRef {
        ProcessRef {
            pid,
            managed_id: Some(Arc::from(self.id())),
            managed_name: self.name.as_deref().map(Arc::from),
        }
    }

    /// Journals an event about run `pid` of this process.
    fn journal(&self, pid: u32, level: LogLevel, event: JournalEvent, body: String) {
        Journal::global().push(journal::event(&self.process_ref(pid), level, event, body));
    }

    /// Asks for a restart now and waits for the new run.
    pub async fn restart(&self) -> Result<Arc<TrackedProcess>, ProcessError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Restart(tx))
            .map_err(|_| ProcessError::NotManaged(self.id().to_string()))?;
        rx.await
            .map_err(|_| ProcessError::NotManaged(self.id().to_string()))?
    }

    /// The error for a signal to run `pid` while the supervisor waits to restart it: `None`
    /// unless `pid` is the current run and a restart is due.
    pub(super) fn restarting_after(&self, pid: u32) -> Option<ProcessError> {
        let state = self.lock();
        let state = state.as_ref()?;
        if state.status != ManagedStatus::BackingOff || state.current.pid != pid {
            return None;
        }
        let due = state.next_restart_at?;
        Some(ProcessError::Restarting {
            label: self.label(),
            pid,
            restart_in_ms: due.saturating_sub(now_millis()).max(0),
        })
    }

    /// Stops supervision now (the status reads `stopped` at once) and the process soon.
    pub fn stop(&self) {
        if let Some(state) = self.lock().as_mut() {
            state.status = ManagedStatus::Stopped;
            state.next_restart_at = None;
        }
        let _ = self.commands.send(Command::Stop);
    }

    /// Records how a run ended (before anyone can see that it ended).
    pub(super) fn note_exit(&self, info: ExitInfo) {
        self.update(|s| s.last_exit = Some(info));
    }

    /// Ends the supervisor task (the entry is gone).
    pub(super) fn forget(&self) {
        let _ = self.commands.send(Command::Forget);
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        if let Some(state) = self.lock().as_mut() {
            change(state);
        }
    }

    fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("process {name:?}"),
            None => format!("managed process {}", self.id()),
        }
    }

    /// The back-off before restart number `n` (1-based).
    fn backoff(&self, n: u32) -> Duration {
        let factor = 1u64 << n.saturating_sub(1).min(40);
        let ms = self
            .restart
            .initial_backoff_ms
            .saturating_mul(factor)
            .min(self.restart.max_backoff_ms);
        Duration::from_millis(ms)
    }
}

/// How one run ended, as far as the supervisor is concerned.
enum Ending {
    Exited { info: ExitInfo, unhealthy: bool },
    Restart(oneshot::Sender<Result<Arc<TrackedProcess>, ProcessError>>),
    Stop,
    Forget,
}

/// What the supervisor does next.
enum Next {
    /// Watch the current run.
    Watch,
    /// Wait `delay`, then start a new run.
    BackOff(Duration),
    /// Not running and not restarting: wait for a command.
    Park,
    /// End.
    Quit,
}

/// The supervisor of `managed`, whose first run is already current.
pub(super) async fn supervise(
    inner: Arc<Inner>,
    managed: Arc<Managed>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut next = Next::Watch;
    loop {
        next = match next {
            Next::Quit => return,
            Next::Watch => {
                let Some(process) = managed.current() else {
                    return;
                };
                match watch(&managed, &process, &mut commands).await {
                    Ending::Exited { info, unhealthy } => after_exit(&managed, info, unhealthy),
                    Ending::Restart(reply) => {
                        terminate(&process).await;
                        restart_now(&inner, &managed, reply)
                    }
                    Ending::Stop => {
                        terminate(&process).await;
                        stopped(&managed, process.pid);
                        Next::Park
                    }
                    Ending::Forget => {
                        terminate(&process).await;
                        Next::Quit
                    }
                }
            }
            Next::BackOff(delay) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {
                        // A stop that raced with the end of the back-off wins.
                        if !managed.is_supervising() {
                            Next::Park
                        } else {
                            relaunch(&inner, &managed, false)
                                .map_or_else(|err| launch_failed(&managed, &err), |_| Next::Watch)
                        }
                    }
                    command = commands.recv() => match command {
                        Some(Command::Restart(reply)) => restart_now(&inner, &managed, reply),
                        Some(Command::Stop) => {
                            managed.update(|s| s.next_restart_at = None);
                            Next::Park
                        }
                        Some(Command::Forget) | None => Next::Quit,
                    },
                }
            }
            Next::Park => match commands.recv().await {
                Some(Command::Restart(reply)) => restart_now(&inner, &managed, reply),
                Some(Command::Stop) => Next::Park,
                Some(Command::Forget) | None => Next::Quit,
            },
        };
    }
}

/// Waits for the run to end, a failing health check, or a command.
async fn watch(
    managed: &Managed,
    process: &Arc<TrackedProcess>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Ending {
    let exit = process.wait_exit();
    let health = async {
        match &managed.health_check {
            Some(check) => health_loop(managed, process.pid, check).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        info = exit => Ending::Exited { info, unhealthy: false },
        () = health => {
            terminate(process).await;
            Ending::Exited { info: process.wait_exit().await, unhealthy: true }
        }
        command = commands.recv() => match command {
            Some(Command::Restart(reply)) => Ending::Restart(reply),
            Some(Command::Stop) => Ending::Stop,
            Some(Command::Forget) | None => Ending::Forget,
        },
    }
}

/// Probes until the failure threshold is reached with a policy that restarts; returns then.
/// With policy `never` it never returns: it only keeps the health status current.
async fn health_loop(managed: &Managed, pid: u32, check: &HealthCheck) {
    tokio::time::sleep(Duration::from_millis(check.initial_delay_ms)).await;
    loop {
        match health::probe(check).await {
            Ok(()) => {
                let mut recovered = false;
                managed.update(|s| {
                    recovered = s.health_status != HealthStatus::Healthy;
                    s.health_status = HealthStatus::Healthy;
                    s.consecutive_health_failures = 0;
                    if s.status == ManagedStatus::Starting {
                        s.status = ManagedStatus::Running;
                    }
                });
                if recovered {
                    managed.journal(
                        pid,
                        LogLevel::Info,
                        JournalEvent::HealthCheckPassed,
                        format!("{} (pid {pid}) is healthy", managed.label()),
                    );
                }
            }
            Err(why) => {
                let mut failures = 0;
                managed.update(|s| {
                    s.consecutive_health_failures += 1;
                    failures = s.consecutive_health_failures;
                    if failures >= check.failure_threshold {
                        s.health_status = HealthStatus::Unhealthy;
                    }
                    s.last_error = Some(format!("health check failed: {why}"));
                });
                managed.journal(
                    pid,
                    LogLevel::Warn,
                    JournalEvent::HealthCheckFailed,
                    format!(
                        "health check of {} (pid {pid}) failed ({failures} of {} in a row): {why}",
                        managed.label(),
                        check.failure_threshold
                    ),
                );
                if failures >= check.failure_threshold
                    && managed.restart.policy != RestartPolicy::Never
                {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(check.interval_ms)).await;
    }
}

/// SIGTERM to the run's group, SIGKILL to its tree after [`STOP_GRACE`]; returns once it
/// has exited.
async fn terminate(process: &Arc<TrackedProcess>) {
    if !process.is_running() {
        return;
    }
    tree::signal_group(process.pgid(), libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, process.wait_exit())
        .await
        .is_err()
    {
        process.kill();
        process.wait_exit().await;
    }
}

/// The policy's restarts that `max_restarts` and the back-off go by once a run of `ran_ms`
/// ended: none after a stable run.
fn restarts_counted(policy_restarts: u32, ran_ms: i64) -> u32 {
    if ran_ms >= STABLE_RUN_MS {
        0
    } else {
        policy_restarts
    }
}

/// Decides what follows the end of a run.
fn after_exit(managed: &Managed, info: ExitInfo, unhealthy: bool) -> Next {
    let failed = unhealthy || info.code != Some(0);
    let wanted = match managed.restart.policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => failed,
        RestartPolicy::Always => true,
    };
    let mut next = Next::Park;
    let mut gave_up = None;
    let mut restarts = 0;
    let ran_ms = managed
        .current()
        .map_or(0, |run| info.ended_at.saturating_sub(run.started_at()));
    managed.update(|s| {
        s.last_exit = Some(info);
        s.policy_restarts = restarts_counted(s.policy_restarts, ran_ms);
        restarts = s.policy_restarts;
        if s.status == ManagedStatus::Stopped {
            return;
        }
        if !wanted {
            s.status = ManagedStatus::Stopped;
        } else if managed
            .restart
            .max_restarts
            .is_some_and(|max| s.policy_restarts >= max)
        {
            s.status = ManagedStatus::Stopped;
            let why = format!("gave up after {} restarts", s.policy_restarts);
            s.last_error = Some(why.clone());
            gave_up = Some(why);
        } else {
            let delay = managed.backoff(s.policy_restarts + 1);
            s.status = ManagedStatus::BackingOff;
            s.next_restart_at = Some(
                now_millis().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            next = Next::BackOff(delay);
        }
    });
    let pid = managed.current().map_or(0, |p| p.pid);
    if let Some(why) = gave_up {
        managed.journal(
            pid,
            LogLevel::Error,
            JournalEvent::GaveUp,
            format!("{}: {why}", managed.label()),
        );
    }
    if let Next::BackOff(delay) = next {
        managed.journal(
            pid,
            LogLevel::Info,
            JournalEvent::BackingOff,
            format!(
                "{} ended{}; restart {} in {} ms",
                managed.label(),
                if unhealthy {
                    " after failed health checks"
                } else {
                    ""
                },
                restarts + 1,
                delay.as_millis()
            ),
        );
    }
    next
}

/// Starts a new run as a restart: the policy's, or a user's (`by_user`), which starts the
/// restart budget afresh.
fn relaunch(
    inner: &Arc<Inner>,
    managed: &Arc<Managed>,
    by_user: bool,
) -> Result<Arc<TrackedProcess>, ProcessError> {
    let process = inner.spawn(&managed.request, Some(managed))?;
    let mut count = 0;
    managed.update(|s| {
        s.restart_count += 1;
        s.policy_restarts = if by_user { 0 } else { s.policy_restarts + 1 };
        count = s.restart_count;
    });
    managed.journal(
        process.pid,
        LogLevel::Info,
        JournalEvent::ProcessRestarted,
        format!(
            "{} restarted as pid {} (restart {count})",
            managed.label(),
            process.pid
        ),
    );
    Ok(process)
}

/// A restart could not start the command: counts as a failed run.
fn launch_failed(managed: &Managed, err: &ProcessError) -> Next {
    let message = format!("restarting {} failed: {err}", managed.label());
    managed.update(|s| {
        s.restart_count += 1;
        s.policy_restarts += 1;
        s.last_error = Some(message.clone());
    });
    managed.journal(0, LogLevel::Error, JournalEvent::Agent, message);
    after_exit(managed, super::lost_exit(), false)
}

fn restart_now(
    inner: &Arc<Inner>,
    managed: &Arc<Managed>,
    reply: oneshot::Sender<Result<Arc<TrackedProcess>, ProcessError>>,
) -> Next {
    match relaunch(inner, managed, true) {
        Ok(process) => {
            let _ = reply.send(Ok(process));
            Next::Watch
        }
        Err(err) => {
            let message = format!("restarting {} failed: {err}", managed.label());
            managed.update(|s| {
                s.status = ManagedStatus::Stopped;
                s.last_error = Some(message);
            });
            let _ = reply.send(Err(err));
            Next::Park
        }
    }
}

/// Records the end of supervision. [`Managed::stop`] set the state already, but a restart
/// queued before the stop may have started a run since, which set it again.
fn stopped(managed: &Managed, pid: u32) {
    managed.update(|s| {
        s.status = ManagedStatus::Stopped;
        s.next_restart_at = None;
    });
    managed.journal(
        pid,
        LogLevel::Info,
        JournalEvent::SupervisionStopped,
        format!(
            "{} stopped on request; it is not restarted",
            managed.label()
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let req = StartProcessRequest {
            command: "true".into(),
            restart: Some(RestartConfig {
                policy: RestartPolicy::Always,
                max_restarts: None,
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
            }),
            ..StartProcessRequest::default()
        };
        let (managed, _rx) = Managed::new(&req);
        let ms: Vec<u128> = (1..=6).map(|n| managed.backoff(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn a_run_that_stayed_up_a_minute_starts_the_budget_afresh() {
        assert_eq!(restarts_counted(7, STABLE_RUN_MS - 1), 7);
        assert_eq!(restarts_counted(7, STABLE_RUN_MS), 0);
        assert_eq!(restarts_counted(7, 3_600_000), 0);
        // A clock that went back (ended before it started) changes nothing.
        assert_eq!(restarts_counted(3, -5), 3);
    }

    #[test]
    fn unusable_settings_are_named() {
        let mut req = StartProcessRequest {
            command: "true".into(),
            restart: Some(RestartConfig {
                initial_backoff_ms: 2000,
                max_backoff_ms: 1000,
                ..RestartConfig::default()
            }),
            ..StartProcessRequest::default()
        };
        assert!(invalid_reason(&req).is_some_and(|r| r.contains("max_backoff_ms")));
        req.restart = Some(RestartConfig::default());
        assert_eq!(invalid_reason(&req), None);
    }
}
