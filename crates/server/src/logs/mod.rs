//! Sandbox logs: what every process of a sandbox wrote, and the events around them (started,
//! exited, restarted, health checks, OOM kills, the agent's problems, and what the server did
//! to the sandbox: suspended, resumed, crashed, ended), each with a level.
//!
//! The agent journals them ([`alcove_wire::journal`]); the server follows each running
//! sandbox's journal ([`follow`]) and keeps the records on the host ([`files`]), so they
//! survive suspend/resume and server restarts and stay readable after the sandbox ends for
//! as long as it is archived; the archive's purge removes them. [`query`] serves them.

pub mod files;
mod follow;
pub mod query;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alcove_runtime::SandboxId;
use alcove_wire::journal::{
    JournalEvent, JournalRecord, LogLevel, ProcessLogFilter, SandboxLogRecord, SandboxLogsResponse,
};
use alcove_wire::time::now_millis;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::control::AgentClient;
use files::{LogFiles, StoredRecord};
use query::LogQuery;

/// The logs of every sandbox of this server, and the followers that fill them.
#[derive(Debug)]
pub struct Logs {
    files: Arc<LogFiles>,
    agents: AgentClient,
    followers: Mutex<HashMap<String, AbortHandle>>,
    suspects: mpsc::UnboundedSender<SandboxId>,
    retention_days: u32,
}

/// A record the server writes itself (seq 0: not from an agent).
fn server_record(level: LogLevel, body: String) -> JournalRecord {
    JournalRecord {
        event: Some(JournalEvent::Sandbox),
        ..JournalRecord::new(now_millis(), level, body)
    }
}

impl Logs {
    /// Logs kept in `files`, read from agents with `agents`; crash suspects go to the
    /// returned receiver. `retention_days` is what records say of their retention.
    pub fn new(
        files: LogFiles,
        agents: AgentClient,
        retention_days: u32,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<SandboxId>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let logs = Arc::new(Self {
            files: Arc::new(files),
            agents,
            followers: Mutex::default(),
            suspects: tx,
            retention_days,
        });
        (logs, rx)
    }

    fn followers(&self) -> std::sync::MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.followers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts following the journal of running sandbox `id` (replacing any follower it had).
    /// Must be called inside a tokio runtime.
    pub fn follow(self: &Arc<Self>, id: &SandboxId, agent: crate::control::Upstream) {
        let task = tokio::spawn(follow::follow(
            Arc::clone(self),
            self.agents.clone(),
            id.clone(),
            agent,
        ));
        if let Some(old) = self.followers().insert(id.to_string(), task.abort_handle()) {
            old.abort();
        }
    }

    /// Stops following sandbox `id` (it is being stopped on purpose).
    pub fn unfollow(&self, id: &str) {
        if let Some(task) = self.followers().remove(id) {
            task.abort();
        }
    }

    fn report_suspect(&self, id: &SandboxId) {
        let _ = self.suspects.send(id.clone());
    }

    /// Runs `work` on the log files of sandbox `id` on the blocking pool (the files are read
    /// and written with plain file I/O); `None` if the task failed.
    async fn on_files<T: Send + 'static>(
        &self,
        id: &SandboxId,
        work: impl FnOnce(&LogFiles, &SandboxId) -> T + Send + 'static,
    ) -> Option<T> {
        let files = Arc::clone(&self.files);
        let sandbox = id.clone();
        tokio::task::spawn_blocking(move || work(&files, &sandbox))
            .await
            .ok()
    }

    async fn append(&self, id: &SandboxId, records: Vec<JournalRecord>) {
        if let Some(Err(e)) = self
            .on_files(id, |files, id| files.append(id, records))
            .await
        {
            tracing::warn!(sandbox_id = %id, error = %e, "writing sandbox logs");
        }
    }

    /// The agent sequence number of the last agent record stored for `id` (0 for none).
    async fn last_agent_seq(&self, id: &SandboxId) -> u64 {
        self.on_files(id, |files, id| files.last_agent_seq(id))
            .await
            .unwrap_or(0)
    }

    /// Adds a record of the server's about sandbox `id`.
    pub async fn note(&self, id: &SandboxId, level: LogLevel, body: impl Into<String>) {
        self.append(id, vec![server_record(level, body.into())])
            .await;
    }

    /// One page of the logs of sandbox `id` (of `namespace`).
    pub async fn query(
        &self,
        id: &SandboxId,
        namespace: &str,
        query: &LogQuery,
    ) -> SandboxLogsResponse {
        let wanted = query.clone();
        let page = self
            .on_files(id, move |files, id| query::page(files.records(id), &wanted))
            .await
            .unwrap_or_default();
        SandboxLogsResponse {
            logs: page
                .records
                .iter()
                .map(|r| self.to_wire(id, namespace, r))
                .collect(),
            next_token: page.next.map(query::Token::render),
        }
    }

    /// The processes with records in the logs of sandbox `id`.
    pub async fn processes(&self, id: &SandboxId) -> Vec<ProcessLogFilter> {
        self.on_files(id, |files, id| query::processes(files.records(id)))
            .await
            .unwrap_or_default()
    }

    /// Removes the logs of sandbox `id` (its archived record was purged).
    pub async fn remove(&self, id: &SandboxId) {
        self.unfollow(id.as_str());
        self.on_files(id, |files, id| files.remove(id)).await;
    }

    /// Removes the logs of sandboxes that `known` does not accept; returns how many.
    pub async fn sweep(&self, known: std::collections::HashSet<String>) -> usize {
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || files.sweep(|id| known.contains(id.as_str())))
            .await
            .unwrap_or(0)
    }

    fn to_wire(&self, id: &SandboxId, namespace: &str, stored: &StoredRecord) -> SandboxLogRecord {
        let r = &stored.record;
        let source = match r.event {
            Some(JournalEvent::Sandbox) => "server",
            Some(JournalEvent::Agent) => "agent",
            _ => "process",
        };
        let mut attributes = serde_json::Map::new();
        let mut put = |key: &str, value: serde_json::Value| {
            if !value.is_null() {
                attributes.insert(key.to_string(), value);
            }
        };
        put("source", source.into());
        put("event", serde_json::to_value(r.event).unwrap_or_default());
        put("process_id", r.pid.map(|p| p.to_string()).into());
        put("pid", r.pid.into());
        put("stream", serde_json::to_value(r.stream).unwrap_or_default());
        put("command", r.command.clone().into());
        put("managed_id", r.managed_id.clone().into());
        put("managed_name", r.managed_name.clone().into());
        put("exit_code", r.exit_code.into());
        put("signal", r.signal.into());
        SandboxLogRecord {
            timestamp: r.timestamp,
            uuid: record_uuid(id, stored.n),
            namespace: namespace.to_string(),
            application: String::new(),
            sandbox_id: id.to_string(),
            resource_attributes: vec![
                vec!["sandbox_id".into(), id.to_string()],
                vec!["source".into(), source.into()],
            ],
            body: r.body.clone(),
            log_attributes: serde_json::Value::Object(attributes).to_string(),
            allocations: Vec::new(),
            function_runs: Vec::new(),
            level: r.level.number(),
            retention: self.retention_days,
        }
    }
}

/// A stable UUID-shaped id of record `n` of sandbox `id`: the sandbox id's first half, then
/// the number.
fn record_uuid(id: &SandboxId, n: u64) -> String {
    let hex: String = id.as_str().chars().filter(|c| *c != '-').take(16).collect();
    let tail = format!("{n:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &tail[..4],
        &tail[4..]
    )
}

/// Crash suspects reported by the followers.
pub type Suspects = mpsc::UnboundedReceiver<SandboxId>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_uuid_shaped_and_distinct() {
        let id = SandboxId::parse("0b6f2c6e-58b0-4a57-9d0e-6f1c2b7d9a10").expect("id");
        let a = record_uuid(&id, 1);
        assert_eq!(a, "0b6f2c6e-58b0-4a57-0000-000000000001");
        assert!(uuid::Uuid::parse_str(&a).is_ok());
        assert_ne!(a, record_uuid(&id, 2));
    }
}
