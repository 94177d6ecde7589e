//! Test databases of both backends, and [`store_test!`](crate::store::testing::store_test),
//! which runs one test body against each.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a fresh database in a private
//! cluster that the test process starts once (`initdb`, then `postgres` on a free loopback
//! port, with password logins over TCP) and stops and deletes when it exits. A test process
//! running as root (CI's containers) runs the cluster as the `postgres` user (else `nobody`),
//! since PostgreSQL refuses to run as root.
//!
//! The PostgreSQL server binaries are looked for in `ALCOVE_TEST_PG_BIN`, else the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql-15`). Without them the
//! PostgreSQL variants fail, unless `ALCOVE_TEST_SKIP_POSTGRES=1` says to skip them.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use super::backend::Backend;
use super::{DatabaseUrl, Store};

/// Runs a store test against SQLite and against PostgreSQL: `store_test!(async fn name(db)
/// { … })` makes `name::sqlite` and `name::postgres`, each with `db` a fresh [`TestDb`].
macro_rules! store_test {
    ($(#[$attr:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $db = $crate::store::testing::TestDb::sqlite();
                $body
            }

            #[tokio::test]
            async fn postgres() {
                let Some($db) = $crate::store::testing::TestDb::postgres().await else {
                    return;
                };
                $body
            }
        }
    };
}
pub(crate) use store_test;

/// Says to skip the PostgreSQL variants (only when set to `1`).
const SKIP_VAR: &str = "ALCOVE_TEST_SKIP_POSTGRES";
/// Where the PostgreSQL server binaries are, if not in `/usr/lib/postgresql/<version>/bin`.
const BIN_VAR: &str = "ALCOVE_TEST_PG_BIN";
/// The cluster's superuser, which the tests connect as.
const SUPERUSER: &str = "alcove_test";

/// A fresh, empty database of one backend.
pub(crate) enum TestDb {
    /// A SQLite file (`alcove.db`) in its own directory.
    Sqlite(tempfile::TempDir),
    /// A database of the private PostgreSQL cluster.
    Postgres(DatabaseUrl),
}

impl TestDb {
    /// A SQLite database in a new temporary directory.
    pub(crate) fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("temporary directory"))
    }

    /// A new database in the private PostgreSQL cluster (started on first use); `None` when
    /// `ALCOVE_TEST_SKIP_POSTGRES=1`.
    pub(crate) async fn postgres() -> Option<Self> {
        if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
            eprintln!("{SKIP_VAR}=1: skipping the PostgreSQL variant");
            return None;
        }
        let cluster = match cluster() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect_with(&cluster.options("postgres"))
            .await
            .expect("connecting to the test cluster");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("creating a test database");
        admin.close().await.expect("closing");
        Some(Self::Postgres(cluster.url(&name, &cluster.password)))
    }

    /// The backend's name, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Opens the store (migrating it), as the server does; may be called again, as a
    /// restarted server would.
    pub(crate) async fn open(&self) -> Store {
        match self {
            Self::Sqlite(dir) => Store::open(&dir.path().join("alcove.db")).await,
            Self::Postgres(url) => Store::connect(url).await,
        }
        .expect("opening the store")
    }

    /// The database as only the migrations named below `version` (`"0005"`) left it, as a
    /// store that has not run the others: to test what a migration does to existing rows.
    pub(crate) async fn migrated_before(&self, version: &str) -> Store {
        let all = match self {
            Self::Sqlite(_) => "migrations",
            Self::Postgres(_) => "migrations-postgres",
        };
        let before = tempfile::tempdir().expect("tmp");
        let all = Path::new(env!("CARGO_MANIFEST_DIR")).join(all);
        for entry in fs::read_dir(&all).expect("migrations") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            if name.as_str() < version {
                fs::copy(&path, before.path().join(&name)).expect("copy");
            }
        }
        let migrator = sqlx::migrate::Migrator::new(before.path())
            .await
            .expect("migrator");
        let db = match self {
            Self::Sqlite(dir) => {
                let options = SqliteConnectOptions::from_str("sqlite://")
                    .expect("options")
                    .filename(dir.path().join("alcove.db"))
                    .create_if_missing(true);
                let pool = SqlitePool::connect_with(options).await.expect("pool");
                migrator.run(&pool).await.expect("old migrations");
                Backend::Sqlite(pool)
            }
            Self::Postgres(url) => {
                let target = url.parse().expect("url");
                let pool = PgPool::connect_with(target.options().clone())
                    .await
                    .expect("pool");
                migrator.run(&pool).await.expect("old migrations");
                Backend::Postgres {
                    pool,
                    target: target.shown().into(),
                }
            }
        };
        Store { db }
    }
}

/// The private cluster of this test process.
pub(crate) struct Cluster {
    /// Its TCP port on 127.0.0.1.
    pub(crate) port: u16,
    /// The superuser's password.
    pub(crate) password: String,
    /// The directory holding its data, socket, password file and log.
    base: PathBuf,
    /// The postmaster's pid.
    pid: i32,
}

impl Cluster {
    /// Connection options for database `db` as the superuser.
    fn options(&self, db: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(&self.password)
            .database(db)
    }

    /// The URL of database `db` with `password` (the right one or not).
    pub(crate) fn url(&self, db: &str, password: &str) -> DatabaseUrl {
        DatabaseUrl::from(format!(
            "postgres://{SUPERUSER}:{password}@127.0.0.1:{}/{db}",
            self.port
        ))
    }
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster, started by the first caller; an error says why it could not start.
pub(crate) fn cluster() -> Result<&'static Cluster, String> {
    CLUSTER
        .get_or_init(start_cluster)
        .as_ref()
        .map_err(Clone::clone)
}

/// The directory of `initdb` and `postgres`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(BIN_VAR) {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
            return Ok(dir);
        }
        return Err(format!(
            "{BIN_VAR}={} holds no initdb and postgres (or set {SKIP_VAR}=1 to skip the \
             PostgreSQL store tests)",
            dir.display()
        ));
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .max();
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        format!(
            "the PostgreSQL store tests need PostgreSQL's server binaries (initdb, postgres), \
             found neither in ${BIN_VAR} nor in /usr/lib/postgresql/<version>/bin: install \
             postgresql-15 (scripts/setup.sh packages), or set {SKIP_VAR}=1 to skip these tests"
        )
    })
}

/// The user the cluster runs as: this one, or an unprivileged one when this is root.
fn cluster_user() -> Result<Option<nix::unistd::User>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            return Ok(Some(user));
        }
    }
    Err(
        "running as root, and neither a postgres nor a nobody user exists to run the \
         test cluster as (PostgreSQL refuses to run as root)"
            .into(),
    )
}

fn start_cluster() -> Result<Cluster, String> {
    let bin = bin_dir()?;
    let user = cluster_user()?;
    let base = tempfile::Builder::new()
        .prefix("alcove-pg-test-")
        .tempdir()
        .map_err(|e| format!("creating the cluster's directory: {e}"))?
        .keep();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let _ = fs::remove_dir_all(&base);
        format!("test cluster: {what}: {e}")
    };
    let password = format!("pw-{}-{}", std::process::id(), nanos());
    let pwfile = base.join("pwfile");
    fs::write(&pwfile, &password).map_err(|e| fail("writing the password file", &e))?;
    if let Some(user) = &user {
        for path in [&base, &pwfile] {
            nix::unistd::chown(path.as_path(), Some(user.uid), Some(user.gid))
                .map_err(|e| fail("handing its directory to the postgres user", &e))?;
        }
    }
    let as_user = |program: &str| {
        let mut cmd = Command::new(bin.join(program));
        cmd.current_dir(&base);
        if let Some(user) = &user {
            use std::os::unix::process::CommandExt;
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        cmd
    };
    let data = base.join("data");
    let out = as_user("initdb")
        .arg("-D")
        .arg(&data)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--no-locale", "--no-sync"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .map_err(|e| fail("running initdb", &e))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        return Err(fail("initdb failed", &text));
    }
    // A free port may be taken by another test process before postgres binds it: retry.
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port().map_err(|e| fail("finding a free port", &e))?;
        let log = base.join("postgres.log");
        let log_file = fs::File::create(&log).map_err(|e| fail("creating the log", &e))?;
        let mut cmd = as_user("postgres");
        cmd.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&base)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "shared_buffers=16MB"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| fail("log", &e))?)
            .stderr(log_file);
        let mut child = spawn_tied(cmd).map_err(|e| fail("starting postgres", &e))?;
        match wait_ready(&bin, port, &mut child) {
            Ok(()) => {
                let cluster = Cluster {
                    port,
                    password,
                    base,
                    pid: i32::try_from(child.id()).unwrap_or(i32::MAX),
                };
                // SAFETY: `stop_cluster` is a plain `extern "C" fn` that only reads the
                // initialized `CLUSTER` and makes system calls; registering it has no
                // precondition.
                unsafe { libc::atexit(stop_cluster) };
                return Ok(cluster);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let mut text = String::new();
                let _ = fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
                last = format!("{e}; its log:\n{text}");
            }
        }
    }
    Err(fail("postgres did not start", &last))
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Spawns `cmd` from a thread that lives as long as the process, with a parent-death signal:
/// if the test process is killed, postgres shuts down too instead of staying behind (the
/// signal comes when the spawning thread ends, hence a thread that never does).
fn spawn_tied(mut cmd: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
    // which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGINT)
                .map_err(std::io::Error::from)
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("pg-test-cluster".into())
        .spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        })?;
    rx.recv().map_err(std::io::Error::other)?
}

/// Waits until the cluster accepts connections (`pg_isready`), or `child` died.
fn wait_ready(bin: &Path, port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("postgres exited ({status})"));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("not ready after 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// At exit: a fast shutdown of the cluster, then its directory is deleted.
extern "C" fn stop_cluster() {
    use nix::sys::signal::{Signal, kill};
    use nix::sys::wait::{WaitPidFlag, waitpid};
    use nix::unistd::Pid;
    let Some(Ok(cluster)) = CLUSTER.get() else {
        return;
    };
    let pid = Pid::from_raw(cluster.pid);
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                break;
            }
            _ => break,
        }
    }
    let _ = fs::remove_dir_all(&cluster.base);
}
