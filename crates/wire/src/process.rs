//! Process bodies (docs/protocol/sandbox-api.md: Run a command, Processes, Process I/O):
//! run-to-completion requests and their SSE events, managed-process requests, `ProcessInfo`,
//! signals and captured output.
//!
//! Enums are spelled exactly as on the wire (the Python SDK rejects unknown status strings).
//! Request types tolerate `null` where the SDKs may send it and ignore unknown fields, because
//! newer SDKs add fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::time::{EpochMillis, EpochMillisSchema};

/// Deserializes `null` as the type's default, so `"args": null` means "no args".
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Who a process runs as: `"root"`, `"name"`, `"1000"`, `"1000:1000"`, `"name:group"`, or an
/// object `{"name"}` / `{"uid", "gid"}` (docs/protocol/sandbox-api.md, Conventions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum UserSpec {
    /// The string form, `USER[:GROUP]` where each part is a name or a number.
    Text(String),
    /// The object form; at least one field must be set.
    Ids(UserIds),
}

/// The object form of [`UserSpec`] (the SDK's `ProcessUserSpec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserIds {
    /// A user name from the sandbox's `/etc/passwd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A numeric user id; need not exist in `/etc/passwd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// A numeric group id; defaults to the user's primary group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// Body of `POST /api/v1/processes/run` (docs/protocol/sandbox-api.md, Run a command).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunRequest {
    /// Program to execute: a path, or a name looked up in `PATH`.
    pub command: String,
    /// Arguments after the program name.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = json!([]))]
    pub args: Vec<String>,
    /// Variables added to (and overriding) the default environment.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = json!({}))]
    pub env: BTreeMap<String, String>,
    /// Working directory; defaults to the user's home, else `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Timeout in seconds (float allowed); the Python SDK and TS send this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Timeout in seconds; the Python desktop probe sends this name instead of `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    /// Who to run as; absent means the agent's own user (the image's default user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserSpec>,
    /// Alcove's own: the lines of one read come as one `output_batch` event
    /// ([`OutputBatchEvent`]) instead of one `output` event each. Alcove's SDKs ask for it;
    /// the official ones do not know it and get `output` events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch_output: bool,
}

impl RunRequest {
    /// The effective timeout in seconds: `timeout` wins over `timeout_secs`; values that are
    /// not finite and positive mean "no timeout".
    pub fn effective_timeout_secs(&self) -> Option<f64> {
        self.timeout
            .or(self.timeout_secs)
            .filter(|secs| secs.is_finite() && *secs > 0.0)
    }
}

/// What happens to a managed process's stdin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StdinMode {
    /// Stdin is `/dev/null`.
    #[default]
    Closed,
    /// Stdin is a pipe written through `POST /processes/{p}/stdin`.
    Pipe,
}

/// What happens to a managed process's stdout or stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// Lines are kept in the agent's bounded buffer and can be read or followed.
    #[default]
    Capture,
    /// The stream goes to `/dev/null`.
    Discard,
}

/// When a managed process is restarted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart after a non-zero exit or a signal (the SDK's default).
    #[default]
    OnFailure,
    /// Restart after every exit.
    Always,
}

fn default_initial_backoff_ms() -> u64 {
    500
}

fn default_max_backoff_ms() -> u64 {
    30_000
}

/// Restart policy and back-off of a managed process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RestartConfig {
    /// When to restart.
    #[serde(default)]
    #[schema(default = RestartPolicy::default)]
    pub policy: RestartPolicy,
    /// Upper bound on restarts; `None` = unlimited.
    #[serde(default)]
    pub max_restarts: Option<u32>,
    /// First back-off delay in milliseconds.
    #[serde(default = "default_initial_backoff_ms")]
    #[schema(default = default_initial_backoff_ms)]
    pub initial_backoff_ms: u64,
    /// Largest back-off delay in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    #[schema(default = default_max_backoff_ms)]
    pub max_backoff_ms: u64,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::default(),
            max_restarts: None,
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

/// Kind of a managed-process health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    /// An HTTP GET that must answer 2xx.
    Http,
    /// A TCP connect that must succeed.
    Tcp,
}

fn default_initial_delay_ms() -> u64 {
    5_000
}

fn default_interval_ms() -> u64 {
    1_000
}

fn default_timeout_ms() -> u64 {
    500
}

fn default_failure_threshold() -> u32 {
    3
}

/// A local health check of a managed process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthCheck {
    /// HTTP or TCP.
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    /// Port inside the sandbox.
    pub port: u16,
    /// HTTP path (HTTP checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Delay before the first check, in milliseconds.
    #[serde(default = "default_initial_delay_ms")]
    #[schema(default = default_initial_delay_ms)]
    pub initial_delay_ms: u64,
    /// Time between checks, in milliseconds.
    #[serde(default = "default_interval_ms")]
    #[schema(default = default_interval_ms)]
    pub interval_ms: u64,
    /// Time one check may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    #[schema(default = default_timeout_ms)]
    pub timeout_ms: u64,
    /// Consecutive failures that make the process unhealthy.
    #[serde(default = "default_failure_threshold")]
    #[schema(default = default_failure_threshold)]
    pub failure_threshold: u32,
}

impl HealthCheck {
    /// An HTTP check of `path` (`/` when `None`) on `port`, with the default timings.
    pub fn http(port: u16, path: Option<String>) -> Self {
        Self::with_defaults(HealthCheckKind::Http, port, path)
    }

    /// A TCP check of `port`, with the default timings.
    pub fn tcp(port: u16) -> Self {
        Self::with_defaults(HealthCheckKind::Tcp, port, None)
    }

    fn with_defaults(kind: HealthCheckKind, port: u16, path: Option<String>) -> Self {
        Self {
            kind,
            port,
            path,
            initial_delay_ms: default_initial_delay_ms(),
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

/// Body of `POST /api/v1/processes` (docs/protocol/sandbox-api.md, Processes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StartProcessRequest {
    /// Program to execute: a path, or a name looked up in `PATH`.
    pub command: String,
    /// Arguments after the program name.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = json!([]))]
    pub args: Vec<String>,
    /// Variables added to (and overriding) the default environment.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = json!({}))]
    pub env: BTreeMap<String, String>,
    /// Working directory; defaults to the user's home, else `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Stdin handling; omitted = `closed`.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = StdinMode::default)]
    pub stdin_mode: StdinMode,
    /// Stdout handling; omitted = `capture`.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = OutputMode::default)]
    pub stdout_mode: OutputMode,
    /// Stderr handling; omitted = `capture`.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = OutputMode::default)]
    pub stderr_mode: OutputMode,
    /// Who to run as; absent means the agent's own user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserSpec>,
    /// Name of a managed process, usable instead of the pid in `{p}` paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Restart policy of a managed process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartConfig>,
    /// Health check of a managed process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

impl StartProcessRequest {
    /// Whether the request asks for a supervised ("managed") process: any of `name`,
    /// `restart` or `health_check`.
    pub fn is_managed(&self) -> bool {
        self.name.is_some() || self.restart.is_some() || self.health_check.is_some()
    }
}

/// Status of a process (strict on the wire; docs/protocol/sandbox-api.md, ProcessInfo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStatus {
    /// Still running.
    Running,
    /// Exited on its own; `exit_code` is set.
    Exited,
    /// Killed by a signal; `signal` is set.
    Signaled,
    /// Killed by the kernel's OOM killer.
    OomKilled,
}

/// Supervisor status of a managed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ManagedStatus {
    /// Being started.
    Starting,
    /// Running.
    Running,
    /// Waiting before a restart.
    BackingOff,
    /// Not running and not going to be restarted.
    Stopped,
}

/// Latest health of a managed process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// No health check is configured.
    Disabled,
    /// Checks have not passed yet.
    Starting,
    /// The last check passed.
    Healthy,
    /// Too many consecutive checks failed.
    Unhealthy,
}

/// How a previous run of a managed process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManagedExit {
    /// Exit code, when it exited on its own.
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    /// Signal number, when a signal killed it.
    #[schema(required = true)]
    pub signal: Option<i32>,
    /// Whether the OOM killer killed it.
    #[serde(default)]
    #[schema(required = true)]
    pub oom_killed: bool,
    /// End time, epoch milliseconds.
    #[schema(value_type = EpochMillisSchema)]
    pub ended_at: EpochMillis,
}

/// Managed-process metadata embedded in [`ProcessInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManagedInfo {
    /// Stable agent-local id: the name when one was given.
    pub id: String,
    /// The name given at creation.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Supervisor status.
    pub status: ManagedStatus,
    /// How often the process was restarted.
    pub restart_count: u32,
    /// The restart policy in force.
    pub restart: RestartConfig,
    /// The health check in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub health_check: Option<HealthCheck>,
    /// Latest health.
    pub health_status: HealthStatus,
    /// Consecutive failed health checks.
    pub consecutive_health_failures: u32,
    /// How the last run ended.
    #[serde(default)]
    #[schema(required = true)]
    pub last_exit: Option<ManagedExit>,
    /// Last supervisor error.
    #[serde(default)]
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When the next restart is due, epoch milliseconds.
    #[serde(default)]
    #[schema(value_type = Option<EpochMillisSchema>, required = true)]
    pub next_restart_at: Option<EpochMillis>,
}

/// A process as reported by `GET /api/v1/processes[/{p}]` (docs/protocol/sandbox-api.md,
/// ProcessInfo). Timestamps are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessInfo {
    /// Process id inside the sandbox.
    pub pid: u32,
    /// Current status.
    pub status: ProcessStatus,
    /// Exit code once it exited on its own.
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    /// Signal number once a signal killed it.
    #[schema(required = true)]
    pub signal: Option<i32>,
    /// Whether `POST /stdin` can still write.
    #[serde(default)]
    #[schema(required = true)]
    pub stdin_writable: bool,
    /// The command as requested.
    pub command: String,
    /// The arguments as requested.
    #[serde(default)]
    #[schema(required = true)]
    pub args: Vec<String>,
    /// Start time, epoch milliseconds.
    #[schema(value_type = EpochMillisSchema)]
    pub started_at: EpochMillis,
    /// End time, epoch milliseconds.
    #[schema(value_type = Option<EpochMillisSchema>, required = true)]
    pub ended_at: Option<EpochMillis>,
    /// Whether the OOM killer killed it.
    #[serde(default)]
    #[schema(required = true)]
    pub oom_killed: bool,
    /// Supervisor metadata of a managed process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub managed: Option<ManagedInfo>,
}

/// Body of `GET /api/v1/processes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProcessList {
    /// Every process the agent still tracks.
    pub processes: Vec<ProcessInfo>,
}

/// Body of `POST /api/v1/processes/{p}/signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignalRequest {
    /// Signal number (e.g. 15 for SIGTERM).
    pub signal: i32,
}

/// Body of `PUT /api/v1/environment`: variables every later process of the
/// sandbox inherits (a warm pool's claim binds its environment and secrets this way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetEnvironmentRequest {
    /// Variables to add; a variable of the same name is replaced.
    pub env: BTreeMap<String, String>,
}

/// Answer of `DELETE /api/v1/processes` (stop every user process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StopAllResponse {
    /// How many processes (tasks) were killed.
    pub killed: usize,
}

/// Answer of `POST /api/v1/processes/{p}/signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignalResponse {
    /// Always `true` on a 2xx answer.
    pub success: bool,
}

/// Answer of `GET /api/v1/processes/{p}/stdout|stderr|output`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutputResponse {
    /// The process.
    pub pid: u32,
    /// Captured lines still in the buffer, oldest first.
    pub lines: Vec<String>,
    /// `lines.len()`.
    pub line_count: usize,
    /// Indexes into `lines` of the pieces of a line longer than 1 MiB, which the agent cut:
    /// each is continued by the next line of its stream, without a newline between them.
    /// Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continued: Vec<usize>,
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Several output lines of one stream, read at once, in an SSE stream (run or follow) whose
/// client asked for batches (`batch_output` in a run, `?batch=true` on a follow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutputBatchEvent {
    /// Which stream.
    pub stream: OutputStream,
    /// When the agent read them, epoch milliseconds.
    #[schema(value_type = EpochMillisSchema)]
    pub timestamp: EpochMillis,
    /// The lines, each without its newline, in order.
    pub lines: Vec<String>,
    /// In a follow: lines (of either stream) that the process's output buffer let go between
    /// where this follower stood (its start, its `Last-Event-ID` or its previous batch) and
    /// this batch's first line, which it never saw. Absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(minimum = 1)]
    pub dropped: u64,
    /// Indexes into `lines` of the pieces of a line longer than 1 MiB, which the agent cut:
    /// each is continued by the next line of this stream (in this batch or a later one),
    /// without a newline between them. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continued: Vec<usize>,
}

/// Whether a count is 0: the `skip_serializing_if` of counts left out when none (also for
/// the agent's borrowed twin of [`OutputBatchEvent`]).
pub fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One output line in an SSE stream (run, follow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutputEvent {
    /// The line without its newline.
    pub line: String,
    /// When the agent read it, epoch milliseconds (required by the Python SDK).
    #[schema(value_type = EpochMillisSchema)]
    pub timestamp: EpochMillis,
    /// Which stream; clients count a missing stream as stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stream: Option<OutputStream>,
    /// The line is a piece of a line longer than 1 MiB, which the agent cut: the next line of
    /// its stream continues it, without a newline between them. Absent when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continued: bool,
}

/// First event of a run stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StartedEvent {
    /// Process id of the command.
    pub pid: u32,
    /// Start time, epoch milliseconds.
    #[schema(value_type = EpochMillisSchema)]
    pub started_at: EpochMillis,
}

/// Why a run ended (docs/protocol/streaming.md, The run stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// Exited on its own.
    Exited,
    /// Killed by a signal.
    Signaled,
    /// Killed by the kernel's OOM killer.
    OomKilled,
    /// The run's timeout expired and the agent killed the process tree.
    TimedOut,
}

/// Last event of a run stream; `exit_code` or `signal` is non-null.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExitEvent {
    /// Exit code when it exited on its own.
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    /// Signal number when a signal killed it.
    #[schema(required = true)]
    pub signal: Option<i32>,
    /// Whether the OOM killer killed it.
    #[serde(default)]
    #[schema(required = true)]
    pub oom_killed: bool,
    /// Why it ended.
    pub reason: ExitReason,
}

/// Last event of a follow stream (`event: eof`), sent once the process exited and its output
/// was drained: an empty object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EofEvent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_request_accepts_captured_body_and_nulls() {
        let body = r#"{"args":["hi"],"command":"echo","env":{"A":"1"},"timeout":10,"user":"root","working_dir":"/tmp"}"#;
        let req: RunRequest = serde_json::from_str(body).expect("captured body parses");
        assert_eq!(req.args, vec!["hi".to_string()]);
        assert_eq!(req.effective_timeout_secs(), Some(10.0));
        assert_eq!(req.user, Some(UserSpec::Text("root".into())));

        let req: RunRequest = serde_json::from_str(
            r#"{"command":"ls","args":null,"env":null,"timeout_secs":2.5,"new_field":1}"#,
        )
        .expect("nulls and unknown fields are tolerated");
        assert!(req.args.is_empty());
        assert_eq!(req.effective_timeout_secs(), Some(2.5));
    }

    #[test]
    fn zero_or_negative_timeout_means_none() {
        let req = RunRequest {
            timeout: Some(0.0),
            ..RunRequest::default()
        };
        assert_eq!(req.effective_timeout_secs(), None);
    }

    #[test]
    fn user_object_forms_parse() {
        let spec: UserSpec = serde_json::from_str(r#"{"uid":1000,"gid":1000}"#).expect("ids");
        assert_eq!(
            spec,
            UserSpec::Ids(UserIds {
                name: None,
                uid: Some(1000),
                gid: Some(1000)
            })
        );
        let spec: UserSpec = serde_json::from_str(r#"{"name":"app"}"#).expect("name");
        assert!(matches!(spec, UserSpec::Ids(UserIds { name: Some(n), .. }) if n == "app"));
    }

    #[test]
    fn start_request_defaults_and_managed() {
        let req: StartProcessRequest =
            serde_json::from_str(r#"{"command":"cat","stdin_mode":"pipe"}"#).expect("parses");
        assert_eq!(req.stdin_mode, StdinMode::Pipe);
        assert_eq!(req.stdout_mode, OutputMode::Capture);
        assert!(!req.is_managed());
        let req: StartProcessRequest = serde_json::from_str(
            r#"{"command":"x","restart":{"policy":"never"},"health_check":{"type":"tcp","port":80}}"#,
        )
        .expect("parses");
        assert!(req.is_managed());
        assert_eq!(req.restart.map(|r| r.initial_backoff_ms), Some(500));
        assert_eq!(req.health_check.map(|h| h.failure_threshold), Some(3));
    }

    #[test]
    fn statuses_are_spelled_as_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&ProcessStatus::OomKilled).expect("serializes"),
            r#""oom_killed""#
        );
        assert_eq!(
            serde_json::to_string(&ExitReason::TimedOut).expect("serializes"),
            r#""timed_out""#
        );
        let exit = ExitEvent {
            exit_code: None,
            signal: Some(9),
            oom_killed: false,
            reason: ExitReason::TimedOut,
        };
        assert_eq!(
            serde_json::to_string(&exit).expect("serializes"),
            r#"{"exit_code":null,"signal":9,"oom_killed":false,"reason":"timed_out"}"#
        );
    }

    #[test]
    fn process_info_matches_wire_example() {
        let info = ProcessInfo {
            pid: 1002,
            status: ProcessStatus::Running,
            exit_code: None,
            signal: None,
            stdin_writable: true,
            command: "cat".into(),
            args: vec![],
            started_at: 1_795_711_005_468,
            ended_at: None,
            oom_killed: false,
            managed: None,
        };
        let value = serde_json::to_value(&info).expect("serializes");
        assert_eq!(value["status"], "running");
        assert_eq!(value["ended_at"], serde_json::Value::Null);
        assert!(value.get("managed").is_none());
    }
}
