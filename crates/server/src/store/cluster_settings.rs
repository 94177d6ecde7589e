//! Settings every node sharing the store reads: the relay token.

use super::backend::query;
use super::{Store, StoreError};

impl Store {
    /// The cluster's relay token: `candidate` if no node has written one
    /// yet (the first writer wins), else the one written.
    pub async fn relay_token(&self, candidate: &str) -> Result<String, StoreError> {
        self.db
            .execute(
                query(
                    "INSERT INTO cluster_settings (name, value) VALUES ('relay_token', $1) \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(candidate),
            )
            .await?;
        let row = self
            .db
            .fetch_optional(query(
                "SELECT value FROM cluster_settings WHERE name = 'relay_token'",
            ))
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                id: "relay_token".into(),
                reason: "written but not found".into(),
            })?;
        Ok(row.get("value")?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::store_test;

    store_test!(async fn the_first_relay_token_written_is_everyones(db) {
        let store = db.open().await;
        assert_eq!(store.relay_token("first").await.expect("token"), "first");
        assert_eq!(store.relay_token("second").await.expect("token"), "first");
    });
}
