//! [`Command`]: a program to run in a sandbox, shaped like `std::process::Command`.
//!
//! One builder serves `run`, `start_process` and `create_pty`; each takes the fields that apply
//! to it (see each field) and turns them into the wire request.

use std::collections::BTreeMap;
use std::time::Duration;

use alcove_wire::process::{
    HealthCheck, OutputMode, RestartConfig, RunRequest, StartProcessRequest, StdinMode, UserSpec,
};
use alcove_wire::pty::CreatePtyRequest;

use crate::error::ClientError;

/// A program, its arguments and how to run it.
///
/// ```
/// use std::time::Duration;
/// use alcove_client::Command;
/// let command = Command::new("python3")
///     .args(["-c", "print('hi')"])
///     .env("PYTHONUNBUFFERED", "1")
///     .timeout(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Program: a path, or a name looked up in `PATH`.
    pub program: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Variables added to (and overriding) the default environment.
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the user's home, else `/`).
    pub working_dir: Option<String>,
    /// Who to run as (`"root"`, `"1000:1000"`, a name); default the image's user.
    pub user: Option<String>,
    /// `run` only: the sandbox kills the command after this long (exit code `-9`).
    pub timeout: Option<Duration>,
    /// `start_process` only: `Pipe` to write to stdin later.
    pub stdin: StdinMode,
    /// `start_process` only: keep or discard stdout.
    pub stdout: OutputMode,
    /// `start_process` only: keep or discard stderr.
    pub stderr: OutputMode,
    /// `start_process` only: the name of a managed process, usable instead of its pid.
    pub name: Option<String>,
    /// `start_process` only: when and how fast a managed process is restarted.
    pub restart: Option<RestartConfig>,
    /// `start_process` only: the health check of a managed process.
    pub health_check: Option<HealthCheck>,
}

impl Command {
    /// Runs `program` with no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            user: None,
            timeout: None,
            stdin: StdinMode::Closed,
            stdout: OutputMode::Capture,
            stderr: OutputMode::Capture,
            name: None,
            restart: None,
            health_check: None,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the working directory.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Sets the user.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the time limit of a `run`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Pipes stdin (for `write_stdin` / `close_stdin`).
    pub fn stdin_pipe(mut self) -> Self {
        self.stdin = StdinMode::Pipe;
        self
    }

    /// Sets what happens to stdout and stderr of a background process.
    pub fn output(mut self, stdout: OutputMode, stderr: OutputMode) -> Self {
        self.stdout = stdout;
        self.stderr = stderr;
        self
    }

    /// Names a background process, which makes it managed (supervised by the agent): the name
    /// addresses its current run in every process call, e.g. `get_process("web")`. Unique
    /// among the sandbox's supervised or running processes; not empty, not all digits, no
    /// `/`, not `run`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Restarts the background process as `config` says (which makes it managed), e.g.
    /// `RestartConfig { policy: RestartPolicy::OnFailure, max_restarts: Some(5),
    /// ..RestartConfig::default() }`.
    pub fn restart(mut self, config: RestartConfig) -> Self {
        self.restart = Some(config);
        self
    }

    /// Probes the background process over HTTP or TCP (which makes it managed); with a
    /// restart policy, failing probes restart it.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_check = Some(check);
        self
    }

    fn check(&self) -> Result<(), ClientError> {
        if self.program.is_empty() {
            return Err(ClientError::invalid("command must be a non-empty string"));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(ClientError::invalid("a run's timeout must be positive"));
        }
        Ok(())
    }

    fn user_spec(&self) -> Option<UserSpec> {
        self.user.clone().map(UserSpec::Text)
    }

    /// The body of `POST /api/v1/processes/run` (the limit travels as `timeout`, seconds).
    pub(crate) fn run_request(&self) -> Result<RunRequest, ClientError> {
        self.check()?;
        Ok(RunRequest {
            command: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            timeout: self.timeout.map(|t| t.as_secs_f64()),
            timeout_secs: None,
            user: self.user_spec(),
            // The Rust client reads one `output` event per line (it streams them to callers).
            batch_output: false,
        })
    }

    /// The body of `POST /api/v1/processes`.
    pub(crate) fn start_request(&self) -> Result<StartProcessRequest, ClientError> {
        self.check()?;
        if let Some(name) = &self.name {
            crate::process_key::check_name(name)?;
        }
        Ok(StartProcessRequest {
            command: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            stdin_mode: self.stdin,
            stdout_mode: self.stdout,
            stderr_mode: self.stderr,
            user: self.user_spec(),
            name: self.name.clone(),
            restart: self.restart.clone(),
            health_check: self.health_check.clone(),
        })
    }

    /// The body of `POST /api/v1/pty` for a terminal of `cols` x `rows`.
    pub(crate) fn pty_request(
        &self,
        cols: u16,
        rows: u16,
    ) -> Result<CreatePtyRequest, ClientError> {
        self.check()?;
        for (value, what) in [(cols, "cols"), (rows, "rows")] {
            if !alcove_wire::pty::valid_dimension(value) {
                return Err(ClientError::invalid(format!(
                    "{what} must be between 1 and {}",
                    alcove_wire::pty::MAX_DIMENSION
                )));
            }
        }
        Ok(CreatePtyRequest {
            command: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            rows,
            cols,
            user: self.user_spec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_builder_makes_every_request() {
        let command = Command::new("sh")
            .args(["-c", "cat"])
            .env("A", "1")
            .user("root")
            .timeout(Duration::from_millis(1500))
            .stdin_pipe();
        let run = command.run_request().expect("valid");
        assert_eq!(run.timeout, Some(1.5));
        assert_eq!(run.args, ["-c", "cat"]);
        let json = serde_json::to_value(&run).expect("json");
        assert_eq!(json["user"], "root");
        let start = command.start_request().expect("valid");
        assert_eq!(start.stdin_mode, StdinMode::Pipe);
        assert!(!start.is_managed());
        let pty = command.pty_request(120, 40).expect("valid");
        assert_eq!((pty.cols, pty.rows), (120, 40));
    }

    #[test]
    fn managed_settings_land_in_the_start_request() {
        use alcove_wire::process::{HealthCheckKind, RestartPolicy};

        let command = Command::new("python3")
            .args(["-m", "http.server", "8080"])
            .name("web")
            .restart(RestartConfig {
                policy: RestartPolicy::Always,
                max_restarts: Some(5),
                ..RestartConfig::default()
            })
            .health_check(HealthCheck {
                kind: HealthCheckKind::Http,
                port: 8080,
                path: Some("/health".into()),
                initial_delay_ms: 100,
                interval_ms: 200,
                timeout_ms: 300,
                failure_threshold: 2,
            });
        let start = command.start_request().expect("valid");
        assert!(start.is_managed());
        let json = serde_json::to_value(&start).expect("json");
        assert_eq!(json["name"], "web");
        assert_eq!(
            json["restart"],
            serde_json::json!({"policy": "always", "max_restarts": 5,
                               "initial_backoff_ms": 500, "max_backoff_ms": 30000})
        );
        assert_eq!(
            json["health_check"],
            serde_json::json!({"type": "http", "port": 8080, "path": "/health",
                               "initial_delay_ms": 100, "interval_ms": 200, "timeout_ms": 300,
                               "failure_threshold": 2})
        );
        // Unmanaged starts send none of the three.
        let plain = serde_json::to_value(Command::new("cat").start_request().expect("valid"))
            .expect("json");
        for key in ["name", "restart", "health_check"] {
            assert!(plain.get(key).is_none(), "{key}");
        }
        for bad in ["", "42", "a/b", "run"] {
            assert!(
                matches!(
                    Command::new("x").name(bad).start_request(),
                    Err(ClientError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_commands_are_refused() {
        assert!(Command::new("").run_request().is_err());
        assert!(
            Command::new("x")
                .timeout(Duration::ZERO)
                .run_request()
                .is_err()
        );
        assert!(Command::new("bash").pty_request(0, 24).is_err());
    }
}
