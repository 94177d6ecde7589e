//! The `--database` URL of the PostgreSQL backend, and the one form of it that may be shown.
//!
//! The URL may hold a password (`postgres://alcove:secret@db/alcove`, or `?password=`), so it
//! is only ever handed to the driver: what is logged, printed by `Debug` or put in an error is
//! the [`PostgresTarget`]'s host, port and database.

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// The `--database` value as given. Never displayed: its `Debug` shows the redacted target.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_string())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parse() {
            Ok(target) => write!(f, "DatabaseUrl({target})"),
            Err(_) => f.write_str("DatabaseUrl(<invalid, not shown>)"),
        }
    }
}

/// A `--database` value that cannot be used. Its text never includes the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    /// Not a PostgreSQL URL.
    #[error(
        "--database must be a postgres:// or postgresql:// URL \
         (leave it out to keep the store in SQLite in the data directory)"
    )]
    Scheme,
    /// A PostgreSQL URL the driver refuses.
    #[error("--database is not a valid PostgreSQL URL: {0}")]
    Invalid(String),
}

impl DatabaseUrl {
    /// Reads the URL: only `postgres://` and `postgresql://` are accepted.
    pub fn parse(&self) -> Result<PostgresTarget, DatabaseUrlError> {
        let text = self.0.trim();
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            return Err(DatabaseUrlError::Scheme);
        }
        let options = PgConnectOptions::from_str(text)
            .map_err(|e| DatabaseUrlError::Invalid(scrub(&e.to_string(), text)))?;
        let shown = describe(&options);
        Ok(PostgresTarget {
            options: options.application_name("alcove"),
            shown,
        })
    }
}

/// The driver's error text, with any part of the URL that is not the scheme cut out, in case a
/// future driver quotes its input.
fn scrub(message: &str, url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    if !rest.is_empty() && message.contains(rest) {
        return message.replace(rest, "<url>");
    }
    // The userinfo alone (a password) quoted.
    if let Some((userinfo, _)) = rest.split_once('@')
        && !userinfo.is_empty()
        && message.contains(userinfo)
    {
        return message.replace(userinfo, "<credentials>");
    }
    message.to_string()
}

/// `host:port/database`, or `socket-dir:port/database` for a Unix socket.
fn describe(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => options.get_host().to_string(),
    };
    let database = options.get_database().unwrap_or(options.get_username());
    format!("{host}:{}/{database}", options.get_port())
}

/// A parsed PostgreSQL URL: connection options for the driver, and the redacted address.
#[derive(Clone)]
pub struct PostgresTarget {
    options: PgConnectOptions,
    shown: String,
}

impl PostgresTarget {
    /// What to connect with (holds the password: never log it).
    pub(super) fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// Host (or socket directory), port and database: what may be logged.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Display for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PostgresTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresTarget({})", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_user_or_password() {
        for (url, shown) in [
            (
                "postgres://alcove:s3cr%21t@db.example:6543/sandboxes",
                "db.example:6543/sandboxes",
            ),
            (
                "postgresql://alcove:s3cr%21t@db.example/sandboxes?sslmode=prefer",
                "db.example:5432/sandboxes",
            ),
            (
                "postgres://db.example/sandboxes?password=s3cr%21t&user=alcove",
                "db.example:5432/sandboxes",
            ),
            (
                "postgres:///sandboxes?host=/run/postgresql&password=s3cr%21t",
                "/run/postgresql:5432/sandboxes",
            ),
        ] {
            let db = DatabaseUrl::from(url);
            let target = db.parse().expect(url);
            assert_eq!(target.to_string(), shown);
            for text in [
                target.to_string(),
                format!("{target:?}"),
                format!("{db:?}"),
                format!("{:?}", Some(db.clone())),
            ] {
                assert!(!text.contains("s3cr"), "{text} shows the password");
                assert!(!text.contains("alcove"), "{text} shows the user");
            }
        }
    }

    #[test]
    fn other_schemes_and_broken_urls_are_refused_without_echoing_them() {
        for url in [
            "",
            "sqlite:///var/lib/alcove/alcove.db",
            "mysql://alcove:s3cret@db/alcove",
            "/var/lib/alcove/alcove.db",
            "db.example:5432",
        ] {
            assert_eq!(
                DatabaseUrl::from(url).parse().err(),
                Some(DatabaseUrlError::Scheme),
                "{url}"
            );
        }
        for url in [
            "postgres://alcove:s3cret@db.example:notaport/alcove",
            "postgres://alcove:s3cret@db.example/alcove?sslmode=s3cret-mode",
        ] {
            let db = DatabaseUrl::from(url);
            let err = db.parse().expect_err(url);
            assert!(matches!(err, DatabaseUrlError::Invalid(_)), "{url}: {err}");
            assert!(!err.to_string().contains("s3cret@"), "{err}");
            assert!(!format!("{db:?}").contains("s3cret"), "{db:?}");
        }
    }

    #[test]
    fn scrub_cuts_a_quoted_url_or_userinfo() {
        let url = "postgres://u:pw@h/d";
        assert_eq!(scrub("bad u:pw@h/d here", url), "bad <url> here");
        assert_eq!(
            scrub("user u:pw was refused", url),
            "user <credentials> was refused"
        );
        assert_eq!(scrub("invalid port number", url), "invalid port number");
    }
}
