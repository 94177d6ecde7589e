//! The agent's configuration. Only [`AgentConfig::from_env`] looks at environment variables,
//! and `main` is the only caller; the library gets a finished config.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::output::DEFAULT_BUFFER_LIMIT_BYTES;

/// Environment variable overriding the listen address (e.g. `127.0.0.1:0` in tests).
pub const LISTEN_ENV: &str = "ALCOVE_AGENT_LISTEN";

/// Environment variable overriding how long a live PTY session may stay without a client
/// before it is killed (whole seconds; `0` = never).
pub const PTY_IDLE_ENV: &str = "ALCOVE_AGENT_PTY_IDLE_SECS";

/// Environment variable naming, comma-separated, the processes (the image's
/// boot services) that stopping every process keeps.
pub const KEEP_ENV: &str = "ALCOVE_AGENT_KEEP";

/// Environment variable naming the image's user: processes that name no
/// user run as it.
pub const USER_ENV: &str = "ALCOVE_AGENT_USER";

/// Environment variable naming the image's working directory: processes that
/// name none start there (if it exists).
pub const WORKDIR_ENV: &str = "ALCOVE_AGENT_WORKDIR";

/// Default of [`PTY_IDLE_ENV`]: a day, so a dropped connection can come back to its shell.
pub const DEFAULT_PTY_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a PTY session whose process exited stays without a client (to read the rest of
/// its output and its exit code) before it is removed.
pub const DEFAULT_PTY_EXITED_LINGER: Duration = Duration::from_secs(60);

/// Output of a PTY session kept while no client takes it: 1 MiB.
pub const DEFAULT_PTY_BUFFER_BYTES: usize = 1 << 20;

/// Port of the agent (9501, the reserved management port: docs/protocol/proxy.md, User ports).
pub const DEFAULT_PORT: u16 = 9501;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The listen address does not parse.
    #[error("{LISTEN_ENV}={value:?} is not an IP:port socket address")]
    BadListen {
        /// The value given.
        value: String,
    },
    /// The PTY idle timeout does not parse.
    #[error("{PTY_IDLE_ENV}={value:?} is not a whole number of seconds")]
    BadPtyIdle {
        /// The value given.
        value: String,
    },
}

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Address to serve on; default `0.0.0.0:9501`.
    pub listen: SocketAddr,
    /// User database (re-read for every start).
    pub passwd_path: PathBuf,
    /// Group database (re-read for every start).
    pub group_path: PathBuf,
    /// Captured output kept per process.
    pub output_limit_bytes: usize,
    /// How long children get between SIGTERM and SIGKILL when the agent stops.
    pub shutdown_grace: Duration,
    /// Environment children start from (the agent's, minus `ALCOVE_AGENT_*`).
    pub child_env: Vec<(OsString, OsString)>,
    /// A live PTY session without a client for this long is killed; `None` = never.
    pub pty_idle_timeout: Option<Duration>,
    /// An exited PTY session without a client for this long is removed.
    pub pty_exited_linger: Duration,
    /// PTY output kept per session while no client takes it.
    pub pty_buffer_bytes: usize,
    /// Names of processes `DELETE /api/v1/processes` keeps (see [`KEEP_ENV`]).
    pub keep_processes: Vec<String>,
    /// The image's user (see [`USER_ENV`]).
    pub default_user: Option<String>,
    /// The image's working directory (see [`WORKDIR_ENV`]).
    pub default_dir: Option<String>,
}

impl AgentConfig {
    /// Defaults with the given inherited environment.
    pub fn with_env(child_env: Vec<(OsString, OsString)>) -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            passwd_path: PathBuf::from("/etc/passwd"),
            group_path: PathBuf::from("/etc/group"),
            output_limit_bytes: DEFAULT_BUFFER_LIMIT_BYTES,
            shutdown_grace: Duration::from_secs(3),
            child_env,
            pty_idle_timeout: Some(DEFAULT_PTY_IDLE),
            pty_exited_linger: DEFAULT_PTY_EXITED_LINGER,
            pty_buffer_bytes: DEFAULT_PTY_BUFFER_BYTES,
            keep_processes: Vec::new(),
            default_user: None,
            default_dir: None,
        }
    }

    /// Builds the configuration from the process environment (`std::env::vars_os()`).
    /// Reads only [`LISTEN_ENV`], [`PTY_IDLE_ENV`], [`KEEP_ENV`], [`USER_ENV`] and
    /// [`WORKDIR_ENV`].
    pub fn from_env(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(OsString, OsString)> = vars.into_iter().collect();
        let mut config = Self::with_env(vars.clone());
        if let Some((_, value)) = vars.iter().find(|(key, _)| key == LISTEN_ENV) {
            let value = value.to_string_lossy();
            // Parsed, never resolved: a static glibc binary must not call getaddrinfo (NSS).
            config.listen = value.trim().parse().map_err(|_| ConfigError::BadListen {
                value: value.to_string(),
            })?;
        }
        if let Some((_, value)) = vars.iter().find(|(key, _)| key == PTY_IDLE_ENV) {
            let value = value.to_string_lossy();
            let secs: u64 = value.trim().parse().map_err(|_| ConfigError::BadPtyIdle {
                value: value.to_string(),
            })?;
            config.pty_idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
        }
        if let Some((_, value)) = vars.iter().find(|(key, _)| key == KEEP_ENV) {
            config.keep_processes = value
                .to_string_lossy()
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect();
        }
        let text = |name: &str| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, v)| v.to_string_lossy().trim().to_string())
                .filter(|v| !v.is_empty())
        };
        config.default_user = text(USER_ENV);
        config.default_dir = text(WORKDIR_ENV);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_defaults_and_overrides() {
        let config = AgentConfig::from_env(Vec::new()).expect("defaults");
        assert_eq!(config.listen.to_string(), "0.0.0.0:9501");
        let config =
            AgentConfig::from_env([(LISTEN_ENV.into(), "127.0.0.1:0".into())]).expect("override");
        assert_eq!(config.listen.to_string(), "127.0.0.1:0");
        assert!(AgentConfig::from_env([(LISTEN_ENV.into(), "localhost:1".into())]).is_err());
    }

    #[test]
    fn pty_idle_defaults_and_overrides() {
        let config = AgentConfig::from_env(Vec::new()).expect("defaults");
        assert_eq!(config.pty_idle_timeout, Some(DEFAULT_PTY_IDLE));
        let config = AgentConfig::from_env([(PTY_IDLE_ENV.into(), "90".into())]).expect("override");
        assert_eq!(config.pty_idle_timeout, Some(Duration::from_secs(90)));
        let config = AgentConfig::from_env([(PTY_IDLE_ENV.into(), "0".into())]).expect("never");
        assert_eq!(config.pty_idle_timeout, None);
        assert!(AgentConfig::from_env([(PTY_IDLE_ENV.into(), "1h".into())]).is_err());
    }

    #[test]
    fn the_image_user_and_directory_are_read_when_set() {
        let config = AgentConfig::from_env(Vec::new()).expect("defaults");
        assert_eq!((config.default_user, config.default_dir), (None, None));
        let config = AgentConfig::from_env([
            (USER_ENV.into(), "1000:1000".into()),
            (WORKDIR_ENV.into(), "/srv".into()),
        ])
        .expect("image defaults");
        assert_eq!(config.default_user.as_deref(), Some("1000:1000"));
        assert_eq!(config.default_dir.as_deref(), Some("/srv"));
    }
}
