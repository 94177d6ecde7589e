//! A sandbox's desktop in a browser (docs/desktop.md): the URL of its noVNC page.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST {B}/sandboxes/{id}/desktop` (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DesktopUrlRequest {
    /// The sandbox's VNC port (default 5901).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A desktop URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DesktopUrl {
    /// Open in a browser: noVNC connected to the sandbox's VNC server. Add
    /// `#password=<vnc password>` to skip the password prompt.
    pub url: String,
    /// When the URL stops working (epoch ms).
    pub expires_at: i64,
}
