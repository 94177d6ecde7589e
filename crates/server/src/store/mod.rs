//! The store: durable state of sandboxes. SQLite now; the interface is the
//! [`Store`] type so a PostgreSQL implementation can follow.

mod archive;
mod file_systems;
mod pools;
mod record;
mod secrets;
mod snapshots;
mod sqlite;

pub use archive::{ArchiveKey, ArchivePage, CursorError, Direction, PageRequest};
pub use file_systems::FileSystemRecord;
pub use pools::PoolRecord;
pub use record::{PoolState, SandboxRecord};
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

/// The id a test calls `label` (a label that is an id stays itself).
#[cfg(test)]
pub(crate) fn test_id(label: &str) -> alcove_runtime::SandboxId {
    use std::hash::{Hash, Hasher};
    if let Ok(id) = alcove_runtime::SandboxId::parse(label) {
        return id;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    label.hash(&mut h);
    let n = h.finish() & 0xffff_ffff_ffff;
    alcove_runtime::SandboxId::parse(&format!("00000000-0000-4000-8000-{n:012x}"))
        .expect("a well-formed id")
}

/// A running sandbox record for tests, with the id [`test_id`] gives `id`.
#[cfg(test)]
pub(crate) fn sample_record(id: &str, name: Option<&str>) -> SandboxRecord {
    use alcove_wire::sandbox::{NetworkConfig, SandboxStatus};
    SandboxRecord {
        id: test_id(id),
        namespace: "default".into(),
        name: name.map(Into::into),
        status: SandboxStatus::Running,
        image: "alcove/debian".into(),
        cpus: 1.0,
        memory_mb: 1024,
        disk_mb: 10240,
        timeout_secs: 0,
        entrypoint: vec!["sleep".into()],
        network_policy: NetworkConfig {
            allow_internet_access: true,
            allow_out: vec![],
            deny_out: vec![],
        },
        secret_names: vec![],
        exposed_ports: vec![8080],
        allow_unauthenticated_access: false,
        auto_resume: true,
        slot: Some(3),
        created_at: 1,
        terminated_at: None,
        deadline_at: None,
        pending_reason: None,
        termination_reason: None,
        error_details: None,
        timeout_remaining_ms: None,
        transition: None,
        suspended_at: None,
        archived_at: None,
        resource_resize: None,
        pool_id: None,
        pool_state: None,
        file_systems: Vec::new(),
    }
}
