//! The two backends behind [`Store`](super::Store): SQLite (one file in the data directory,
//! the default) and PostgreSQL (`--database postgres://…`).
//!
//! Every query is written once, in the SQL both dialects share, with `$1`, `$2`, …
//! placeholders: PostgreSQL's own, and SQLite reads `$N` as the N-th parameter too (sqlx binds
//! SQLite parameters by that number). A query's parameters are [`Arg`]s and its rows
//! [`DbRow`]s, so the code that builds a query and decodes its rows never names a backend;
//! only this module matches on one.
//!
//! Why not `sqlx::Any`: it decodes by the value's own kind, so SQLite's integer booleans do
//! not read back as `bool`; it cannot be given SQLite's connection settings (WAL, busy
//! timeout) except through a URL; and a query's parameter types are then whatever each driver
//! guesses. Here the parameter types are explicit ([`Arg`]) and each row is decoded by its own
//! driver, with the column types both schemas agree on (TEXT, 64-bit integers, doubles,
//! booleans, bytes).

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Decode, Postgres, Row, Sqlite, Type};

/// The pool of one backend.
#[derive(Clone)]
pub(super) enum Backend {
    /// A SQLite file.
    Sqlite(SqlitePool),
    /// A PostgreSQL database; `target` is its redacted address (host, port, database),
    /// the only form of it that may be shown.
    Postgres {
        /// The pool.
        pool: PgPool,
        /// Host, port and database, never the user or password.
        target: std::sync::Arc<str>,
    },
}

/// One query parameter, typed the same way for both backends.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
    /// TEXT (NULL when `None`).
    Text(Option<String>),
    /// A 64-bit integer (NULL when `None`).
    Int(Option<i64>),
    /// A double.
    Real(f64),
    /// A boolean (an integer 0/1 in SQLite, BOOLEAN in PostgreSQL).
    Bool(bool),
    /// Bytes (BLOB / BYTEA).
    Bytes(Vec<u8>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_string()))
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Self::Text(Some(v.clone()))
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Self::Text(v.clone())
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(str::to_string))
    }
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}

impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Self::Real(v)
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<&Vec<u8>> for Arg {
    fn from(v: &Vec<u8>) -> Self {
        Self::Bytes(v.clone())
    }
}

/// A query and its parameters, in placeholder order.
#[derive(Debug)]
pub(super) struct Stmt<'a> {
    sql: &'a str,
    args: Vec<Arg>,
}

/// A query with `$1`, `$2`, … placeholders; bind its parameters in order with [`Stmt::bind`].
pub(super) fn query(sql: &str) -> Stmt<'_> {
    Stmt {
        sql,
        args: Vec::new(),
    }
}

impl Stmt<'_> {
    /// Adds the next parameter.
    pub(super) fn bind(mut self, v: impl Into<Arg>) -> Self {
        self.args.push(v.into());
        self
    }
}

/// `$from, $from+1, …` for `n` parameters: the placeholders of a generated column list.
pub(super) fn placeholders(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("${i}")).collect()
}

/// Builds the sqlx query of a [`Stmt`] for whichever backend the executor it meets is of.
macro_rules! bound {
    ($stmt:expr) => {{
        let stmt = $stmt;
        let mut q = sqlx::query(stmt.sql);
        for arg in stmt.args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Real(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

impl Backend {
    /// Runs a statement; how many rows it changed.
    pub(super) async fn execute(&self, stmt: Stmt<'_>) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => bound!(stmt).execute(pool).await?.rows_affected(),
            Self::Postgres { pool, .. } => bound!(stmt).execute(pool).await?.rows_affected(),
        })
    }

    /// Every row of a query.
    pub(super) async fn fetch_all(&self, stmt: Stmt<'_>) -> Result<Vec<DbRow>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => bound!(stmt)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(DbRow::Sqlite)
                .collect(),
            Self::Postgres { pool, .. } => bound!(stmt)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(DbRow::Postgres)
                .collect(),
        })
    }

    /// The first row of a query, if any.
    pub(super) async fn fetch_optional(
        &self,
        stmt: Stmt<'_>,
    ) -> Result<Option<DbRow>, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => bound!(stmt).fetch_optional(pool).await?.map(DbRow::Sqlite),
            Self::Postgres { pool, .. } => bound!(stmt)
                .fetch_optional(pool)
                .await?
                .map(DbRow::Postgres),
        })
    }

    /// The one row of a query (an error if there is none).
    pub(super) async fn fetch_one(&self, stmt: Stmt<'_>) -> Result<DbRow, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(pool) => DbRow::Sqlite(bound!(stmt).fetch_one(pool).await?),
            Self::Postgres { pool, .. } => DbRow::Postgres(bound!(stmt).fetch_one(pool).await?),
        })
    }

    /// The clause that makes a subselect lock the rows it picks and skip rows other
    /// transactions hold: `FOR UPDATE SKIP LOCKED` in PostgreSQL; nothing in SQLite, which
    /// runs one writer at a time.
    pub(super) fn skip_locked(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "",
            Self::Postgres { .. } => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// The clause that makes a subselect lock the rows it picks, waiting for
    /// other transactions that hold them: `FOR UPDATE` in PostgreSQL; nothing in
    /// SQLite, which runs one writer at a time.
    pub(super) fn lock_rows(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "",
            Self::Postgres { .. } => " FOR UPDATE",
        }
    }

    /// Closes the pool.
    pub(super) async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres { pool, .. } => pool.close().await,
        }
    }
}

/// A type both drivers decode a column into.
pub(super) trait Column:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Column for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A row of either backend.
pub(super) enum DbRow {
    /// From SQLite.
    Sqlite(SqliteRow),
    /// From PostgreSQL.
    Postgres(PgRow),
}

impl DbRow {
    /// The column `col`, decoded by the row's own driver.
    pub(super) fn get<T: Column>(&self, col: &str) -> Result<T, sqlx::Error> {
        match self {
            Self::Sqlite(row) => row.try_get(col),
            Self::Postgres(row) => row.try_get(col),
        }
    }
}
