//! Stored volumes ("file systems"); where each is mounted lives in the
//! sandboxes' own `file_systems` column.

use alcove_wire::time::EpochMillis;

use super::backend::{DbRow, query};
use super::{Store, StoreError};

/// A volume as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSystemRecord {
    /// Namespace.
    pub namespace: String,
    /// Name (its id on the wire).
    pub name: String,
    /// Size in MiB.
    pub size_mb: i64,
    /// Creation time.
    pub created_at: EpochMillis,
}

fn decode(r: &DbRow) -> Result<FileSystemRecord, StoreError> {
    Ok(FileSystemRecord {
        namespace: r.get("namespace")?,
        name: r.get("name")?,
        size_mb: r.get("size_mb")?,
        created_at: r.get("created_at")?,
    })
}

impl Store {
    /// Inserts a volume; false if the namespace already has one of that name.
    pub async fn insert_file_system(&self, f: &FileSystemRecord) -> Result<bool, StoreError> {
        let done = self
            .db
            .execute(
                query(
                    "INSERT INTO file_systems (namespace, name, size_mb, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, name) DO NOTHING",
                )
                .bind(&f.namespace)
                .bind(&f.name)
                .bind(f.size_mb)
                .bind(f.created_at),
            )
            .await?;
        Ok(done > 0)
    }

    /// One volume.
    pub async fn get_file_system(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<FileSystemRecord>, StoreError> {
        let row = self
            .db
            .fetch_optional(
                query(
                    "SELECT namespace, name, size_mb, created_at FROM file_systems \
                     WHERE namespace = $1 AND name = $2",
                )
                .bind(namespace)
                .bind(name),
            )
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The volumes of a namespace by name, or of every namespace with `None`.
    pub async fn list_file_systems(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<FileSystemRecord>, StoreError> {
        let rows = self
            .db
            .fetch_all(
                query(
                    "SELECT namespace, name, size_mb, created_at FROM file_systems \
                     WHERE $1 IS NULL OR namespace = $1 ORDER BY namespace, name",
                )
                .bind(namespace),
            )
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Deletes a volume's row; false if there was none.
    pub async fn delete_file_system(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let done = self
            .db
            .execute(
                query("DELETE FROM file_systems WHERE namespace = $1 AND name = $2")
                    .bind(namespace)
                    .bind(name),
            )
            .await?;
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::store_test;

    store_test!(async fn volumes_are_unique_per_namespace_and_listed_by_name(db) {
        let store = db.open().await;
        let vol = |ns: &str, name: &str| FileSystemRecord {
            namespace: ns.into(),
            name: name.into(),
            size_mb: 64,
            created_at: 1,
        };
        assert!(
            store
                .insert_file_system(&vol("a", "x"))
                .await
                .expect("insert")
        );
        assert!(
            !store
                .insert_file_system(&vol("a", "x"))
                .await
                .expect("again")
        );
        assert!(
            store
                .insert_file_system(&vol("b", "x"))
                .await
                .expect("other ns")
        );
        assert!(
            store
                .insert_file_system(&vol("a", "w"))
                .await
                .expect("insert")
        );
        let names: Vec<String> = store
            .list_file_systems(Some("a"))
            .await
            .expect("list")
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["w", "x"]);
        assert_eq!(store.list_file_systems(None).await.expect("all").len(), 3);
        assert!(store.delete_file_system("a", "x").await.expect("delete"));
        assert!(
            store
                .get_file_system("a", "x")
                .await
                .expect("get")
                .is_none()
        );
        assert!(!store.delete_file_system("a", "x").await.expect("gone"));
    });
}
