//! Persistent volumes ("file systems"): the volume object, its create request,
//! and the mount of one into a sandbox (docs/volumes.md).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::{EpochMillis, EpochMillisSchema};

/// A file system mounted (or to be mounted) into a sandbox: the `file_systems`
/// entries of create, attach and `SandboxInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileSystemMount {
    /// The volume's name (a volume's id is its name).
    pub file_system_id: String,
    /// Absolute, normalized path inside the sandbox.
    pub mount_path: String,
    /// Mount read-only.
    #[serde(default)]
    #[schema(default = false)]
    pub read_only: bool,
    /// Accepted and ignored: a volume is a local disk, there is nothing to fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub prefetch: Option<bool>,
    /// Not supported: volumes have no snapshots (a set value is refused with 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub snapshot_id: Option<String>,
    /// Not supported: the volume's files keep their own owners (a set value is refused with 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub owner: Option<String>,
}

/// Body of `DELETE {B}/sandboxes/{id}/file_systems`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DetachFileSystemRequest {
    /// The mount path to unmount.
    pub mount_path: String,
}

/// Body of `POST {B}/file-systems`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateFileSystemRequest {
    /// Name: 1-63 lower-case letters, digits and `-`, not starting or ending with `-`.
    pub name: String,
    /// Size in MiB (the kernel enforces it).
    pub size_mb: i64,
}

/// Where a volume is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileSystemAttachment {
    /// The sandbox.
    pub sandbox_id: String,
    /// Path inside it.
    pub mount_path: String,
    /// Whether it is mounted read-only there.
    pub read_only: bool,
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileSystemInfo {
    /// Its id: the name.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Size in MiB.
    pub size_mb: i64,
    /// MiB its files take, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub used_mb: Option<i64>,
    /// Creation time.
    #[schema(value_type = EpochMillisSchema)]
    pub created_at: EpochMillis,
    /// The live sandboxes it is mounted in.
    pub attachments: Vec<FileSystemAttachment>,
}

/// Answer of `GET {B}/file-systems`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListFileSystemsResponse {
    /// The namespace's volumes, by name.
    pub file_systems: Vec<FileSystemInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_reads_the_official_sdk_body_and_writes_only_what_is_set() {
        let m: FileSystemMount =
            serde_json::from_str(r#"{"file_system_id":"data","mount_path":"/mnt/d"}"#)
                .expect("parse");
        assert!(!m.read_only);
        let out = serde_json::to_value(&m).expect("json");
        assert_eq!(
            out,
            serde_json::json!({"file_system_id":"data","mount_path":"/mnt/d","read_only":false})
        );
    }
}
