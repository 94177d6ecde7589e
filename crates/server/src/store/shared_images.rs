//! Images shared through the blob store: each one's record (as the image
//! store writes it, JSON) by id, and the names that point at it.

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
        Ok(())
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
}
