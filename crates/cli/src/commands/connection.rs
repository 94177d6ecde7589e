//! How a client command finds the server (`--api-url` / `ALCOVE_API_URL`, `--api-key` /
//! `ALCOVE_API_KEY`, `--namespace`, else what `alcove login` saved) and how its failures are
//! told.

use alcove_client::{ClientError, DEFAULT_API_URL, SandboxClient};
use anyhow::anyhow;

use super::settings::Settings;

/// Where the server is and who we are.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's URL [default: the one `alcove login` saved, else http://localhost:8900].
    #[arg(long, env = "ALCOVE_API_URL", global = true)]
    pub api_url: Option<String>,
    /// API key, if the server requires one.
    #[arg(long, env = "ALCOVE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Namespace of the calls.
    #[arg(long, default_value = "default", global = true)]
    pub namespace: String,
}

impl ServerArgs {
    /// The URL and key in effect: flags and environment first, then the saved settings (a key
    /// saved for another URL is not sent to this one).
    pub fn resolve(&self) -> anyhow::Result<(String, Option<String>)> {
        let saved = Settings::load()?;
        let url = self
            .api_url
            .clone()
            .or_else(|| saved.api_url.clone())
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let key = match &self.api_key {
            Some(key) => Some(key.clone()),
            None if saved.api_url.as_deref().is_none_or(|u| same_url(u, &url)) => saved.api_key,
            None => None,
        };
        Ok((url, key))
    }

    /// A client of the server these arguments name, and its URL (for error messages).
    pub fn connect(&self) -> anyhow::Result<Connection> {
        let (url, key) = self.resolve()?;
        // clap already read ALCOVE_API_URL / ALCOVE_API_KEY: the client must not read them again.
        let mut builder = SandboxClient::builder()
            .read_env(false)
            .api_url(&url)
            .namespace(&self.namespace);
        if let Some(key) = &key {
            builder = builder.api_key(key);
        }
        Ok(Connection {
            client: builder.build()?,
            api_url: url,
        })
    }
}

/// A client and the URL it talks to.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client.
    pub client: SandboxClient,
    /// The server's URL.
    pub api_url: String,
}

impl Connection {
    /// Turns a client error into the CLI's message (see [`explain`]).
    pub fn explain(&self, err: ClientError) -> anyhow::Error {
        explain(err, &self.api_url)
    }
}

/// Whether two URLs name the same server, ignoring a trailing slash.
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// An error answer says what the server answered; anything else says where we tried to go.
pub fn explain(err: ClientError, api_url: &str) -> anyhow::Error {
    match (&err, err.status()) {
        (ClientError::InvalidArgument(_), _) => err.into(),
        // Its text already ends with its cause: one line, not the cause twice.
        (ClientError::Io { .. }, _) => anyhow!("{err}"),
        (_, Some(status)) => {
            let message = match &err {
                ClientError::Api {
                    message,
                    code: Some(code),
                    ..
                }
                | ClientError::NameConflict {
                    message,
                    code: Some(code),
                }
                | ClientError::SandboxNotFound {
                    message,
                    code: Some(code),
                    ..
                } => format!("{message} ({code})"),
                ClientError::Api { message, .. }
                | ClientError::NameConflict { message, .. }
                | ClientError::SandboxNotFound { message, .. }
                | ClientError::Unauthorized { message, .. }
                | ClientError::ImageNotFound { message, .. }
                | ClientError::SnapshotNotFound { message, .. } => message.clone(),
                other => other.to_string(),
            };
            anyhow!("the server answered {status}: {message}")
        }
        // Only a failure to reach or understand the server says where it is; a sandbox or
        // snapshot that failed while we waited is the server's answer, told as it is.
        (
            ClientError::Connection { .. }
            | ClientError::Timeout { .. }
            | ClientError::Decode { .. },
            None,
        ) => anyhow::Error::new(err).context(format!("reaching the server at {api_url}")),
        (_, None) => anyhow!("{err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(err: ClientError) -> String {
        format!("{:#}", explain(err, "http://127.0.0.1:8900"))
    }

    #[test]
    fn failures_are_told_once_and_only_network_ones_name_the_server() {
        let failed = told(ClientError::SandboxFailed {
            sandbox_id: "5f3c".into(),
            status: "failed".into(),
            reason: Some("startup_failed".into()),
            message: "sandbox 5f3c failed (startup_failed): start failed".into(),
        });
        assert_eq!(failed, "sandbox 5f3c failed (startup_failed): start failed");
        let snapshot = told(ClientError::SnapshotFailed("snapshot 8c2e failed".into()));
        assert_eq!(snapshot, "snapshot 8c2e failed");
        let unreachable = told(ClientError::Connection {
            what: "GET http://127.0.0.1:8900/sandboxes".into(),
            detail: "connection refused".into(),
        });
        assert!(
            unreachable.starts_with("reaching the server at http://127.0.0.1:8900"),
            "{unreachable}"
        );
        let missing = told(ClientError::SandboxNotFound {
            sandbox: "x".into(),
            message: "sandbox \"x\" not found".into(),
            code: Some("NOT_FOUND".into()),
        });
        assert_eq!(
            missing,
            "the server answered 404 Not Found: sandbox \"x\" not found (NOT_FOUND)"
        );
        assert_eq!(missing.matches("not found").count(), 1, "{missing}");
    }
}
