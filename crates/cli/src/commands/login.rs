//! `alcove login` and `alcove logout`: save (or forget) the server's URL and API key, checked
//! against the server first.

use std::io::{IsTerminal, Read, Write};

use alcove_client::{DEFAULT_API_URL, SandboxClient};
use anyhow::{Context, bail};

use super::connection::explain;
use super::settings::{self, Settings};

/// `alcove login`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The key is read from standard input (kept out of the shell history); \
with none, the server must accept calls without one. The settings go to \
$XDG_CONFIG_HOME/alcove/config.json (mode 0600), or ALCOVE_CONFIG. Flags and ALCOVE_API_URL / \
ALCOVE_API_KEY override them.

Examples:
  alcove login --api-url http://10.0.0.5:8900 < key.txt
  echo \"$ALCOVE_KEY\" | alcove login --api-url https://alcove.example.com
  alcove login                      # a local server without keys"
)]
pub struct LoginArgs {
    /// The server's URL.
    #[arg(long, default_value = DEFAULT_API_URL)]
    api_url: String,
    /// Save without a key even when standard input has one.
    #[arg(long)]
    no_key: bool,
}

/// Runs `alcove login`.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let key = if args.no_key { None } else { read_key()? };
    let mut builder = SandboxClient::builder()
        .read_env(false)
        .api_url(&args.api_url);
    if let Some(key) = &key {
        builder = builder.api_key(key);
    }
    let client = builder.build()?;
    // A call that needs the key: a wrong one or a wrong URL fails here, not later.
    client
        .list()
        .await
        .map_err(|e| explain(e, &args.api_url))
        .context("checking the URL and key with the server (nothing saved)")?;
    let settings = Settings {
        api_url: Some(args.api_url.clone()),
        api_key: key,
    };
    let path = settings.save()?;
    let with = if settings.api_key.is_some() {
        " with an API key"
    } else {
        ""
    };
    println!(
        "logged in to {}{with}; saved in {}",
        args.api_url,
        path.display()
    );
    Ok(())
}

/// The key from standard input: prompted for on a terminal (not echoed is beyond a plain
/// terminal read, so the prompt says so), read whole from a pipe.
fn read_key() -> anyhow::Result<Option<String>> {
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        eprint!("API key (empty for none; pipe it in to keep it off the screen): ");
        std::io::stderr().flush()?;
        stdin.read_line(&mut text).context("reading the key")?;
    } else {
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("reading the key from standard input")?;
    }
    let key = text.trim();
    if key.contains(char::is_whitespace) {
        bail!("the key holds whitespace: give the key alone");
    }
    Ok((!key.is_empty()).then(|| key.to_string()))
}

/// Runs `alcove logout`.
pub fn logout() -> anyhow::Result<()> {
    if Settings::remove()? {
        println!("logged out; removed {}", settings::path()?.display());
    } else {
        println!("not logged in");
    }
    Ok(())
}
