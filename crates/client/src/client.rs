//! [`SandboxClient`]: the control plane of one namespace (sandboxes; create, waits, snapshots
//! and secrets live in their own files as further `impl SandboxClient` blocks).

use std::sync::Arc;

use alcove_wire::sandbox::{
    ListSandboxesResponse, SandboxInfo, SandboxStatus, UpdateSandboxRequest,
};
use http::Method;

use crate::config::{ClientConfig, SandboxClientBuilder};
use crate::error::{ClientError, Scope};
use crate::sandbox::Sandbox;
use crate::transport::{Call, Transport};

/// Manages the sandboxes of one namespace on an Alcove server.
///
/// Cheap to clone: clones share one connection pool, and so do the [`Sandbox`] handles made
/// by it. Configuration comes from [`SandboxClient::builder`], then `ALCOVE_API_URL` (default
/// `http://localhost:8900`) and `ALCOVE_API_KEY`, read when the client is built.
///
/// ```no_run
/// # async fn demo() -> Result<(), alcove_client::ClientError> {
/// use alcove_client::{Command, CreateOptions, SandboxClient};
///
/// let client = SandboxClient::new()?;
/// let sandbox = client.create_and_connect(CreateOptions::new()).await?;
/// let result = sandbox.run(Command::new("echo").arg("hello")).await?;
/// assert_eq!(result.stdout, "hello");
/// sandbox.terminate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SandboxClient {
    pub(crate) transport: Arc<Transport>,
}

impl SandboxClient {
    /// A builder: set the URL, key, namespace and timeouts, then [`SandboxClientBuilder::build`].
    pub fn builder() -> SandboxClientBuilder {
        SandboxClientBuilder::default()
    }

    /// A client configured from the environment and the defaults.
    pub fn new() -> Result<Self, ClientError> {
        Self::builder().build()
    }

    /// A client with settings resolved already.
    pub fn from_config(config: ClientConfig) -> Result<Self, ClientError> {
        Ok(Self {
            transport: Arc::new(Transport::new(config)?),
        })
    }

    /// The resolved settings.
    pub fn config(&self) -> &ClientConfig {
        &self.transport.config
    }

    /// The server's URL.
    pub fn api_url(&self) -> &str {
        &self.transport.config.api_url
    }

    /// The namespace of every call.
    pub fn namespace(&self) -> &str {
        &self.transport.config.namespace
    }

    /// A control-plane call to `{B}/{segments...}`.
    pub(crate) fn call(
        &self,
        method: Method,
        segments: &[&str],
        scope: Scope,
    ) -> Result<Call, ClientError> {
        let url = crate::routing::control_url(&self.transport.config, segments)?;
        Ok(Call::new(method, url, scope))
    }

    /// Describes one sandbox, by id or name.
    pub async fn get(&self, identifier: &str) -> Result<SandboxInfo, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        let call = self.call(Method::GET, &["sandboxes", id], Scope::Sandbox(id.into()))?;
        self.transport.json(call, "sandbox").await
    }

    /// The live sandboxes of the namespace (ended ones are in [`SandboxClient::list_archived`]).
    pub async fn list(&self) -> Result<Vec<SandboxInfo>, ClientError> {
        let call = self.call(Method::GET, &["sandboxes"], Scope::Plain)?;
        let list: ListSandboxesResponse = self.transport.json(call, "sandbox list").await?;
        Ok(list.sandboxes)
    }

    /// Terminates a sandbox for good (the server treats a repeated delete as done).
    pub async fn delete(&self, identifier: &str) -> Result<(), ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        // DELETE of a sandbox is idempotent on the server, so it may be retried.
        let call = self
            .call(
                Method::DELETE,
                &["sandboxes", id],
                Scope::Sandbox(id.into()),
            )?
            .policy(true, true);
        self.transport.body(call).await.map(drop)
    }

    /// Renames a sandbox (`PATCH`); naming an ephemeral sandbox makes it suspendable.
    pub async fn rename(&self, identifier: &str, name: &str) -> Result<SandboxInfo, ClientError> {
        let name = identifier_arg(name, "name")?;
        let patch = UpdateSandboxRequest {
            name: Some(name.to_string()),
            ..UpdateSandboxRequest::default()
        };
        self.update_scoped(identifier, &patch, true).await
    }

    /// Applies a `PATCH` (exposed ports, network policy, auto-resume, …).
    pub async fn update(
        &self,
        identifier: &str,
        patch: &UpdateSandboxRequest,
    ) -> Result<SandboxInfo, ClientError> {
        self.update_scoped(identifier, patch, patch.name.is_some())
            .await
    }

    async fn update_scoped(
        &self,
        identifier: &str,
        patch: &UpdateSandboxRequest,
        renames: bool,
    ) -> Result<SandboxInfo, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        let scope = if renames {
            Scope::Rename(id.into())
        } else {
            Scope::Sandbox(id.into())
        };
        let call = self
            .call(Method::PATCH, &["sandboxes", id], scope)?
            .json(patch)?;
        self.transport.json(call, "sandbox").await
    }

    /// A handle to an existing sandbox, by id or name: waits while it is pending, and fails
    /// with [`ClientError::NotRoutable`] when it ended.
    pub async fn connect(&self, identifier: &str) -> Result<Sandbox, ClientError> {
        let mut info = self.get(identifier).await?;
        if info.status == SandboxStatus::Pending {
            let deadline = tokio::time::Instant::now() + self.config().timeout;
            info = self.wait_running_until(&info.id, deadline, true).await?;
        }
        if !info.status.is_live() {
            return Err(ClientError::NotRoutable(format!(
                "sandbox {} is {} and can no longer be reached",
                info.id, info.status
            )));
        }
        Sandbox::new(self.clone(), info)
    }
}

/// Checks an id, name or path segment given by the caller.
pub(crate) fn identifier_arg<'a>(value: &'a str, what: &str) -> Result<&'a str, ClientError> {
    if value.trim().is_empty() {
        return Err(ClientError::invalid(format!(
            "{what} must be a non-empty string"
        )));
    }
    Ok(value)
}
