//! Client settings: explicit arguments first, then the environment, then defaults.
//!
//! The environment is read when a client is built (in [`SandboxClientBuilder::build`]), never
//! earlier, so a program may set `ALCOVE_API_URL` / `ALCOVE_API_KEY` before building one. The
//! defaults are the Python SDK's (`sdk/python/src/alcove/sandbox/_config.py`).
//!
//! [`SandboxClientBuilder::build`]: crate::SandboxClientBuilder::build

use std::time::Duration;

use crate::error::ClientError;

/// Environment variable naming the server's URL.
pub const API_URL_ENV: &str = "ALCOVE_API_URL";
/// Environment variable holding the API key.
pub const API_KEY_ENV: &str = "ALCOVE_API_KEY";
/// Server URL used when neither an argument nor the environment gives one.
pub const DEFAULT_API_URL: &str = "http://localhost:8900";
/// Namespace used when none is given.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Per-request timeout, and the deadline of every wait (create, suspend, resume, snapshot).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest silence on `run` / `follow_*` streams. The agent sends a keep-alive after 15 s
/// without output, so only a stopped or unreachable agent is ever this quiet.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait to open a connection (capped by the request timeout).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolved settings shared by a client and the sandbox handles it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Base URL of the server, without a trailing `/`.
    pub api_url: String,
    /// API key sent as `Authorization: Bearer …`, if any.
    pub api_key: Option<String>,
    /// Namespace of every control-plane call.
    pub namespace: String,
    /// Per-request timeout and wait deadline.
    pub timeout: Duration,
    /// Read-inactivity bound of event streams; `None` waits forever.
    pub stream_idle_timeout: Option<Duration>,
}

impl ClientConfig {
    /// Longest wait to open a connection: [`CONNECT_TIMEOUT`], or less when `timeout` is.
    pub fn connect_timeout(&self) -> Duration {
        CONNECT_TIMEOUT.min(self.timeout)
    }
}

/// Builds a [`crate::SandboxClient`]; see [`crate::SandboxClient::builder`].
#[derive(Debug, Clone)]
pub struct SandboxClientBuilder {
    api_url: Option<String>,
    api_key: Option<String>,
    namespace: String,
    timeout: Duration,
    stream_idle_timeout: Option<Duration>,
    read_env: bool,
}

impl Default for SandboxClientBuilder {
    fn default() -> Self {
        Self {
            api_url: None,
            api_key: None,
            namespace: DEFAULT_NAMESPACE.to_string(),
            timeout: DEFAULT_TIMEOUT,
            stream_idle_timeout: Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            read_env: true,
        }
    }
}

impl SandboxClientBuilder {
    /// The server's URL (wins over `ALCOVE_API_URL`).
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// The API key (wins over `ALCOVE_API_KEY`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The namespace (default `default`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Per-request timeout and wait deadline (default 300 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Longest silence on `run` / `follow_*` streams (default 120 s); `None` waits forever.
    pub fn stream_idle_timeout(mut self, idle: Option<Duration>) -> Self {
        self.stream_idle_timeout = idle;
        self
    }

    /// Whether to read `ALCOVE_API_URL` / `ALCOVE_API_KEY` (default true). Tests and programs
    /// that must not be steered by the environment turn it off.
    pub fn read_env(mut self, read_env: bool) -> Self {
        self.read_env = read_env;
        self
    }

    /// Resolves the settings against `env` (a lookup of environment variables).
    pub(crate) fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ClientConfig, ClientError> {
        let from_env = |name: &str| {
            if !self.read_env {
                return None;
            }
            env(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let url = self
            .api_url
            .clone()
            .or_else(|| from_env(API_URL_ENV))
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let url = url.trim().trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClientError::invalid(format!(
                "api_url must start with http:// or https://, got {url:?}"
            )));
        }
        if reqwest::Url::parse(&url).is_err() {
            return Err(ClientError::invalid(format!(
                "api_url is not a valid URL: {url:?}"
            )));
        }
        if !alcove_wire::limits::valid_namespace(&self.namespace) {
            return Err(ClientError::invalid(format!(
                "namespace must be 1-{} letters, digits, '-', '_' and '.', not starting \
                 with '.', got {:?}",
                alcove_wire::limits::NAMESPACE_MAX_LEN,
                self.namespace
            )));
        }
        if self.timeout.is_zero() {
            return Err(ClientError::invalid("timeout must be positive"));
        }
        if self.stream_idle_timeout.is_some_and(|idle| idle.is_zero()) {
            return Err(ClientError::invalid(
                "stream_idle_timeout must be positive (or None to wait forever)",
            ));
        }
        let api_key = self
            .api_key
            .clone()
            .or_else(|| from_env(API_KEY_ENV))
            .filter(|key| !key.is_empty());
        Ok(ClientConfig {
            api_url: url,
            api_key,
            namespace: self.namespace.clone(),
            timeout: self.timeout,
            stream_idle_timeout: self.stream_idle_timeout,
        })
    }

    /// Builds the client, reading the environment now.
    pub fn build(self) -> Result<crate::SandboxClient, ClientError> {
        let config = self.resolve(|name| std::env::var(name).ok())?;
        crate::SandboxClient::from_config(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn defaults_apply_without_arguments_or_environment() {
        let cfg = SandboxClientBuilder::default()
            .resolve(env_of(&[]))
            .expect("resolves");
        assert_eq!(cfg.api_url, DEFAULT_API_URL);
        assert_eq!(cfg.api_key, None);
        assert_eq!(cfg.namespace, "default");
        assert_eq!(cfg.timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.stream_idle_timeout, Some(DEFAULT_STREAM_IDLE_TIMEOUT));
        assert_eq!(cfg.connect_timeout(), CONNECT_TIMEOUT);
    }

    #[test]
    fn arguments_win_over_the_environment() {
        let env = env_of(&[(API_URL_ENV, " http://env:1/ "), (API_KEY_ENV, "env-key")]);
        let cfg = SandboxClientBuilder::default()
            .resolve(&env)
            .expect("resolves");
        assert_eq!(cfg.api_url, "http://env:1");
        assert_eq!(cfg.api_key.as_deref(), Some("env-key"));
        let cfg = SandboxClientBuilder::default()
            .api_url("http://arg:2/")
            .api_key("arg-key")
            .resolve(&env)
            .expect("resolves");
        assert_eq!(cfg.api_url, "http://arg:2");
        assert_eq!(cfg.api_key.as_deref(), Some("arg-key"));
        let cfg = SandboxClientBuilder::default()
            .read_env(false)
            .resolve(&env)
            .expect("resolves");
        assert_eq!(cfg.api_url, DEFAULT_API_URL);
    }

    #[test]
    fn bad_settings_are_refused_before_anything_is_sent() {
        let bad = [
            SandboxClientBuilder::default().api_url("localhost:8900"),
            SandboxClientBuilder::default().namespace("a/b"),
            SandboxClientBuilder::default().namespace(""),
            SandboxClientBuilder::default().namespace(".."),
            SandboxClientBuilder::default().namespace("a b"),
            SandboxClientBuilder::default().timeout(Duration::ZERO),
            SandboxClientBuilder::default().stream_idle_timeout(Some(Duration::ZERO)),
        ];
        for builder in bad {
            let err = builder.resolve(env_of(&[])).expect_err("refused");
            assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
        }
        let short = SandboxClientBuilder::default()
            .timeout(Duration::from_secs(2))
            .resolve(env_of(&[]))
            .expect("resolves");
        assert_eq!(short.connect_timeout(), Duration::from_secs(2));
    }
}
