//! Stored sandboxes: the `sandboxes` table.

use alcove_runtime::SandboxId;
use alcove_wire::sandbox::SandboxStatus;
use alcove_wire::time::{EpochMillis, now_millis};

use super::backend::{DbRow, Stmt, placeholders, query};
use super::{SandboxRecord, Store, StoreError};

/// Columns of `sandboxes`, in the order [`bind_all`] binds them.
const FIELDS: [&str; 32] = [
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
    "node",
    "node_selector",
];

// Filters of the background passes' reads. Each holds the terms of its partial index
// (migration 0020) spelled as there: both backends then read the index, not the table.
/// Live sandboxes whose deadline is at or before `$1` (index `sandboxes_live_deadline`).
const LIVE_DUE: &str =
    "deadline_at IS NOT NULL AND status NOT IN ('terminated', 'failed') AND deadline_at <= $1";
/// Suspended sandboxes no transition is moving (index `sandboxes_suspended`).
const SUSPENDED_SETTLED: &str = "status = 'suspended' AND transition IS NULL";
/// Live warm sandboxes of pools (index `sandboxes_live_idle_pool_members`).
const LIVE_IDLE_POOL_MEMBERS: &str =
    "pool_state = 'idle' AND status NOT IN ('terminated', 'failed')";

/// Every column of the sandboxes passing `filter`, oldest first (by id within a millisecond,
/// so that both backends give the same order).
fn select_where(filter: &str) -> String {
    format!(
        "SELECT {} FROM sandboxes WHERE {filter} ORDER BY created_at, id",
        columns()
    )
}

pub(super) fn columns() -> String {
    FIELDS.join(", ")
}

/// `f = excluded.f, …`: an upsert that replaces every one of `fields` (the SQL both
/// SQLite and PostgreSQL read; SQLite's `INSERT OR REPLACE` is not PostgreSQL's).
pub(super) fn replace_all(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("{f} = excluded.{f}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Gives the live sandboxes no node owns (rows from before nodes existed) to
    /// `node`; how many.
    pub async fn adopt_unowned(&self, node: &str) -> Result<u64, StoreError> {
        Ok(self
            .db
            .execute(
                query("UPDATE sandboxes SET node = $1 WHERE node IS NULL AND archived_at IS NULL")
                    .bind(node),
            )
            .await?)
    }

    /// Inserts a new sandbox; fails with [`StoreError::NameTaken`] if a live one has its name.
    pub async fn insert(&self, r: &SandboxRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO sandboxes ({}) VALUES ({})",
            columns(),
            placeholders(1, FIELDS.len()).join(", ")
        );
        let result = self.db.execute(bind_all(query(&sql), r)).await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::NameTaken(r.name.clone().unwrap_or_default()))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Writes every field of an existing sandbox.
    pub async fn update(&self, r: &SandboxRecord) -> Result<(), StoreError> {
        let sets: Vec<String> = FIELDS
            .iter()
            .zip(placeholders(1, FIELDS.len()))
            .map(|(f, p)| format!("{f} = {p}"))
            .collect();
        let sql = format!(
            "UPDATE sandboxes SET {} WHERE id = ${}",
            sets.join(", "),
            FIELDS.len() + 1
        );
        let result = self
            .db
            .execute(bind_all(query(&sql), r).bind(r.id.as_str()))
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
        let sql = format!("SELECT {} FROM sandboxes WHERE id = $1", columns());
        let row = self.db.fetch_optional(query(&sql).bind(id)).await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// The live sandbox holding `name`.
    pub async fn get_live_by_name(&self, name: &str) -> Result<Option<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE name = $1 \
             AND status NOT IN ('terminated', 'failed')",
            columns()
        );
        let row = self.db.fetch_optional(query(&sql).bind(name)).await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Every sandbox of a namespace, ended ones included, oldest first.
    pub async fn list(&self, namespace: &str) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE namespace = $1 ORDER BY created_at, id",
            columns()
        );
        let rows = self.db.fetch_all(query(&sql).bind(namespace)).await?;
        rows.iter().map(decode).collect()
    }

    /// The live sandboxes of a namespace (`GET /sandboxes`), oldest first; ended ones are
    /// in the archive.
    pub async fn list_live_in(&self, namespace: &str) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE namespace = $1 \
             AND status NOT IN ('terminated', 'failed', 'timeout') \
             AND (pool_state IS NULL OR pool_state = 'claimed') ORDER BY created_at, id",
            columns()
        );
        let rows = self.db.fetch_all(query(&sql).bind(namespace)).await?;
        rows.iter().map(decode).collect()
    }

    /// The live sandboxes of a namespace that hold volumes: the listed ones and
    /// a pool's sandboxes being claimed (a claim may mount volumes before it is done).
    /// Only those with a volume are read, so that a check made at every create
    /// does not decode every sandbox of the namespace.
    pub async fn list_holders_in(&self, namespace: &str) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE namespace = $1 \
             AND file_systems IS NOT NULL \
             AND status NOT IN ('terminated', 'failed', 'timeout') \
             AND (pool_state IS NULL OR pool_state != 'idle') ORDER BY created_at, id",
            columns()
        );
        let rows = self.db.fetch_all(query(&sql).bind(namespace)).await?;
        rows.iter().map(decode).collect()
    }

    /// Every sandbox that is not ended, in any namespace.
    pub async fn list_live(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = select_where("status NOT IN ('terminated', 'failed')");
        let rows = self.db.fetch_all(query(&sql)).await?;
        rows.iter().map(decode).collect()
    }

    /// The live sandboxes whose deadline is at or before `now`, oldest first: what the
    /// timeout reaper ends. Read through an index of the live deadlines, so a pass that
    /// finds none costs the same with a thousand sandboxes up as with one.
    pub async fn list_live_due(&self, now: EpochMillis) -> Result<Vec<SandboxRecord>, StoreError> {
        let rows = self
            .db
            .fetch_all(query(&select_where(LIVE_DUE)).bind(now))
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The suspended sandboxes that no suspend or resume is moving, oldest first (what the
    /// compactor packs and the blob uploader copies); through an index of the suspended.
    pub async fn list_suspended_settled(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        let rows = self
            .db
            .fetch_all(query(&select_where(SUSPENDED_SETTLED)))
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The live warm (idle) sandboxes of every pool, oldest first; through an index of them.
    pub async fn list_live_idle_pool_members(&self) -> Result<Vec<SandboxRecord>, StoreError> {
        let rows = self
            .db
            .fetch_all(query(&select_where(LIVE_IDLE_POOL_MEMBERS)))
            .await?;
        rows.iter().map(decode).collect()
    }

    /// The id of every stored sandbox, ended ones included.
    pub async fn all_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = self.db.fetch_all(query("SELECT id FROM sandboxes")).await?;
        Ok(rows
            .iter()
            .map(|row| row.get("id"))
            .collect::<Result<_, _>>()?)
    }

    /// How many sandboxes are in each status (statuses with none are absent).
    pub async fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .db
            .fetch_all(query(
                "SELECT status, COUNT(*) AS n FROM sandboxes GROUP BY status",
            ))
            .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.get("n")?;
                Ok((row.get("status")?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }
}

pub(super) fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn bind_all<'a>(q: Stmt<'a>, r: &SandboxRecord) -> Stmt<'a> {
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
        .bind(&r.node)
        .bind((!r.node_selector.is_empty()).then(|| json(&r.node_selector)))
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
    row: &DbRow,
    id: &str,
    col: &str,
) -> Result<T, StoreError> {
    let text: String = row.get(col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        reason: format!("{col}: {e}"),
    })
}

/// Reads a nullable JSON-encoded text column.
pub(super) fn optional_json_column<T: serde::de::DeserializeOwned>(
    row: &DbRow,
    id: &str,
    col: &str,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = row.get(col)?;
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

fn decode_pool_state(row: &DbRow, id: &str) -> Result<Option<super::PoolState>, StoreError> {
    let text: Option<String> = row.get("pool_state")?;
    text.map(|t| {
        super::PoolState::parse(&t).ok_or_else(|| StoreError::Corrupt {
            id: id.to_string(),
            reason: format!("pool_state {t:?}"),
        })
    })
    .transpose()
}

pub(super) fn decode(row: &DbRow) -> Result<SandboxRecord, StoreError> {
    let id: String = row.get("id")?;
    let status: String = row.get("status")?;
    Ok(SandboxRecord {
        namespace: row.get("namespace")?,
        name: row.get("name")?,
        status: SandboxStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
            id: id.clone(),
            reason: format!("status {status:?}"),
        })?,
        image: row.get("image")?,
        cpus: row.get("cpus")?,
        memory_mb: row.get("memory_mb")?,
        disk_mb: row.get("disk_mb")?,
        timeout_secs: row.get("timeout_secs")?,
        entrypoint: json_column(row, &id, "entrypoint")?,
        network_policy: json_column(row, &id, "network_policy")?,
        secret_names: json_column(row, &id, "secret_names")?,
        exposed_ports: json_column(row, &id, "exposed_ports")?,
        allow_unauthenticated_access: row.get("allow_unauthenticated_access")?,
        auto_resume: row.get("auto_resume")?,
        slot: row.get("slot")?,
        created_at: row.get("created_at")?,
        terminated_at: row.get("terminated_at")?,
        deadline_at: row.get("deadline_at")?,
        pending_reason: row.get("pending_reason")?,
        termination_reason: row.get("termination_reason")?,
        error_details: row.get("error_details")?,
        timeout_remaining_ms: row.get("timeout_remaining_ms")?,
        transition: row.get("transition")?,
        suspended_at: row.get("suspended_at")?,
        archived_at: row.get("archived_at")?,
        resource_resize: optional_json_column(row, &id, "resource_resize")?,
        pool_id: row.get("pool_id")?,
        pool_state: decode_pool_state(row, &id)?,
        file_systems: optional_json_column(row, &id, "file_systems")?.unwrap_or_default(),
        node: row.get("node")?,
        node_selector: optional_json_column(row, &id, "node_selector")?.unwrap_or_default(),
        id: parse_id(id)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    fn record(id: &str, name: Option<&str>) -> SandboxRecord {
        crate::store::sample_record(id, name)
    }

    store_test!(async fn a_sandbox_keeps_its_node_and_unowned_ones_are_adopted(db) {
        let store = db.open().await;
        let mut mine = record("mine", Some("m"));
        mine.node = Some("a".into());
        mine.node_selector = [("zone".to_string(), "b".to_string())].into();
        store.insert(&mine).await.expect("insert");
        store.insert(&record("old", Some("o"))).await.expect("insert");
        let mut ended = record("ended", None);
        ended.status = SandboxStatus::Terminated;
        ended.archived_at = Some(1);
        store.insert(&ended).await.expect("insert");
        assert_eq!(store.adopt_unowned("b").await.expect("adopt"), 1, "live rows only");
        let node_of = |r: Option<SandboxRecord>| r.expect("row").node;
        let stored = store.get(&crate::store::test_id("mine")).await.expect("get").expect("row");
        assert_eq!(stored.node_selector.get("zone").map(String::as_str), Some("b"));
        assert_eq!(node_of(store.get(&crate::store::test_id("mine")).await.expect("get")), Some("a".into()));
        assert_eq!(node_of(store.get(&crate::store::test_id("old")).await.expect("get")), Some("b".into()));
        assert_eq!(node_of(store.get(&crate::store::test_id("ended")).await.expect("get")), None);
    });

    store_test!(async fn background_reads_take_only_the_rows_they_act_on(db) {
        use crate::store::PoolState;
        let store = db.open().await;
        let ids = |records: Vec<SandboxRecord>| -> Vec<String> {
            records.into_iter().map(|r| r.id.as_str().to_string()).collect()
        };
        let mut due = record("due", None);
        due.deadline_at = Some(100);
        let mut later = record("later", None);
        later.deadline_at = Some(101);
        later.created_at = 2;
        let mut ended_due = record("ended-due", None);
        ended_due.status = SandboxStatus::Terminated;
        ended_due.deadline_at = Some(50);
        let mut asleep = record("asleep", Some("a"));
        asleep.status = SandboxStatus::Suspended;
        let mut waking = record("waking", Some("w"));
        waking.status = SandboxStatus::Suspended;
        waking.transition = Some("resume".into());
        let mut warm = record("warm", None);
        warm.pool_id = Some("p".into());
        warm.pool_state = Some(PoolState::Idle);
        let mut claimed = record("claimed", None);
        claimed.pool_id = Some("p".into());
        claimed.pool_state = Some(PoolState::Claimed);
        let mut drained = record("drained", None);
        drained.pool_id = Some("p".into());
        drained.pool_state = Some(PoolState::Idle);
        drained.status = SandboxStatus::Failed;
        for r in [&due, &later, &ended_due, &asleep, &waking, &warm, &claimed, &drained] {
            store.insert(r).await.expect("insert");
        }
        let id = |name: &str| crate::store::test_id(name).as_str().to_string();
        assert_eq!(ids(store.list_live_due(100).await.expect("due")), [id("due")]);
        assert_eq!(ids(store.list_live_due(101).await.expect("due")), [id("due"), id("later")]);
        assert!(store.list_live_due(99).await.expect("due").is_empty());
        assert_eq!(ids(store.list_suspended_settled().await.expect("suspended")), [id("asleep")]);
        assert_eq!(ids(store.list_live_idle_pool_members().await.expect("warm")), [id("warm")]);
    });

    /// The background reads go through their indexes (SQLite's plan says which).
    #[tokio::test]
    async fn background_reads_use_their_indexes() {
        let db = crate::store::testing::TestDb::sqlite();
        let store = db.open().await;
        for (filter, index) in [
            (LIVE_DUE, "sandboxes_live_deadline"),
            (SUSPENDED_SETTLED, "sandboxes_suspended"),
            (LIVE_IDLE_POOL_MEMBERS, "sandboxes_live_idle_pool_members"),
        ] {
            let sql = format!("EXPLAIN QUERY PLAN {}", select_where(filter));
            let rows = store
                .db
                .fetch_all(query(&sql).bind(0_i64))
                .await
                .expect("plan");
            let plan: Vec<String> = rows
                .iter()
                .map(|row| row.get::<String>("detail").expect("detail"))
                .collect();
            assert!(
                plan.iter()
                    .any(|step| step.contains(&format!("USING INDEX {index}"))),
                "{filter}: {plan:?}"
            );
        }
    }

    store_test!(async fn round_trips_and_enforces_live_name_uniqueness(db) {
        let store = db.open().await;
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
    });
}
