//! Stored (sealed) secrets.

use alcove_wire::time::EpochMillis;

use super::backend::query;
use super::{Store, StoreError};

/// A sealed secret as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Namespace.
    pub namespace: String,
    /// Name (an environment variable name).
    pub name: String,
    /// ChaCha20-Poly1305 nonce.
    pub nonce: Vec<u8>,
    /// Sealed value.
    pub ciphertext: Vec<u8>,
    /// First set.
    pub created_at: EpochMillis,
    /// Last set.
    pub updated_at: EpochMillis,
}

impl Store {
    /// Inserts or replaces a secret, keeping the creation time of one it
    /// replaces; returns that creation time.
    pub async fn put_secret(&self, s: &SealedSecret) -> Result<EpochMillis, StoreError> {
        let row = self
            .db
            .fetch_one(
                query(
                    "INSERT INTO secrets (namespace, name, nonce, ciphertext, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (namespace, name) DO UPDATE SET \
                     nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
                     updated_at = excluded.updated_at RETURNING created_at",
                )
                .bind(&s.namespace)
                .bind(&s.name)
                .bind(&s.nonce)
                .bind(&s.ciphertext)
                .bind(s.created_at)
                .bind(s.updated_at),
            )
            .await?;
        Ok(row.get("created_at")?)
    }

    /// Secrets of a namespace, by name.
    pub async fn list_secrets(&self, namespace: &str) -> Result<Vec<SealedSecret>, StoreError> {
        let rows = self
            .db
            .fetch_all(
                query(
                    "SELECT namespace, name, nonce, ciphertext, created_at, updated_at \
                     FROM secrets WHERE namespace = $1 ORDER BY name",
                )
                .bind(namespace),
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SealedSecret {
                    namespace: r.get("namespace")?,
                    name: r.get("name")?,
                    nonce: r.get("nonce")?,
                    ciphertext: r.get("ciphertext")?,
                    created_at: r.get("created_at")?,
                    updated_at: r.get("updated_at")?,
                })
            })
            .collect()
    }

    /// Deletes a secret; false if there was none.
    pub async fn delete_secret(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let done = self
            .db
            .execute(
                query("DELETE FROM secrets WHERE namespace = $1 AND name = $2")
                    .bind(namespace)
                    .bind(name),
            )
            .await?;
        Ok(done > 0)
    }
}
