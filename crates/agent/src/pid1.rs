//! PID 1 duties: owning every child's exit status, reaping orphans, and stopping everything on
//! SIGTERM.
//!
//! All waiting goes through one process-wide [`Reaper`]. A `waitpid(-1)` reaper and per-child
//! waits (tokio::process, `Child::wait`) steal each other's statuses, so the agent never uses
//! the latter: children are spawned with `std::process::Command` through [`Reaper::spawn`],
//! which registers the pid, and a dedicated thread reaps *every* child and hands tracked
//! statuses to their waiters (the rest, reparented orphans, are discarded).
//!
//! The reaper thread blocks in `waitid(P_ALL, WEXITED | WNOWAIT)`, which reports that some
//! child is a zombie without reaping it, then reaps with `waitpid(-1, WNOHANG)` under the
//! registry lock. Spawning also holds that lock, which closes two races: a child that exits
//! before its pid is registered, and std's own `waitpid` of a child whose `exec` failed (std
//! reaps it inside `spawn` and would panic if we had reaped it first). A thread rather than a
//! SIGCHLD handler on a tokio task: no signal can be lost, and it outlives any one tokio runtime
//! (tests build one runtime per test in the same process).
//!
//! When the agent is not PID 1 (tests on the host), `PR_SET_CHILD_SUBREAPER` makes orphaned
//! descendants come to it all the same.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Condvar, Mutex, MutexGuard, Once, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::process::tree;

/// A raw wait status as returned by `waitpid`.
pub type RawWaitStatus = libc::c_int;

/// How a child ended, decoded from a [`RawWaitStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code when it exited on its own.
    pub code: Option<i32>,
    /// Signal number when a signal killed it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Decodes a raw wait status.
    pub fn from_raw(raw: RawWaitStatus) -> Self {
        if libc::WIFEXITED(raw) {
            Self {
                code: Some(libc::WEXITSTATUS(raw)),
                signal: None,
            }
        } else if libc::WIFSIGNALED(raw) {
            Self {
                code: None,
                signal: Some(libc::WTERMSIG(raw)),
            }
        } else {
            // Only exits are waited for (no WUNTRACED), so this is not reached; report an
            // unknown failure rather than a success.
            Self {
                code: Some(-1),
                signal: None,
            }
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    waiters: HashMap<libc::pid_t, oneshot::Sender<RawWaitStatus>>,
    /// Bumped on every successful spawn; wakes the reaper when it had no children.
    generation: u64,
}

/// The process-wide owner of child exit statuses (see the module docs).
#[derive(Debug, Default)]
pub struct Reaper {
    registry: Mutex<Registry>,
    spawned: Condvar,
}

/// How long the reaper of a childless agent sleeps before it checks again without being
/// told that a child was spawned.
const CHILDLESS_RECHECK: Duration = Duration::from_secs(60);

static REAPER: OnceLock<Reaper> = OnceLock::new();
static REAPER_THREAD: Once = Once::new();

/// The reaper, started (subreaper flag set, thread running) on first use.
pub fn reaper() -> &'static Reaper {
    let reaper = REAPER.get_or_init(Reaper::default);
    REAPER_THREAD.call_once(|| {
        become_subreaper();
        let started = std::thread::Builder::new()
            .name("alcove-reaper".into())
            .spawn(move || reaper.run());
        if let Err(err) = started {
            // Without the thread no exit is ever reported; say so loudly.
            crate::journal::agent_problem(
                alcove_wire::journal::LogLevel::Error,
                format!("starting the reaper thread: {err}"),
            );
        }
    });
    reaper
}

/// Asks the kernel to reparent orphaned descendants to this process (a no-op for PID 1).
fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        crate::journal::agent_problem(
            alcove_wire::journal::LogLevel::Warn,
            format!("setting child subreaper: {}", io::Error::last_os_error()),
        );
    }
}

/// Ignores SIGPIPE, so a client that hangs up makes writes fail instead of killing the agent.
/// (Rust's runtime already does this; being explicit documents that PID 1 relies on it.
/// Children get the default disposition back: std resets it before exec.)
pub fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN for SIGPIPE has no memory effects.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Makes the agent untouchable from inside its sandbox and gives its children
/// their open-file limit.
///
/// * Not dumpable (`PR_SET_DUMPABLE` 0): then `ptrace`, `/proc/1/mem`,
///   `/proc/1/environ`, `/proc/1/fd` and `process_vm_readv` on the agent need
///   `CAP_SYS_PTRACE`, which no sandbox process has, even as root. Its
///   children are dumpable again once they `exec`. CRIU (host root) still
///   dumps it and restores the flag.
/// * The soft `RLIMIT_NOFILE` is raised to the hard one (at most 1048576),
///   so every process of the sandbox starts with it; the hard limit is what
///   the host grants, and the sandbox cannot raise it.
pub fn harden() {
    // SAFETY: PR_SET_DUMPABLE takes an integer and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        crate::journal::agent_problem(
            alcove_wire::journal::LogLevel::Warn,
            format!("clearing the dumpable flag: {}", io::Error::last_os_error()),
        );
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill and setrlimit to read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            let want = limit.rlim_max.min(1_048_576);
            if limit.rlim_cur < want {
                limit.rlim_cur = want;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

/// Whether this process is the init of its pid namespace.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry stays consistent even if a holder panicked: keep reaping.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Spawns `command` and registers its pid; the receiver gets its raw wait status.
    pub fn spawn(
        &self,
        command: &mut Command,
    ) -> io::Result<(Child, oneshot::Receiver<RawWaitStatus>)> {
        let mut registry = self.lock();
        let child = command.spawn()?;
        let (tx, rx) = oneshot::channel();
        let pid = libc::pid_t::try_from(child.id())
            .map_err(|_| io::Error::other("child pid out of range"))?;
        registry.waiters.insert(pid, tx);
        registry.generation += 1;
        drop(registry);
        self.spawned.notify_all();
        Ok((child, rx))
    }

    /// Pids of the children whose exit is still awaited.
    pub fn tracked_pids(&self) -> Vec<libc::pid_t> {
        self.lock().waiters.keys().copied().collect()
    }

    fn run(&self) {
        loop {
            let generation = self.lock().generation;
            // SAFETY: siginfo_t is plain data for which all-zero is a valid value.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the child waitable.
            let rc =
                unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc == 0 {
                self.reap_all();
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ECHILD) => {
                    // No children at all: new ones only come from `spawn`, which bumps the
                    // generation. The timeout is a safety net, not a poll we rely on (a
                    // process made elsewhere that joins the sandbox's pid namespace would come
                    // to us when its parent ends; nothing of Alcove's does that). Long, because
                    // an idle sandbox has no children and every wake of every idle sandbox's
                    // agent is CPU the host's busy sandboxes do not get.
                    let registry = self.lock();
                    if registry.generation == generation {
                        let woken = self.spawned.wait_timeout(registry, CHILDLESS_RECHECK);
                        drop(woken);
                    }
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Reaps every zombie child, dispatching tracked statuses.
    fn reap_all(&self) {
        let mut registry = self.lock();
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if let Some(waiter) = registry.waiters.remove(&pid) {
                // The waiter may be gone (its runtime ended); nothing else wants the status.
                let _ = waiter.send(status);
            }
        }
    }
}

/// Stops every process before the agent exits (SIGTERM/SIGINT).
///
/// As PID 1: SIGTERM to every process of the namespace (`kill(-1)`), up to `grace` for them to
/// exit, then SIGKILL to all. Not PID 1 (tests, a host run): the same, but only to the trees of
/// the processes the agent started, because `kill(-1)` would hit the whole host.
pub async fn terminate_all(grace: Duration) {
    let reaper = reaper();
    if is_pid1() {
        // SAFETY: kill(2) with pid -1 from a pid namespace's init signals only that namespace.
        unsafe { libc::kill(-1, libc::SIGTERM) };
    } else {
        for pid in reaper.tracked_pids() {
            tree::signal_group(pid, libc::SIGTERM);
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        let anyone_left = if is_pid1() {
            // SAFETY: signal 0 only checks whether any process could be signalled.
            unsafe { libc::kill(-1, 0) == 0 }
        } else {
            !reaper.tracked_pids().is_empty()
        };
        if !anyone_left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if is_pid1() {
        // SAFETY: as above; SIGKILL everything left in the namespace.
        unsafe { libc::kill(-1, libc::SIGKILL) };
    } else {
        for pid in reaper.tracked_pids() {
            tree::kill_tree(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_exit_and_signal_statuses() {
        // Encodings as the kernel builds them: exit code in bits 8-15, signal in bits 0-6.
        assert_eq!(
            ExitStatus::from_raw(3 << 8),
            ExitStatus {
                code: Some(3),
                signal: None
            }
        );
        assert_eq!(
            ExitStatus::from_raw(libc::SIGKILL),
            ExitStatus {
                code: None,
                signal: Some(9)
            }
        );
        // A realtime signal decodes too (nix's Signal enum would reject it).
        assert_eq!(ExitStatus::from_raw(40).signal, Some(40));
    }
}
