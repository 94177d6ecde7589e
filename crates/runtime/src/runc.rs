//! The `runc` command line, with its own state root per runtime instance.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::cmd;
use crate::error::{CommandError, Result, RuntimeError, path_str};
use crate::runc_ns::{RuncNamespace, entry_for};
use crate::spawn::Spawn;

/// What runc says a container is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Created, its process not started yet.
    Created,
    /// Running.
    Running,
    /// Frozen (cgroup freezer).
    Paused,
    /// Its init exited.
    Stopped,
    /// Anything a future runc may add.
    #[serde(other)]
    Unknown,
}

/// `runc state` / `runc list` output we use.
#[derive(Debug, Clone, Deserialize)]
pub struct ContainerState {
    /// Container id (the sandbox id).
    pub id: String,
    /// What it is doing.
    pub status: ContainerStatus,
    /// Host pid of the container's init (the agent).
    #[serde(default)]
    pub pid: i64,
}

/// A runc binary and the directory it keeps container state in.
#[derive(Debug, Clone)]
pub struct Runc {
    binary: String,
    root: PathBuf,
    /// Where runc runs (see [`crate::runc_ns`]); the caller's namespace without it.
    ns: Option<Arc<RuncNamespace>>,
}

impl Runc {
    /// runc (`binary`, e.g. `runc`) keeping state under `root`.
    pub fn new(binary: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            root: root.into(),
            ns: None,
        }
    }

    /// The same runc, run in copies of `ns` from now on.
    pub fn in_namespace(mut self, ns: Arc<RuncNamespace>) -> Self {
        self.ns = Some(ns);
        self
    }

    /// The mount namespace runc runs in, if not the caller's.
    pub fn namespace(&self) -> Option<&Arc<RuncNamespace>> {
        self.ns.as_ref()
    }

    /// Runs `runc <argv...>` (`argv[0]` is the binary) in its mount namespace,
    /// with `subtree` (a sandbox's directory) attached for calls about its
    /// root file system.
    async fn call(
        &self,
        argv: &[&str],
        input: Option<&str>,
        subtree: Option<&Path>,
    ) -> std::result::Result<String, CommandError> {
        cmd::run_spawned(argv, input, (self.ns.as_ref(), subtree), false).await
    }

    fn root_str(&self) -> Result<&str> {
        self.root
            .to_str()
            .ok_or_else(|| RuntimeError::Config("runc root is not UTF-8".into()))
    }

    /// Creates and starts container `id` from `bundle`, detached.
    ///
    /// The container's stdio is `/dev/null`: CRIU cannot dump a tree whose stdio
    /// is a host file, and a pipe would tie the agent's life to ours.
    pub async fn run_detached(&self, id: &str, bundle: &Path) -> Result<()> {
        let mut args: Vec<&OsStr> = ["run", "--detach", "--bundle"].map(OsStr::new).to_vec();
        args.extend([bundle.as_os_str(), OsStr::new(id)]);
        self.run_logged(&args, &bundle.join("runc.log"), bundle.parent())
            .await
            .map_err(Into::into)
    }

    /// Runs `runc <args>` with its stdio on `/dev/null` (a container it starts or
    /// restores inherits that stdio) and its log in `log`; on failure the error
    /// carries the log's last error message.
    async fn run_logged(
        &self,
        args: &[&OsStr],
        log: &Path,
        subtree: Option<&Path>,
    ) -> Result<(), CommandError> {
        let log_args = [
            OsStr::new("--root"),
            self.root.as_os_str(),
            OsStr::new("--log"),
            log.as_os_str(),
            OsStr::new("--log-format"),
            OsStr::new("json"),
        ];
        let argv = std::iter::once(self.binary.as_str().into())
            .chain(args.iter().map(|a| a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        // Emptied, and root-only as the rest of the data directory: runc appends to it.
        crate::perms::write_file(log, b"", 0o600).map_err(|e| CommandError {
            argv: argv.clone(),
            reason: e.to_string(),
        })?;
        let entry = entry_for(self.ns.as_ref(), subtree).map_err(|reason| CommandError {
            argv: argv.clone(),
            reason,
        })?;
        let started = std::time::Instant::now();
        // Stdio stays /dev/null (not captured): what runc starts inherits it.
        let status = Spawn::new(
            OsStr::new(&self.binary),
            log_args.into_iter().chain(args.iter().copied()),
        )
        .mount_entry(entry)
        .output(None)
        .await
        .map_err(|e| CommandError {
            argv: argv.clone(),
            reason: format!("spawn failed: {e}"),
        })?
        .status;
        tracing::debug!(%argv, status = ?status.code(), elapsed_ms = started.elapsed().as_millis() as u64, "external command");
        if status.success() {
            return Ok(());
        }
        Err(CommandError {
            argv,
            reason: format!("{status}: {}", last_log_errors(log)),
        })
    }

    /// Freezes every process of the container (cgroup freezer).
    pub async fn pause(&self, id: &str) -> Result<()> {
        self.call(
            &[&self.binary, "--root", self.root_str()?, "pause", id],
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// Changes the container's cgroup limits to `resources` (the JSON document of
    /// `runc update --resources`).
    pub async fn update(&self, id: &str, resources: &str) -> Result<()> {
        self.call(
            &[
                &self.binary,
                "--root",
                self.root_str()?,
                "update",
                "--resources",
                "-",
                id,
            ],
            Some(resources),
            None,
        )
        .await?;
        Ok(())
    }

    /// Sends SIGKILL to every process of the container, frozen or not. runc
    /// signals them under the freezer and thaws them after, so a frozen
    /// container's processes die without running again.
    pub async fn kill_all(&self, id: &str) -> Result<()> {
        self.call(
            &[
                &self.binary,
                "--root",
                self.root_str()?,
                "kill",
                "--all",
                id,
                "KILL",
            ],
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// Thaws a paused container.
    pub async fn resume(&self, id: &str) -> Result<()> {
        self.call(
            &[&self.binary, "--root", self.root_str()?, "resume", id],
            None,
            None,
        )
        .await?;
        Ok(())
    }

    /// Dumps the container, whose directory (root file system) is `sandbox_dir`,
    /// with CRIU into `images` (logs in `work`). Without `leave_running` the
    /// container is gone afterwards.
    pub async fn checkpoint(
        &self,
        id: &str,
        sandbox_dir: &Path,
        criu: &Path,
        images: &Path,
        work: &Path,
        leave_running: bool,
    ) -> Result<()> {
        let dump_log = work.join("dump.log");
        let (images, work, criu) = (path_str(images)?, path_str(work)?, path_str(criu)?);
        let mut argv = vec![
            self.binary.as_str(),
            "--root",
            self.root_str()?,
            "--criu",
            criu,
            "checkpoint",
            "--image-path",
            images,
            "--work-path",
            work,
        ];
        if leave_running {
            argv.push("--leave-running");
        }
        argv.push(id);
        let dumped = self
            .call(&argv, None, Some(sandbox_dir))
            .await
            .map_err(|mut e| {
                // runc only says that CRIU failed; why is in CRIU's log.
                let why = criu_errors(&dump_log);
                if !why.is_empty() {
                    e.reason = format!("{} (CRIU: {why})", e.reason);
                }
                match refusal(&why) {
                    Some(reason) => {
                        // The client gets the reason; the command and CRIU's words stay here.
                        tracing::warn!(error = %e, "CRIU refused the dump");
                        RuntimeError::Refused(reason.to_string())
                    }
                    None => RuntimeError::from(e),
                }
            });
        // runc makes the image directory 0600, CRIU its statistics 0644, and runc the marker
        // of a container left running after a dump (`checkpoint` in its state) 0644. A failed
        // dump's error is the one to answer with.
        let state = self.root.join(id);
        let modes = [Path::new(images), Path::new(work), state.as_path()]
            .into_iter()
            .filter(|dir| dir.is_dir())
            .try_for_each(|dir| crate::perms::secure_subtree(dir).map(drop));
        dumped?;
        modes
    }

    /// Restores container `id` from CRIU `images` with the (possibly new) `bundle`.
    ///
    /// Like `run_detached`, the restored tree's stdio is `/dev/null`.
    pub async fn restore(
        &self,
        id: &str,
        criu: &Path,
        bundle: &Path,
        images: &Path,
        work: &Path,
    ) -> Result<()> {
        crate::perms::make_dir(work, 0o700)?;
        let mut args: Vec<&OsStr> = vec![OsStr::new("--criu"), criu.as_os_str()];
        args.extend(["restore", "--detach", "--image-path"].map(OsStr::new));
        args.extend([
            images.as_os_str(),
            OsStr::new("--work-path"),
            work.as_os_str(),
            OsStr::new("--bundle"),
            bundle.as_os_str(),
            OsStr::new(id),
        ]);
        let restored = self
            .run_logged(&args, &work.join("runc-restore.log"), bundle.parent())
            .await;
        // CRIU writes its statistics 0644. A failed restore's error is the one to answer with.
        let modes = crate::perms::secure_subtree(work).map(drop);
        restored.map_err(|mut e| {
            // runc says CRIU failed; CRIU's log says why (it is removed with a failed restore).
            let why = criu_errors(&work.join("restore.log"));
            e.reason = if why.is_empty() {
                format!("{} (CRIU log: {}/restore.log)", e.reason, work.display())
            } else {
                format!("{} (CRIU: {why})", e.reason)
            };
            RuntimeError::from(e)
        })?;
        modes
    }

    /// Whether runc has state for container `id` (cheaper than `runc state`).
    pub fn exists(&self, id: &str) -> bool {
        self.root.join(id).join("state.json").exists()
    }

    /// The container's state, or `None` if runc does not know it.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>> {
        match self
            .call(
                &[&self.binary, "--root", self.root_str()?, "state", id],
                None,
                None,
            )
            .await
        {
            Ok(out) => serde_json::from_str(&out)
                .map(Some)
                .map_err(|e| RuntimeError::Spec(format!("parsing runc state: {e}"))),
            Err(e) if e.reason.contains("does not exist") || e.reason.contains("not exist") => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// All containers under this root.
    pub async fn list(&self) -> Result<Vec<ContainerState>> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let out = self
            .call(
                &[
                    &self.binary,
                    "--root",
                    self.root_str()?,
                    "list",
                    "--format",
                    "json",
                ],
                None,
                None,
            )
            .await?;
        let trimmed = out.trim();
        if trimmed.is_empty() || trimmed == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(trimmed)
            .map_err(|e| RuntimeError::Spec(format!("parsing runc list: {e}")))
    }

    /// Kills every process of the container and deletes it; what is already
    /// gone is fine. The caller removes the container's cgroups
    /// ([`crate::cgroups::CgroupTree::remove`]).
    pub async fn destroy(&self, id: &str) -> Result<()> {
        // A forced delete of a running container kills it and then polls every
        // 100 ms for it to stop: kill it first and wait for the exit instead.
        if self
            .kill_and_wait(id, std::time::Duration::from_secs(5))
            .await
        {
            // Its init is gone, and with it every process of its pid namespace. What
            // `runc delete` would still do is remove the cgroups, which the caller
            // does anyway, and runc's state directory: done here, without starting
            // runc (6-10 ms of every delete).
            return self.forget_stopped(id).await;
        }
        let root = self.root_str()?;
        match self
            .call(
                &[&self.binary, "--root", root, "delete", "--force", id],
                None,
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.reason.contains("does not exist") || e.reason.contains("not exist") => {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes runc's state of a container whose processes are all gone.
    async fn forget_stopped(&self, id: &str) -> Result<()> {
        // An id is one path component (sandbox ids are checked where they come in);
        // anything else is left to runc, which refuses it.
        if !crate::procfs::is_plain_name(id) {
            return Err(RuntimeError::Config(format!("not a container id: {id:?}")));
        }
        crate::blocking::remove_dir_all(self.root.join(id)).await
    }
}

impl Runc {
    /// Sends SIGKILL to the container's init (the whole pid namespace dies with it)
    /// through a pidfd, and waits up to `timeout` for it to exit. Whether its init is
    /// known to be gone: false when the container has no state (runc's delete then
    /// says what there is), or the init had not exited in time (frozen, say).
    /// An init that is gone, or is another process now (the start time in runc's
    /// state does not match), counts as gone.
    async fn kill_and_wait(&self, id: &str, timeout: std::time::Duration) -> bool {
        let Some(init) = self.init_state(id) else {
            return false;
        };
        let waited = crate::blocking::run(move || {
            crate::pidfd::kill_and_wait(init.init_process_pid, init.init_process_start, timeout)
        })
        .await;
        match waited {
            Ok(Ok(gone)) => gone,
            Ok(Err(e)) => {
                tracing::debug!(sandbox_id = %id, error = %e, "killing the container's init");
                false
            }
            Err(_) => false,
        }
    }

    /// Host pid of the container's init, from runc's state (no runc call).
    pub fn init_pid(&self, id: &str) -> Option<i32> {
        self.init_state(id).map(|s| s.init_process_pid)
    }

    fn init_state(&self, id: &str) -> Option<InitState> {
        let state_file = self.root.join(id).join("state.json");
        let text = std::fs::read_to_string(&state_file).ok()?;
        serde_json::from_str::<InitState>(&text).ok()
    }
}

/// The container's init as runc's state file records it.
#[derive(Deserialize)]
struct InitState {
    init_process_pid: i32,
    init_process_start: u64,
}

/// The last error messages in a runc JSON log (at most three, oldest first, `; `-joined), for
/// error reports: the last alone is often only the outcome ("criu failed: type NOTIFY"), and
/// the one before it the cause (a hook's own error).
fn last_log_errors(log: &Path) -> String {
    const KEPT: usize = 3;
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        level: String,
        #[serde(default)]
        msg: String,
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut errors: Vec<String> = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter(|l| l.level == "error" || l.level == "fatal")
        .map(|l| l.msg)
        .take(KEPT)
        .collect();
    if errors.is_empty() {
        return "runc failed without a log message".into();
    }
    errors.reverse();
    errors.join("; ")
}

/// The error lines of a CRIU log (its timestamps and task ids dropped), `; `-joined: the
/// first and the last two of them.
fn criu_errors(log: &Path) -> String {
    const KEPT: usize = 3;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text
        .lines()
        .filter_map(|line| {
            let message = line.split_once(") ").map_or(line, |(_, rest)| rest);
            // A restored task's lines name it first: `(00.15)     12: Error (…`.
            let message = message.trim_start();
            let message = message
                .split_once(": ")
                .filter(|(pid, _)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
                .map_or(message, |(_, rest)| rest);
            message.starts_with("Error (").then_some(message)
        })
        // The summary line says nothing; the rlimit one is in every dump here, good or bad
        // (CRIU may not raise its own descriptor limit inside the server's namespace).
        .filter(|message| {
            !message.contains("Dumping FAILED")
                && !message.contains("Restoring FAILED")
                && !message.contains("RLIMIT_NOFILE")
        })
        .collect();
    // The first error is the cause more often than not (what follows is the unwinding); the
    // last ones say where it ended.
    match errors.len() {
        n if n <= KEPT => errors.join("; "),
        n => std::iter::once(errors[0])
            .chain(errors[n - (KEPT - 1)..].iter().copied())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// What CRIU refuses to dump for a reason the sandbox's user can act on, by the words of its
/// error, and what to tell them.
const REFUSALS: [(&str, &str); 2] = [
    (
        "ctty inheritance detected",
        "a terminal of the sandbox has a foreground job other than its session's leader (an \
         interactive shell started inside another one, or a job-control job in the foreground \
         on a PTY), which CRIU cannot dump; end that job or leave the inner shell and try again; \
         the sandbox keeps running",
    ),
    (
        "Unseizable non-zombie",
        "a process of the sandbox stayed in uninterruptible sleep (waiting on the kernel, e.g. \
         for I/O) and could not be stopped to be dumped; try again; the sandbox keeps running",
    ),
];

/// The reason to give for a dump that CRIU failed with `errors` (from [`criu_errors`]), when it
/// is one of [`REFUSALS`].
fn refusal(errors: &str) -> Option<&'static str> {
    REFUSALS
        .iter()
        .find(|(words, _)| errors.contains(words))
        .map(|(_, reason)| *reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_the_user_can_act_on_is_named() {
        let tty = "tty: ctty inheritance detected sid/pgrp 8 (ctty pid_real 2411808 is not the session leader)";
        assert!(refusal(tty).is_some_and(|r| r.contains("terminal") && !r.contains("2411808")));
        assert!(
            refusal("Unseizable non-zombie 7 found").is_some_and(|r| r.contains("uninterruptible"))
        );
        assert_eq!(refusal("Can't dump ghost file"), None);
        assert_eq!(refusal(""), None);
    }

    #[test]
    fn a_failed_dump_says_what_criu_logged() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = tmp.path().join("dump.log");
        assert_eq!(criu_errors(&log), "", "no log, nothing to add");
        std::fs::write(
            &log,
            "(00.017018) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self\n\
             (00.017549) Collected (-1 attempts, 0 in_progress)\n\
             (10.017368) Error (criu/cr-dump.c:1655): Timeout reached. Try to interrupt: 0\n\
             (10.017477) Error (compel/src/lib/infect.c:262): Unseizable non-zombie 7 found\n\
             (10.017645) Error (criu/cr-dump.c:1975): Dumping FAILED.\n",
        )
        .expect("write");
        assert_eq!(
            criu_errors(&log),
            "Error (criu/cr-dump.c:1655): Timeout reached. Try to interrupt: 0; \
             Error (compel/src/lib/infect.c:262): Unseizable non-zombie 7 found"
        );
        // A restore's log: the restored tasks' lines carry their pid.
        std::fs::write(
            &log,
            "(00.150000)     12: Error (criu/files.c:1214): Unable to open fd=3 id=0x9\n\
             (00.150100)      1: Restoring FAILED.\n\
             (00.160000) Error (criu/cr-restore.c:2304): Killing processes because of failure on restore.\n",
        )
        .expect("write");
        assert_eq!(
            criu_errors(&log),
            "Error (criu/files.c:1214): Unable to open fd=3 id=0x9; \
             Error (criu/cr-restore.c:2304): Killing processes because of failure on restore."
        );
    }

    #[test]
    fn statuses_parse_and_unknown_ones_do_not_fail() {
        let list: Vec<ContainerState> = serde_json::from_str(
            r#"[{"id":"a","status":"running","pid":7},{"id":"b","status":"paused"},
                {"id":"c","status":"checkpointed"}]"#,
        )
        .expect("parse");
        assert_eq!(list[0].status, ContainerStatus::Running);
        assert_eq!(list[0].pid, 7);
        assert_eq!(list[1].status, ContainerStatus::Paused);
        assert_eq!(list[2].status, ContainerStatus::Unknown);
    }

    #[tokio::test]
    async fn a_stopped_container_is_forgotten_without_runc_and_only_by_its_id() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("runc");
        let state = root.join("sb1");
        std::fs::create_dir_all(&state).expect("mkdir");
        // An init long gone: its pid is ours, its start time is not.
        let me = std::process::id();
        std::fs::write(
            state.join("state.json"),
            format!(r#"{{"init_process_pid":{me},"init_process_start":1}}"#),
        )
        .expect("write");
        std::fs::write(tmp.path().join("keep"), b"k").expect("write");
        // No runc binary: destroying must not need one.
        let runc = Runc::new("/nonexistent/runc", &root);
        runc.destroy("sb1").await.expect("destroy");
        assert!(!state.exists());
        assert!(
            tmp.path().join("keep").exists(),
            "only the container's own state"
        );
        for bad in ["..", ".", "", "a/b"] {
            assert!(runc.forget_stopped(bad).await.is_err(), "{bad:?}");
        }
        assert!(tmp.path().join("keep").exists());
    }

    #[test]
    fn picks_the_last_errors_of_the_log() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = tmp.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"error\",\"msg\":\"oldest\"}\n{\"level\":\"info\",\"msg\":\"x\"}\n\
             {\"level\":\"error\",\"msg\":\"hook: boom\"}\n{\"level\":\"error\",\"msg\":\"first\"}\n\
             not json\n{\"level\":\"fatal\",\"msg\":\"criu failed: type NOTIFY\"}\n",
        )
        .expect("write");
        assert_eq!(
            last_log_errors(&log),
            "hook: boom; first; criu failed: type NOTIFY"
        );
        assert_eq!(
            last_log_errors(&tmp.path().join("missing")),
            "runc failed without a log message"
        );
    }
}
