//! The objects put in the blob store, with the digests their downloads are
//! checked against.

use alcove_wire::time::EpochMillis;

use super::backend::query;
use super::{Store, StoreError};

/// One object in the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// Its key in the store (`snapshots/<id>/disk.tar.zst`).
    pub key: String,
    /// What it belongs to: `snapshot:<id>` or `sandbox:<id>`.
    pub owner: String,
    /// Lowercase hex sha256 of its bytes, taken while uploading.
    pub sha256: String,
    /// Its size in bytes.
    pub size: i64,
    /// When the upload finished.
    pub created_at: EpochMillis,
}

impl Store {
    /// Records an uploaded object (replacing the record of an earlier upload
    /// under the same key).
    pub async fn put_blob(&self, b: &BlobRecord) -> Result<(), StoreError> {
        self.put_blobs(std::slice::from_ref(b)).await
    }

    /// Records the objects of one upload together: one statement, so another
    /// node never sees part of them (a dump whose disk is missing), also when
    /// this one dies half-way.
    pub async fn put_blobs(&self, records: &[BlobRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> = (0..records.len())
            .map(|i| {
                let n = i * 5;
                format!(
                    "(${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO blobs (key, owner, sha256, size, created_at) VALUES {} \
             ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, \
             sha256 = excluded.sha256, size = excluded.size, created_at = excluded.created_at",
            rows.join(", ")
        );
        let mut stmt = query(&sql);
        for b in records {
            stmt = stmt
                .bind(&b.key)
                .bind(&b.owner)
                .bind(&b.sha256)
                .bind(b.size)
                .bind(b.created_at);
        }
        self.db.execute(stmt).await?;
        Ok(())
    }

    /// The objects of `owner`, by key.
    pub async fn blobs_of(&self, owner: &str) -> Result<Vec<BlobRecord>, StoreError> {
        let rows = self
            .db
            .fetch_all(
                query(
                    "SELECT key, owner, sha256, size, created_at FROM blobs \
                     WHERE owner = $1 ORDER BY key",
                )
                .bind(owner),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BlobRecord {
                    key: r.get("key")?,
                    owner: r.get("owner")?,
                    sha256: r.get("sha256")?,
                    size: r.get("size")?,
                    created_at: r.get("created_at")?,
                })
            })
            .collect()
    }

    /// Forgets one object (after deleting it from the store).
    pub async fn delete_blob(&self, key: &str) -> Result<(), StoreError> {
        self.db
            .execute(query("DELETE FROM blobs WHERE key = $1").bind(key))
            .await?;
        Ok(())
    }

    /// Forgets the objects of `owner` (after deleting them from the store);
    /// how many records went.
    pub async fn delete_blobs_of(&self, owner: &str) -> Result<u64, StoreError> {
        Ok(self
            .db
            .execute(query("DELETE FROM blobs WHERE owner = $1").bind(owner))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test!(async fn blob_records_are_kept_per_owner(db) {
        let store = db.open().await;
        let rec = |key: &str, owner: &str, size: i64| BlobRecord {
            key: key.into(),
            owner: owner.into(),
            sha256: "ab".repeat(32),
            size,
            created_at: 7,
        };
        store.put_blob(&rec("snapshots/s/disk.tar.zst", "snapshot:s", 1)).await.expect("put");
        store.put_blob(&rec("snapshots/s/criu.tar.zst", "snapshot:s", 2)).await.expect("put");
        store.put_blob(&rec("sandboxes/x/checkpoint.tar.zst", "sandbox:x", 3)).await.expect("put");
        // A new upload under the same key replaces the record.
        store.put_blob(&rec("snapshots/s/disk.tar.zst", "snapshot:s", 5)).await.expect("put");
        let of_s = store.blobs_of("snapshot:s").await.expect("list");
        assert_eq!(
            of_s.iter().map(|b| (b.key.as_str(), b.size)).collect::<Vec<_>>(),
            [("snapshots/s/criu.tar.zst", 2), ("snapshots/s/disk.tar.zst", 5)]
        );
        store.delete_blob("snapshots/s/criu.tar.zst").await.expect("delete");
        assert_eq!(store.blobs_of("snapshot:s").await.expect("list").len(), 1);
        assert_eq!(store.delete_blobs_of("snapshot:s").await.expect("delete"), 1);
        assert!(store.blobs_of("snapshot:s").await.expect("list").is_empty());
        assert_eq!(store.blobs_of("sandbox:x").await.expect("list").len(), 1);
        // An upload's records go in together, replacing what their keys had.
        store
            .put_blobs(&[
                rec("sandboxes/y/checkpoint.tar.zst", "sandbox:y", 8),
                rec("sandboxes/y/disk.img.tar.zst", "sandbox:y", 9),
                rec("sandboxes/x/checkpoint.tar.zst", "sandbox:x", 10),
            ])
            .await
            .expect("put all");
        let of_y = store.blobs_of("sandbox:y").await.expect("list");
        assert_eq!(of_y.iter().map(|b| b.size).collect::<Vec<_>>(), [8, 9]);
        let of_x = store.blobs_of("sandbox:x").await.expect("list");
        assert_eq!(of_x.iter().map(|b| b.size).collect::<Vec<_>>(), [10]);
        store.put_blobs(&[]).await.expect("nothing to put");
    });
}
