//! `alcove sandbox create`.

use std::collections::BTreeMap;

use alcove_client::wire::sandbox::ResourcesRequest;
use alcove_client::{BindOutcome, ClientError, CreateOptions};
use anyhow::Context;

use crate::commands::connection::Connection;
use crate::commands::output;

use super::binding_args::{NetworkArgs, VolumeArgs};

/// `alcove sandbox create`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Sizes take a unit (512M, 2G; a plain number is MiB); durations too (90s, \
10m, 2h; a plain number is seconds).

Examples:
  alcove create
  alcove create --name dev --cpus 2 --memory 2G --disk 20G --wait
  alcove create --image my/app:1 --env MODE=test --secret OPENAI_API_KEY --port 8080
  alcove create --no-internet --timeout 30m -q
  alcove create --no-internet --allow-out pypi.org --allow-out 10.1.2.3
  alcove create --volume data:/data --volume models:/models:ro
  alcove create --node-label gpu=a100
  alcove create --name dev --reuse -q    # dev's id, made on first use, resumed if suspended"
)]
pub struct CreateArgs {
    /// Image name or alias [default: the server's].
    #[arg(long)]
    image: Option<String>,
    #[command(flatten)]
    resources: ResourceArgs,
    /// Name (a DNS label); named sandboxes can be suspended and found by name.
    #[arg(long)]
    name: Option<String>,
    /// Lifetime, after which the sandbox ends (0: none).
    #[arg(long, value_parser = parse_secs)]
    timeout: Option<i64>,
    /// An environment variable every process in the sandbox gets (repeatable); waits for the
    /// sandbox to run.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A stored secret injected as an environment variable (repeatable).
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// A port to expose through the ingress (repeatable).
    #[arg(short = 'p', long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    ports: Vec<u16>,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    volumes: VolumeArgs,
    /// Pull the image from its registry first when the server does not have it.
    #[arg(long)]
    pull: bool,
    /// Run only on a node with this label (repeatable: every one must match; in a cluster,
    /// the nodes' `--node-label`s).
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_env)]
    node_labels: Vec<(String, String)>,
    /// Wait until the sandbox runs.
    #[arg(long)]
    wait: bool,
    /// When a sandbox holds the name, use it instead of failing: resume it if suspended, wait
    /// if it is starting. The other options apply only when it is created.
    #[arg(long, requires = "name")]
    reuse: bool,
    /// Print the sandbox as JSON.
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Print only the id.
    #[arg(short, long)]
    quiet: bool,
}

/// Runs `alcove sandbox create`.
pub async fn run(c: &Connection, args: CreateArgs) -> anyhow::Result<()> {
    let mut options = CreateOptions::new().pull_image(args.pull);
    options.name = args.name;
    options.image = args.image;
    options.cpus = args.resources.cpus;
    options.memory_mb = args.resources.memory;
    options.disk_mb = args.resources.disk;
    options.timeout_secs = args.timeout;
    options.secret_names = args.secrets;
    options.exposed_ports = args.ports;
    options.node_selector = args.node_labels.into_iter().collect();
    options.network = args.network.policy();
    options.file_systems = args.volumes.volumes;
    if args.reuse {
        let bar = output::spinner("finding or creating the sandbox");
        let bound = c.client.get_or_create(options, true).await;
        bar.finish_and_clear();
        let (info, outcome) = bound.map_err(|e| c.explain(e))?;
        if outcome == BindOutcome::Created {
            set_environment(c, &info.id, args.env).await?;
        }
        return output::bound_sandbox(&info, outcome.as_str(), args.json, args.quiet);
    }
    let wait = args.wait || !args.env.is_empty();
    let info = if wait {
        let bar = output::spinner("creating the sandbox");
        let info = c.client.create(options).await.map_err(|e| explain(c, e));
        bar.finish_and_clear();
        info?
    } else {
        let created = c
            .client
            .create_no_wait(options)
            .await
            .map_err(|e| explain(c, e))?;
        c.client
            .get(&created.sandbox_id)
            .await
            .map_err(|e| c.explain(e))?
    };
    set_environment(c, &info.id, args.env).await?;
    output::new_sandbox(&info, args.json, args.quiet)
}

/// The server's reason, and for a name already held, how to use its sandbox instead.
fn explain(c: &Connection, err: ClientError) -> anyhow::Error {
    let held = matches!(err, ClientError::NameConflict { .. });
    let err = c.explain(err);
    if held {
        return anyhow::anyhow!("{err:#}; add --reuse to use that sandbox");
    }
    err
}

/// Gives every process of a new sandbox `env` (nothing to do when it is empty).
async fn set_environment(
    c: &Connection,
    id: &str,
    env: Vec<(String, String)>,
) -> anyhow::Result<()> {
    if env.is_empty() {
        return Ok(());
    }
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let sandbox = c.client.connect(id).await.map_err(|e| c.explain(e))?;
    sandbox
        .set_environment(env)
        .await
        .map_err(|e| c.explain(e))
        .with_context(|| format!("setting the environment of sandbox {id}"))
}

/// A sandbox's size, as `create` and `pool create` take it.
#[derive(Debug, clap::Args)]
pub struct ResourceArgs {
    /// CPUs (fractions allowed).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory, e.g. 512M or 2G.
    #[arg(long, value_parser = parse_mib)]
    pub memory: Option<i64>,
    /// Size of the writable disk, e.g. 10G.
    #[arg(long, value_parser = parse_mib)]
    pub disk: Option<i64>,
}

impl ResourceArgs {
    /// The sizes given, as a request carries them (those not given absent).
    pub fn request(&self) -> ResourcesRequest {
        ResourcesRequest {
            cpus: self.cpus,
            memory_mb: self.memory,
            disk_mb: self.disk,
            ..ResourcesRequest::default()
        }
    }

    /// Whether any size was given.
    pub fn given(&self) -> bool {
        self.cpus.is_some() || self.memory.is_some() || self.disk.is_some()
    }
}

/// `512M`, `2G`, `1.5G`, `1024` (MiB) → MiB.
pub fn parse_mib(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (number, factor) = match t.char_indices().find(|(_, ch)| ch.is_ascii_alphabetic()) {
        None => (t, 1.0),
        Some((at, _)) => {
            let factor = match t[at..].to_ascii_lowercase().as_str() {
                "m" | "mb" | "mi" | "mib" => 1.0,
                "g" | "gb" | "gi" | "gib" => 1024.0,
                "t" | "tb" | "ti" | "tib" => 1024.0 * 1024.0,
                other => return Err(format!("unknown unit {other:?}: use M or G")),
            };
            (&t[..at], factor)
        }
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512M or 2G"))?;
    let mib = value * factor;
    if !mib.is_finite() || mib < 1.0 || mib > i64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(mib.round() as i64)
}

/// `90`, `90s`, `10m`, `2h`, `1d` → seconds.
pub fn parse_secs(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (number, factor) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86_400),
        _ => (t, 1),
    };
    number
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{text:?} is not a duration such as 90s, 10m or 2h"))
}

/// `KEY=VALUE` (the value may hold `=`; an empty value is allowed).
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_mib("512"), Ok(512));
        assert_eq!(parse_mib("512M"), Ok(512));
        assert_eq!(parse_mib("2G"), Ok(2048));
        assert_eq!(parse_mib("1.5GiB"), Ok(1536));
        assert!(parse_mib("0").is_err());
        assert!(parse_mib("-1G").is_err());
        assert!(parse_mib("2X").is_err());
        assert!(parse_mib("lots").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_secs("90"), Ok(90));
        assert_eq!(parse_secs("90s"), Ok(90));
        assert_eq!(parse_secs("10m"), Ok(600));
        assert_eq!(parse_secs("2h"), Ok(7200));
        assert_eq!(parse_secs("0"), Ok(0));
        assert!(parse_secs("-5").is_err());
        assert!(parse_secs("99999999999999999d").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn environment_pairs_split_at_the_first_equals() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }
}
