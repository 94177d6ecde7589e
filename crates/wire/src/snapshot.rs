//! Snapshots (docs/protocol/control-plane.md, Snapshots).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::{EpochMillis, EpochMillisSchema};

/// Snapshot status, spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    /// Being taken.
    InProgress,
    /// Usable on this node (not used by Alcove: completed means usable).
    LocalReady,
    /// Done and usable.
    Completed,
    /// Failed; see `error`.
    Failed,
    /// Being deleted.
    Deleting,
}

impl SnapshotStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::LocalReady => "local_ready",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Deleting => "deleting",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_progress" => Self::InProgress,
            "local_ready" => Self::LocalReady,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "deleting" => Self::Deleting,
            _ => return None,
        })
    }
}

/// What a snapshot captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotType {
    /// Filesystem, memory and running processes (the default).
    Memory,
    /// The filesystem only; restores into a fresh boot.
    Filesystem,
}

impl SnapshotType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Filesystem => "filesystem",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "memory" => Some(Self::Memory),
            "filesystem" => Some(Self::Filesystem),
            _ => None,
        }
    }
}

/// Body of `POST {B}/sandboxes/{id}/snapshot` (may also be empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateSnapshotRequest {
    /// Memory (default) or filesystem.
    #[serde(default)]
    #[schema(default = "memory")]
    pub snapshot_type: Option<SnapshotType>,
}

/// Answer of `POST {B}/sandboxes/{id}/snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateSnapshotResponse {
    /// The new snapshot's id.
    pub snapshot_id: String,
    /// Its status (`in_progress`).
    pub status: SnapshotStatus,
}

/// A snapshot as returned by get and list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotInfo {
    /// Snapshot id (only `id` is sent; the SDKs accept `id` or `snapshot_id`).
    #[serde(alias = "snapshot_id")]
    pub id: String,
    /// Owning namespace.
    pub namespace: String,
    /// The sandbox it was taken from.
    pub sandbox_id: String,
    /// Status.
    pub status: SnapshotStatus,
    /// What it captures.
    pub snapshot_type: SnapshotType,
    /// Bytes on disk once completed.
    #[schema(required = true)]
    pub size_bytes: Option<u64>,
    /// When it was requested.
    #[schema(value_type = EpochMillisSchema)]
    pub created_at: EpochMillis,
    /// The image it is based on.
    pub base_image: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
}

/// Answer of `GET {B}/snapshots` and `GET {B}/sandboxes/{id}/snapshots`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListSnapshotsResponse {
    /// The snapshots, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for s in [
            SnapshotStatus::InProgress,
            SnapshotStatus::LocalReady,
            SnapshotStatus::Completed,
            SnapshotStatus::Failed,
            SnapshotStatus::Deleting,
        ] {
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                format!("\"{}\"", s.as_str())
            );
            assert_eq!(SnapshotStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(SnapshotType::parse("memory"), Some(SnapshotType::Memory));
        assert_eq!(SnapshotType::parse("disk"), None);
        let req: CreateSnapshotRequest =
            serde_json::from_str(r#"{"snapshot_type":"filesystem"}"#).expect("parse");
        assert_eq!(req.snapshot_type, Some(SnapshotType::Filesystem));
    }
}
