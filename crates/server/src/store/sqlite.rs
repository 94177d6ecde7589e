//! SQLite implementation of the store (WAL mode, one file in the data directory).

use std::path::Path;
use std::str::FromStr;

use alcove_runtime::SandboxId;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::{EpochMillis, now_millis};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};

use super::{SandboxRecord, StoreError};

/// The durable state of the server.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// Columns of `sandboxes`, in the order [`bind_all`] binds them.
const FIELDS: [&str; 30] = [
    "id",
    "namespace",
    "name",
    "status",
    "image",
    "cpus",
    "memory_mb",
    "disk_mb",
    "timeout_secs",
    "entrypoint",
    "network_policy",
    "secret_names",
    "exposed_ports",
    "allow_unauthenticated_access",
    "auto_resume",
    "slot",
    "created_at",
    "terminated_at",
    "deadline_at",
    "pending_reason",
    "termination_reason",
    "error_details",
    "timeout_remaining_ms",
    "transition",
    "suspended_at",
    "archived_at",
    "resource_resize",
    "pool_id",
    "pool_state",
    "file_systems",
];

pub(super) fn columns() -> String {
    FIELDS.join(", ")
}

impl Store {
    /// Opens (creating if needed) `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Inserts a new sandbox; fails with [`StoreError::NameTaken`] if a live one has its name.
    pub async fn insert(&self, r: &SandboxRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO sandboxes ({}) VALUES ({})",
            columns(),
            vec!["?"; FIELDS.len()].join(", ")
        );
        let result = bind_all(sqlx::query(&sql), r).execute(&self.pool).await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::NameTaken(r.name.clone().unwrap_or_default()))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Writes every field of an existing sandbox.
    pub async fn update(&self, r: &SandboxRecord) -> Result<(), StoreError> {
        let sets: Vec<String> = FIELDS.iter().map(|f| format!("{f} = ?")).collect();
        let sql = format!("UPDATE sandboxes SET {} WHERE id = ?", sets.join(", "));
        let result = bind_all(sqlx::query(&sql), r)
            .bind(r.id.as_str())
            .execute(&self.pool)
            .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::NameTaken(r.name.clone().unwrap_or_default()))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// A sandbox by id.
    pub async fn get(&self, id: &str) -> Result<Option<SandboxRecord>, StoreError> {
        let sql = format!("SELECT {} FROM sandboxes WHERE id = ?", columns());
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// The live sandbox holding `name`.
    pub async fn get_live_by_name(&self, name: &str) -> Result<Option<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE name = ? \
             AND status NOT IN ('terminated', 'failed')",
            columns()
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Every sandbox of a namespace, ended ones included, oldest first.
    pub async fn list(&self, namespace: &str) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE namespace = ? ORDER BY created_at, id",
            columns()
        );
        let rows = sqlx::query(&sql)
            .bind(namespace)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The live sandboxes of a namespace (`GET /sandboxes`), oldest first; ended ones are
    /// in the archive.
    pub async fn list_live_in(&self, namespace: &str) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE namespace = ? \
             AND status NOT IN ('terminated', 'failed', 'timeout') \
             AND (pool_state IS NULL OR pool_state = 'claimed') ORDER BY created_at, id",
            columns()
        );
        let rows = sqlx::query(&sql)
            .bind(namespace)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The live sandboxes of a namespace that may hold volumes: the listed ones and
    /// a pool's sandboxes being claimed (a claim may mount volumes before it is done).
    pub async fn list_holders_in(&self, namespace: &str) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE namespace = ? \
             AND status NOT IN ('terminated', 'failed', 'timeout') \
             AND (pool_state IS NULL OR pool_state != 'idle') ORDER BY created_at, id",
            columns()
        );
        let rows = sqlx::query(&sql)
            .bind(namespace)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Every sandbox that is not ended, in any namespace.
    pub async fn list_live(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE status NOT IN ('terminated', 'failed') \
             ORDER BY created_at",
            columns()
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// The id of every stored sandbox, ended ones included.
    pub async fn all_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM sandboxes")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// How many sandboxes are in each status (statuses with none are absent).
    pub async fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM sandboxes GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(status, n)| (status, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// The pool, for the snapshot queries.
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool (flushes the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn bind_all<'q>(q: Query<'q>, r: &'q SandboxRecord) -> Query<'q> {
    q.bind(r.id.as_str())
        .bind(&r.namespace)
        .bind(&r.name)
        .bind(r.status.as_str())
        .bind(&r.image)
        .bind(r.cpus)
        .bind(r.memory_mb)
        .bind(r.disk_mb)
        .bind(r.timeout_secs)
        .bind(json(&r.entrypoint))
        .bind(json(&r.network_policy))
        .bind(json(&r.secret_names))
        .bind(json(&r.exposed_ports))
        .bind(r.allow_unauthenticated_access)
        .bind(r.auto_resume)
        .bind(r.slot)
        .bind(r.created_at)
        .bind(r.terminated_at)
        .bind(r.deadline_at)
        .bind(&r.pending_reason)
        .bind(&r.termination_reason)
        .bind(&r.error_details)
        .bind(r.timeout_remaining_ms)
        .bind(&r.transition)
        .bind(r.suspended_at)
        .bind(archived_at(r))
        .bind(r.resource_resize.as_ref().map(json))
        .bind(&r.pool_id)
        .bind(r.pool_state.map(super::PoolState::as_str))
        .bind((!r.file_systems.is_empty()).then(|| json(&r.file_systems)))
}

/// When the row enters the archive: as recorded, or, for an ended record whose path did not
/// call `mark_ended`, its end (now if it has none), so that every ended row is archived and
/// every archived row is purged in time.
fn archived_at(r: &SandboxRecord) -> Option<EpochMillis> {
    r.archived_at
        .or_else(|| (!r.status.is_live()).then(|| r.terminated_at.unwrap_or_else(now_millis)))
}

/// Reads a JSON-encoded text column.
pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    id: &str,
    col: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        reason: format!("{col}: {e}"),
    })
}

/// Reads a nullable JSON-encoded text column.
fn optional_json_column<T: serde::de::DeserializeOwned>(
    row: &SqliteRow,
    id: &str,
    col: &str,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = row.try_get(col)?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            reason: format!("{col}: {e}"),
        })
    })
    .transpose()
}

/// A stored id, which went through [`SandboxId::parse`] before it was stored.
pub(super) fn parse_id(id: String) -> Result<SandboxId, StoreError> {
    SandboxId::parse(&id).map_err(|e| StoreError::Corrupt {
        reason: e.to_string(),
        id,
    })
}

fn decode_pool_state(row: &SqliteRow, id: &str) -> Result<Option<super::PoolState>, StoreError> {
    let text: Option<String> = row.try_get("pool_state")?;
    text.map(|t| {
        super::PoolState::parse(&t).ok_or_else(|| StoreError::Corrupt {
            id: id.to_string(),
            reason: format!("pool_state {t:?}"),
        })
    })
    .transpose()
}

pub(super) fn decode(row: &SqliteRow) -> Result<SandboxRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    Ok(SandboxRecord {
        namespace: row.try_get("namespace")?,
        name: row.try_get("name")?,
        status: SandboxStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
            id: id.clone(),
            reason: format!("status {status:?}"),
        })?,
        image: row.try_get("image")?,
        cpus: row.try_get("cpus")?,
        memory_mb: row.try_get("memory_mb")?,
        disk_mb: row.try_get("disk_mb")?,
        timeout_secs: row.try_get("timeout_secs")?,
        entrypoint: json_column(row, &id, "entrypoint")?,
        network_policy: json_column(row, &id, "network_policy")?,
        secret_names: json_column(row, &id, "secret_names")?,
        exposed_ports: json_column(row, &id, "exposed_ports")?,
        allow_unauthenticated_access: row.try_get("allow_unauthenticated_access")?,
        auto_resume: row.try_get("auto_resume")?,
        slot: row.try_get("slot")?,
        created_at: row.try_get("created_at")?,
        terminated_at: row.try_get("terminated_at")?,
        deadline_at: row.try_get("deadline_at")?,
        pending_reason: row.try_get("pending_reason")?,
        termination_reason: row.try_get("termination_reason")?,
        error_details: row.try_get("error_details")?,
        timeout_remaining_ms: row.try_get("timeout_remaining_ms")?,
        transition: row.try_get("transition")?,
        suspended_at: row.try_get("suspended_at")?,
        archived_at: row.try_get("archived_at")?,
        resource_resize: optional_json_column(row, &id, "resource_resize")?,
        pool_id: row.try_get("pool_id")?,
        pool_state: decode_pool_state(row, &id)?,
        file_systems: optional_json_column(row, &id, "file_systems")?.unwrap_or_default(),
        id: parse_id(id)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: Option<&str>) -> SandboxRecord {
        crate::store::sample_record(id, name)
    }

    #[tokio::test]
    async fn round_trips_and_enforces_live_name_uniqueness() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(&tmp.path().join("a.db")).await.expect("open");
        let a = record("a", Some("web"));
        store.insert(&a).await.expect("insert");
        assert_eq!(
            store.get(&crate::store::test_id("a")).await.expect("get"),
            Some(a.clone())
        );
        assert!(matches!(
            store.insert(&record("b", Some("web"))).await,
            Err(StoreError::NameTaken(n)) if n == "web"
        ));
        let mut ended = a.clone();
        ended.status = SandboxStatus::Terminated;
        store.update(&ended).await.expect("update");
        assert_eq!(store.get_live_by_name("web").await.expect("by name"), None);
        store
            .insert(&record("b", Some("web")))
            .await
            .expect("name free again");
        let live = store.list_live().await.expect("live");
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].id, crate::store::test_id("b"));
        assert_eq!(store.list("default").await.expect("list").len(), 2);
    }
}
