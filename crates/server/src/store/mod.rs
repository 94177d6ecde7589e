//! The store: durable state of sandboxes, pools, snapshots, secrets and volumes.
//!
//! [`Store`] is the one type the rest of the server uses. Behind it is either backend:
//! SQLite, one file in the data directory (the default), or PostgreSQL (`--database
//! postgres://…`). Both are built from the same migrations, one directory per dialect kept in
//! step (`migrations/` and `migrations-postgres/`, same numbers and meaning), and every query
//! is written once for both (see `backend.rs` for how).

mod archive;
mod backend;
mod blobs;
mod cluster_settings;
mod file_systems;
mod nodes;
mod pools;
mod postgres;
mod record;
mod sandboxes;
mod secrets;
mod shared_images;
mod snapshots;
#[cfg(test)]
pub(crate) mod testing;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub use archive::{ArchiveKey, ArchivePage, CursorError, Direction, PageRequest};
use backend::Backend;
pub use blobs::BlobRecord;
pub use file_systems::FileSystemRecord;
pub use nodes::{NodeRecord, NodeUse, Registration};
pub use pools::PoolRecord;
pub use postgres::{DatabaseUrl, DatabaseUrlError, PostgresTarget};
pub use record::{PoolState, SandboxRecord};
pub use secrets::SealedSecret;
pub use snapshots::SnapshotRecord;

/// The durable state of the server, in SQLite or PostgreSQL.
#[derive(Clone)]
pub struct Store {
    db: Backend,
}

impl std::fmt::Debug for Store {
    // By hand: the PostgreSQL pool's options hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.db {
            Backend::Sqlite(_) => f.write_str("Store(sqlite)"),
            Backend::Postgres { target, .. } => write!(f, "Store(postgres {target})"),
        }
    }
}

/// How long connecting to PostgreSQL may take at start before the server gives up.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl StoreError {
    /// Whether the database could not be reached (down, restarting, cut off,
    /// every connection busy past the acquire timeout), as opposed to a query
    /// that failed: the request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        let Self::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Connection exceptions (class 08) and an administrator's shutdown (57P0x).
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_private(path)?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            db: Backend::Sqlite(pool),
        })
    }

    /// Connects to the PostgreSQL database of `url` and applies migrations. An unreachable
    /// server or a refused login is a [`StoreError::Connect`] naming the host, never the
    /// password.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let target = url.parse()?;
        let failed = |source| StoreError::Connect {
            target: target.shown().to_string(),
            source,
        };
        // One connection first: the pool would retry a refused connection until its timeout
        // and then report only that it timed out; this says why, at once.
        let probe = tokio::time::timeout(
            PG_CONNECT_TIMEOUT,
            PgConnection::connect_with(target.options()),
        )
        .await
        .map_err(|_| {
            failed(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer in {} s", PG_CONNECT_TIMEOUT.as_secs()),
            )))
        })?
        .map_err(failed)?;
        probe.close().await.map_err(failed)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(PG_CONNECT_TIMEOUT)
            .connect_with(target.options().clone())
            .await
            .map_err(failed)?;
        sqlx::migrate!("./migrations-postgres").run(&pool).await?;
        Ok(Self {
            db: Backend::Postgres {
                pool,
                target: target.shown().into(),
            },
        })
    }

    /// Which backend holds the store, for logs: `sqlite`, or `postgres` and its redacted
    /// address.
    pub fn describe(&self) -> String {
        match &self.db {
            Backend::Sqlite(_) => "sqlite".into(),
            Backend::Postgres { target, .. } => format!("postgres {target}"),
        }
    }

    /// Closes the pool (flushes SQLite's WAL).
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// Creates the SQLite file `path` owner-only if it is missing. SQLite makes a new database and
/// its `-wal` and `-shm` files with the database file's mode, 0644 by default; an empty file is
/// an empty database.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(sqlx::Error::Io(e))),
    }
}

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
    /// The `--database` URL cannot be used.
    #[error(transparent)]
    Url(#[from] DatabaseUrlError),
    /// PostgreSQL could not be reached or refused the login, at start.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// Host, port and database (never the user or password).
        target: String,
        /// Why.
        source: sqlx::Error,
    },
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
        node: None,
        node_selector: std::collections::BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{TestDb, store_test};
    use super::*;

    #[test]
    fn both_dialects_have_the_same_migrations() {
        let names = |dir: &str| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .expect("migrations")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let sqlite = names("migrations");
        assert!(!sqlite.is_empty());
        assert_eq!(
            sqlite,
            names("migrations-postgres"),
            "each migration needs its twin, of the same number and name, in the other dialect"
        );
    }

    store_test!(async fn secrets_keep_their_creation_time_and_bytes(db) {
        let store = db.open().await;
        let secret = |value: &[u8], at: i64| SealedSecret {
            namespace: "default".into(),
            name: "API_TOKEN".into(),
            nonce: vec![0, 1, 2, 255],
            ciphertext: value.to_vec(),
            created_at: at,
            updated_at: at,
        };
        assert_eq!(store.put_secret(&secret(b"\0one", 10)).await.expect("put"), 10);
        assert_eq!(store.put_secret(&secret(b"two\xff", 20)).await.expect("put"), 10);
        let mut other = secret(b"x", 5);
        other.name = "A_B".into();
        store.put_secret(&other).await.expect("put");
        let listed = store.list_secrets("default").await.expect("list");
        assert_eq!(
            listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["API_TOKEN", "A_B"],
            "by name, bytewise"
        );
        assert_eq!(listed[0].ciphertext, b"two\xff");
        assert_eq!(listed[0].nonce, [0, 1, 2, 255]);
        assert_eq!((listed[0].created_at, listed[0].updated_at), (10, 20));
        assert!(store.delete_secret("default", "API_TOKEN").await.expect("delete"));
        assert!(!store.delete_secret("default", "API_TOKEN").await.expect("again"));
    });

    store_test!(async fn a_reopened_store_keeps_its_rows_and_counts_them(db) {
        let store = db.open().await;
        let mut ended = sample_record("ended", Some("web"));
        ended.status = alcove_wire::sandbox::SandboxStatus::Terminated;
        store.insert(&ended).await.expect("insert");
        store
            .insert(&sample_record("live", Some("web")))
            .await
            .expect("insert");
        store.close().await;
        // As a restarted server: migrations already applied, rows as they were.
        let store = db.open().await;
        let mut ids = store.all_ids().await.expect("ids");
        ids.sort();
        let mut want = vec![test_id("ended").to_string(), test_id("live").to_string()];
        want.sort();
        assert_eq!(ids, want);
        let mut counts = store.count_by_status().await.expect("counts");
        counts.sort();
        assert_eq!(
            counts,
            [("running".to_string(), 1), ("terminated".to_string(), 1)]
        );
        assert_eq!(
            store
                .get_live_by_name("web")
                .await
                .expect("by name")
                .map(|r| r.id),
            Some(test_id("live"))
        );
        assert!(format!("{store:?}").contains(db.kind()));
    });

    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error_without_the_password() {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let url = DatabaseUrl::from(format!(
            "postgres://alcove:hunter2-secret@127.0.0.1:{port}/alcove"
        ));
        let started = std::time::Instant::now();
        let err = Store::connect(&url).await.expect_err("nothing listens");
        assert!(
            started.elapsed() < PG_CONNECT_TIMEOUT,
            "a refused connection is reported at once, not after the timeout"
        );
        let text = err.to_string();
        assert!(text.contains("refused"), "{text}: says why");
        assert!(matches!(err, StoreError::Connect { .. }), "{text}");
        assert!(
            text.starts_with(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{port}/alcove: "
            )),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    #[tokio::test]
    async fn a_refused_login_names_the_host_not_the_password() {
        let Some(TestDb::Postgres(own)) = TestDb::postgres().await else {
            return;
        };
        let shown = own.parse().expect("url").shown().to_string();
        let (_, name) = shown.rsplit_once('/').expect("a database");
        let cluster = testing::cluster().expect("cluster");
        let url = cluster.url(name, "wrong-hunter2");
        let err = Store::connect(&url).await.expect_err("wrong password");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{}/{name}: ",
                cluster.port
            )),
            "{text}"
        );
        assert!(text.contains("password authentication failed"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        // The right password works, and the store never shows it.
        let store = Store::connect(&cluster.url(name, &cluster.password))
            .await
            .expect("connect");
        for shown in [format!("{store:?}"), store.describe()] {
            assert!(!shown.contains(&cluster.password), "{shown}");
            assert!(shown.contains(&format!("127.0.0.1:{}/{name}", cluster.port)));
        }
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_before_connecting() {
        let err = Store::connect(&DatabaseUrl::from("mysql://u:hunter2@db/alcove"))
            .await
            .expect_err("not postgres");
        assert!(matches!(err, StoreError::Url(DatabaseUrlError::Scheme)));
        assert!(!err.to_string().contains("hunter2"));
    }
}
