//! The archive: ended sandboxes, newest first, kept until the retention (`--archive-ttl`)
//! runs out (docs/protocol/control-plane.md, Archived sandboxes).
//!
//! A row is archived once `archived_at` is set (when the sandbox ends). Pages go by keyset:
//! the order is `(archived_at, id)` descending, and a cursor is the key of the row a page
//! starts after, so inserting or purging rows never shifts a page.

use alcove_runtime::SandboxId;
use alcove_wire::time::EpochMillis;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::backend::query;
use super::sandboxes::{columns, decode};
use super::{SandboxRecord, Store, StoreError};

/// Where an archived sandbox stands in the archive's order (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveKey {
    /// When it was archived.
    pub archived_at: EpochMillis,
    /// Its id: breaks ties between sandboxes archived in the same millisecond.
    pub id: SandboxId,
}

/// Version tag of the cursor's text, so a later format can tell old cursors apart.
const CURSOR_TAG: &str = "a1";

/// A `cursor` that is not one this server gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor of this server: {0}")]
pub struct CursorError(&'static str);

impl ArchiveKey {
    /// The key of an archived record (`None` while it has not ended).
    pub fn of(record: &SandboxRecord) -> Option<Self> {
        Some(Self {
            archived_at: record.archived_at?,
            id: record.id.clone(),
        })
    }

    /// The opaque cursor clients pass back: URL-safe base64 (no padding) of
    /// `a1:<archived_at>:<id>`, so it needs no escaping in a query string.
    pub fn to_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}:{}:{}", self.archived_at, self.id))
    }

    /// Reads a cursor made by [`ArchiveKey::to_cursor`].
    pub fn from_cursor(cursor: &str) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor.as_bytes())
            .map_err(|_| CursorError("not base64url"))?;
        let text = String::from_utf8(bytes).map_err(|_| CursorError("not text"))?;
        let mut parts = text.splitn(3, ':');
        let (Some(tag), Some(at), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CursorError("missing parts"));
        };
        if tag != CURSOR_TAG {
            return Err(CursorError("unknown version"));
        }
        let archived_at = at
            .parse::<EpochMillis>()
            .map_err(|_| CursorError("bad time"))?;
        let id = SandboxId::parse(id).map_err(|_| CursorError("bad id"))?;
        Ok(Self { archived_at, id })
    }
}

/// Which way a page goes from its cursor, in the newest-first order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Older sandboxes than the cursor's (the next page). Without a cursor: the newest.
    #[default]
    Forward,
    /// Newer sandboxes than the cursor's (the previous page). Without a cursor: the oldest.
    Backward,
}

/// One page of the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivePage {
    /// The page, newest first.
    pub records: Vec<SandboxRecord>,
    /// The cursor of the newer page (with [`Direction::Backward`]), if there is one.
    pub prev: Option<ArchiveKey>,
    /// The cursor of the older page (with [`Direction::Forward`]), if there is one.
    pub next: Option<ArchiveKey>,
}

/// What a page of the archive asks for.
#[derive(Debug, Clone)]
pub struct PageRequest<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// Where the page starts (exclusive); `None` = at the end `direction` starts from.
    pub cursor: Option<&'a ArchiveKey>,
    /// Which way it goes.
    pub direction: Direction,
    /// How many at most (at least 1).
    pub limit: u32,
    /// Rows archived at or before this time have expired and are not shown.
    pub expired_by: EpochMillis,
}

/// The condition that keeps expired and live rows out.
/// Its parameters are `$1` (namespace) and `$2` (expired by).
const VISIBLE: &str = "namespace = $1 AND archived_at IS NOT NULL AND archived_at > $2";

impl Store {
    /// One page of the archive of a namespace.
    pub async fn archive_page(&self, req: &PageRequest<'_>) -> Result<ArchivePage, StoreError> {
        let limit = req.limit.max(1) as usize;
        let (after, order) = match req.direction {
            Direction::Forward => ("(archived_at, id) < ($3, $4)", "DESC"),
            Direction::Backward => ("(archived_at, id) > ($3, $4)", "ASC"),
        };
        let limit_at = if req.cursor.is_some() { 5 } else { 3 };
        let position = if req.cursor.is_some() {
            format!(" AND {after}")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE {VISIBLE}{position} \
             ORDER BY archived_at {order}, id {order} LIMIT ${limit_at}",
            columns()
        );
        let mut stmt = query(&sql).bind(req.namespace).bind(req.expired_by);
        if let Some(key) = req.cursor {
            stmt = stmt.bind(key.archived_at).bind(key.id.as_str());
        }
        // One more than asked: whether it comes tells if a page lies beyond this one.
        let rows = self
            .db
            .fetch_all(stmt.bind(i64::try_from(limit + 1).unwrap_or(i64::MAX)))
            .await?;
        let mut records = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let beyond = records.len() > limit;
        records.truncate(limit);
        if req.direction == Direction::Backward {
            records.reverse();
        }
        let newest = records.first().and_then(ArchiveKey::of);
        let oldest = records.last().and_then(ArchiveKey::of);
        let (prev, next) = match req.direction {
            Direction::Forward => {
                let next = oldest.filter(|_| beyond);
                // Without a cursor the page starts at the newest: nothing is before it.
                let prev = match req.cursor {
                    None => None,
                    Some(cursor) => {
                        let anchor = newest.unwrap_or_else(|| cursor.clone());
                        self.any_beside(req, &anchor, Direction::Backward)
                            .await?
                            .then_some(anchor)
                    }
                };
                (prev, next)
            }
            Direction::Backward => {
                let prev = newest.filter(|_| beyond);
                let next = match req.cursor {
                    None => None,
                    Some(cursor) => {
                        let anchor = oldest.unwrap_or_else(|| cursor.clone());
                        self.any_beside(req, &anchor, Direction::Forward)
                            .await?
                            .then_some(anchor)
                    }
                };
                (prev, next)
            }
        };
        Ok(ArchivePage {
            records,
            prev,
            next,
        })
    }

    /// Whether a visible archived sandbox lies beyond `key` going `direction`.
    async fn any_beside(
        &self,
        req: &PageRequest<'_>,
        key: &ArchiveKey,
        direction: Direction,
    ) -> Result<bool, StoreError> {
        let beyond = match direction {
            Direction::Forward => "(archived_at, id) < ($3, $4)",
            Direction::Backward => "(archived_at, id) > ($3, $4)",
        };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM sandboxes WHERE {VISIBLE} AND {beyond}) AS found"
        );
        let row = self
            .db
            .fetch_one(
                query(&sql)
                    .bind(req.namespace)
                    .bind(req.expired_by)
                    .bind(key.archived_at)
                    .bind(key.id.as_str()),
            )
            .await?;
        Ok(row.get::<bool>("found")?)
    }

    /// One archived sandbox of a namespace that has not expired.
    pub async fn get_archived(
        &self,
        namespace: &str,
        id: &SandboxId,
        expired_by: EpochMillis,
    ) -> Result<Option<SandboxRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sandboxes WHERE {VISIBLE} AND id = $3",
            columns()
        );
        let row = self
            .db
            .fetch_optional(
                query(&sql)
                    .bind(namespace)
                    .bind(expired_by)
                    .bind(id.as_str()),
            )
            .await?;
        row.map(|r| decode(&r)).transpose()
    }

    /// Up to `limit` archived sandboxes (any namespace) archived at or before `expired_by`,
    /// oldest first.
    pub async fn expired_archived(
        &self,
        expired_by: EpochMillis,
        limit: u32,
        node: Option<&str>,
    ) -> Result<Vec<SandboxId>, StoreError> {
        let stmt = match node {
            // A node purges its own rows (and those from before nodes): their
            // files and logs are on its disk.
            Some(node) => query(
                "SELECT id FROM sandboxes WHERE archived_at IS NOT NULL AND archived_at <= $1 \
                 AND (node = $3 OR node IS NULL) ORDER BY archived_at, id LIMIT $2",
            )
            .bind(expired_by)
            .bind(i64::from(limit))
            .bind(node),
            None => query(
                "SELECT id FROM sandboxes WHERE archived_at IS NOT NULL AND archived_at <= $1 \
                 ORDER BY archived_at, id LIMIT $2",
            )
            .bind(expired_by)
            .bind(i64::from(limit)),
        };
        let rows = self.db.fetch_all(stmt).await?;
        rows.iter()
            .map(|row| super::sandboxes::parse_id(row.get("id")?))
            .collect()
    }

    /// Deletes an archived sandbox's row if it expired by `expired_by`; whether it did.
    /// A live row is never deleted, whatever the caller passes.
    pub async fn delete_archived(
        &self,
        id: &SandboxId,
        expired_by: EpochMillis,
    ) -> Result<bool, StoreError> {
        let done = self
            .db
            .execute(
                query(
                    "DELETE FROM sandboxes WHERE id = $1 AND archived_at IS NOT NULL \
                     AND archived_at <= $2 AND status IN ('terminated', 'failed', 'timeout')",
                )
                .bind(id.as_str())
                .bind(expired_by),
            )
            .await?;
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    use alcove_wire::sandbox::SandboxStatus;

    use super::*;
    use crate::store::backend::query;
    use crate::store::testing::store_test;
    use crate::store::{sample_record, test_id};

    /// An ended sandbox `label` archived at `at`, in `namespace`.
    async fn archived(store: &Store, label: &str, namespace: &str, at: EpochMillis) -> SandboxId {
        let mut r = sample_record(label, None);
        r.namespace = namespace.into();
        r.status = SandboxStatus::Terminated;
        r.termination_reason = Some("deleted".into());
        r.mark_ended(at);
        store.insert(&r).await.expect("insert");
        r.id
    }

    fn ids(page: &ArchivePage) -> Vec<SandboxId> {
        page.records.iter().map(|r| r.id.clone()).collect()
    }

    async fn page(
        store: &Store,
        cursor: Option<&ArchiveKey>,
        direction: Direction,
        limit: u32,
    ) -> ArchivePage {
        store
            .archive_page(&PageRequest {
                namespace: "default",
                cursor,
                direction,
                limit,
                expired_by: 0,
            })
            .await
            .expect("page")
    }

    /// Seven archived sandboxes, two of them in the same millisecond; their ids newest first.
    async fn seven(store: &Store) -> Vec<SandboxId> {
        let mut keys = Vec::new();
        for (label, at) in [
            ("s1", 100),
            ("s2", 200),
            ("s3", 300),
            ("s4", 300),
            ("s5", 400),
            ("s6", 500),
            ("s7", 600),
        ] {
            let id = archived(store, label, "default", at).await;
            keys.push((at, id.as_str().to_string(), id));
        }
        // Newest first; within one millisecond by id, descending.
        keys.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        keys.into_iter().map(|(_, _, id)| id).collect()
    }

    store_test!(async fn pages_forward_then_back_at_exact_boundaries(db) {
        let store = db.open().await;
        let all = seven(&store).await;
        // Live sandboxes and other namespaces are not in it.
        store
            .insert(&sample_record("live", Some("web")))
            .await
            .expect("live");
        archived(&store, "elsewhere", "other", 700).await;

        let first = page(&store, None, Direction::Forward, 3).await;
        assert_eq!(ids(&first), all[0..3]);
        assert_eq!(first.prev, None, "the newest page has nothing before it");
        let next = first.next.clone().expect("more");
        assert_eq!(next.id, all[2]);

        let second = page(&store, Some(&next), Direction::Forward, 3).await;
        assert_eq!(ids(&second), all[3..6]);
        assert_eq!(second.prev.as_ref().map(|k| &k.id), Some(&all[3]));
        let third = page(&store, second.next.as_ref(), Direction::Forward, 3).await;
        assert_eq!(ids(&third), all[6..7]);
        assert_eq!(third.next, None, "the oldest page has nothing after it");

        // Back from the last page: the same pages, newest first within each.
        let back = page(&store, third.prev.as_ref(), Direction::Backward, 3).await;
        assert_eq!(ids(&back), all[3..6]);
        assert_eq!(back.next.as_ref().map(|k| &k.id), Some(&all[5]));
        let back = page(&store, back.prev.as_ref(), Direction::Backward, 3).await;
        assert_eq!(ids(&back), all[0..3]);
        assert_eq!(back.prev, None);
        assert_eq!(back.next.as_ref().map(|k| &k.id), Some(&all[2]));

        // A page that ends exactly at the last row says there is no next page.
        let exact = page(&store, None, Direction::Forward, 7).await;
        assert_eq!(ids(&exact), all);
        assert_eq!((exact.prev, exact.next), (None, None));
        let six = page(&store, None, Direction::Forward, 6).await;
        assert_eq!(six.next.as_ref().map(|k| &k.id), Some(&all[5]));
        let last = page(&store, six.next.as_ref(), Direction::Forward, 1).await;
        assert_eq!(ids(&last), all[6..7]);
        assert_eq!(last.next, None);
        assert_eq!(last.prev.as_ref().map(|k| &k.id), Some(&all[6]));

        // Backward without a cursor starts from the oldest.
        let oldest = page(&store, None, Direction::Backward, 2).await;
        assert_eq!(ids(&oldest), all[5..7]);
        assert_eq!(oldest.next, None);
        assert_eq!(oldest.prev.as_ref().map(|k| &k.id), Some(&all[5]));

        // Past the end: an empty page whose one cursor leads back.
        let end = ArchiveKey::of(&store.get(&all[6]).await.expect("get").expect("row"))
            .expect("archived");
        let beyond = page(&store, Some(&end), Direction::Forward, 3).await;
        assert!(beyond.records.is_empty());
        assert_eq!(beyond.next, None);
        assert_eq!(beyond.prev, Some(end));
    });

    store_test!(async fn expired_rows_are_hidden_and_purged_and_live_rows_never(db) {
        let store = db.open().await;
        let old = archived(&store, "old", "default", 1_000).await;
        let young = archived(&store, "young", "default", 5_000).await;
        let live = sample_record("live", None);
        store.insert(&live).await.expect("live");

        let visible = store
            .archive_page(&PageRequest {
                namespace: "default",
                cursor: None,
                direction: Direction::Forward,
                limit: 10,
                expired_by: 1_000,
            })
            .await
            .expect("page");
        assert_eq!(ids(&visible), vec![young.clone()]);
        assert_eq!(
            store
                .get_archived("default", &old, 1_000)
                .await
                .expect("get"),
            None
        );
        assert!(
            store
                .get_archived("default", &young, 1_000)
                .await
                .expect("get")
                .is_some()
        );
        assert_eq!(
            store
                .get_archived("other", &young, 1_000)
                .await
                .expect("get"),
            None,
            "another namespace's"
        );
        assert_eq!(
            store
                .get_archived("default", &live.id, 0)
                .await
                .expect("get"),
            None,
            "a live sandbox is not archived"
        );

        assert_eq!(
            store.expired_archived(1_000, 10, None).await.expect("expired"),
            vec![old.clone()]
        );
        // A node purges its own rows and those from before nodes, never another's.
        let theirs = archived(&store, "theirs", "default", 1_000).await;
        let mut row = store.get(&theirs).await.expect("get").expect("row");
        row.node = Some("b".into());
        store.update(&row).await.expect("update");
        assert_eq!(
            store.expired_archived(1_000, 10, Some("a")).await.expect("expired"),
            vec![old.clone()]
        );
        let mut for_b = store.expired_archived(1_000, 10, Some("b")).await.expect("expired");
        for_b.sort();
        let mut want = vec![old.clone(), theirs.clone()];
        want.sort();
        assert_eq!(for_b, want);
        assert!(store.delete_archived(&theirs, 1_000).await.expect("delete"));
        assert!(store.delete_archived(&old, 1_000).await.expect("delete"));
        assert!(
            !store.delete_archived(&young, 1_000).await.expect("delete"),
            "not expired yet"
        );
        assert!(
            !store
                .delete_archived(&live.id, i64::MAX)
                .await
                .expect("delete"),
            "never a live row"
        );
        assert_eq!(store.get(&old).await.expect("get"), None);
        assert!(store.get(&young).await.expect("get").is_some());
        assert!(store.get(&live.id).await.expect("get").is_some());
    });

    store_test!(async fn an_ended_record_is_archived_even_if_its_path_forgot(db) {
        let store = db.open().await;
        let mut r = sample_record("a", None);
        store.insert(&r).await.expect("insert");
        r.status = SandboxStatus::Failed;
        r.terminated_at = Some(42);
        store.update(&r).await.expect("update");
        let stored = store.get(&r.id).await.expect("get").expect("row");
        assert_eq!(stored.archived_at, Some(42));
    });

    store_test!(async fn the_migration_archives_what_ended_before_it_as_of_its_end(db) {
        // The store as the migrations before 0005 left it.
        let old = db.migrated_before("0005").await;
        for (id, status, terminated_at) in [
            (test_id("deleted"), "terminated", Some(7_000_i64)),
            (test_id("failed-long-ago"), "failed", None),
            (test_id("running"), "running", None),
        ] {
            old.db
                .execute(
                    query(
                        "INSERT INTO sandboxes (id, namespace, status, image, cpus, memory_mb, \
                         disk_mb, network_policy, created_at, terminated_at) \
                         VALUES ($1, 'default', $2, 'alcove/debian', 1.0, 1024, 10240, \
                         '{\"allow_internet_access\":true,\"allow_out\":[],\"deny_out\":[]}', \
                         5000, $3)",
                    )
                    .bind(id.as_str())
                    .bind(status)
                    .bind(terminated_at),
                )
                .await
                .expect("insert");
        }
        old.close().await;

        let store = db.open().await;
        let at = |label: &str| {
            let store = store.clone();
            let id = test_id(label);
            async move { store.get(&id).await.expect("get").expect("row").archived_at }
        };
        assert_eq!(at("deleted").await, Some(7_000), "as of its end");
        assert_eq!(
            at("failed-long-ago").await,
            Some(5_000),
            "no end recorded: as of its creation"
        );
        assert_eq!(at("running").await, None, "a live sandbox is not archived");
        let page = store
            .archive_page(&PageRequest {
                namespace: "default",
                cursor: None,
                direction: Direction::Forward,
                limit: 10,
                expired_by: 0,
            })
            .await
            .expect("page");
        assert_eq!(
            ids(&page),
            vec![test_id("deleted"), test_id("failed-long-ago")]
        );
    });

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let key = ArchiveKey {
            archived_at: 1_767_225_600_123,
            id: test_id("a"),
        };
        let cursor = key.to_cursor();
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{cursor} needs no escaping in a URL"
        );
        assert_eq!(ArchiveKey::from_cursor(&cursor), Ok(key.clone()));
        let encode = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for garbage in [
            String::new(),
            "!!!".into(),
            "a1:5:x".into(),
            format!("{cursor}="),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0x00]),
            encode("a1"),
            encode("a1:12"),
            encode(&format!("a2:1:{}", key.id)),
            encode(&format!("a1:soon:{}", key.id)),
            encode(&format!("a1:1:{}", key.id.as_str().to_uppercase())),
            encode("a1:1:not-a-uuid"),
        ] {
            assert!(
                ArchiveKey::from_cursor(&garbage).is_err(),
                "{garbage:?} must be refused"
            );
        }
    }
}
