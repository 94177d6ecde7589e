//! Health and info bodies (docs/protocol/sandbox-api.md, Health and info).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `GET /api/v1/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `true` whenever the agent answers.
    pub healthy: bool,
}

/// Body of `GET /api/v1/info`; every field is required by the Python SDK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentInfo {
    /// Agent version.
    pub version: String,
    /// Seconds since the agent started.
    pub uptime_secs: u64,
    /// Processes currently running (managed processes and runs).
    pub running_processes: usize,
    /// Processes the agent tracks, running or exited (plus runs in progress).
    pub total_processes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_has_all_required_fields() {
        let info = AgentInfo {
            version: "0.1.0".into(),
            uptime_secs: 5,
            running_processes: 0,
            total_processes: 2,
        };
        let value = serde_json::to_value(&info).expect("serializes");
        for key in [
            "version",
            "uptime_secs",
            "running_processes",
            "total_processes",
        ] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
    }
}
