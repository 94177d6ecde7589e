//! One sandbox per name, however many callers race for it: create it on first use, attach to
//! it (or resume it) after that. The same steps as the Python SDK's `get_or_create`.

use std::time::Duration;

use alcove_wire::sandbox::{SandboxInfo, SandboxStatus};
use tokio::time::Instant;

use crate::client::SandboxClient;
use crate::create::CreateOptions;
use crate::error::ClientError;
use crate::lifecycle::CREATE_POLL_INTERVAL;

/// How often the name is looked up again after a lost create race or a holder that ended.
pub const GET_OR_CREATE_ATTEMPTS: usize = 5;
/// The first pause while another caller's sandbox starts or suspends; it doubles up to
/// [`CREATE_POLL_INTERVAL`].
pub const BIND_POLL_FIRST: Duration = Duration::from_millis(20);

/// What [`SandboxClient::get_or_create`] did to hand out its sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// No sandbox held the name: this call made it.
    Created,
    /// A sandbox held the name and is handed out as it is.
    Attached,
    /// The holder was suspended and this call resumed it.
    Resumed,
}

impl BindOutcome {
    /// The SDKs' spelling: `created`, `attached`, `resumed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Attached => "attached",
            Self::Resumed => "resumed",
        }
    }
}

impl std::fmt::Display for BindOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SandboxClient {
    /// The one sandbox named `options.name`, created from `options` when no sandbox holds the
    /// name, and what was done to hand it out.
    ///
    /// Concurrent callers with one name converge on one sandbox: the loser of a create race
    /// attaches to the winner, one that finds the sandbox starting waits until it runs, and a
    /// suspended (or suspending) sandbox is resumed when `resume` is true. `options` other than
    /// the name apply only when the sandbox is created. A name that is another sandbox's id is
    /// [`ClientError::InvalidArgument`].
    pub async fn get_or_create(
        &self,
        options: CreateOptions,
        resume: bool,
    ) -> Result<(SandboxInfo, BindOutcome), ClientError> {
        let Some(name) = options.name.clone().filter(|n| !n.trim().is_empty()) else {
            return Err(ClientError::invalid(
                "get_or_create needs a name: it finds the sandbox by it",
            ));
        };
        // Checked before the first request, as create would.
        options.to_request()?;
        let deadline = Instant::now() + self.config().timeout;
        for _ in 0..GET_OR_CREATE_ATTEMPTS {
            let info = match self.get(&name).await {
                Ok(info) => info,
                Err(ClientError::SandboxNotFound { .. }) => {
                    match self.create(options.clone()).await {
                        Ok(info) => return Ok((info, BindOutcome::Created)),
                        // Lost the race: attach to the winner.
                        Err(ClientError::NameConflict { .. }) => continue,
                        Err(err) => return Err(err),
                    }
                }
                Err(err) => return Err(err),
            };
            if info.name.as_deref() != Some(name.as_str()) {
                // A sandbox's id is looked up like a name; the server refuses id-like names.
                return Err(ClientError::invalid(format!(
                    "name {name:?} is the id of a sandbox, not a name"
                )));
            }
            let info = self.until_settled(info, deadline).await?;
            if !info.status.is_live() {
                continue; // it ended while we looked: the name is free again
            }
            if info.status == SandboxStatus::Suspended && resume {
                return Ok((self.resume(&info.id).await?, BindOutcome::Resumed));
            }
            return Ok((info, BindOutcome::Attached));
        }
        Err(ClientError::NotRoutable(format!(
            "the name {name:?} stayed held after {GET_OR_CREATE_ATTEMPTS} attempts, \
             but no sandbox holding it could be attached to"
        )))
    }

    /// `info` once it is no longer starting or suspending, read again at growing intervals.
    async fn until_settled(
        &self,
        mut info: SandboxInfo,
        deadline: Instant,
    ) -> Result<SandboxInfo, ClientError> {
        let mut pause = BIND_POLL_FIRST;
        while matches!(
            info.status,
            SandboxStatus::Pending | SandboxStatus::Suspending
        ) {
            if Instant::now() >= deadline {
                return Err(self.wait_timed_out(
                    &format!("waiting for sandbox {} to settle", info.id),
                    info.status,
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(CREATE_POLL_INTERVAL);
            info = match self.get(&info.id).await {
                Ok(info) => info,
                Err(ClientError::SandboxNotFound { .. }) => {
                    info.status = SandboxStatus::Terminated;
                    info
                }
                Err(err) => return Err(err),
            };
        }
        Ok(info)
    }
}
