//! Starting a child process.
//!
//! Everything that can be wrong with a request (user, working directory, program) is checked
//! *before* forking, so the caller gets a 4xx JSON error instead of a stream that fails. The
//! child then gets, in `pre_exec`: its own session and process group (so signals and kills
//! reach its whole group), `oom_score_adj` [`CHILD_OOM_SCORE_ADJ`] (so the OOM killer picks a
//! user process before the agent: hosts without CAP_SYS_RESOURCE cannot lower the agent's own
//! score, but any process may raise its own), and the requested uid/gid/groups.
//!
//! Environment: the agent's own (minus `ALCOVE_AGENT_*`), then `HOME` and `USER` of the target
//! user and a default `PATH` if none is set, then the request's `env`, which wins.
//!
//! A terminal ([`LaunchSpec::terminal`], for PTY sessions) replaces all three standard streams
//! with the terminal's slave side; the child then also makes it its controlling terminal
//! (`TIOCSCTTY`, right after `setsid`) and, when switching users, takes ownership of it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use alcove_wire::process::{OutputMode, StdinMode, UserSpec};
use alcove_wire::time::{EpochMillis, now_millis};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::oom;
use super::tree;
use super::user::{self, Identity, UserDb, UserError};
use crate::pid1::{RawWaitStatus, reaper};

/// `PATH` given to children when neither the agent's environment nor the request sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub use alcove_wire::limits::AGENT_ENV_PREFIX;

/// What to start.
#[derive(Debug, Clone, Copy)]
pub struct LaunchSpec<'a> {
    /// Program: a path, or a name looked up in `PATH`.
    pub command: &'a str,
    /// Arguments after the program name.
    pub args: &'a [String],
    /// Variables that override the defaults.
    pub env: &'a BTreeMap<String, String>,
    /// Working directory; `None` = the user's home if it exists, else `/`.
    pub working_dir: Option<&'a str>,
    /// Target user; `None` = the agent's own.
    pub user: Option<&'a UserSpec>,
    /// Stdin handling.
    pub stdin: StdinMode,
    /// Stdout handling.
    pub stdout: OutputMode,
    /// Stderr handling.
    pub stderr: OutputMode,
    /// Slave side of a terminal to run on: it becomes stdin, stdout, stderr and the
    /// controlling terminal, and the three modes above are ignored.
    pub terminal: Option<BorrowedFd<'a>>,
}

/// A started child, with its pipes registered on the current tokio runtime.
#[derive(Debug)]
pub struct Spawned {
    /// Process id (also its process group and session id).
    pub pid: u32,
    /// Start time, epoch milliseconds.
    pub started_at: EpochMillis,
    /// Write end of its stdin, when piped.
    pub stdin: Option<pipe::Sender>,
    /// Read end of its stdout, when captured.
    pub stdout: Option<pipe::Receiver>,
    /// Read end of its stderr, when captured.
    pub stderr: Option<pipe::Receiver>,
    /// Gets its raw wait status from the reaper.
    pub exit: oneshot::Receiver<RawWaitStatus>,
    /// The cgroup's OOM kill counter just before the start.
    pub oom_baseline: Option<u64>,
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The command is empty.
    #[error("command must not be empty")]
    EmptyCommand,
    /// The user cannot be resolved.
    #[error(transparent)]
    User(#[from] UserError),
    /// The working directory does not exist.
    #[error("working directory {0:?} does not exist")]
    WorkingDirMissing(String),
    /// The working directory is not a directory.
    #[error("working directory {0:?} is not a directory")]
    WorkingDirNotDir(String),
    /// The program is not a file in `PATH` (or at the given path), or its interpreter is missing.
    #[error("command not found: {0}")]
    CommandNotFound(String),
    /// The program exists but cannot be executed.
    #[error("command is not executable: {0}")]
    NotExecutable(String),
    /// The agent does not run as root, so it cannot switch to another user.
    #[error("cannot run as uid {uid} gid {gid}: the agent itself is not root")]
    CannotSwitchUser {
        /// Requested uid.
        uid: u32,
        /// Requested gid.
        gid: u32,
    },
    /// The sandbox's task limit is reached: no process can be made.
    #[error(
        "starting {0:?}: the sandbox's process limit is reached; stop processes \
         (kill_process, or stop_all_processes) and try again"
    )]
    ProcessLimit(String),
    /// A string of the request cannot be handed to the kernel: a NUL byte, or a
    /// variable name that is empty or has `=`.
    #[error("{0}")]
    InvalidArgument(String),
    /// The kernel refused the arguments and environment as too long (`E2BIG`).
    #[error(
        "starting {0:?}: its arguments and environment are too long for the kernel (E2BIG): \
         each string may hold 128 KiB, and all of them with their pointers about a quarter of \
         the stack limit (2 MiB by default); pass large data through a file or stdin"
    )]
    ArgumentsTooLong(String),
    /// The program's file is open for writing (`ETXTBSY`), e.g. still being written.
    #[error("starting {0:?}: its file is open for writing (ETXTBSY); close it and try again")]
    ProgramBusy(String),
    /// fork/exec or pipe setup failed for another reason.
    #[error("starting {command:?}: {source}")]
    Spawn {
        /// The command as requested.
        command: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Starts children; holds what every start needs.
#[derive(Debug, Clone)]
pub struct Launcher {
    passwd_path: PathBuf,
    group_path: PathBuf,
    /// What every child inherits; shared by the launcher's clones, and extended by
    /// [`Launcher::set_env`] (a warm pool's claim binds its variables this way).
    base_env: std::sync::Arc<std::sync::RwLock<Vec<(OsString, OsString)>>>,
    /// The task limit of children (see `headroom`).
    task_limit: Option<u64>,
    /// The user cgroup children join (see `headroom`).
    user_cgroup: super::headroom::UserCgroup,
    /// The image's user, for starts that name none.
    default_user: Option<UserSpec>,
    /// The image's working directory, for starts that name none (when it exists).
    default_dir: Option<String>,
}

impl Launcher {
    /// A launcher reading users from the given files; children inherit `agent_env` minus the
    /// agent's own `ALCOVE_AGENT_*` variables.
    pub fn new(
        passwd_path: PathBuf,
        group_path: PathBuf,
        agent_env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Self {
        let base_env: Vec<(OsString, OsString)> = agent_env
            .into_iter()
            .filter(|(key, _)| !key.to_string_lossy().starts_with(AGENT_ENV_PREFIX))
            .collect();
        let base_env = std::sync::Arc::new(std::sync::RwLock::new(base_env));
        Self {
            passwd_path,
            group_path,
            base_env,
            task_limit: super::headroom::user_task_limit(),
            user_cgroup: super::headroom::UserCgroup::detect(),
            default_user: None,
            default_dir: None,
        }
    }

    /// Sets the image's defaults: the user and the working directory of
    /// processes started without their own.
    pub fn with_defaults(mut self, user: Option<String>, dir: Option<String>) -> Self {
        self.default_user = user.filter(|u| !u.is_empty()).map(UserSpec::Text);
        self.default_dir = dir.filter(|d| d.starts_with('/'));
        self
    }

    /// Adds `vars` to what every later child inherits, replacing variables of the same
    /// name (processes already started keep their environment). Fails, changing
    /// nothing, on a name that is empty, has `=` or NUL, or is one of the agent's own
    /// `ALCOVE_AGENT_*`, or a value with NUL.
    pub fn set_env(&self, vars: &BTreeMap<String, String>) -> Result<(), String> {
        for (key, value) in vars {
            check_variable(key, value)?;
            if key.starts_with(AGENT_ENV_PREFIX) {
                return Err(format!(
                    "{key}: the {AGENT_ENV_PREFIX}* variables are the agent's own"
                ));
            }
        }
        let mut env = self.base_env.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in vars {
            let key = OsString::from(key);
            env.retain(|(k, _)| *k != key);
            env.push((key, OsString::from(value)));
        }
        Ok(())
    }

    /// Checks `spec` and starts it. Must run inside a tokio runtime (the pipes register there).
    pub fn launch(&self, spec: &LaunchSpec<'_>) -> Result<Spawned, LaunchError> {
        if spec.command.is_empty() {
            return Err(LaunchError::EmptyCommand);
        }
        check_strings(spec).map_err(LaunchError::InvalidArgument)?;
        if super::headroom::user_tasks_full(self.task_limit) {
            return Err(LaunchError::ProcessLimit(spec.command.to_string()));
        }
        let db = UserDb::load(&self.passwd_path, &self.group_path);
        // SAFETY: geteuid/getegid cannot fail and touch no memory.
        let (current_uid, current_gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let requested_user = spec.user.or(self.default_user.as_ref());
        let identity = user::resolve(requested_user, &db, current_uid)?;
        let switch_user = requested_user.is_some();
        if switch_user
            && current_uid != 0
            && (identity.uid != current_uid || identity.gid != current_gid)
        {
            return Err(LaunchError::CannotSwitchUser {
                uid: identity.uid,
                gid: identity.gid,
            });
        }
        let env = self.child_env(&identity, switch_user, spec.env);
        // The image's directory when it exists (as Docker makes it at start,
        // but without writing to the sandbox: a missing one falls back).
        let requested_dir = spec.working_dir.or_else(|| {
            self.default_dir
                .as_deref()
                .filter(|d| Path::new(d).is_dir())
        });
        let cwd = working_dir(requested_dir, identity.home.as_deref())?;
        let path_var = env.get(OsStr::new("PATH")).map(OsString::as_os_str);
        let program = resolve_program(spec.command, path_var, &cwd)?;

        let mut command = Command::new(&program);
        command
            .arg0(spec.command)
            .args(spec.args)
            .env_clear()
            .envs(&env)
            .current_dir(&cwd);
        match spec.terminal {
            Some(tty) => {
                let stdio = || {
                    tty.try_clone_to_owned()
                        .map(Stdio::from)
                        .map_err(|source| LaunchError::Spawn {
                            command: spec.command.to_string(),
                            source,
                        })
                };
                command.stdin(stdio()?).stdout(stdio()?).stderr(stdio()?);
            }
            None => {
                command
                    .stdin(match spec.stdin {
                        StdinMode::Pipe => Stdio::piped(),
                        StdinMode::Closed => Stdio::null(),
                    })
                    .stdout(output_stdio(spec.stdout))
                    .stderr(output_stdio(spec.stderr));
            }
        }
        let credentials = switch_user.then(|| Credentials {
            uid: identity.uid,
            gid: identity.gid,
            groups: identity.groups.clone(),
            set_groups: current_uid == 0,
        });
        let controlling_tty = spec.terminal.is_some();
        let task_limit = self.task_limit;
        let user_cgroup = self.user_cgroup.clone();
        // SAFETY: `child_setup` and `join_in_child` only make async-signal-safe syscalls and do
        // not allocate (the group list and the cgroup paths were built before the fork).
        unsafe {
            command.pre_exec(move || {
                // First, while it is still root: the user cgroup's files belong to root.
                user_cgroup.join_in_child();
                child_setup(credentials.as_ref(), controlling_tty)?;
                super::headroom::apply_in_child(task_limit);
                Ok(())
            });
        }

        let oom_baseline = oom::oom_kill_count();
        let started_at = now_millis();
        let (mut child, exit) = reaper()
            .spawn(&mut command)
            .map_err(|err| spawn_error(spec.command, err))?;
        // The command holds the agent's copies of a terminal's slave side; closing them now
        // lets the master read end of file (EIO) once the child's side is gone.
        drop(command);
        let pid = child.id();
        let pipes = (|| -> io::Result<_> {
            let stdin = child
                .stdin
                .take()
                .map(|fd| pipe::Sender::from_owned_fd(OwnedFd::from(fd)))
                .transpose()?;
            let stdout = child
                .stdout
                .take()
                .map(|fd| pipe::Receiver::from_owned_fd(OwnedFd::from(fd)))
                .transpose()?;
            let stderr = child
                .stderr
                .take()
                .map(|fd| pipe::Receiver::from_owned_fd(OwnedFd::from(fd)))
                .transpose()?;
            Ok((stdin, stdout, stderr))
        })();
        let (stdin, stdout, stderr) = match pipes {
            Ok(pipes) => pipes,
            Err(source) => {
                // The child runs but we cannot talk to it; do not leave it behind.
                tree::kill_tree(i32::try_from(pid).unwrap_or(0));
                return Err(LaunchError::Spawn {
                    command: spec.command.to_string(),
                    source,
                });
            }
        };
        Ok(Spawned {
            pid,
            started_at,
            stdin,
            stdout,
            stderr,
            exit,
            oom_baseline,
        })
    }

    fn child_env(
        &self,
        identity: &Identity,
        switch_user: bool,
        overrides: &BTreeMap<String, String>,
    ) -> BTreeMap<OsString, OsString> {
        let mut env: BTreeMap<OsString, OsString> = self
            .base_env
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let home = match (&identity.home, switch_user) {
            (Some(home), _) => Some(OsString::from(home)),
            // Our own uid without a passwd entry: keep the HOME we were given, if any.
            (None, false) => env.get(OsStr::new("HOME")).cloned(),
            (None, true) => None,
        };
        env.insert("HOME".into(), home.unwrap_or_else(|| "/".into()));
        let user = identity
            .name
            .clone()
            .unwrap_or_else(|| identity.uid.to_string());
        env.insert("USER".into(), user.into());
        env.entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        for (key, value) in overrides {
            env.insert(key.into(), value.into());
        }
        env
    }
}

fn output_stdio(mode: OutputMode) -> Stdio {
    match mode {
        OutputMode::Capture => Stdio::piped(),
        OutputMode::Discard => Stdio::null(),
    }
}

/// The working directory: the requested one (relative = under the default) or the default.
fn working_dir(requested: Option<&str>, home: Option<&str>) -> Result<PathBuf, LaunchError> {
    let default = home
        .map(Path::new)
        .filter(|home| home.is_dir())
        .unwrap_or(Path::new("/"));
    let Some(requested) = requested.filter(|dir| !dir.is_empty()) else {
        return Ok(default.to_path_buf());
    };
    let dir = default.join(requested);
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(dir),
        Ok(_) => Err(LaunchError::WorkingDirNotDir(requested.to_string())),
        Err(_) => Err(LaunchError::WorkingDirMissing(requested.to_string())),
    }
}

/// Outcome of looking at one candidate program file.
#[derive(Debug, PartialEq, Eq)]
enum Candidate {
    Executable,
    NotExecutable,
    Directory,
    Missing,
}

fn inspect(path: &Path) -> Candidate {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Candidate::Directory,
        Ok(meta) if meta.permissions().mode() & 0o111 != 0 => Candidate::Executable,
        Ok(_) => Candidate::NotExecutable,
        Err(_) => Candidate::Missing,
    }
}

/// Finds the program as `execvp` would: a name with `/` is a path (relative to `cwd`), any
/// other name is searched in `path_var` (empty entries mean `cwd`).
pub fn resolve_program(
    command: &str,
    path_var: Option<&OsStr>,
    cwd: &Path,
) -> Result<PathBuf, LaunchError> {
    if command.contains('/') {
        let path = cwd.join(command);
        // A directory named by its path cannot be executed (a shell says "Is a directory" and
        // exits 126); in a PATH search it is passed over, as execvp does.
        return match inspect(&path) {
            Candidate::Executable => Ok(path),
            Candidate::NotExecutable | Candidate::Directory => {
                Err(LaunchError::NotExecutable(command.to_string()))
            }
            Candidate::Missing => Err(LaunchError::CommandNotFound(command.to_string())),
        };
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut saw_not_executable = false;
    for dir in std::env::split_paths(path_var) {
        let candidate = cwd.join(dir).join(command);
        match inspect(&candidate) {
            Candidate::Executable => return Ok(candidate),
            Candidate::NotExecutable => saw_not_executable = true,
            Candidate::Directory | Candidate::Missing => {}
        }
    }
    if saw_not_executable {
        Err(LaunchError::NotExecutable(command.to_string()))
    } else {
        Err(LaunchError::CommandNotFound(command.to_string()))
    }
}

fn spawn_error(command: &str, err: io::Error) -> LaunchError {
    match err.raw_os_error() {
        // ENOENT after our own lookup succeeded: a script whose interpreter is missing.
        Some(libc::ENOENT) => LaunchError::CommandNotFound(command.to_string()),
        Some(libc::EACCES) | Some(libc::ENOEXEC) => LaunchError::NotExecutable(command.to_string()),
        // fork (or clone) found the pids cgroup or the task limit full.
        Some(libc::EAGAIN) => LaunchError::ProcessLimit(command.to_string()),
        Some(libc::E2BIG) => LaunchError::ArgumentsTooLong(command.to_string()),
        Some(libc::ETXTBSY) => LaunchError::ProgramBusy(command.to_string()),
        _ => LaunchError::Spawn {
            command: command.to_string(),
            source: err,
        },
    }
}

/// The identity a child switches to in `pre_exec`.
#[derive(Debug, Clone)]
struct Credentials {
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    /// Only root may call setgroups; otherwise the groups stay as they are.
    set_groups: bool,
}

/// Runs in the child between fork and exec (see the module docs). Async-signal-safe only.
/// With `controlling_tty`, stdin is a terminal's slave side (std redirects the standard streams
/// before this runs).
fn child_setup(credentials: Option<&Credentials>, controlling_tty: bool) -> io::Result<()> {
    // SAFETY: setsid takes no arguments; the child of a fork is never a group leader.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    if controlling_tty {
        let stdin = libc::STDIN_FILENO;
        // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal a terminal another
        // session controls); we are a session leader without a controlling terminal yet.
        if unsafe { libc::ioctl(stdin, libc::TIOCSCTTY, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        if let Some(creds) = credentials {
            // Best effort, as login(1) does: the user owns their terminal (mesg, write, and
            // reopening it by path). The group stays; -1 means "unchanged".
            // SAFETY: fchown takes plain integers.
            unsafe { libc::fchown(stdin, creds.uid, libc::gid_t::MAX) };
        }
    }
    raise_oom_score_adj();
    if let Some(creds) = credentials {
        if creds.set_groups {
            // SAFETY: the pointer and length describe the live `groups` vector.
            let rc = unsafe { libc::setgroups(creds.groups.len(), creds.groups.as_ptr()) };
            if rc == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: setgid/setuid take plain integers; the group goes first because after
        // setuid we may no longer be allowed to change it.
        if unsafe { libc::setgid(creds.gid) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::setuid(creds.uid) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `oom_score_adj` of every process the agent starts: user processes die first when the
/// sandbox runs out of memory, and the agent (PID 1) survives to report it.
pub const CHILD_OOM_SCORE_ADJ: &[u8] = b"500";

/// Best effort: if the write is refused, the child keeps the agent's value, which is still a
/// valid setting.
fn raise_oom_score_adj() {
    // SAFETY: a NUL-terminated literal path; the descriptor is closed before returning.
    unsafe {
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            libc::write(
                fd,
                CHILD_OOM_SCORE_ADJ.as_ptr().cast(),
                CHILD_OOM_SCORE_ADJ.len(),
            );
            libc::close(fd);
        }
    }
}

/// Why `key=value` cannot be put in a child's environment, if it cannot: the kernel
/// takes NUL-terminated `key=value` strings, so a name with `=` would set another
/// variable than the one asked for, and a NUL would cut the string short.
fn check_variable(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(format!(
            "env: invalid variable name {key:?} (empty, or has `=` or a NUL byte)"
        ));
    }
    if value.contains('\0') {
        return Err(format!("env: the value of {key} has a NUL byte"));
    }
    Ok(())
}

/// Why `spec` cannot be handed to `execve`, if it cannot, naming the field.
fn check_strings(spec: &LaunchSpec<'_>) -> Result<(), String> {
    if spec.command.contains('\0') {
        return Err("command: has a NUL byte".to_string());
    }
    if let Some(i) = spec.args.iter().position(|a| a.contains('\0')) {
        return Err(format!("args[{i}]: has a NUL byte"));
    }
    if spec.working_dir.is_some_and(|d| d.contains('\0')) {
        return Err("working_dir: has a NUL byte".to_string());
    }
    spec.env
        .iter()
        .try_for_each(|(key, value)| check_variable(key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_programs_like_execvp() {
        let root = Path::new("/");
        let sh = resolve_program("sh", Some(OsStr::new("/nonexistent:/bin:/usr/bin")), root)
            .expect("sh is in /bin");
        assert!(sh.ends_with("sh"));
        assert!(matches!(
            resolve_program("no-such-program-xyz", None, root),
            Err(LaunchError::CommandNotFound(_))
        ));
        assert!(matches!(
            resolve_program("/etc/passwd", None, root),
            Err(LaunchError::NotExecutable(_))
        ));
        assert!(matches!(
            resolve_program("./nope", None, root),
            Err(LaunchError::CommandNotFound(_))
        ));
        assert!(matches!(
            resolve_program("/tmp", None, root),
            Err(LaunchError::NotExecutable(_))
        ));
        // In a PATH search a directory of that name is passed over.
        assert!(matches!(
            resolve_program("tmp", Some(OsStr::new("/")), root),
            Err(LaunchError::CommandNotFound(_))
        ));
    }

    #[test]
    fn working_dir_defaults_and_checks() {
        assert_eq!(
            working_dir(None, Some("/nonexistent-home")).ok(),
            Some(PathBuf::from("/"))
        );
        assert_eq!(
            working_dir(None, Some("/tmp")).ok(),
            Some(PathBuf::from("/tmp"))
        );
        assert!(matches!(
            working_dir(Some("/nonexistent-dir"), None),
            Err(LaunchError::WorkingDirMissing(_))
        ));
        assert!(matches!(
            working_dir(Some("/etc/passwd"), None),
            Err(LaunchError::WorkingDirNotDir(_))
        ));
    }

    #[test]
    fn child_env_layers_defaults_and_overrides() {
        let launcher = Launcher::new(
            "/nonexistent".into(),
            "/nonexistent".into(),
            [
                ("KEEP".into(), "1".into()),
                ("ALCOVE_AGENT_LISTEN".into(), "x".into()),
                ("HOME".into(), "/agent-home".into()),
            ],
        );
        let identity = Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            name: Some("app".into()),
            home: Some("/home/app".into()),
        };
        let overrides = BTreeMap::from([("KEEP".to_string(), "2".to_string())]);
        let env = launcher.child_env(&identity, true, &overrides);
        let get = |k: &str| env.get(OsStr::new(k)).and_then(|v| v.to_str());
        assert_eq!(get("HOME"), Some("/home/app"));
        assert_eq!(get("USER"), Some("app"));
        assert_eq!(get("PATH"), Some(DEFAULT_PATH));
        assert_eq!(get("KEEP"), Some("2"));
        assert_eq!(get("ALCOVE_AGENT_LISTEN"), None);
    }

    #[test]
    fn set_env_adds_and_replaces_for_later_children_and_refuses_bad_names() {
        let launcher = Launcher::new(
            "/nonexistent".into(),
            "/nonexistent".into(),
            [("KEEP".into(), "1".into()), ("OLD".into(), "a".into())],
        );
        let clone = launcher.clone();
        let vars = BTreeMap::from([
            ("OLD".to_string(), "b".to_string()),
            ("NEW".to_string(), "c".to_string()),
        ]);
        launcher.set_env(&vars).expect("valid names");
        let identity = Identity {
            uid: 0,
            gid: 0,
            groups: vec![0],
            name: Some("root".into()),
            home: Some("/root".into()),
        };
        // Clones share the environment (the process and PTY tables hold clones).
        let env = clone.child_env(&identity, false, &BTreeMap::new());
        let get = |k: &str| env.get(OsStr::new(k)).and_then(|v| v.to_str());
        assert_eq!(
            (get("KEEP"), get("OLD"), get("NEW")),
            (Some("1"), Some("b"), Some("c"))
        );
        for bad in ["", "A=B", "ALCOVE_AGENT_USER", "NUL\0"] {
            let vars = BTreeMap::from([
                (bad.to_string(), "x".to_string()),
                ("FINE".into(), "y".into()),
            ]);
            assert!(launcher.set_env(&vars).is_err(), "{bad:?} is refused");
        }
        let env = clone.child_env(&identity, false, &BTreeMap::new());
        assert!(
            !env.contains_key(OsStr::new("FINE")),
            "a refused call changes nothing"
        );
    }

    #[test]
    fn strings_the_kernel_cannot_take_are_refused_naming_the_field() {
        let env_of = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let no_env = BTreeMap::new();
        let fine_args = ["a".to_string()];
        let spec = |command, args, env, working_dir| LaunchSpec {
            command,
            args,
            env,
            working_dir,
            user: None,
            stdin: StdinMode::Closed,
            stdout: OutputMode::Discard,
            stderr: OutputMode::Discard,
            terminal: None,
        };
        assert_eq!(
            check_strings(&spec("ls", &fine_args, &no_env, Some("/"))),
            Ok(())
        );
        let nul_arg = ["a".to_string(), "b\0".to_string()];
        let cases = [
            (
                check_strings(&spec("e\0cho", &fine_args, &no_env, None)),
                "command",
            ),
            (
                check_strings(&spec("echo", &nul_arg, &no_env, None)),
                "args[1]",
            ),
            (
                check_strings(&spec("echo", &fine_args, &no_env, Some("/t\0"))),
                "working_dir",
            ),
            (
                check_strings(&spec("echo", &fine_args, &env_of("A=B", "c"), None)),
                "env",
            ),
            (
                check_strings(&spec("echo", &fine_args, &env_of("", "c"), None)),
                "env",
            ),
            (
                check_strings(&spec("echo", &fine_args, &env_of("A", "c\0d"), None)),
                "env",
            ),
        ];
        for (result, field) in cases {
            let message = result.expect_err(field);
            assert!(message.starts_with(field), "{message} names {field}");
        }
    }
}
