//! How a client command finds the server (`--api-url` / `ALCOVE_API_URL`, `--api-key` /
//! `ALCOVE_API_KEY`, `--namespace`) and how its failures are told.

use alcove_client::{ClientError, SandboxClient};
use anyhow::anyhow;

/// Where the server is and who we are.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "ALCOVE_API_URL",
        default_value = "http://localhost:8900",
        global = true
    )]
    pub api_url: String,
    /// API key, if the server requires one.
    #[arg(long, env = "ALCOVE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// Namespace of the calls.
    #[arg(long, default_value = "default", global = true)]
    pub namespace: String,
}

impl ServerArgs {
    /// A client of the server these arguments name.
    pub fn client(&self) -> anyhow::Result<SandboxClient> {
        // clap already read ALCOVE_API_URL / ALCOVE_API_KEY: the client must not read them again.
        let mut builder = SandboxClient::builder()
            .read_env(false)
            .api_url(&self.api_url)
            .namespace(&self.namespace);
        if let Some(key) = &self.api_key {
            builder = builder.api_key(key);
        }
        Ok(builder.build()?)
    }
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
                } => format!("{message} ({code})"),
                ClientError::Api { message, .. }
                | ClientError::Unauthorized { message, .. }
                | ClientError::ImageNotFound { message, .. }
                | ClientError::SnapshotNotFound { message, .. } => message.clone(),
                other => other.to_string(),
            };
            anyhow!("the server answered {status}: {message}")
        }
        (_, None) => anyhow::Error::new(err).context(format!("reaching the server at {api_url}")),
    }
}
