//! Stored warm pools, and the atomic hand-out of one of a pool's idle sandboxes.

use alcove_wire::sandbox::{NetworkConfig, ResourcesInfo};
use alcove_wire::time::EpochMillis;

use super::backend::{DbRow, placeholders, query};
use super::sandboxes::{columns, decode, json, json_column, optional_json_column, replace_all};
use super::{PoolState, SandboxRecord, Store, StoreError};

/// A pool as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRecord {
    /// Pool id.
    pub id: String,
    /// Owning namespace.
    pub namespace: String,
    /// Image of its sandboxes, as the request named it (resolved at each start).
    pub image: String,
    /// CPUs of each sandbox.
    pub cpus: f64,
    /// Memory of each sandbox in MiB.
    pub memory_mb: i64,
    /// Writable layer of each sandbox in MiB.
    pub disk_mb: i64,
    /// Lifetime of a claimed sandbox (0 = none), counted from its claim.
    pub timeout_secs: i64,
    /// Entrypoint of each sandbox.
    pub entrypoint: Vec<String>,
    /// Outbound policy of each sandbox.
    pub network_policy: NetworkConfig,
    /// Most sandboxes at once, idle and claimed (`None` = the host's capacity).
    pub max_containers: Option<i64>,
    /// Idle sandboxes kept started.
    pub warm_containers: i64,
    /// The labels its sandboxes' nodes must have; empty: any node.
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

impl PoolRecord {
    /// The resources of each sandbox, in their wire form.
    pub fn resources(&self) -> ResourcesInfo {
        ResourcesInfo {
            cpus: self.cpus,
            memory_mb: self.memory_mb,
            disk_mb: self.disk_mb,
            ephemeral_disk_mb: self.disk_mb,
        }
    }

    /// Whether a sandbox of this pool was made from the same configuration, with
    /// the pool's image now resolving to `pinned` (an update recycles idle sandboxes
    /// that were not, also when the image's tag moved).
    pub fn made(&self, r: &SandboxRecord, pinned: &str) -> bool {
        r.image == pinned
            && r.cpus == self.cpus
            && r.memory_mb == self.memory_mb
            && r.disk_mb == self.disk_mb
            && r.network_policy == self.network_policy
            && (r.entrypoint == self.entrypoint || self.entrypoint.is_empty())
            && r.node_selector == self.node_selector
    }
}

/// Columns of `pools`, in the order [`Store::put_pool`] binds them.
const FIELDS: [&str; 14] = [
    "id",
    "namespace",
    "image",
    "cpus",
    "memory_mb",
    "disk_mb",
    "timeout_secs",
    "entrypoint",
    "network_policy",
    "max_containers",
    "warm_containers",
    "node_selector",
    "created_at",
    "updated_at",
];

fn decode_pool(row: &DbRow) -> Result<PoolRecord, StoreError> {
    let id: String = row.get("id")?;
    Ok(PoolRecord {
        namespace: row.get("namespace")?,
        image: row.get("image")?,
        cpus: row.get("cpus")?,
        memory_mb: row.get("memory_mb")?,
        disk_mb: row.get("disk_mb")?,
        timeout_secs: row.get("timeout_secs")?,
        entrypoint: json_column(row, &id, "entrypoint")?,
        network_policy: json_column(row, &id, "network_policy")?,
        max_containers: row.get("max_containers")?,
        warm_containers: row.get("warm_containers")?,
        node_selector: optional_json_column(row, &id, "node_selector")?.unwrap_or_default(),
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        id,
    })
}

impl Store {
    /// Writes a pool (insert or full replace).
    pub async fn put_pool(&self, p: &PoolRecord) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO pools ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
            FIELDS.join(", "),
            placeholders(1, FIELDS.len()).join(", "),
            replace_all(&FIELDS[1..])
        );
        let stmt = query(&sql)
            .bind(&p.id)
            .bind(&p.namespace)
            .bind(&p.image)
            .bind(p.cpus)
            .bind(p.memory_mb)
            .bind(p.disk_mb)
            .bind(p.timeout_secs)
            .bind(serde_json::to_string(&p.entrypoint).unwrap_or_else(|_| "[]".into()))
            .bind(serde_json::to_string(&p.network_policy).unwrap_or_else(|_| "{}".into()))
            .bind(p.max_containers)
            .bind(p.warm_containers)
            .bind((!p.node_selector.is_empty()).then(|| json(&p.node_selector)))
            .bind(p.created_at)
            .bind(p.updated_at);
        self.db.execute(stmt).await?;
        Ok(())
    }

    /// A pool by id.
    pub async fn get_pool(&self, id: &str) -> Result<Option<PoolRecord>, StoreError> {
        let sql = format!("SELECT {} FROM pools WHERE id = $1", FIELDS.join(", "));
        let row = self.db.fetch_optional(query(&sql).bind(id)).await?;
        row.map(|r| decode_pool(&r)).transpose()
    }

    /// Takes (or renews) `node`'s turn to refill pool `pool_id` until `until`,
    /// if no other node holds a turn that runs past `now`; whether it holds it.
    /// One conditional update: two nodes never refill one pool at once.
    pub async fn take_refill_turn(
        &self,
        pool_id: &str,
        node: &str,
        now: EpochMillis,
        until: EpochMillis,
    ) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute(
                query(
                    "UPDATE pools SET refill_node = $2, refill_until = $4 WHERE id = $1 \
                     AND (refill_node IS NULL OR refill_node = $2 OR refill_until < $3)",
                )
                .bind(pool_id)
                .bind(node)
                .bind(now)
                .bind(until),
            )
            .await?
            == 1)
    }

    /// Gives up `node`'s turn at refilling pool `pool_id`, if it holds it, so
    /// that another node takes it on its next pass; whether it held it.
    pub async fn release_refill_turn(&self, pool_id: &str, node: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute(
                query(
                    "UPDATE pools SET refill_node = NULL, refill_until = NULL \
                     WHERE id = $1 AND refill_node = $2",
                )
                .bind(pool_id)
                .bind(node),
            )
            .await?
            == 1)
    }

    /// The node whose turn it is to refill pool `pool_id` (its warm sandboxes
    /// live there), if any.
    pub async fn pool_refill_node(&self, pool_id: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .db
            .fetch_optional(query("SELECT refill_node FROM pools WHERE id = $1").bind(pool_id))
            .await?;
        Ok(match row {
            Some(r) => r.get("refill_node")?,
            None => None,
        })
    }

    /// The pools of a namespace (every namespace with `None`), oldest first.
    pub async fn list_pools(&self, namespace: Option<&str>) -> Result<Vec<PoolRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM pools WHERE ($1 IS NULL OR namespace = $1) ORDER BY created_at, id",
            FIELDS.join(", ")
        );
        let rows = self.db.fetch_all(query(&sql).bind(namespace)).await?;
        rows.iter().map(decode_pool).collect()
    }

    /// Removes a pool's row (its sandboxes keep their `pool_id` as history).
    pub async fn delete_pool(&self, id: &str) -> Result<(), StoreError> {
        self.db
            .execute(query("DELETE FROM pools WHERE id = $1").bind(id))
            .await?;
        Ok(())
    }

    /// The live sandboxes of a pool (idle, being claimed and claimed), oldest first.
    pub async fn pool_members(&self, pool_id: &str) -> Result<Vec<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE pool_id = $1 \
             AND status NOT IN ('terminated', 'failed', 'timeout') ORDER BY created_at, id",
            columns()
        );
        let rows = self.db.fetch_all(query(&sql).bind(pool_id)).await?;
        rows.iter().map(decode).collect()
    }

    /// Marks the oldest running idle sandbox of `pool_id` as being claimed, in one
    /// statement (two claims never get the same sandbox); its id, or `None` when
    /// the pool has no running idle sandbox.
    ///
    /// In PostgreSQL the inner select locks the row it picks and skips rows other claims
    /// hold (`FOR UPDATE SKIP LOCKED`), so two claims at once take two different idle
    /// sandboxes; SQLite runs one writer at a time and needs no lock.
    ///
    /// With `node`, only that node's idle sandboxes (and those no node owns) are taken.
    pub async fn take_idle(
        &self,
        pool_id: &str,
        node: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let lock = self.db.skip_locked();
        let sql = format!(
            "UPDATE sandboxes SET pool_state = 'claiming' WHERE id = ( \
                 SELECT id FROM sandboxes WHERE pool_id = $1 AND pool_state = 'idle' \
                 AND status = 'running' AND ($2 IS NULL OR node IS NULL OR node = $2) \
                 ORDER BY created_at, id LIMIT 1{lock}) \
             AND pool_state = 'idle' RETURNING id"
        );
        let row = self
            .db
            .fetch_optional(query(&sql).bind(pool_id).bind(node))
            .await?;
        Ok(row.map(|r| r.get("id")).transpose()?)
    }

    /// Sets the pool state of one sandbox, leaving every other field as stored.
    pub async fn set_pool_state(&self, id: &str, state: PoolState) -> Result<(), StoreError> {
        self.db
            .execute(
                query("UPDATE sandboxes SET pool_state = $1 WHERE id = $2")
                    .bind(state.as_str())
                    .bind(id),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;
    use alcove_wire::sandbox::SandboxStatus;

    fn pool(id: &str) -> PoolRecord {
        PoolRecord {
            id: id.into(),
            namespace: "default".into(),
            image: "default".into(),
            cpus: 1.0,
            memory_mb: 512,
            disk_mb: 1024,
            timeout_secs: 0,
            entrypoint: vec![],
            network_policy: NetworkConfig {
                allow_internet_access: true,
                allow_out: vec![],
                deny_out: vec![],
            },
            max_containers: Some(3),
            warm_containers: 2,
            node_selector: [("zone".to_string(), "b".to_string())].into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    store_test!(async fn pools_round_trip_and_idle_sandboxes_are_taken_once(db) {
        let store = db.open().await;
        store.put_pool(&pool("p1")).await.expect("put");
        assert_eq!(store.get_pool("p1").await.expect("get"), Some(pool("p1")));
        assert_eq!(store.list_pools(Some("other")).await.expect("list"), vec![]);

        let mut idle = crate::store::sample_record("a", None);
        idle.pool_id = Some("p1".into());
        idle.pool_state = Some(PoolState::Idle);
        let mut booting = crate::store::sample_record("b", None);
        booting.pool_id = Some("p1".into());
        booting.pool_state = Some(PoolState::Idle);
        booting.status = SandboxStatus::Pending;
        store.insert(&idle).await.expect("insert");
        store.insert(&booting).await.expect("insert");

        // The live list never shows a pool's reserve.
        assert!(
            store
                .list_live_in("default")
                .await
                .expect("list")
                .is_empty()
        );
        let taken = store.take_idle("p1", None).await.expect("take");
        assert_eq!(taken.as_deref(), Some(idle.id.as_str()));
        // The other one is still booting: nothing more to take.
        assert_eq!(store.take_idle("p1", None).await.expect("take"), None);
        let got = store.get(&idle.id).await.expect("get").expect("row");
        assert_eq!(got.pool_state, Some(PoolState::Claiming));
        store
            .set_pool_state(&idle.id, PoolState::Claimed)
            .await
            .expect("set");
        let live = store.list_live_in("default").await.expect("list");
        assert_eq!(live.len(), 1, "a claimed sandbox is listed");
        assert_eq!(store.pool_members("p1").await.expect("members").len(), 2);
        store.delete_pool("p1").await.expect("delete");
        assert_eq!(store.get_pool("p1").await.expect("get"), None);
    });

    store_test!(async fn one_node_at_a_time_holds_a_pools_refill_turn(db) {
        let store = db.open().await;
        store.put_pool(&pool("p1")).await.expect("put");
        assert!(store.take_refill_turn("p1", "a", 1_000, 31_000).await.expect("turn"));
        // B waits while A's turn runs; A renews it.
        assert!(!store.take_refill_turn("p1", "b", 2_000, 32_000).await.expect("turn"));
        assert!(store.take_refill_turn("p1", "a", 3_000, 33_000).await.expect("turn"));
        assert!(!store.take_refill_turn("p1", "b", 32_000, 62_000).await.expect("turn"));
        // A turn not renewed passes on.
        assert!(store.take_refill_turn("p1", "b", 34_000, 64_000).await.expect("turn"));
        assert!(!store.take_refill_turn("p1", "a", 35_000, 65_000).await.expect("turn"));
        assert!(!store.take_refill_turn("nope", "a", 35_000, 65_000).await.expect("turn"));
        assert_eq!(store.pool_refill_node("p1").await.expect("node"), Some("b".into()));
        // A holder that gives its turn up: the next node takes it at once.
        assert!(!store.release_refill_turn("p1", "a").await.expect("release"));
        assert!(store.release_refill_turn("p1", "b").await.expect("release"));
        assert_eq!(store.pool_refill_node("p1").await.expect("node"), None);
        assert!(store.take_refill_turn("p1", "a", 36_000, 66_000).await.expect("turn"));
        assert_eq!(store.pool_refill_node("nope").await.expect("node"), None);
    });

    store_test!(async fn claims_at_once_take_different_idle_sandboxes(db) {
        let store = db.open().await;
        store.put_pool(&pool("p1")).await.expect("put");
        let mut ids = Vec::new();
        for label in ["c1", "c2", "c3", "c4"] {
            let mut idle = crate::store::sample_record(label, None);
            idle.pool_id = Some("p1".into());
            idle.pool_state = Some(PoolState::Idle);
            store.insert(&idle).await.expect("insert");
            ids.push(idle.id.to_string());
        }
        // Four claims at once: each gets a sandbox, and no sandbox is handed out twice.
        let (a, b, c, d) = tokio::join!(
            store.take_idle("p1", None),
            store.take_idle("p1", None),
            store.take_idle("p1", None),
            store.take_idle("p1", None),
        );
        let mut taken: Vec<String> = [a, b, c, d]
            .into_iter()
            .map(|t| t.expect("take").expect("an idle sandbox for every claim"))
            .collect();
        taken.sort();
        ids.sort();
        assert_eq!(taken, ids);
        assert_eq!(store.take_idle("p1", None).await.expect("take"), None);
    });
}
