//! Images shared through the blob store: each one's record (as the image
//! store writes it, JSON) by id, the names that point at it, and the images
//! and names deleted (so that every node removes its fetched copy).

use super::backend::query;
use super::{Store, StoreError};

impl Store {
    /// Records shared image `id` with its `record` and points `names` at it
    /// (a name another image had moves to this one, as a tag does).
    pub async fn put_shared_image(
        &self,
        id: &str,
        record: &str,
        names: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                query(
                    "INSERT INTO shared_images (id, record, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                )
                .bind(id)
                .bind(record)
                .bind(now),
            )
            .await?;
        for name in names {
            self.db
                .execute(
                    query(
                        "INSERT INTO shared_image_names (name, image_id) VALUES ($1, $2) \
                         ON CONFLICT (name) DO UPDATE SET image_id = excluded.image_id",
                    )
                    .bind(name)
                    .bind(id),
                )
                .await?;
        }
        // Shared again: a deletion recorded earlier no longer holds for it.
        for target in std::iter::once(id).chain(names.iter().map(String::as_str)) {
            self.db
                .execute(query("DELETE FROM image_deletions WHERE target = $1").bind(target))
                .await?;
        }
        Ok(())
    }

    /// Records that images and names were deleted at `now`, each as
    /// `(target, image_id)`: an image as `(id, id)`, a name as `(name, id of
    /// the image it pointed at)`. The nodes that fetched them remove theirs.
    pub async fn record_image_deletions(
        &self,
        deletions: &[(String, String)],
        now: i64,
    ) -> Result<(), StoreError> {
        for (target, image_id) in deletions {
            self.db
                .execute(
                    query(
                        "INSERT INTO image_deletions (target, image_id, deleted_at) \
                         VALUES ($1, $2, $3) ON CONFLICT (target) DO UPDATE SET \
                         image_id = excluded.image_id, deleted_at = excluded.deleted_at",
                    )
                    .bind(target)
                    .bind(image_id)
                    .bind(now),
                )
                .await?;
        }
        Ok(())
    }

    /// The recorded deletions, as `(target, image_id)`, oldest first.
    pub async fn image_deletions(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .db
            .fetch_all(query(
                "SELECT target, image_id FROM image_deletions ORDER BY deleted_at, target",
            ))
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("target")?, r.get("image_id")?)))
            .collect()
    }

    /// Forgets the deletions recorded before `before`; how many.
    pub async fn purge_image_deletions(&self, before: i64) -> Result<u64, StoreError> {
        Ok(self
            .db
            .execute(query("DELETE FROM image_deletions WHERE deleted_at < $1").bind(before))
            .await?)
    }

    /// The record of shared image `id`, if it is shared.
    pub async fn shared_image(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .db
            .fetch_optional(query("SELECT record FROM shared_images WHERE id = $1").bind(id))
            .await?;
        Ok(row.map(|r| r.get("record")).transpose()?)
    }

    /// The id of the shared image `name` points at, if any.
    pub async fn shared_image_named(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .db
            .fetch_optional(
                query("SELECT image_id FROM shared_image_names WHERE name = $1").bind(name),
            )
            .await?;
        Ok(row.map(|r| r.get("image_id")).transpose()?)
    }

    /// The shared names pointing at image `id`, sorted.
    pub async fn shared_image_names(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rows = self
            .db
            .fetch_all(
                query("SELECT name FROM shared_image_names WHERE image_id = $1 ORDER BY name")
                    .bind(id),
            )
            .await?;
        rows.iter().map(|r| Ok(r.get("name")?)).collect()
    }

    /// Removes the shared names `names`.
    pub async fn unshare_names(&self, names: &[String]) -> Result<(), StoreError> {
        for name in names {
            self.db
                .execute(query("DELETE FROM shared_image_names WHERE name = $1").bind(name))
                .await?;
        }
        Ok(())
    }

    /// Removes shared image `id` and every name pointing at it.
    pub async fn unshare_image(&self, id: &str) -> Result<(), StoreError> {
        self.db
            .execute(query("DELETE FROM shared_image_names WHERE image_id = $1").bind(id))
            .await?;
        self.db
            .execute(query("DELETE FROM shared_images WHERE id = $1").bind(id))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::store_test;

    store_test!(async fn shared_images_are_found_by_id_and_name_until_unshared(db) {
        let store = db.open().await;
        let names = vec!["localhost/app:1".to_string(), "localhost/app:latest".to_string()];
        store.put_shared_image("sha256:aa", "{\"a\":1}", &names, 5).await.expect("put");
        assert_eq!(store.shared_image("sha256:aa").await.expect("get").as_deref(), Some("{\"a\":1}"));
        assert_eq!(store.shared_image("sha256:bb").await.expect("get"), None);
        assert_eq!(store.shared_image_named("localhost/app:1").await.expect("name").as_deref(), Some("sha256:aa"));
        assert_eq!(store.shared_image_names("sha256:aa").await.expect("names"), names);
        // A tag moves to the image shared last under it.
        store.put_shared_image("sha256:bb", "{}", &names[1..], 6).await.expect("put");
        assert_eq!(store.shared_image_named("localhost/app:latest").await.expect("name").as_deref(), Some("sha256:bb"));
        store.unshare_names(&names[..1]).await.expect("untag");
        assert_eq!(store.shared_image_named("localhost/app:1").await.expect("name"), None);
        assert_eq!(store.shared_image("sha256:aa").await.expect("get").as_deref(), Some("{\"a\":1}"));
        store.unshare_image("sha256:bb").await.expect("unshare");
        assert_eq!(store.shared_image("sha256:bb").await.expect("get"), None);
        assert_eq!(store.shared_image_named("localhost/app:latest").await.expect("name"), None);
    });

    store_test!(async fn image_deletions_are_recorded_until_shared_again_or_purged(db) {
        let store = db.open().await;
        // Epoch milliseconds, as the server writes them (they need 64 bits).
        let t = alcove_wire::time::now_millis();
        let gone = vec![
            ("sha256:aa".to_string(), "sha256:aa".to_string()),
            ("localhost/app:1".to_string(), "sha256:bb".to_string()),
            ("localhost/app:2".to_string(), "sha256:bb".to_string()),
        ];
        store.record_image_deletions(&gone[..1], t + 10).await.expect("record");
        store.record_image_deletions(&gone[1..], t + 20).await.expect("record");
        assert_eq!(store.image_deletions().await.expect("list"), gone);
        // Deleted again: recorded once, at its last time.
        store.record_image_deletions(&gone[..1], t + 30).await.expect("record");
        let order: Vec<String> = store.image_deletions().await.expect("list").into_iter().map(|d| d.0).collect();
        assert_eq!(order, ["localhost/app:1", "localhost/app:2", "sha256:aa"]);
        // Shared again under an id or a name: its deletion no longer holds.
        store.put_shared_image("sha256:aa", "{}", &["localhost/app:2".to_string()], t + 40).await.expect("put");
        assert_eq!(store.image_deletions().await.expect("list"), gone[1..2].to_vec());
        assert_eq!(store.purge_image_deletions(t + 21).await.expect("purge"), 1);
        assert_eq!(store.image_deletions().await.expect("list"), vec![]);
    });
}
