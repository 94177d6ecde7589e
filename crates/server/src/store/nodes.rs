//! Nodes: registration under a unique name and subnet, leases, and the use
//! each node reports when it renews.

use alcove_wire::time::EpochMillis;

use super::backend::query;
use super::{Store, StoreError};

/// A node as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// Unique name.
    pub name: String,
    /// Id of the node's data directory: a new run on the same directory (a
    /// restart, after a crash too) takes the name back without waiting for the
    /// old lease to run out.
    pub machine: String,
    /// Random id of this run of the server: only it may renew the lease.
    pub instance: String,
    /// URL other nodes reach it at.
    pub address: String,
    /// Its sandboxes' subnet.
    pub subnet: String,
    /// Labels, as a JSON object.
    pub labels: String,
    /// `active` or `draining`.
    pub state: String,
    /// The server's version.
    pub version: String,
    /// CPUs of the machine.
    pub cpus: f64,
    /// Memory of the machine, MiB.
    pub memory_mb: i64,
    /// CPUs its running sandboxes reserve.
    pub used_cpus: f64,
    /// Memory its running sandboxes reserve, MiB.
    pub used_memory_mb: i64,
    /// Running sandboxes.
    pub running: i64,
    /// Suspended sandboxes.
    pub suspended: i64,
    /// When this run registered.
    pub started_at: EpochMillis,
    /// Until when the lease holds.
    pub lease_expires_at: EpochMillis,
    /// Last renewal.
    pub updated_at: EpochMillis,
    /// When it gave its lease back in a clean stop (its sandboxes wait for it).
    pub stopped_at: Option<EpochMillis>,
    /// When another node declared it lost.
    pub lost_at: Option<EpochMillis>,
    /// When the work of that loss (its sandboxes marked lost or taken over) was done.
    pub reaped_at: Option<EpochMillis>,
    /// How many times its CPUs it may promise to sandboxes.
    pub cpu_overcommit: f64,
    /// How many times its memory it may promise to sandboxes.
    pub memory_overcommit: f64,
}

impl NodeRecord {
    /// Whether its lease runs at `now`. A node declared lost is not: the loss
    /// is claimed only once the lease has run out, its fenced run cannot renew,
    /// and registering again clears `lost_at`.
    pub fn is_live(&self, now: EpochMillis) -> bool {
        self.lease_expires_at > now
    }

    /// Whether new sandboxes may go to it at `now`: live and active (not draining).
    pub fn takes_work(&self, now: EpochMillis) -> bool {
        self.is_live(now) && self.state == alcove_wire::node::NodeState::Active.as_str()
    }

    /// Its labels (`--node-label`); none when the stored JSON does not parse.
    pub fn label_map(&self) -> std::collections::BTreeMap<String, String> {
        serde_json::from_str(&self.labels).unwrap_or_default()
    }

    /// Whether a sandbox with `selector` may live on it.
    pub fn matches(&self, selector: &std::collections::BTreeMap<String, String>) -> bool {
        selector.is_empty() || crate::control::node_selector::matches(selector, &self.label_map())
    }

    /// The memory (MiB) it may still promise, from the use it last reported.
    pub fn memory_room(&self) -> i64 {
        (self.memory_mb as f64 * self.memory_overcommit) as i64 - self.used_memory_mb
    }

    /// The CPUs it may still promise, from the use it last reported.
    pub fn cpu_room(&self) -> f64 {
        self.cpus * self.cpu_overcommit - self.used_cpus
    }
}

/// What a node reports at each renewal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeUse {
    /// CPUs its running sandboxes reserve.
    pub cpus: f64,
    /// Memory they reserve, MiB.
    pub memory_mb: i64,
    /// Running sandboxes.
    pub running: i64,
    /// Suspended sandboxes.
    pub suspended: i64,
}

/// The outcome of a registration.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// Registered; the state it keeps from an earlier run (`active` or `draining`).
    Registered {
        /// `active` or `draining`.
        state: String,
    },
    /// A live node (its lease still runs) holds the name.
    NameHeld {
        /// That node's address.
        address: String,
        /// Until when its lease runs.
        until: EpochMillis,
    },
    /// Another live node uses the subnet.
    SubnetHeld {
        /// That node's name.
        by: String,
    },
    /// The node was declared lost and another node is still settling its
    /// sandboxes: try again in a moment.
    BeingReaped,
}

const COLUMNS: &str = "name, machine, instance, address, subnet, labels, state, version, cpus, memory_mb, \
                       used_cpus, used_memory_mb, running, suspended, started_at, \
                       lease_expires_at, updated_at, stopped_at, lost_at, reaped_at, \
                       cpu_overcommit, memory_overcommit";

impl Store {
    /// Registers `node` (its `state` is ignored: a node keeps the state it had)
    /// unless a live node of another data directory holds its name or subnet.
    pub async fn register_node(
        &self,
        node: &NodeRecord,
        now: EpochMillis,
    ) -> Result<Registration, StoreError> {
        let taken = self
            .db
            .fetch_optional(
                query(
                    "SELECT name FROM nodes WHERE subnet = $1 AND name <> $2 \
                     AND lease_expires_at > $3 AND machine <> $4",
                )
                .bind(&node.subnet)
                .bind(&node.name)
                .bind(now)
                .bind(&node.machine)
                .bind(node.cpu_overcommit)
                .bind(node.memory_overcommit),
            )
            .await?;
        if let Some(row) = taken {
            return Ok(Registration::SubnetHeld {
                by: row.get("name")?,
            });
        }
        let done = self
            .db
            .execute(
                query(
                    "INSERT INTO nodes (name, instance, address, subnet, labels, version, cpus, \
                     memory_mb, started_at, lease_expires_at, updated_at, machine, \
                     cpu_overcommit, memory_overcommit) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15) \
                     ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, \
                     machine = excluded.machine, \
                     address = excluded.address, subnet = excluded.subnet, \
                     labels = excluded.labels, version = excluded.version, cpus = excluded.cpus, \
                     memory_mb = excluded.memory_mb, used_cpus = 0, used_memory_mb = 0, \
                     cpu_overcommit = excluded.cpu_overcommit, \
                     memory_overcommit = excluded.memory_overcommit, \
                     running = 0, suspended = 0, started_at = excluded.started_at, \
                     lease_expires_at = excluded.lease_expires_at, updated_at = excluded.updated_at, \
                     stopped_at = NULL, lost_at = NULL, reaped_at = NULL \
                     WHERE (nodes.lease_expires_at <= $12 OR nodes.machine = excluded.machine) \
                     AND (nodes.lost_at IS NULL OR nodes.reaped_at IS NOT NULL)",
                )
                .bind(&node.name)
                .bind(&node.instance)
                .bind(&node.address)
                .bind(&node.subnet)
                .bind(&node.labels)
                .bind(&node.version)
                .bind(node.cpus)
                .bind(node.memory_mb)
                .bind(node.started_at)
                .bind(node.lease_expires_at)
                .bind(node.updated_at)
                .bind(now)
                .bind(&node.machine)
                .bind(node.cpu_overcommit)
                .bind(node.memory_overcommit),
            )
            .await?;
        let Some(row) = self.get_node(&node.name).await? else {
            return Err(StoreError::Corrupt {
                id: node.name.clone(),
                reason: "the node's row vanished while it registered".into(),
            });
        };
        if done == 0 && row.lost_at.is_some() && row.reaped_at.is_none() {
            return Ok(Registration::BeingReaped);
        }
        if done == 0 || row.instance != node.instance {
            return Ok(Registration::NameHeld {
                address: row.address,
                until: row.lease_expires_at,
            });
        }
        Ok(Registration::Registered { state: row.state })
    }

    /// Renews this run's lease until `until` and records its use; the node's
    /// state, or `None` when another run holds the name now or the node was
    /// declared lost (this run is fenced).
    pub async fn renew_node(
        &self,
        name: &str,
        instance: &str,
        until: EpochMillis,
        now: EpochMillis,
        used: NodeUse,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .db
            .fetch_optional(
                query(
                    "UPDATE nodes SET lease_expires_at = $3, updated_at = $4, used_cpus = $5, \
                     used_memory_mb = $6, running = $7, suspended = $8 \
                     WHERE name = $1 AND instance = $2 AND lost_at IS NULL RETURNING state",
                )
                .bind(name)
                .bind(instance)
                .bind(until)
                .bind(now)
                .bind(used.cpus)
                .bind(used.memory_mb)
                .bind(used.running)
                .bind(used.suspended),
            )
            .await?;
        Ok(match row {
            Some(r) => Some(r.get("state")?),
            None => None,
        })
    }

    /// Ends this run's lease now (a clean stop): the name and subnet are free,
    /// and its sandboxes (running on without it) wait for it to come back.
    pub async fn release_node(
        &self,
        name: &str,
        instance: &str,
        now: EpochMillis,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                query(
                    "UPDATE nodes SET lease_expires_at = $3, updated_at = $3, stopped_at = $3 \
                     WHERE name = $1 AND instance = $2",
                )
                .bind(name)
                .bind(instance)
                .bind(now),
            )
            .await?;
        Ok(())
    }

    /// Declares node `name` lost at `now` if it is: its lease ran out before
    /// `crashed_before` without a clean stop, or it stopped cleanly before
    /// `stopped_before`. A loss claimed before `stale_before` and never reaped
    /// (its reaper died) is claimed anew. True if this caller claimed it: it
    /// alone settles the node's sandboxes, then calls [`Store::finish_reaping`].
    pub async fn claim_lost_node(
        &self,
        name: &str,
        now: EpochMillis,
        crashed_before: EpochMillis,
        stopped_before: EpochMillis,
        stale_before: EpochMillis,
    ) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute(
                query(
                    "UPDATE nodes SET lost_at = $2, reaped_at = NULL WHERE name = $1 AND ( \
                     (lost_at IS NULL AND ((stopped_at IS NULL AND lease_expires_at < $3) \
                      OR (stopped_at IS NOT NULL AND stopped_at < $4 AND lease_expires_at < $4))) \
                     OR (lost_at IS NOT NULL AND reaped_at IS NULL AND lost_at < $5))",
                )
                .bind(name)
                .bind(now)
                .bind(crashed_before)
                .bind(stopped_before)
                .bind(stale_before),
            )
            .await?
            == 1)
    }

    /// Moves suspended sandbox `id` from node `from` to node `to`, with no
    /// address (it gets one of `to`'s subnet when it resumes), if `from`
    /// stopped cleanly before `stopped_before` and has not registered again.
    /// The node's row is locked while this is decided, so a registration of
    /// `from` either waits for the move (and its recovery then sees it) or
    /// makes it fail.
    pub async fn take_over_suspended(
        &self,
        id: &str,
        from: &str,
        to: &str,
        stopped_before: EpochMillis,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE sandboxes SET node = $2, slot = NULL WHERE id = $1 AND node = $3 \
             AND status = 'suspended' AND transition IS NULL AND EXISTS ( \
               SELECT 1 FROM nodes WHERE name = $3 AND lost_at IS NULL \
               AND stopped_at IS NOT NULL AND stopped_at < $4{})",
            self.db.lock_rows()
        );
        Ok(self
            .db
            .execute(
                query(&sql)
                    .bind(id)
                    .bind(to)
                    .bind(from)
                    .bind(stopped_before),
            )
            .await?
            == 1)
    }

    /// Hands suspended sandbox `id` of node `from` (the caller, holding its op
    /// lock) to node `to`, with no address; false if it is no longer `from`'s
    /// to hand (resuming, moved, ended).
    pub async fn hand_over_suspended(
        &self,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute(
                query(
                    "UPDATE sandboxes SET node = $2, slot = NULL WHERE id = $1 AND node = $3 \
                     AND status = 'suspended' AND transition IS NULL",
                )
                .bind(id)
                .bind(to)
                .bind(from),
            )
            .await?
            == 1)
    }

    /// Records that the loss claimed at `lost_at` is settled: the node may
    /// register again.
    pub async fn finish_reaping(
        &self,
        name: &str,
        lost_at: EpochMillis,
        now: EpochMillis,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                query("UPDATE nodes SET reaped_at = $3 WHERE name = $1 AND lost_at = $2")
                    .bind(name)
                    .bind(lost_at)
                    .bind(now),
            )
            .await?;
        Ok(())
    }

    /// The CPUs and memory (MiB) that the sandboxes of node `name` reserve:
    /// every live one that is not suspended, those still starting or resuming
    /// included.
    pub async fn reserved_on(&self, name: &str) -> Result<(f64, i64), StoreError> {
        let row = self
            .db
            .fetch_one(
                query(
                    "SELECT COALESCE(SUM(cpus), 0.0) AS cpus, \
                     CAST(COALESCE(SUM(memory_mb), 0) AS BIGINT) AS memory_mb FROM sandboxes \
                     WHERE node = $1 \
                     AND status NOT IN ('terminated', 'failed', 'timeout') \
                     AND (status <> 'suspended' OR transition IS NOT NULL)",
                )
                .bind(name),
            )
            .await?;
        Ok((row.get("cpus")?, row.get("memory_mb")?))
    }

    /// Sets a node's state (`active` or `draining`); false if there is no such node.
    pub async fn set_node_state(&self, name: &str, state: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute(
                query("UPDATE nodes SET state = $2 WHERE name = $1")
                    .bind(name)
                    .bind(state),
            )
            .await?
            > 0)
    }

    /// One node.
    pub async fn get_node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM nodes WHERE name = $1");
        let row = self.db.fetch_optional(query(&sql).bind(name)).await?;
        row.map(|r| node_of(&r)).transpose()
    }

    /// Every node, by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM nodes ORDER BY name");
        let rows = self.db.fetch_all(query(&sql)).await?;
        rows.iter().map(node_of).collect()
    }
}

fn node_of(r: &super::backend::DbRow) -> Result<NodeRecord, StoreError> {
    Ok(NodeRecord {
        name: r.get("name")?,
        machine: r.get("machine")?,
        instance: r.get("instance")?,
        address: r.get("address")?,
        subnet: r.get("subnet")?,
        labels: r.get("labels")?,
        state: r.get("state")?,
        version: r.get("version")?,
        cpus: r.get("cpus")?,
        memory_mb: r.get("memory_mb")?,
        used_cpus: r.get("used_cpus")?,
        used_memory_mb: r.get("used_memory_mb")?,
        running: r.get("running")?,
        suspended: r.get("suspended")?,
        started_at: r.get("started_at")?,
        lease_expires_at: r.get("lease_expires_at")?,
        updated_at: r.get("updated_at")?,
        stopped_at: r.get("stopped_at")?,
        lost_at: r.get("lost_at")?,
        reaped_at: r.get("reaped_at")?,
        cpu_overcommit: r.get("cpu_overcommit")?,
        memory_overcommit: r.get("memory_overcommit")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;
    use alcove_wire::sandbox::SandboxStatus;

    fn node(name: &str, instance: &str, subnet: &str, now: EpochMillis) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            machine: format!("dir-of-{instance}"),
            instance: instance.into(),
            address: format!("http://{name}:8900"),
            subnet: subnet.into(),
            labels: "{}".into(),
            state: "active".into(),
            version: "0.1.0".into(),
            cpus: 8.0,
            memory_mb: 16_384,
            used_cpus: 0.0,
            used_memory_mb: 0,
            running: 0,
            suspended: 0,
            started_at: now,
            lease_expires_at: now + 15_000,
            updated_at: now,
            stopped_at: None,
            lost_at: None,
            reaped_at: None,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
        }
    }

    store_test!(async fn names_and_subnets_are_held_while_a_lease_runs(db) {
        let store = db.open().await;
        let registered = |state: &str| Registration::Registered { state: state.into() };
        let a = node("a", "run-1", "10.1.0.0/16", 1_000);
        assert_eq!(store.register_node(&a, 1_000).await.expect("reg"), registered("active"));
        // Another run under the same name while the lease runs: refused.
        let a2 = node("a", "run-2", "10.1.0.0/16", 2_000);
        assert_eq!(
            store.register_node(&a2, 2_000).await.expect("reg"),
            Registration::NameHeld { address: "http://a:8900".into(), until: 16_000 }
        );
        // Another name on the same subnet: refused.
        let b = node("b", "run-3", "10.1.0.0/16", 2_000);
        assert_eq!(
            store.register_node(&b, 2_000).await.expect("reg"),
            Registration::SubnetHeld { by: "a".into() }
        );
        let b = node("b", "run-3", "10.2.0.0/16", 2_000);
        assert_eq!(store.register_node(&b, 2_000).await.expect("reg"), registered("active"));
        // Renewing records the use; the old run of a cannot renew once run-2 holds it.
        let used = NodeUse { cpus: 1.5, memory_mb: 1024, running: 2, suspended: 1 };
        assert_eq!(
            store.renew_node("a", "run-1", 20_000, 5_000, used).await.expect("renew"),
            Some("active".into())
        );
        assert!(store.set_node_state("a", "draining").await.expect("state"));
        assert!(!store.set_node_state("zz", "draining").await.expect("state"));
        // Expired: the name is free for a new run, which keeps the state (draining).
        let a3 = node("a", "run-4", "10.1.0.0/16", 21_000);
        assert_eq!(store.register_node(&a3, 21_000).await.expect("reg"), registered("draining"));
        assert_eq!(store.renew_node("a", "run-1", 40_000, 22_000, used).await.expect("renew"), None);
        let listed = store.list_nodes().await.expect("list");
        assert_eq!(listed.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((listed[0].instance.as_str(), listed[0].running), ("run-4", 0));
        // A clean stop frees the name at once.
        store.release_node("b", "run-3", 3_000).await.expect("release");
        let b2 = node("b", "run-5", "10.2.0.0/16", 3_001);
        assert_eq!(store.register_node(&b2, 3_001).await.expect("reg"), registered("active"));
        // A new run on the same data directory (a restart after a crash) takes the name
        // and subnet back while the old run's lease still runs; the old run is fenced.
        let mut b3 = node("b", "run-6", "10.2.0.0/16", 3_500);
        b3.machine = b2.machine.clone();
        assert_eq!(store.register_node(&b3, 3_500).await.expect("reg"), registered("active"));
        assert_eq!(store.renew_node("b", "run-5", 9_000, 3_600, used).await.expect("renew"), None);
    });

    store_test!(async fn a_node_reserves_what_its_live_unsuspended_sandboxes_ask(db) {
        let store = db.open().await;
        assert_eq!(store.reserved_on("a").await.expect("sum"), (0.0, 0));
        let mut n = 0;
        for (node, status, cpus, memory) in [
            ("a", SandboxStatus::Running, 1.0, 1024),
            ("a", SandboxStatus::Pending, 0.5, 512),
            ("a", SandboxStatus::Suspended, 2.0, 2048),
            ("a", SandboxStatus::Terminated, 4.0, 4096),
            ("b", SandboxStatus::Running, 8.0, 8192),
        ] {
            n += 1;
            let mut r = crate::store::sample_record(&format!("s{n}"), None);
            (r.node, r.status, r.cpus, r.memory_mb) = (Some(node.into()), status, cpus, memory);
            store.insert(&r).await.expect("insert");
        }
        assert_eq!(store.reserved_on("a").await.expect("sum"), (1.5, 1536));
        assert_eq!(store.reserved_on("b").await.expect("sum"), (8.0, 8192));
        // A suspended sandbox reserves again from the moment its resume begins.
        let mut resuming = crate::store::sample_record("s9", None);
        (resuming.node, resuming.status, resuming.cpus, resuming.memory_mb) =
            (Some("a".into()), SandboxStatus::Suspended, 0.25, 256);
        resuming.transition = Some("resuming".into());
        store.insert(&resuming).await.expect("insert");
        assert_eq!(store.reserved_on("a").await.expect("sum"), (1.75, 1792));
    });

    store_test!(async fn a_node_is_declared_lost_once_and_comes_back_only_once_settled(db) {
        let store = db.open().await;
        let a = node("a", "run-1", "10.1.0.0/16", 1_000);
        store.register_node(&a, 1_000).await.expect("reg");
        // Its lease (to 16 000) still runs: not lost.
        assert!(!store.claim_lost_node("a", 10_000, 10_000, 0, 0).await.expect("claim"));
        // Ran out: exactly one claim wins.
        assert!(store.claim_lost_node("a", 20_000, 20_000, 0, 0).await.expect("claim"));
        assert!(!store.claim_lost_node("a", 20_001, 20_001, 0, 0).await.expect("claim"));
        let lost = store.get_node("a").await.expect("get").expect("row");
        assert_eq!((lost.lost_at, lost.reaped_at), (Some(20_000), None));
        // The fenced run cannot renew; a new run must wait until the loss is settled.
        let used = NodeUse::default();
        assert_eq!(store.renew_node("a", "run-1", 40_000, 21_000, used).await.expect("renew"), None);
        let mut a2 = node("a", "run-2", "10.1.0.0/16", 21_000);
        a2.machine = a.machine.clone();
        assert_eq!(store.register_node(&a2, 21_000).await.expect("reg"), Registration::BeingReaped);
        // A reaper that died: its claim goes stale and is taken anew.
        assert!(store.claim_lost_node("a", 60_000, 60_000, 0, 30_000).await.expect("claim"));
        store.finish_reaping("a", 20_000, 60_001).await.expect("stale finish is ignored");
        assert_eq!(store.register_node(&a2, 60_002).await.expect("reg"), Registration::BeingReaped);
        store.finish_reaping("a", 60_000, 60_003).await.expect("finish");
        assert!(matches!(store.register_node(&a2, 60_004).await.expect("reg"), Registration::Registered { .. }));
        let back = store.get_node("a").await.expect("get").expect("row");
        assert_eq!((back.lost_at, back.reaped_at, back.instance.as_str()), (None, None, "run-2"));

        // A clean stop is waited for longer than a crash.
        store.release_node("a", "run-2", 70_000).await.expect("release");
        assert!(!store.claim_lost_node("a", 80_000, 80_000, 69_000, 0).await.expect("claim"));
        assert!(store.claim_lost_node("a", 90_000, 90_000, 71_000, 0).await.expect("claim"));
    });
    store_test!(async fn a_suspended_sandbox_moves_only_off_a_node_that_stopped_cleanly(db) {
        let store = db.open().await;
        let [s1, s2, s3] = ["s1", "s2", "s3"].map(|n| crate::store::sample_record(n, None));
        let b = node("b", "run-1", "10.2.0.0/16", 1_000);
        store.register_node(&b, 1_000).await.expect("reg");
        let mut r = s1.clone();
        (r.node, r.status, r.slot) = (Some("b".into()), SandboxStatus::Suspended, Some(7));
        store.insert(&r).await.expect("insert");
        let mut running = s2.clone();
        (running.node, running.status) = (Some("b".into()), SandboxStatus::Running);
        store.insert(&running).await.expect("insert");
        // B holds its lease: nothing moves.
        assert!(!store.take_over_suspended(s1.id.as_str(), "b", "a", 2_000).await.expect("take"));
        // B stopped cleanly, but only just: not yet.
        store.release_node("b", "run-1", 3_000).await.expect("release");
        assert!(!store.take_over_suspended(s1.id.as_str(), "b", "a", 3_000).await.expect("take"));
        // Later: it moves, once, without its address; a running sandbox never does.
        assert!(!store.take_over_suspended(s2.id.as_str(), "b", "a", 4_000).await.expect("take"));
        assert!(store.take_over_suspended(s1.id.as_str(), "b", "a", 4_000).await.expect("take"));
        assert!(!store.take_over_suspended(s1.id.as_str(), "b", "c", 4_000).await.expect("take"));
        let moved = store.get(s1.id.as_str()).await.expect("get").expect("row");
        assert_eq!((moved.node.as_deref(), moved.slot), (Some("a"), None));
        // Once B runs again, what it still has stays.
        let mut r3 = s3.clone();
        (r3.node, r3.status) = (Some("b".into()), SandboxStatus::Suspended);
        store.insert(&r3).await.expect("insert");
        let b2 = node("b", "run-2", "10.2.0.0/16", 5_000);
        store.register_node(&b2, 5_000).await.expect("reg");
        assert!(!store.take_over_suspended(s3.id.as_str(), "b", "a", 6_000).await.expect("take"));
    });
}
