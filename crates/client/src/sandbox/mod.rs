//! [`Sandbox`]: a handle to one sandbox, reaching its agent through the proxy.
//!
//! Processes live in `processes.rs`, files in `files.rs`, terminals in [`crate::pty`] and
//! tunnels in [`crate::tunnel`]; this file holds the handle and its routing.

mod files;
mod processes;

use alcove_wire::sandbox::SandboxInfo;
use http::Method;

pub use files::ByteStream;
pub(crate) use files::file_chunks;
pub use processes::{FOLLOW_BACKOFF, FOLLOW_RECONNECTS, OutputEvents};

use crate::client::SandboxClient;
use crate::error::{ClientError, Scope};
use crate::routing::ProxyTarget;
use crate::transport::Call;

/// A sandbox, from [`SandboxClient::create_and_connect`] or [`SandboxClient::connect`].
///
/// Requests go to the sandbox's agent through the proxy at its `sandbox_url`, addressed by the
/// sandbox's id (even when it was connected by name). Dropping the handle leaves the sandbox
/// running; [`Sandbox::terminate`] deletes it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sandbox {
    client: SandboxClient,
    info: SandboxInfo,
    target: ProxyTarget,
}

impl Sandbox {
    /// A handle to the sandbox `info` describes; it must have a `sandbox_url`.
    pub(crate) fn new(client: SandboxClient, info: SandboxInfo) -> Result<Self, ClientError> {
        let Some(url) = info.sandbox_url.as_deref() else {
            return Err(ClientError::NotRoutable(format!(
                "sandbox {} ({}): the server gave no sandbox_url, so its processes and files \
                 cannot be reached",
                info.id, info.status
            )));
        };
        let target = ProxyTarget::new(url, &info.id)?;
        Ok(Self {
            client,
            info,
            target,
        })
    }

    /// The server-assigned id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The name, or `None` for an ephemeral sandbox (as of the last refresh).
    pub fn name(&self) -> Option<&str> {
        self.info.name.as_deref()
    }

    /// The description as of creation, connection or the last [`Self::refresh`].
    pub fn info(&self) -> &SandboxInfo {
        &self.info
    }

    /// The client this handle uses.
    pub fn client(&self) -> &SandboxClient {
        &self.client
    }

    /// Fetches the sandbox's current description.
    pub async fn refresh(&mut self) -> Result<&SandboxInfo, ClientError> {
        let info = self.client.get(&self.info.id).await?;
        if let Some(url) = info.sandbox_url.as_deref() {
            self.target = ProxyTarget::new(url, &info.id)?;
        }
        self.info = info;
        Ok(&self.info)
    }

    /// Deletes the sandbox (same as `client.delete(sandbox.id())`).
    pub async fn terminate(&self) -> Result<(), ClientError> {
        self.client.delete(&self.info.id).await
    }

    /// A call to `/api/v1/{segments...}` in the sandbox.
    pub(crate) fn call(&self, method: Method, segments: &[&str]) -> Result<Call, ClientError> {
        let url = self.target.url(segments)?;
        Ok(
            Call::new(method, url, Scope::Proxy(self.info.id.clone()))
                .headers(&self.target.headers),
        )
    }

    pub(crate) fn transport(&self) -> &crate::transport::Transport {
        &self.client.transport
    }
}
