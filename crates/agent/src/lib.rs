//! alcove-agent: the agent that runs as PID 1 inside every sandbox and serves the sandbox API
//! (`/api/v1/...`, docs/protocol/sandbox-api.md) on port 9501: processes (run to completion,
//! managed, stdin, output, signals), files, PTY sessions, TCP tunnels, health and info.
//!
//! It owns every user process of its sandbox (spawning, reaping, killing whole trees) and
//! their bounded output buffers. It knows nothing about the control plane, sandboxes or
//! other agents: the server's proxy forwards `/api/v1/*` to it unchanged.

pub mod config;
pub mod files;
pub mod http;
pub mod journal;
pub mod output;
pub mod output_events;
pub mod pid1;
pub mod process;
pub mod pty;
pub mod sse;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

pub use config::AgentConfig;
pub use http::build_router;
use process::ProcessTable;
use process::spawn::Launcher;
use pty::PtyTable;
use pty::session::SessionLimits;

/// Shared state of the HTTP handlers; cheap to clone.
#[derive(Debug, Clone)]
pub struct AgentState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    launcher: Arc<Launcher>,
    processes: ProcessTable,
    ptys: PtyTable,
    active_runs: Arc<AtomicUsize>,
    started: Instant,
    /// Processes that stopping everything keeps (the image's services).
    keep_processes: Vec<String>,
}

impl AgentState {
    /// Fresh state; also starts the process-wide reaper (see [`pid1`]).
    pub fn new(config: &AgentConfig) -> Self {
        pid1::reaper();
        let launcher = Arc::new(
            Launcher::new(
                config.passwd_path.clone(),
                config.group_path.clone(),
                config.child_env.clone(),
            )
            .with_defaults(config.default_user.clone(), config.default_dir.clone()),
        );
        Self {
            inner: Arc::new(Shared {
                processes: ProcessTable::new(Arc::clone(&launcher), config.output_limit_bytes),
                ptys: PtyTable::new(
                    Arc::clone(&launcher),
                    SessionLimits {
                        buffer_bytes: config.pty_buffer_bytes,
                        idle_timeout: config.pty_idle_timeout,
                        exited_linger: config.pty_exited_linger,
                    },
                ),
                launcher,
                active_runs: Arc::default(),
                started: Instant::now(),
                keep_processes: config.keep_processes.clone(),
            }),
        }
    }

    /// Starts children.
    pub fn launcher(&self) -> &Launcher {
        &self.inner.launcher
    }

    /// Processes started through `POST /processes`.
    pub fn processes(&self) -> &ProcessTable {
        &self.inner.processes
    }

    /// Kills every process but the agent and the image's services.
    pub fn stop_all_processes(&self) -> usize {
        self.inner.processes.stop_all(&self.inner.keep_processes)
    }

    /// PTY sessions.
    pub fn ptys(&self) -> &PtyTable {
        &self.inner.ptys
    }

    /// Number of `processes/run` calls in progress.
    pub fn active_runs(&self) -> &Arc<AtomicUsize> {
        &self.inner.active_runs
    }

    /// Time since the state was created.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AgentState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Output lines are small writes that should leave at once, not wait for Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, build_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`] for the host only: a request from a process of the sandbox is refused (see
/// [`http::host_only`]). The agent serves this way as PID 1 of a sandbox.
pub async fn serve_host_only(
    listener: TcpListener,
    state: AgentState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let router =
        build_router(state).layer(axum::middleware::from_fn(http::host_only::refuse_inside));
    axum::serve(
        http::host_only::EndsListener(listener),
        router.into_make_service_with_connect_info::<http::host_only::Ends>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Runs `true` once, before the agent listens: the first command of a new sandbox
/// otherwise pays for its root file system's cold lookups and the loader's first
/// mappings (about 8 ms here), and a warm pool's sandbox then answers its
/// claimer's first command as fast as any other. Not a tracked process; a missing
/// `true` (an image without one) is ignored, and it is given at most a second.
async fn warm_up(state: &AgentState) {
    let launcher = state.launcher().clone();
    let run = async move {
        let env = std::collections::BTreeMap::new();
        let spec = process::spawn::LaunchSpec {
            command: "true",
            args: &[],
            env: &env,
            working_dir: None,
            user: None,
            stdin: alcove_wire::process::StdinMode::Closed,
            stdout: alcove_wire::process::OutputMode::Discard,
            stderr: alcove_wire::process::OutputMode::Discard,
            terminal: None,
        };
        if let Ok(spawned) = launcher.launch(&spec) {
            let _ = spawned.exit.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), run).await;
}

/// The whole agent: bind, print `listening on <addr>` to stderr and serve.
///
/// As PID 1 of a sandbox it installs no signal handler at all: the kernel then
/// drops every signal a process of the sandbox sends it (the init of a pid
/// namespace only receives signals it handles, and SIGKILL/SIGSTOP only from
/// outside), so only the host stops it. Elsewhere (tests, a run on the host)
/// it serves until SIGTERM or SIGINT, then stops every child (see
/// [`pid1::terminate_all`]) and returns.
pub async fn run(config: AgentConfig) -> io::Result<()> {
    pid1::ignore_sigpipe();
    pid1::harden();
    let state = AgentState::new(&config);
    if pid1::is_pid1() {
        // Before listening: the sandbox is settled (no stray process) once it answers.
        warm_up(&state).await;
    }
    let listener = TcpListener::bind(config.listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    if pid1::is_pid1() {
        return serve_host_only(listener, state, std::future::pending()).await;
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let server = serve(listener, state, std::future::pending());
    tokio::select! {
        served = server => served?,
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }
    pid1::terminate_all(config.shutdown_grace).await;
    Ok(())
}
