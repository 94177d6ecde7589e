//! The agent's configuration. Only [`AgentConfig::from_env`] looks at environment variables,
//! and `main` is the only caller; the library gets a finished config.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::output::DEFAULT_BUFFER_LIMIT_BYTES;

/// Environment variable overriding the listen address (e.g. `127.0.0.1:0` in tests).
pub const LISTEN_ENV: &str = "ALCOVE_AGENT_LISTEN";

/// Port of the sandbox daemon (WIRE §1.5: 9501 is the reserved management port).
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
        }
    }

    /// Builds the configuration from the process environment (`std::env::vars_os()`).
    /// Reads only [`LISTEN_ENV`].
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
}
