//! Copying a running sandbox (docs/protocol/control-plane.md, Copy).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::sandbox::SandboxStatus;

/// One new sandbox of a copy: `running`, or `failed` with a `reason`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CopiedSandbox {
    /// The copy's UUID.
    pub sandbox_id: String,
    /// `running`, or `failed` when its restore failed.
    pub status: SandboxStatus,
    /// Why it failed (the same text as `error_details`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// Proxy base URL, present when running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sandbox_url: Option<String>,
    /// Routing hint of the official service; this server sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub routing_hint: Option<String>,
    /// Host and port of ingress to the copy's exposed ports, present when running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ingress_endpoint: Option<String>,
    /// Always absent: names are unique, so copies get none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// Why it ended (`startup_failed` for a failed copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub termination_reason: Option<String>,
    /// Details of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error_details: Option<String>,
}

/// Answer of `POST /sandboxes/{id}/copy`: 200 when every copy runs, 422 (same
/// body) when any failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CopySandboxResponse {
    /// The sandbox copied.
    pub source_sandbox_id: String,
    /// The new sandboxes, one per copy asked for, in no particular order.
    pub sandboxes: Vec<CopiedSandbox>,
}
