//! What a person looks at while a sandbox runs: its use of the machine against its limits
//! (docs/protocol/control-plane.md, Metrics) and its desktop in a browser (docs/desktop.md).

use alcove_wire::desktop::{DesktopUrl, DesktopUrlRequest};
use alcove_wire::metrics::SandboxMetrics;
use http::Method;

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};

impl SandboxClient {
    /// A running sandbox's CPU time, memory, tasks and disk use, with their limits.
    pub async fn metrics(&self, identifier: &str) -> Result<SandboxMetrics, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        let call = self.call(
            Method::GET,
            &["sandboxes", id, "metrics"],
            Scope::Sandbox(id.into()),
        )?;
        self.transport.json(call, "sandbox metrics").await
    }

    /// A URL, valid for an hour, at which a browser sees and drives the sandbox's desktop;
    /// `port` is its VNC server's (default 5901).
    pub async fn desktop_url(
        &self,
        identifier: &str,
        port: Option<u16>,
    ) -> Result<DesktopUrl, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        if port == Some(0) {
            return Err(ClientError::invalid("port must be between 1 and 65535"));
        }
        let call = self
            .call(
                Method::POST,
                &["sandboxes", id, "desktop"],
                Scope::Sandbox(id.into()),
            )?
            .json(&DesktopUrlRequest { port })?;
        self.transport.json(call, "desktop URL").await
    }
}
