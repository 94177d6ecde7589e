//! Creating sandboxes and moving them between states, with the waits that go with it
//! (docs/protocol/control-plane.md: Create a sandbox, Suspend and resume; as the Python SDK's
//! `_protocol/_lifecycle.py`).
//!
//! Every wait ends at the client's `timeout` with [`ClientError::Timeout`], and a sandbox that
//! fails or ends meanwhile is [`ClientError::SandboxFailed`].

use std::time::Duration;

use alcove_wire::sandbox::{CreateSandboxResponse, SandboxInfo, SandboxStatus};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use tokio::time::Instant;

use crate::client::{SandboxClient, identifier_arg};
use crate::create::CreateOptions;
use crate::error::{ClientError, Scope, TimeoutSetting};
use crate::sandbox::Sandbox;

/// Pause between polls while a sandbox starts.
pub const CREATE_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Pause between polls while a sandbox suspends or resumes.
pub const STATE_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Upper bound of the `wait_ms` sent with suspend, resume and snapshots.
pub const MAX_WAIT_MS: u128 = 30_000;
/// The `wait_ms` a waiting call asks of the server: 75 % of the client's timeout (so the
/// answer comes before the client gives up), at most [`MAX_WAIT_MS`].
pub(crate) fn server_wait_ms(timeout: Duration) -> u128 {
    (timeout.as_millis() * 3 / 4).clamp(1, MAX_WAIT_MS)
}
/// Grace the server keeps of a blocking create's budget to answer in time.
pub const CREATE_GRACE_MS: u128 = 5_000;

/// Which way a transition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Suspend,
    Resume,
}

impl Transition {
    fn verb(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Resume => "resume",
        }
    }

    fn target(self) -> SandboxStatus {
        match self {
            Self::Suspend => SandboxStatus::Suspended,
            Self::Resume => SandboxStatus::Running,
        }
    }
}

impl SandboxClient {
    /// Creates a sandbox and waits until it is running.
    ///
    /// Fails with [`ClientError::NameConflict`] when the name is taken,
    /// [`ClientError::SandboxFailed`] when the sandbox fails to start and
    /// [`ClientError::Timeout`] when it is not running within the client's `timeout`.
    pub async fn create(&self, options: CreateOptions) -> Result<SandboxInfo, ClientError> {
        let deadline = Instant::now() + self.config().timeout;
        let answer = self.post_create(&options, None).await?;
        // A running sandbox's answer carries its whole info: no GET needed.
        if let Some(info) = running_info(&answer) {
            return Ok(info);
        }
        match answer.status {
            SandboxStatus::Failed | SandboxStatus::Terminated => Err(failure(
                &answer.sandbox_id,
                answer.status,
                answer.termination_reason.as_deref(),
                answer.error_details.as_deref(),
            )),
            status => {
                self.wait_running_until(
                    &answer.sandbox_id,
                    deadline,
                    status != SandboxStatus::Running,
                )
                .await
            }
        }
    }

    /// Creates a sandbox (as [`Self::create`]) and returns a handle to it. The handle does not
    /// delete the sandbox when dropped: call [`Sandbox::terminate`].
    pub async fn create_and_connect(&self, options: CreateOptions) -> Result<Sandbox, ClientError> {
        let info = self.create(options).await?;
        let id = info.id.clone();
        match Sandbox::new(self.clone(), info) {
            Ok(sandbox) => Ok(sandbox),
            Err(err) => {
                // A sandbox nobody can reach is deleted rather than leaked; the first error
                // is the one worth reporting.
                let _ = self.delete(&id).await;
                Err(err)
            }
        }
    }

    /// Restores a snapshot into a new sandbox and waits until it is running (image and
    /// resources come from the snapshot).
    pub async fn restore(&self, snapshot_id: &str) -> Result<SandboxInfo, ClientError> {
        self.create(CreateOptions::from_snapshot(snapshot_id)).await
    }

    /// Asks for a sandbox without waiting for it (`wait: false`, answered 202 at once); see
    /// [`Self::wait_until_running`].
    pub async fn create_no_wait(
        &self,
        options: CreateOptions,
    ) -> Result<CreateSandboxResponse, ClientError> {
        self.post_create(&options, Some(false)).await
    }

    /// Waits until the sandbox runs (at most the client's `timeout`).
    pub async fn wait_until_running(&self, identifier: &str) -> Result<SandboxInfo, ClientError> {
        let deadline = Instant::now() + self.config().timeout;
        self.wait_running_until(identifier, deadline, false).await
    }

    async fn post_create(
        &self,
        options: &CreateOptions,
        wait: Option<bool>,
    ) -> Result<CreateSandboxResponse, ClientError> {
        let mut body = options.to_request()?;
        body.wait = wait;
        // The server blocks up to the budget minus the grace, so its answer beats our deadline.
        let budget_ms = self.config().timeout.as_millis();
        let grace_ms = CREATE_GRACE_MS.min(budget_ms / 4);
        let header = |value: u128| HeaderValue::try_from(value.to_string());
        let (Ok(budget), Ok(grace)) = (header(budget_ms), header(grace_ms)) else {
            return Err(ClientError::invalid("timeout does not fit a header"));
        };
        let call = self
            .call(Method::POST, &["sandboxes"], Scope::Create)?
            .json(&body)?
            .policy(false, false)
            .header(
                HeaderName::from_static("x-tensorlake-request-timeout-ms"),
                budget,
            )
            .header(
                HeaderName::from_static("x-tensorlake-request-timeout-grace-ms"),
                grace,
            )
            // A gateway's 504 that still carries the create answer counts as that answer.
            .also_ok(&[StatusCode::GATEWAY_TIMEOUT]);
        let bytes = self.transport.body(call).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::decode("create answer", e))
    }

    /// Polls until the sandbox runs; `first_delay` pauses before the first poll.
    pub(crate) async fn wait_running_until(
        &self,
        identifier: &str,
        deadline: Instant,
        first_delay: bool,
    ) -> Result<SandboxInfo, ClientError> {
        if first_delay {
            tokio::time::sleep(CREATE_POLL_INTERVAL).await;
        }
        loop {
            let info = self.get(identifier).await?;
            if info.status == SandboxStatus::Running {
                return Ok(info);
            }
            if !info.status.is_live() {
                return Err(info_failure(&info));
            }
            if Instant::now() >= deadline {
                return Err(self.wait_timed_out(
                    &format!("waiting for sandbox {identifier} to run"),
                    info.status,
                ));
            }
            tokio::time::sleep(CREATE_POLL_INTERVAL).await;
        }
    }

    /// Suspends a named sandbox and waits until it is `suspended`.
    pub async fn suspend(&self, identifier: &str) -> Result<SandboxInfo, ClientError> {
        self.transition(identifier, Transition::Suspend).await
    }

    /// Resumes a suspended sandbox and waits until it is `running`.
    pub async fn resume(&self, identifier: &str) -> Result<SandboxInfo, ClientError> {
        self.transition(identifier, Transition::Resume).await
    }

    /// POST `suspend` / `resume`: 200 = done, 202 = poll, 409 = re-check (it may be there).
    async fn transition(
        &self,
        identifier: &str,
        way: Transition,
    ) -> Result<SandboxInfo, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        let timeout = self.config().timeout;
        let deadline = Instant::now() + timeout;
        let wait_ms = server_wait_ms(timeout);
        let call = self
            .call(
                Method::POST,
                &["sandboxes", id, way.verb()],
                Scope::Sandbox(id.into()),
            )?
            .query("wait_ms", wait_ms.to_string());
        match self.transport.body(call).await {
            Ok(_) => {}
            Err(err) if err.status() == Some(StatusCode::CONFLICT) => {
                let info = self.get(id).await?;
                if info.status == way.target() {
                    return Ok(info);
                }
                return Err(err);
            }
            Err(err) => return Err(err),
        }
        loop {
            let info = self.get(id).await?;
            if info.status == way.target() {
                return Ok(info);
            }
            if !info.status.is_live() {
                return Err(info_failure(&info));
            }
            if Instant::now() >= deadline {
                return Err(
                    self.wait_timed_out(&format!("{} of sandbox {id}", way.verb()), info.status)
                );
            }
            tokio::time::sleep(STATE_POLL_INTERVAL).await;
        }
    }

    pub(crate) fn wait_timed_out(&self, what: &str, status: impl std::fmt::Display) -> ClientError {
        let after = self.config().timeout;
        ClientError::Timeout {
            what: what.to_string(),
            detail: format!(
                "still {status} after {}s (raise the client's timeout to wait longer)",
                after.as_secs_f64()
            ),
            setting: TimeoutSetting::Timeout,
            after,
        }
    }
}

fn failure(
    sandbox_id: &str,
    status: SandboxStatus,
    reason: Option<&str>,
    details: Option<&str>,
) -> ClientError {
    let mut message = format!("sandbox {sandbox_id} {status}");
    if let Some(reason) = reason {
        message.push_str(&format!(" ({reason})"));
    }
    if let Some(details) = details {
        message.push_str(&format!(": {details}"));
    }
    ClientError::SandboxFailed {
        sandbox_id: sandbox_id.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
    }
}

fn info_failure(info: &SandboxInfo) -> ClientError {
    failure(
        &info.id,
        info.status,
        info.termination_reason.as_deref(),
        info.error_details.as_deref(),
    )
}

/// The whole info a create or claim answer carries, when both it and the answer say the
/// sandbox runs (anything else is checked with a GET).
pub(crate) fn running_info(answer: &CreateSandboxResponse) -> Option<SandboxInfo> {
    let info = answer.sandbox.as_deref()?;
    (answer.status == SandboxStatus::Running && info.status == SandboxStatus::Running)
        .then(|| info.clone())
}
