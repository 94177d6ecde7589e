//! `alcove secrets set|list|delete`: talks to a running server through `alcove-client`.

use std::io::Read;

use alcove_client::{ClientError, SandboxClient};
use anyhow::{Context, anyhow};

/// Where the server is and who we are.
#[derive(Debug, clap::Args)]
pub struct SecretsArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "ALCOVE_API_URL",
        default_value = "http://localhost:8900",
        global = true
    )]
    api_url: String,
    /// API key, if the server requires one.
    #[arg(long, env = "ALCOVE_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Namespace of the secrets.
    #[arg(long, default_value = "default", global = true)]
    namespace: String,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Set a secret. Without VALUE, the value is read from standard input
    /// (keeps it out of the shell history).
    Set {
        /// Name: the environment variable it becomes in sandboxes.
        name: String,
        /// The value.
        value: Option<String>,
    },
    /// List secret names (never values).
    List,
    /// Delete a secret.
    Delete {
        /// Name.
        name: String,
    },
}

/// Runs a secrets command.
pub async fn run(args: SecretsArgs) -> anyhow::Result<()> {
    // clap already read ALCOVE_API_URL / ALCOVE_API_KEY: the client must not read them again.
    let mut builder = SandboxClient::builder()
        .read_env(false)
        .api_url(&args.api_url)
        .namespace(&args.namespace);
    if let Some(key) = &args.api_key {
        builder = builder.api_key(key);
    }
    let client = builder.build()?;
    let answered = |err: ClientError| explain(err, &args.api_url);
    match &args.action {
        Action::Set { name, value } => {
            let value = match value {
                Some(v) => v.clone(),
                None => {
                    let mut v = String::new();
                    std::io::stdin()
                        .read_to_string(&mut v)
                        .context("reading the value from standard input")?;
                    v.strip_suffix('\n').map(str::to_string).unwrap_or(v)
                }
            };
            client.set_secret(name, &value).await.map_err(answered)?;
            println!("secret {name} set");
        }
        Action::Delete { name } => {
            client.delete_secret(name).await.map_err(answered)?;
            println!("secret {name} deleted");
        }
        Action::List => {
            for secret in client.list_secrets().await.map_err(answered)? {
                println!("{}", secret.name);
            }
        }
    }
    Ok(())
}

/// An error answer says what the server answered; anything else says where we tried to go.
fn explain(err: ClientError, api_url: &str) -> anyhow::Error {
    match (&err, err.status()) {
        (ClientError::InvalidArgument(_), _) => err.into(),
        (_, Some(status)) => {
            let message = match &err {
                ClientError::Api {
                    message,
                    code: Some(code),
                    ..
                } => format!("{message} ({code})"),
                ClientError::Api { message, .. } | ClientError::Unauthorized { message, .. } => {
                    message.clone()
                }
                other => other.to_string(),
            };
            anyhow!("the server answered {status}: {message}")
        }
        (_, None) => anyhow::Error::new(err).context(format!("reaching the server at {api_url}")),
    }
}
