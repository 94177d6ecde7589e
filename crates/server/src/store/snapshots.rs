//! Stored snapshots.

use alcove_runtime::SandboxId;
use alcove_wire::snapshot::{SnapshotInfo, SnapshotStatus, SnapshotType};
use alcove_wire::time::EpochMillis;

use super::backend::{DbRow, placeholders, query};
use super::sandboxes::{json_column, replace_all};
use super::{Store, StoreError};

/// A snapshot as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRecord {
    /// Snapshot id (a UUID).
    pub id: String,
    /// Owning namespace.
    pub namespace: String,
    /// Source sandbox.
    pub sandbox_id: SandboxId,
    /// Status.
    pub status: SnapshotStatus,
    /// Memory or filesystem.
    pub snapshot_type: SnapshotType,
    /// Canonical image name of the source.
    pub image: String,
    /// CPUs of the source.
    pub cpus: f64,
    /// Memory of the source in MiB.
    pub memory_mb: i64,
    /// Writable layer of the source in MiB.
    pub disk_mb: i64,
    /// Entrypoint of the source.
    pub entrypoint: Vec<String>,
    /// Bytes on disk once completed.
    pub size_bytes: Option<i64>,
    /// When it was requested.
    pub created_at: EpochMillis,
    /// When it completed.
    pub completed_at: Option<EpochMillis>,
    /// Why it failed.
    pub error: Option<String>,
    /// The volumes the source had mounted when it was taken.
    pub file_systems: Vec<alcove_wire::file_system::FileSystemMount>,
    /// The source's network policy when it was taken (`None`: taken before it was kept).
    pub network_policy: Option<alcove_wire::sandbox::NetworkConfig>,
}

impl SnapshotRecord {
    /// The wire form.
    pub fn to_info(&self) -> SnapshotInfo {
        SnapshotInfo {
            id: self.id.clone(),
            namespace: self.namespace.clone(),
            sandbox_id: self.sandbox_id.to_string(),
            status: self.status,
            snapshot_type: self.snapshot_type,
            size_bytes: self.size_bytes.and_then(|s| u64::try_from(s).ok()),
            created_at: self.created_at,
            base_image: self.image.clone(),
            error: self.error.clone(),
        }
    }
}

const FIELDS: [&str; 16] = [
    "id",
    "namespace",
    "sandbox_id",
    "status",
    "snapshot_type",
    "image",
    "cpus",
    "memory_mb",
    "disk_mb",
    "entrypoint",
    "size_bytes",
    "created_at",
    "completed_at",
    "error",
    "file_systems",
    "network_policy",
];

fn decode(row: &DbRow) -> Result<SnapshotRecord, StoreError> {
    let id: String = row.get("id")?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let status: String = row.get("status")?;
    let kind: String = row.get("snapshot_type")?;
    Ok(SnapshotRecord {
        namespace: row.get("namespace")?,
        sandbox_id: super::sandboxes::parse_id(row.get("sandbox_id")?)?,
        status: SnapshotStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("status {status:?}")))?,
        snapshot_type: SnapshotType::parse(&kind)
            .ok_or_else(|| corrupt(format!("snapshot_type {kind:?}")))?,
        image: row.get("image")?,
        cpus: row.get("cpus")?,
        memory_mb: row.get("memory_mb")?,
        disk_mb: row.get("disk_mb")?,
        entrypoint: json_column(row, &id, "entrypoint")?,
        size_bytes: row.get("size_bytes")?,
        created_at: row.get("created_at")?,
        completed_at: row.get("completed_at")?,
        error: row.get("error")?,
        file_systems: {
            let text: Option<String> = row.get("file_systems")?;
            text.map(|t| {
                serde_json::from_str(&t).map_err(|e| corrupt(format!("file_systems: {e}")))
            })
            .transpose()?
            .unwrap_or_default()
        },
        network_policy: {
            let text: Option<String> = row.get("network_policy")?;
            text.map(|t| {
                serde_json::from_str(&t).map_err(|e| corrupt(format!("network_policy: {e}")))
            })
            .transpose()?
        },
        id,
    })
}

impl Store {
    /// Writes a snapshot (insert or full replace).
    pub async fn put_snapshot(&self, r: &SnapshotRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO snapshots ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
            FIELDS.join(", "),
            placeholders(1, FIELDS.len()).join(", "),
            replace_all(&FIELDS[1..])
        );
        let stmt =
            query(&sql)
                .bind(&r.id)
                .bind(&r.namespace)
                .bind(r.sandbox_id.as_str())
                .bind(r.status.as_str())
                .bind(r.snapshot_type.as_str())
                .bind(&r.image)
                .bind(r.cpus)
                .bind(r.memory_mb)
                .bind(r.disk_mb)
                .bind(serde_json::to_string(&r.entrypoint).unwrap_or_else(|_| "[]".into()))
                .bind(r.size_bytes)
                .bind(r.created_at)
                .bind(r.completed_at)
                .bind(&r.error)
                .bind((!r.file_systems.is_empty()).then(|| {
                    serde_json::to_string(&r.file_systems).unwrap_or_else(|_| "[]".into())
                }))
                .bind(
                    r.network_policy
                        .as_ref()
                        .and_then(|p| serde_json::to_string(p).ok()),
                );
        self.db.execute(stmt).await?;
        Ok(())
    }

    /// A snapshot by id.
    pub async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        let sql = format!("SELECT {} FROM snapshots WHERE id = $1", FIELDS.join(", "));
        let row = self.db.fetch_optional(query(&sql).bind(id)).await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Snapshots of a namespace (optionally of one sandbox), oldest first.
    pub async fn list_snapshots(
        &self,
        namespace: Option<&str>,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM snapshots WHERE ($1 IS NULL OR namespace = $1) \
             AND ($2 IS NULL OR sandbox_id = $2) ORDER BY created_at, id",
            FIELDS.join(", ")
        );
        let rows = self
            .db
            .fetch_all(query(&sql).bind(namespace).bind(sandbox_id))
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Removes a snapshot's row.
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), StoreError> {
        self.db
            .execute(query("DELETE FROM snapshots WHERE id = $1").bind(id))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    fn snap(id: &str, sandbox: &str) -> SnapshotRecord {
        SnapshotRecord {
            id: id.into(),
            namespace: "default".into(),
            sandbox_id: crate::store::test_id(sandbox),
            status: SnapshotStatus::InProgress,
            snapshot_type: SnapshotType::Memory,
            image: "alcove/debian".into(),
            cpus: 1.0,
            memory_mb: 1024,
            disk_mb: 10240,
            entrypoint: vec![],
            size_bytes: None,
            created_at: 5,
            completed_at: None,
            error: None,
            file_systems: Vec::new(),
            network_policy: Some(alcove_wire::sandbox::NetworkConfig {
                allow_internet_access: false,
                allow_out: vec!["10.1.2.3".into()],
                deny_out: Vec::new(),
            }),
        }
    }

    store_test!(async fn snapshots_round_trip_and_filter(db) {
        let store = db.open().await;
        let mut a = snap("a", "sb1");
        store.put_snapshot(&a).await.expect("put");
        store.put_snapshot(&snap("b", "sb2")).await.expect("put");
        a.status = SnapshotStatus::Completed;
        a.size_bytes = Some(42);
        store.put_snapshot(&a).await.expect("replace");
        assert_eq!(store.get_snapshot("a").await.expect("get"), Some(a));
        assert_eq!(
            store
                .list_snapshots(Some("default"), None)
                .await
                .expect("list")
                .len(),
            2
        );
        assert_eq!(
            store
                .list_snapshots(None, Some(&crate::store::test_id("sb2")))
                .await
                .expect("list")[0]
                .id,
            "b"
        );
        assert!(
            store
                .list_snapshots(Some("other"), None)
                .await
                .expect("list")
                .is_empty()
        );
        store.delete_snapshot("a").await.expect("delete");
        assert_eq!(store.get_snapshot("a").await.expect("get"), None);
    });
}
