//! A sandbox's persisted logs (docs/protocol/control-plane.md, Logs): every line its processes
//! wrote and the events around them, kept by the server across suspend/resume and after the
//! sandbox ends. Read through the control plane, never the proxy, so an ended sandbox's logs
//! can be read too.

use alcove_wire::journal::{
    LogLevel, ProcessLogFilter, ProcessLogFiltersResponse, SandboxLogRecord, SandboxLogsResponse,
};
use http::Method;

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};
use crate::process_key::ProcessKey;
use crate::sandbox::Sandbox;
use crate::transport::Call;

/// What [`SandboxClient::get_logs`] asks for; every field left empty is no filter. With
/// neither `head` nor `tail`, the server gives the first 1000 records.
///
/// ```
/// use alcove_client::LogsRequest;
/// use alcove_client::wire::journal::LogLevel;
/// let request = LogsRequest::new()
///     .level(LogLevel::Warn)
///     .level(LogLevel::Error)
///     .process("web")
///     .tail(100);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsRequest {
    /// Keep records of these levels (`level=<number>`, repeated).
    pub levels: Vec<LogLevel>,
    /// Keep records of these processes: a pid, a managed-process id or a name (a name matches
    /// every run); `processId=`, repeated.
    pub process_ids: Vec<String>,
    /// Keep records whose text holds this, ignoring case.
    pub body: Option<String>,
    /// The first N records (1 to 10,000); not with `tail`.
    pub head: Option<u32>,
    /// The last N records (1 to 10,000); not with `head`.
    pub tail: Option<u32>,
    /// The `next_token` of the previous page (of the same query).
    pub next_token: Option<String>,
}

impl LogsRequest {
    /// No filter: the first 1000 records.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a level to keep.
    pub fn level(mut self, level: LogLevel) -> Self {
        self.levels.push(level);
        self
    }

    /// Adds a process to keep: a pid, or a managed process's name or id.
    pub fn process(mut self, process: impl Into<ProcessKey>) -> Self {
        self.process_ids.push(process.into().to_string());
        self
    }

    /// Keeps the records whose text holds `text`, ignoring case.
    pub fn body(mut self, text: impl Into<String>) -> Self {
        self.body = Some(text.into());
        self
    }

    /// Asks for the first `n` records.
    pub fn head(mut self, n: u32) -> Self {
        self.head = Some(n);
        self
    }

    /// Asks for the last `n` records.
    pub fn tail(mut self, n: u32) -> Self {
        self.tail = Some(n);
        self
    }

    /// Continues from the `next_token` of a previous page.
    pub fn next_token(mut self, token: impl Into<String>) -> Self {
        self.next_token = Some(token.into());
        self
    }

    /// Adds the query to `call`, refusing what the server would refuse for sure.
    fn apply(&self, mut call: Call) -> Result<Call, ClientError> {
        if self.head.is_some() && self.tail.is_some() {
            return Err(ClientError::invalid(
                "head and tail cannot be used together",
            ));
        }
        for level in &self.levels {
            call = call.query("level", level.number().to_string());
        }
        for process in &self.process_ids {
            call = call.query("processId", identifier_arg(process, "a process id")?);
        }
        if let Some(body) = self.body.as_deref().filter(|b| !b.is_empty()) {
            call = call.query("body", body);
        }
        for (key, size) in [("head", self.head), ("tail", self.tail)] {
            if let Some(size) = size {
                if size == 0 {
                    return Err(ClientError::invalid(format!("{key} must be at least 1")));
                }
                call = call.query(key, size.to_string());
            }
        }
        if let Some(token) = &self.next_token {
            call = call.query("nextToken", identifier_arg(token, "next_token")?);
        }
        Ok(call)
    }
}

impl SandboxClient {
    /// One page of a sandbox's logs (by id or name; an ended sandbox by id), oldest first, and
    /// the token of the next page: after it for a `head` query, before it for a `tail` one.
    /// An unknown sandbox is [`ClientError::SandboxNotFound`].
    pub async fn get_logs(
        &self,
        sandbox: &str,
        request: &LogsRequest,
    ) -> Result<SandboxLogsResponse, ClientError> {
        let id = identifier_arg(sandbox, "identifier")?;
        let call = self.call(
            Method::GET,
            &["sandboxes", id, "logs"],
            Scope::Sandbox(id.into()),
        )?;
        let call = request.apply(call)?;
        self.transport.json(call, "sandbox logs").await
    }

    /// Every record `request` matches, oldest first, following `next_token` page after page
    /// (`head` or `tail` sets the page size). Mind the size of a sandbox's logs (up to the
    /// server's `--logs-max-mb`) before asking for all of them.
    pub async fn get_all_logs(
        &self,
        sandbox: &str,
        request: &LogsRequest,
    ) -> Result<Vec<SandboxLogRecord>, ClientError> {
        // A tail query pages backwards: each page comes before the one already held.
        let backwards = request.tail.is_some();
        let mut request = request.clone();
        let mut pages: Vec<Vec<SandboxLogRecord>> = Vec::new();
        loop {
            let page = self.get_logs(sandbox, &request).await?;
            pages.push(page.logs);
            match page.next_token {
                Some(token) if request.next_token.as_deref() == Some(token.as_str()) => {
                    return Err(ClientError::decode(
                        "sandbox logs",
                        format!("the server handed back the same nextToken {token:?}"),
                    ));
                }
                Some(token) => request.next_token = Some(token),
                None => break,
            }
        }
        if backwards {
            pages.reverse();
        }
        Ok(pages.into_iter().flatten().collect())
    }

    /// The processes that have records in a sandbox's logs (one per run of a managed process),
    /// in order of first appearance, with what [`LogsRequest::process`] matches for each.
    pub async fn list_log_processes(
        &self,
        sandbox: &str,
    ) -> Result<Vec<ProcessLogFilter>, ClientError> {
        let id = identifier_arg(sandbox, "identifier")?;
        let call = self.call(
            Method::GET,
            &["sandboxes", id, "processes"],
            Scope::Sandbox(id.into()),
        )?;
        let list: ProcessLogFiltersResponse = self.transport.json(call, "log process list").await?;
        Ok(list.processes)
    }
}

impl Sandbox {
    /// One page of this sandbox's logs (see [`SandboxClient::get_logs`]).
    pub async fn get_logs(
        &self,
        request: &LogsRequest,
    ) -> Result<SandboxLogsResponse, ClientError> {
        self.client().get_logs(self.id(), request).await
    }

    /// Every record of this sandbox's logs that `request` matches (see
    /// [`SandboxClient::get_all_logs`]).
    pub async fn get_all_logs(
        &self,
        request: &LogsRequest,
    ) -> Result<Vec<SandboxLogRecord>, ClientError> {
        self.client().get_all_logs(self.id(), request).await
    }

    /// The processes with records in this sandbox's logs (see
    /// [`SandboxClient::list_log_processes`]).
    pub async fn list_log_processes(&self) -> Result<Vec<ProcessLogFilter>, ClientError> {
        self.client().list_log_processes(self.id()).await
    }
}
