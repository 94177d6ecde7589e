//! The agent's event journal (`GET /api/v1/journal`, docs/protocol/sandbox-api.md, Journal):
//! what happened in a sandbox, record by record, which the server follows and persists as the
//! sandbox's logs (docs/protocol/control-plane.md, Logs).
//!
//! A record is a line of a process's output or an event (a process started, exited, was
//! restarted, failed a health check, was killed by the OOM killer; a warning or error of the
//! agent itself). Records carry a sequence number that only grows, so a reader that reconnects
//! asks for what came after the last one it kept.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::process::OutputStream;
use crate::time::{EpochMillis, EpochMillisSchema};

/// Severity of a log record; the numbers are those of the log query (`level=3`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// 1.
    Trace,
    /// 2.
    Debug,
    /// 3: standard output, and events of normal operation.
    Info,
    /// 4: standard error, failed health checks, exits with a failure.
    Warn,
    /// 5: OOM kills, processes given up on, agent errors.
    Error,
    /// 6.
    Fatal,
}

impl LogLevel {
    /// Every level, lowest first.
    pub const ALL: [LogLevel; 6] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Fatal,
    ];

    /// The number the log query uses (trace 1 … fatal 6).
    pub fn number(self) -> u8 {
        match self {
            LogLevel::Trace => 1,
            LogLevel::Debug => 2,
            LogLevel::Info => 3,
            LogLevel::Warn => 4,
            LogLevel::Error => 5,
            LogLevel::Fatal => 6,
        }
    }

    /// The level of a query number.
    pub fn from_number(n: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|l| i64::from(l.number()) == n)
    }

    /// The level of a name (`info`) or number (`3`), as the log query accepts them.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(n) = text.trim().parse::<i64>() {
            return Self::from_number(n);
        }
        let text = text.trim().to_ascii_lowercase();
        let text = if text == "warning" { "warn" } else { &text };
        Self::ALL.into_iter().find(|l| {
            serde_json::to_value(l)
                .ok()
                .as_ref()
                .and_then(|v| v.as_str())
                == Some(text)
        })
    }
}

/// What kind of event a record is (absent for output lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JournalEvent {
    /// A process started.
    ProcessStarted,
    /// A process exited (with a code or a signal).
    ProcessExited,
    /// The OOM killer killed a process.
    OomKilled,
    /// A managed process is waiting to be restarted.
    BackingOff,
    /// A managed process was started again.
    ProcessRestarted,
    /// A managed process reached its `max_restarts` and is no longer restarted.
    GaveUp,
    /// A managed process was stopped on request; it is not restarted.
    SupervisionStopped,
    /// A health check failed.
    HealthCheckFailed,
    /// A health check passed after failures (or for the first time).
    HealthCheckPassed,
    /// Output was produced faster than the log keeps; some lines are not in the log.
    OutputDropped,
    /// The agent reports a problem of its own.
    Agent,
    /// The server reports something that happened to the sandbox (suspend, resume, a crash).
    Sandbox,
}

/// One journal record. Optional fields are left out when they do not apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JournalRecord {
    /// Position in the journal: grows by one per record, never reused.
    pub seq: u64,
    /// When it happened.
    #[schema(value_type = EpochMillisSchema)]
    pub timestamp: EpochMillis,
    /// Severity.
    pub level: LogLevel,
    /// The output line (without newline) or the event's message.
    pub body: String,
    /// The event, for records that are not output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub event: Option<JournalEvent>,
    /// The process it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pid: Option<u32>,
    /// Stream of an output line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stream: Option<OutputStream>,
    /// The process's command (on `process_started` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub command: Option<String>,
    /// Managed-process id, when the process is managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub managed_id: Option<String>,
    /// Managed-process name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub managed_name: Option<String>,
    /// Exit code (on `process_exited` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub exit_code: Option<i32>,
    /// Killing signal (on `process_exited` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub signal: Option<i32>,
}

impl JournalRecord {
    /// A record with only a level and a text (its `seq` is set by whoever stores it).
    pub fn new(timestamp: EpochMillis, level: LogLevel, body: String) -> Self {
        Self {
            seq: 0,
            timestamp,
            level,
            body,
            event: None,
            pid: None,
            stream: None,
            command: None,
            managed_id: None,
            managed_name: None,
            exit_code: None,
            signal: None,
        }
    }
}

/// One event of `GET /api/v1/journal`: records in order, and how many were lost before them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JournalBatch {
    /// Records after the reader's position, oldest first.
    pub records: Vec<JournalRecord>,
    /// Records between the reader's position and the first one here that the journal no
    /// longer holds (it keeps a bounded tail).
    #[serde(default)]
    #[schema(required = true)]
    pub missed: u64,
}

/// One record of `GET {B}/sandboxes/{id}/logs` (docs/protocol/control-plane.md, Logs); the
/// field names are camelCase as the official SDK reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxLogRecord {
    /// When it happened, epoch milliseconds.
    #[schema(value_type = EpochMillisSchema)]
    pub timestamp: EpochMillis,
    /// A unique id of the record.
    pub uuid: String,
    /// The sandbox's namespace.
    pub namespace: String,
    /// Always empty: sandboxes belong to no application.
    pub application: String,
    /// The sandbox.
    pub sandbox_id: String,
    /// Key-value pairs, each a two-element list:
    /// `[["sandbox_id", …], ["source", "process"|"agent"|"server"]]`.
    pub resource_attributes: Vec<Vec<String>>,
    /// The output line or the event's message.
    pub body: String,
    /// The record's attributes as a JSON object in a string: `event`, `process_id`, `pid`,
    /// `stream`, `command`, `managed_id`, `managed_name`, `exit_code`, `signal`, each when it
    /// applies.
    pub log_attributes: String,
    /// Always empty.
    pub allocations: Vec<String>,
    /// Always empty.
    pub function_runs: Vec<String>,
    /// Severity: trace 1, debug 2, info 3, warn 4, error 5, fatal 6.
    pub level: u8,
    /// Days the record is kept after the sandbox ends (the server's archive retention).
    pub retention: u32,
}

/// Answer of `GET {B}/sandboxes/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SandboxLogsResponse {
    /// Matching records, oldest first.
    pub logs: Vec<SandboxLogRecord>,
    /// Pass back as `nextToken` for the next page; `null` when there is none.
    #[schema(required = true)]
    pub next_token: Option<String>,
}

/// One process that has records in a sandbox's logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessLogFilter {
    /// What `processId` matches for it: the pid, as text.
    pub process_id: String,
    /// The pid, as text.
    pub process_pid: String,
    /// Its command (empty if its start is no longer in the logs).
    pub process_command: String,
    /// Its managed-process id (empty when not managed).
    pub process_managed_id: String,
    /// Its managed-process name (empty when none).
    pub process_managed_name: String,
    /// Time of its first record, epoch milliseconds.
    #[schema(value_type = EpochMillisSchema)]
    pub first_seen: EpochMillis,
    /// Time of its last record, epoch milliseconds.
    #[schema(value_type = EpochMillisSchema)]
    pub last_seen: EpochMillis,
    /// Its records.
    pub log_count: u64,
}

/// Answer of `GET {B}/sandboxes/{id}/processes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProcessLogFiltersResponse {
    /// Processes with records, in order of first appearance.
    pub processes: Vec<ProcessLogFilter>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_from_names_and_numbers() {
        assert_eq!(LogLevel::parse("3"), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse("WARN"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("warning"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("fatal"), Some(LogLevel::Fatal));
        assert_eq!(LogLevel::parse("7"), None);
        assert_eq!(LogLevel::parse("loud"), None);
        assert_eq!(LogLevel::Error.number(), 5);
    }

    #[test]
    fn output_records_leave_out_event_fields() {
        let record = JournalRecord {
            seq: 7,
            pid: Some(12),
            stream: Some(OutputStream::Stdout),
            ..JournalRecord::new(1, LogLevel::Info, "hi".into())
        };
        let json = serde_json::to_string(&record).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"seq":7,"timestamp":1,"level":"info","body":"hi","pid":12,"stream":"stdout"}"#
        );
    }
}
