//! The store: durable state of sandboxes. SQLite now; the interface is the
//! [`Store`] type so a PostgreSQL implementation can follow.

mod record;
mod secrets;
mod snapshots;
mod sqlite;

pub use record::SandboxRecord;
pub use secrets::SealedSecret;
pub use snapshots::SnapshotRecord;
pub use sqlite::Store;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A live sandbox already holds the name.
    #[error("name {0:?} is held by a live sandbox")]
    NameTaken(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row could not be decoded.
    #[error("decoding stored sandbox {id}: {reason}")]
    Corrupt {
        /// Row id.
        id: String,
        /// What was wrong.
        reason: String,
    },
}
