//! `alcove secrets set|list|delete`: talks to a running server through `alcove-client`.

use std::io::Read;

use alcove_client::ClientError;
use anyhow::Context;

use super::connection::{ServerArgs, explain};

/// Where the server is and who we are.
#[derive(Debug, clap::Args)]
pub struct SecretsArgs {
    #[command(flatten)]
    server: ServerArgs,
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
    #[command(visible_alias = "ls")]
    List,
    /// Delete a secret.
    #[command(visible_alias = "rm")]
    Delete {
        /// Name.
        name: String,
    },
}

/// Runs a secrets command.
pub async fn run(args: SecretsArgs) -> anyhow::Result<()> {
    let connection = args.server.connect()?;
    let client = connection.client.clone();
    let api_url = connection.api_url.clone();
    let answered = |err: ClientError| explain(err, &api_url);
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
