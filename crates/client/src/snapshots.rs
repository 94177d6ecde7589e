//! Snapshots of sandboxes (docs/protocol/control-plane.md, Snapshots): take, wait, list, get,
//! delete. Restoring one is a create with `snapshot_id` ([`SandboxClient::restore`]).

use std::time::Duration;

use alcove_wire::snapshot::{
    CreateSnapshotRequest, CreateSnapshotResponse, ListSnapshotsResponse, SnapshotInfo,
    SnapshotStatus, SnapshotType,
};
use http::Method;
use tokio::time::Instant;

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};

/// Longest pause between polls of a snapshot still in progress once the server's wait is
/// over; the first is [`SNAPSHOT_FIRST_POLL`], and each doubles.
pub const SNAPSHOT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// First pause between polls of a snapshot still in progress.
pub const SNAPSHOT_FIRST_POLL: Duration = Duration::from_millis(50);

impl SandboxClient {
    /// Starts a snapshot without waiting for it (its status is usually `in_progress`);
    /// `None` takes the server's default type (`memory`).
    pub async fn snapshot(
        &self,
        identifier: &str,
        snapshot_type: Option<SnapshotType>,
    ) -> Result<CreateSnapshotResponse, ClientError> {
        self.start_snapshot(identifier, snapshot_type, 0).await
    }

    /// Starts a snapshot; the server waits up to `wait_ms` for it to end before it answers.
    async fn start_snapshot(
        &self,
        identifier: &str,
        snapshot_type: Option<SnapshotType>,
        wait_ms: u128,
    ) -> Result<CreateSnapshotResponse, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        let mut call = self
            .call(
                Method::POST,
                &["sandboxes", id, "snapshot"],
                Scope::Sandbox(id.into()),
            )?
            .query("wait_ms", wait_ms.to_string())
            .policy(false, false);
        // No type: an empty body, so the server's default applies (as the Python SDK sends).
        if snapshot_type.is_some() {
            call = call.json(&CreateSnapshotRequest { snapshot_type })?;
        }
        self.transport.json(call, "snapshot answer").await
    }

    /// Snapshots the sandbox and waits until the snapshot is usable (`completed` or
    /// `local_ready`); a failed snapshot is [`ClientError::SnapshotFailed`].
    pub async fn snapshot_and_wait(
        &self,
        identifier: &str,
        snapshot_type: Option<SnapshotType>,
    ) -> Result<SnapshotInfo, ClientError> {
        let timeout = self.config().timeout;
        let deadline = Instant::now() + timeout;
        let wait_ms = crate::lifecycle::server_wait_ms(timeout);
        let started = self
            .start_snapshot(identifier, snapshot_type, wait_ms)
            .await?;
        let mut pause = SNAPSHOT_FIRST_POLL;
        loop {
            let snapshot = self.get_snapshot(&started.snapshot_id).await?;
            match snapshot.status {
                SnapshotStatus::Completed | SnapshotStatus::LocalReady => return Ok(snapshot),
                SnapshotStatus::Failed | SnapshotStatus::Deleting => {
                    let detail = snapshot
                        .error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    return Err(ClientError::SnapshotFailed(format!(
                        "snapshot {} of sandbox {identifier} {}{detail}",
                        snapshot.id,
                        snapshot.status.as_str()
                    )));
                }
                SnapshotStatus::InProgress => {}
            }
            if Instant::now() >= deadline {
                return Err(self.wait_timed_out(
                    &format!("snapshot {}", snapshot.id),
                    snapshot.status.as_str(),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SNAPSHOT_POLL_INTERVAL);
        }
    }

    /// Every snapshot of the namespace, oldest first.
    pub async fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>, ClientError> {
        let call = self.call(Method::GET, &["snapshots"], Scope::Plain)?;
        let list: ListSnapshotsResponse = self.transport.json(call, "snapshot list").await?;
        Ok(list.snapshots)
    }

    /// The snapshots taken of one sandbox.
    pub async fn list_sandbox_snapshots(
        &self,
        identifier: &str,
    ) -> Result<Vec<SnapshotInfo>, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        let call = self.call(
            Method::GET,
            &["sandboxes", id, "snapshots"],
            Scope::Sandbox(id.into()),
        )?;
        let list: ListSnapshotsResponse = self.transport.json(call, "snapshot list").await?;
        Ok(list.snapshots)
    }

    /// Describes one snapshot.
    pub async fn get_snapshot(&self, snapshot_id: &str) -> Result<SnapshotInfo, ClientError> {
        let id = identifier_arg(snapshot_id, "snapshot_id")?;
        let call = self.call(Method::GET, &["snapshots", id], Scope::Snapshot(id.into()))?;
        self.transport.json(call, "snapshot").await
    }

    /// Deletes a snapshot (one still in progress is refused by the server with 400).
    pub async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), ClientError> {
        let id = identifier_arg(snapshot_id, "snapshot_id")?;
        let call = self.call(
            Method::DELETE,
            &["snapshots", id],
            Scope::Snapshot(id.into()),
        )?;
        self.transport.body(call).await.map(drop)
    }
}
