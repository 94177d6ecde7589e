//! Starting an external program that must do something between its start and
//! its `exec` (enter runc's mount namespace, drop to idle priority) without
//! forking the server.
//!
//! `std::process::Command` with a `pre_exec` hook forks: the child gets a copy
//! of the server's page tables, which grow with every sandbox up (about 2 ms
//! per fork with 1000 up, and the copy-on-write faults after it), and the
//! whole copy is torn down again at the `exec`. This module starts the child
//! the way `posix_spawn` does instead: `clone(CLONE_VM | CLONE_VFORK)` on a
//! stack of its own, the calling thread paused until the child has called
//! `exec` or died. The child runs in the server's memory, so what it does
//! before `exec` is raw system calls on data prepared beforehand (see
//! [`ChildPlan`]); it reports a failure by writing the step and errno into
//! that plan, which the parent reads once it runs again.
//!
//! The parent waits for the child's exit on a pidfd, so nothing else in the
//! process (tokio's own child reaping included) competes for the exit status.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runc_ns::RuncNamespace;
use crate::userns::MOVE_MOUNT_F_EMPTY_PATH;

/// `close_range` flag: give the caller a descriptor table of its own first.
const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;

/// Stack of the child until its `exec`: it only makes system calls.
const CHILD_STACK: usize = 64 * 1024;

/// Where the child runs: a fresh copy of runc's template mount namespace,
/// with a detached mount tree attached at a path, and a working directory.
pub(crate) struct MountEntry {
    /// Holds the template's descriptor open while the child may use it.
    pub(crate) ns: Arc<RuncNamespace>,
    /// A detached mount tree and the path to attach it at.
    pub(crate) tree: Option<(OwnedFd, CString)>,
    /// The working directory to keep (entering a namespace resets it).
    pub(crate) cwd: Option<CString>,
}

/// What to start: a program, its arguments, and what the child does first.
pub(crate) struct Spawn<'a> {
    program: &'a OsStr,
    args: Vec<&'a OsStr>,
    entry: Option<MountEntry>,
    idle: bool,
    capture: bool,
    kill_on_drop: bool,
}

impl<'a> Spawn<'a> {
    /// `program` (looked up in `PATH` unless it holds a `/`) with `args`; its
    /// stdio is `/dev/null` unless [`Self::capture`] is set.
    pub(crate) fn new(program: &'a OsStr, args: impl IntoIterator<Item = &'a OsStr>) -> Self {
        Self {
            program,
            args: args.into_iter().collect(),
            entry: None,
            idle: false,
            capture: false,
            kill_on_drop: false,
        }
    }

    /// Runs the program in `entry`'s mount namespace.
    pub(crate) fn mount_entry(mut self, entry: Option<MountEntry>) -> Self {
        self.entry = entry;
        self
    }

    /// Runs the program in the `SCHED_IDLE` class (only on CPU time nothing
    /// else wants).
    pub(crate) fn idle(mut self, idle: bool) -> Self {
        self.idle = idle;
        self
    }

    /// Kills the child when the future running it is dropped before its end
    /// (it is reaped either way).
    pub(crate) fn kill_on_drop(mut self) -> Self {
        self.kill_on_drop = true;
        self
    }

    /// Pipes stdin, stdout and stderr, for [`Self::output`].
    pub(crate) fn capture(mut self) -> Self {
        self.capture = true;
        self
    }

    /// Runs the program to its end, feeding `input` on stdin; its stdout and
    /// stderr when captured (empty otherwise).
    pub(crate) async fn output(self, input: Option<&[u8]>) -> std::io::Result<Output> {
        let mut child = self.start()?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feed = async {
            if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
                // A program that exits without reading its stdin is its own
                // business; its exit status tells.
                let _ = pipe.write_all(bytes).await;
            }
        };
        // Without capture there are no pipes, and both read as empty.
        let (_, stdout, stderr) = tokio::join!(feed, read_all(stdout), read_all(stderr));
        let status = child.wait().await?;
        Ok(Output {
            status,
            stdout: stdout?,
            stderr: stderr?,
        })
    }

    /// Starts the child; returns once it has called `exec` (or failed to).
    fn start(self) -> std::io::Result<Child> {
        let path = resolve(self.program)?;
        let path = cstring(path.as_os_str())?;
        let argv: Vec<CString> = std::iter::once(self.program)
            .chain(self.args.iter().copied())
            .map(cstring)
            .collect::<std::io::Result<_>>()?;
        let envp: Vec<CString> = std::env::vars_os()
            .map(|(k, v)| {
                let mut pair: OsString = k;
                pair.push("=");
                pair.push(v);
                CString::new(pair.into_vec())
            })
            .filter_map(std::result::Result::ok)
            .collect();
        let argv_ptrs = null_terminated(&argv);
        let envp_ptrs = null_terminated(&envp);

        // (the child's end, the parent's end) of each of stdin, stdout, stderr.
        let (stdin, stdout, stderr) = if self.capture {
            let (r, w) = pipe()?;
            let stdin = (r, Some(w));
            let (r, w) = pipe()?;
            let stdout = (w, Some(r));
            let (r, w) = pipe()?;
            (stdin, stdout, (w, Some(r)))
        } else {
            let null = OwnedFd::from(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")?,
            );
            let (out, err) = (null.try_clone()?, null.try_clone()?);
            ((null, None), (out, None), (err, None))
        };

        let stdio = [
            stdin.0.as_raw_fd(),
            stdout.0.as_raw_fd(),
            stderr.0.as_raw_fd(),
        ];
        // Held until the child has called exec (see crate::spawn_slots).
        let staged = crate::spawn_slots::stage(stdio)?;
        let mut plan = ChildPlan {
            path: path.as_ptr(),
            argv: argv_ptrs.as_ptr(),
            envp: envp_ptrs.as_ptr(),
            stdio: staged.as_ref().map_or(stdio, |s| s.slots()),
            unshare_from: staged.as_ref().map_or(-1, |s| s.unshare_from()),
            mount_ns: -1,
            tree: -1,
            tree_target: std::ptr::null(),
            cwd: std::ptr::null(),
            idle: self.idle,
            failed_step: Step::None,
            errno: 0,
        };
        if let Some(entry) = &self.entry {
            plan.mount_ns = entry.ns.template_fd();
            if let Some((tree, target)) = &entry.tree {
                plan.tree = tree.as_raw_fd();
                plan.tree_target = target.as_ptr();
            }
            if let Some(cwd) = &entry.cwd {
                plan.cwd = cwd.as_ptr();
            }
        }

        let pid = clone_vfork(&mut plan)?;
        drop(staged);
        // SAFETY: the child has called `exec` or exited (CLONE_VFORK): nothing
        // writes the plan any more.
        let (step, errno) = unsafe {
            (
                std::ptr::read_volatile(&plan.failed_step),
                std::ptr::read_volatile(&plan.errno),
            )
        };
        if step != Step::None {
            // It exits right after reporting: reap it here.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            let cause = std::io::Error::from_raw_os_error(errno);
            return Err(std::io::Error::new(
                cause.kind(),
                format!("{}: {cause}", step.describe()),
            ));
        }
        let pidfd = PidFd::open(pid)?;
        Ok(Child {
            pidfd: Some(pidfd),
            kill_on_drop: self.kill_on_drop,
            stdin: stdin
                .1
                .map(tokio::net::unix::pipe::Sender::from_owned_fd)
                .transpose()?,
            stdout: stdout
                .1
                .map(tokio::net::unix::pipe::Receiver::from_owned_fd)
                .transpose()?,
            stderr: stderr
                .1
                .map(tokio::net::unix::pipe::Receiver::from_owned_fd)
                .transpose()?,
        })
    }
}

/// Reads a pipe to its end (nothing when there is none).
async fn read_all(pipe: Option<tokio::net::unix::pipe::Receiver>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut bytes).await?;
    }
    Ok(bytes)
}

/// A started child: its pidfd until reaped, and the parent's pipe ends.
struct Child {
    pidfd: Option<PidFd>,
    kill_on_drop: bool,
    stdin: Option<tokio::net::unix::pipe::Sender>,
    stdout: Option<tokio::net::unix::pipe::Receiver>,
    stderr: Option<tokio::net::unix::pipe::Receiver>,
}

impl Child {
    /// Waits for the child's exit and reaps it.
    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let Some(pidfd) = self.pidfd.as_ref() else {
            return Err(std::io::Error::other("the child was already reaped"));
        };
        let status = pidfd.wait().await?;
        self.pidfd = None;
        Ok(status)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Dropped before its exit (the caller's future was cancelled): kill it
        // if asked to, and reap it off this thread.
        if let Some(pidfd) = self.pidfd.take() {
            if self.kill_on_drop {
                pidfd.kill();
            }
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        let _ = pidfd.wait().await;
                    });
                }
                Err(_) => {
                    let _ = std::thread::Builder::new()
                        .name("reap".into())
                        .spawn(move || pidfd.reap());
                }
            }
        }
    }
}

/// A pidfd of a child not yet reaped.
struct PidFd(OwnedFd);

impl PidFd {
    fn open(pid: libc::pid_t) -> std::io::Result<Self> {
        crate::pidfd::open(pid).map(Self).inspect_err(|_| {
            // An unreaped child cannot be recycled: reap it rather than leak it.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        })
    }

    fn kill(&self) {
        // A child that already exited (not yet reaped) is no error here.
        let _ = crate::pidfd::send_sigkill(self.0.as_fd());
    }

    /// Waits until the child exits (its pidfd turns readable) and reaps it.
    async fn wait(&self) -> std::io::Result<ExitStatus> {
        // SAFETY: the descriptor is borrowed from `self`, which outlives the
        // registration, and stays the same open pidfd all along.
        let ready = unsafe {
            AsyncFd::register_with_interest(self.0.as_fd(), tokio::io::Interest::READABLE)
        }?;
        let _guard = ready.readable().await?;
        self.reap()
    }

    /// `waitid` on the pidfd: blocks until the child exits.
    fn reap(&self) -> std::io::Result<ExitStatus> {
        let status = nix::sys::wait::waitid(Id::PIDFd(self.0.as_fd()), WaitPidFlag::WEXITED)
            .map_err(std::io::Error::from)?;
        Ok(match status {
            WaitStatus::Exited(_, code) => ExitStatus::from_raw((code & 0xff) << 8),
            WaitStatus::Signaled(_, signal, core) => {
                ExitStatus::from_raw(signal as i32 | if core { 0x80 } else { 0 })
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "unexpected wait status {other:?}"
                )));
            }
        })
    }
}

/// The step of the child's preparation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
enum Step {
    None,
    Signals,
    Priority,
    EnterNamespace,
    Unshare,
    AttachTree,
    Chdir,
    Stdio,
    Exec,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::None => "nothing",
            Step::Signals => "resetting signals before exec",
            Step::Priority => "lowering the priority before exec",
            Step::EnterNamespace => "entering the runc mount namespace before exec",
            Step::Unshare => "copying the runc mount namespace before exec",
            Step::AttachTree => "attaching the sandbox's mounts before exec",
            Step::Chdir => "keeping the working directory before exec",
            Step::Stdio => "setting up stdio before exec",
            Step::Exec => "exec",
        }
    }
}

/// Everything the child needs, prepared by the parent: plain values and
/// pointers into memory the parent keeps alive until the child has called
/// `exec` (the parent is paused until then).
struct ChildPlan {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Descriptors to become the child's 0, 1 and 2.
    stdio: [RawFd; 3],
    /// With the descriptor table shared (`CLONE_FILES`): the first descriptor the
    /// child drops when it takes a table of its own; -1 for a copied table.
    unshare_from: RawFd,
    /// Runc's template mount namespace, or -1.
    mount_ns: RawFd,
    /// A detached mount tree to attach at `tree_target`, or -1.
    tree: RawFd,
    tree_target: *const libc::c_char,
    /// Directory to change to, or null.
    cwd: *const libc::c_char,
    idle: bool,
    /// Written by the child when a step fails, read by the parent.
    failed_step: Step,
    errno: libc::c_int,
}

/// The kernel's `struct sigaction` on x86_64 and aarch64 (not libc's).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Starts [`child_main`] on its own stack in the caller's memory and waits
/// until it has called `exec` or exited. Every signal is blocked in this
/// thread meanwhile, so that none of the server's handlers runs in the child
/// before it has reset them.
fn clone_vfork(plan: &mut ChildPlan) -> std::io::Result<libc::pid_t> {
    let mut stack = vec![0u8; CHILD_STACK];
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: the stack outlives the child's use of it (CLONE_VFORK returns
    // once the child no longer runs in this memory); `child_main` only makes
    // raw system calls on `plan`, which outlives the call too.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.as_mut_ptr().add(stack.len()).cast(),
            libc::CLONE_VM
                | libc::CLONE_VFORK
                | libc::SIGCHLD
                | if plan.unshare_from >= 0 {
                    libc::CLONE_FILES
                } else {
                    0
                },
            (plan as *mut ChildPlan).cast(),
        )
    };
    let spawn_error = (pid < 0).then(std::io::Error::last_os_error);
    // Restores the mask saved above (it held before, so it holds again).
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    drop(stack);
    match spawn_error {
        Some(e) => Err(e),
        None => Ok(pid),
    }
}

/// The child until `exec`: raw system calls only (it shares the server's
/// memory and the calling thread's TLS; it must not allocate or lock).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildPlan`, valid until this child has
    // called exec or exited; the parent does not touch it meanwhile.
    let plan = unsafe { &mut *arg.cast::<ChildPlan>() };
    // SAFETY: raw system calls on the plan's values.
    let step = unsafe { prepare_and_exec(plan) };
    plan.failed_step = step;
    // SAFETY: errno of this thread (the parent's TLS, which is paused).
    plan.errno = unsafe { *libc::__errno_location() };
    // SAFETY: ends this child only (it is a process of its own).
    unsafe {
        libc::syscall(libc::SYS_exit, 127);
    }
    127
}

/// What the child does; returns the step that failed (`exec` returns only
/// on failure).
unsafe fn prepare_and_exec(plan: &ChildPlan) -> Step {
    // SAFETY: raw system calls on values the plan holds.
    unsafe {
        // Handlers of the server must never run here: back to the default
        // for every signal that has one, and SIGPIPE (which Rust ignores).
        let default = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        for signal in 1..=64 {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            let mut old = KernelSigaction {
                handler: 0,
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            let rc = libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                std::ptr::null::<KernelSigaction>(),
                &mut old as *mut KernelSigaction,
                8usize,
            );
            let handled = rc == 0 && old.handler != libc::SIG_DFL && old.handler != libc::SIG_IGN;
            if (handled || signal == libc::SIGPIPE)
                && libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                ) != 0
            {
                return Step::Signals;
            }
        }
        if plan.idle {
            let param = libc::sched_param { sched_priority: 0 };
            if libc::syscall(
                libc::SYS_sched_setscheduler,
                0,
                libc::SCHED_IDLE,
                &param as *const libc::sched_param,
            ) != 0
            {
                return Step::Priority;
            }
        }
        if plan.mount_ns >= 0 {
            if libc::syscall(libc::SYS_setns, plan.mount_ns, libc::CLONE_NEWNS) != 0 {
                return Step::EnterNamespace;
            }
            if libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS) != 0 {
                return Step::Unshare;
            }
            if plan.tree >= 0
                && libc::syscall(
                    libc::SYS_move_mount,
                    plan.tree,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    plan.tree_target,
                    MOVE_MOUNT_F_EMPTY_PATH,
                ) != 0
            {
                return Step::AttachTree;
            }
            if !plan.cwd.is_null() && libc::syscall(libc::SYS_chdir, plan.cwd) != 0 {
                return Step::Chdir;
            }
        }
        // A shared table: a copy of its first descriptors only (the server's
        // stdio and the slots holding the child's), everything else dropped.
        if plan.unshare_from >= 0
            && libc::syscall(
                libc::SYS_close_range,
                plan.unshare_from,
                libc::c_uint::MAX,
                CLOSE_RANGE_UNSHARE,
            ) != 0
        {
            return Step::Stdio;
        }
        for (target, &source) in plan.stdio.iter().enumerate() {
            // The sources are fresh descriptors (numbered above 2) with
            // O_CLOEXEC; dup3 gives the copy no such flag.
            if libc::syscall(libc::SYS_dup3, source, target, 0) < 0 {
                return Step::Stdio;
            }
        }
        if plan.unshare_from >= 0
            && libc::syscall(libc::SYS_close_range, 3, libc::c_uint::MAX, 0) != 0
        {
            return Step::Stdio;
        }
        let none: u64 = 0;
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &none as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        ) != 0
        {
            return Step::Signals;
        }
        libc::syscall(libc::SYS_execve, plan.path, plan.argv, plan.envp);
        Step::Exec
    }
}

/// A pipe, both ends close-on-exec: (read end, write end).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// `program` as a path: itself when it holds a `/`, else the first
/// executable of that name in `PATH`.
fn resolve(program: &OsStr) -> std::io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} not found in PATH", program.to_string_lossy()),
            )
        })
}

fn is_executable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok() && path.is_file()
}

fn cstring(s: &OsStr) -> std::io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{:?} holds a NUL byte", s),
        )
    })
}

/// Pointers to `strings`, then a null pointer (for execve).
fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn runs_a_program_with_input_and_captures_its_output_and_status() {
        let out = rt()
            .block_on(
                Spawn::new(
                    OsStr::new("sh"),
                    [OsStr::new("-c"), OsStr::new("cat; echo oops >&2; exit 3")],
                )
                .capture()
                .output(Some(b"hello")),
            )
            .expect("ran");
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"oops\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn with_reserved_slots_a_child_keeps_its_stdio_only() {
        crate::spawn_slots::reserve().expect("reserve");
        // A descriptor of the server without close-on-exec: a copied table would
        // hand it to the child; a shared one unshared from the slots does not.
        let file = tempfile::NamedTempFile::new().expect("file");
        // SAFETY: a plain dup of an open descriptor, closed below.
        let leaky = unsafe { libc::dup(file.as_file().as_raw_fd()) };
        assert!(leaky > 2);
        let many: Vec<std::fs::File> = (0..200)
            .map(|_| std::fs::File::open("/dev/null").expect("open"))
            .collect();
        let runtime = rt();
        let outputs: Vec<Output> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..4)
                .map(|i| {
                    let runtime = &runtime;
                    scope.spawn(move || {
                        let script = format!("echo {i}; ls /proc/self/fd | wc -l; cat >&2");
                        runtime
                            .block_on(
                                Spawn::new(
                                    OsStr::new("sh"),
                                    [OsStr::new("-c"), OsStr::new(&script)],
                                )
                                .capture()
                                .output(Some(format!("in{i}").as_bytes())),
                            )
                            .expect("ran")
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("thread"))
                .collect()
        });
        for (i, out) in outputs.iter().enumerate() {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some(i.to_string().as_str()), "{text}");
            // 0, 1, 2 and the directory ls reads.
            let open: usize = lines
                .next()
                .and_then(|l| l.trim().parse().ok())
                .expect("count");
            assert_eq!(open, 4, "{text}");
            assert_eq!(out.stderr, format!("in{i}").as_bytes());
        }
        // The slots hold /dev/null again.
        assert!(crate::spawn_slots::slots_hold_null());
        drop(many);
        // SAFETY: closes the dup made above.
        unsafe { libc::close(leaky) };
    }

    #[test]
    fn reports_a_signal_death_and_an_uncaptured_run() {
        let out = rt()
            .block_on(
                Spawn::new(
                    OsStr::new("sh"),
                    [OsStr::new("-c"), OsStr::new("echo lost; kill -9 $$")],
                )
                .output(None),
            )
            .expect("ran");
        assert!(out.stdout.is_empty(), "stdout is /dev/null unless captured");
        assert_eq!(out.status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_missing_program_or_a_failed_exec_is_an_error_not_a_child() {
        let missing = rt()
            .block_on(Spawn::new(OsStr::new("no-such-program-here"), []).output(None))
            .expect_err("not found");
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        let dir = rt()
            .block_on(Spawn::new(OsStr::new("/"), []).output(None))
            .expect_err("a directory does not run");
        assert!(dir.to_string().contains("exec"), "{dir}");
    }

    #[test]
    fn the_child_gets_default_signals_and_an_empty_mask() {
        // The test harness (like the server) ignores SIGPIPE; the child must not.
        let out = rt()
            .block_on(
                Spawn::new(
                    OsStr::new("grep"),
                    [
                        OsStr::new("-E"),
                        OsStr::new("^(SigBlk|SigIgn)"),
                        OsStr::new("/proc/self/status"),
                    ],
                )
                .capture()
                .output(None),
            )
            .expect("ran");
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap_or("x"), 16)
                .expect("hex mask");
            assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{line}");
            if line.starts_with("SigBlk") {
                assert_eq!(mask, 0, "{line}");
            }
        }
    }

    #[test]
    fn a_dropped_run_kills_and_reaps_its_child() {
        let rt = rt();
        let pid = rt.block_on(async {
            let mut child = Spawn::new(OsStr::new("sleep"), [OsStr::new("30")])
                .kill_on_drop()
                .start()
                .expect("started");
            let pid = child
                .pidfd
                .as_ref()
                .map(|p| p.0.as_raw_fd())
                .expect("pidfd");
            // The pid, from the pidfd's fdinfo.
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{pid}")).expect("fdinfo");
            let pid: i32 = info
                .lines()
                .find_map(|l| l.strip_prefix("Pid:"))
                .and_then(|p| p.trim().parse().ok())
                .expect("Pid line");
            child.stdin.take();
            drop(child);
            pid
        });
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(200)).await });
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the child is killed and reaped, not left a zombie"
        );
    }
}
