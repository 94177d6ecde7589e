//! `alcove secrets set|list|delete`: talks to a running server.

use std::io::Read;

use anyhow::{Context, bail};

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
    let base = format!(
        "{}/v1/namespaces/{}/secrets",
        args.api_url.trim_end_matches('/'),
        args.namespace
    );
    let client = reqwest::Client::new();
    let with_key = |req: reqwest::RequestBuilder| match &args.api_key {
        Some(key) => req.bearer_auth(key),
        None => req,
    };
    let response = match &args.action {
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
            with_key(client.put(format!("{base}/{name}")))
                .json(&serde_json::json!({ "value": value }))
                .send()
                .await
        }
        Action::List => with_key(client.get(&base)).send().await,
        Action::Delete { name } => {
            with_key(client.delete(format!("{base}/{name}")))
                .send()
                .await
        }
    }
    .with_context(|| format!("reaching the server at {}", args.api_url))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the server answered {status}: {text}");
    }
    match args.action {
        Action::Set { name, .. } => println!("secret {name} set"),
        Action::Delete { name } => println!("secret {name} deleted"),
        Action::List => {
            let body: serde_json::Value =
                serde_json::from_str(&text).context("parsing the answer")?;
            for s in body["secrets"].as_array().into_iter().flatten() {
                println!("{}", s["name"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}
