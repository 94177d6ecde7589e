//! Configuration of `alcove serve`: flag, then `ALCOVE_*` environment variable,
//! then default. Each field's doc comment is its `--help` text.
//!
//! The command-line parsing (clap) is only compiled with the `cli` feature,
//! which the `alcove` binary turns on: the library itself takes a `Config`
//! built any way.

use std::net::SocketAddr;
use std::path::PathBuf;

use alcove_runtime::network::Subnet;

/// A setting that must never be printed: `Debug` shows `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct HiddenString(pub String);

impl std::fmt::Debug for HiddenString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for HiddenString {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// Settings of the server.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Config {
    /// Address to listen on. Anything but loopback requires --api-key.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_LISTEN", default_value = "127.0.0.1:8900")
    )]
    pub listen: SocketAddr,

    /// Directory for the store, sandboxes and runtime state.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_DATA_DIR", default_value = "/var/lib/alcove")
    )]
    pub data_dir: PathBuf,

    /// Keep the store in PostgreSQL: a `postgres://user:password@host:port/database` URL
    /// (PostgreSQL 13 or later; the role must be able to create tables in the database).
    /// Without it, the store is SQLite in <data-dir>/alcove.db. The URL is never logged
    /// (only its host, port and database).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "ALCOVE_DATABASE_URL",
            value_name = "URL",
            hide_env_values = true
        )
    )]
    pub database: Option<crate::store::DatabaseUrl>,

    /// Copy suspended sandboxes' dumps and snapshots to a blob store, so they outlive
    /// this machine: `s3://bucket/prefix` (any S3-compatible server) or
    /// `file:///dir` (e.g. a shared mount). Without it they stay on the local disk only.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_BLOB_STORE", value_name = "URL")
    )]
    pub blob_store: Option<String>,

    /// The S3 server's URL (`http://10.0.0.5:9000`); AWS when unset.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_S3_ENDPOINT", value_name = "URL")
    )]
    pub s3_endpoint: Option<String>,

    /// The S3 region to sign requests for (default us-east-1).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_S3_REGION"))]
    pub s3_region: Option<String>,

    /// The S3 access key id.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_S3_ACCESS_KEY_ID", hide_env_values = true)
    )]
    pub s3_access_key_id: Option<String>,

    /// The S3 secret access key. Prefer the environment variable: a flag shows in
    /// the process list. Never logged.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_S3_SECRET_ACCESS_KEY", hide_env_values = true)
    )]
    pub s3_secret_access_key: Option<HiddenString>,

    /// This server's name among the nodes of its store (`GET /nodes`), unique among
    /// running nodes (default: the host name).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_NODE_NAME"))]
    pub node_name: Option<String>,

    /// The URL other nodes and the CLI reach this server at (default: the --listen
    /// address; --public-url when listening on every address).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_ADVERTISE_URL", value_name = "URL")
    )]
    pub advertise_url: Option<String>,

    /// A label of this node, `key=value` (repeatable), shown by `GET /nodes`.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "node-label",
            env = "ALCOVE_NODE_LABELS",
            value_delimiter = ',',
            value_name = "KEY=VALUE"
        )
    )]
    pub node_labels: Vec<String>,

    /// How long this node's lease in the store runs unless renewed (renewed every
    /// third of it); 3 to 600 s.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_NODE_LEASE_SECS", default_value_t = 15)
    )]
    pub node_lease_secs: u64,

    /// CPUs this node offers to sandboxes when several nodes share a store
    /// (default: the machine's).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_NODE_CPUS"))]
    pub node_cpus: Option<f64>,

    /// Memory in MiB this node offers to sandboxes when several nodes share a
    /// store (default: the machine's).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_NODE_MEMORY_MB"))]
    pub node_memory_mb: Option<i64>,

    /// How many times its CPUs a node may promise to sandboxes when creates are
    /// placed across nodes.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_CPU_OVERCOMMIT", default_value_t = 4.0)
    )]
    pub cpu_overcommit: f64,

    /// How many times its memory a node may promise to sandboxes when creates
    /// are placed across nodes.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_MEMORY_OVERCOMMIT", default_value_t = 1.0)
    )]
    pub memory_overcommit: f64,

    /// Directory of images (default: <data-dir>/images).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_IMAGES_DIR"))]
    pub images_dir: Option<PathBuf>,

    /// The statically linked agent binary (default: `alcove-agent` next to this binary).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_AGENT_PATH"))]
    pub agent_path: Option<PathBuf>,

    /// The runc binary.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_RUNC", default_value = "runc")
    )]
    pub runc: String,

    /// The CRIU binary (4.2.1 or later) used for suspend, resume and snapshots
    /// (default: /usr/local/sbin/criu if present, else `criu` on PATH).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_CRIU"))]
    pub criu: Option<PathBuf>,

    /// Pack (zstd) suspended sandboxes and snapshots after this many idle
    /// seconds; 0 packs them at once, a negative value never.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "ALCOVE_COMPRESS_AFTER_SECS",
            default_value_t = 60,
            allow_negative_numbers = true
        )
    )]
    pub compress_after_secs: i64,

    /// How long an ended sandbox stays queryable (`GET /archived-sandboxes`, and
    /// `GET /sandboxes/{id}`) after it ended: whole seconds, or a whole number with one
    /// unit, `s`, `m`, `h` or `d` (`90`, `30m`, `12h`, `7d`). Then it is purged.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "ALCOVE_ARCHIVE_TTL",
            default_value = "7d",
            value_parser = parse_ttl
        )
    )]
    pub archive_ttl: std::time::Duration,

    /// How many suspends in a row a named sandbox's timeout tries before it gives up. A
    /// sandbox can make its own dump fail, and would then run past its timeout for ever; once
    /// this many have failed, its files are kept as a filesystem snapshot and it ends
    /// (`timeout`). 0 tries for ever.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_TIMEOUT_SUSPEND_ATTEMPTS", default_value_t = 3)
    )]
    pub timeout_suspend_attempts: u32,

    /// How long after a failed timeout suspend the next one is tried (each try freezes the
    /// sandbox for its dump): whole seconds, or with a unit as `--archive-ttl`.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "ALCOVE_TIMEOUT_SUSPEND_RETRY",
            default_value = "1m",
            value_parser = parse_ttl
        )
    )]
    pub timeout_suspend_retry: std::time::Duration,

    /// Most a sandbox's logs (`GET /sandboxes/{id}/logs`) take on disk, in MiB; past half of
    /// it the older half is dropped. They stay as long as the sandbox is archived.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_LOGS_MAX_MB", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))
    )]
    pub logs_max_mb: u64,

    /// A registry (`host[:port]`, or `host` for every port) that image pulls reach over
    /// plain HTTP. Registries on a loopback address always may. Repeatable.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "insecure-registry",
            env = "ALCOVE_INSECURE_REGISTRIES",
            value_delimiter = ','
        )
    )]
    pub insecure_registries: Vec<String>,

    /// Most one image layer may unpack to, in MiB (a bigger one, or a decompression bomb,
    /// fails its pull, import or build and leaves nothing behind).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_IMAGE_MAX_UNPACKED_MB", default_value_t = 32768, value_parser = clap::value_parser!(u64).range(1..=1_048_576))
    )]
    pub image_max_unpacked_mb: u64,

    /// Subnet sandbox addresses are taken from (one /30 per sandbox).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_SUBNET", default_value = "10.88.0.0/16")
    )]
    pub subnet: String,

    /// Max number of tasks (processes and threads) per sandbox.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_PIDS_LIMIT", default_value_t = 2048)
    )]
    pub pids_limit: i64,

    /// Where lxcfs serves sandboxes their own /proc figures (memory, CPUs,
    /// uptime, load); started by the server if it is not running. An empty
    /// value turns lxcfs off (sandboxes then see the host's figures).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_LXCFS_DIR", default_value = "/var/lib/lxcfs")
    )]
    pub lxcfs_dir: PathBuf,

    /// noVNC's files (Debian's `novnc` package), served under `/desktop/novnc/`
    /// for the desktop pages of `desktop_url()`.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_NOVNC_DIR", default_value = "/usr/share/novnc")
    )]
    pub novnc_dir: PathBuf,

    /// Host-wide directory recording which uid ranges sandboxes hold (shared
    /// by every Alcove server on the host).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_IDMAP_DIR", default_value = "/run/alcove/idmap")
    )]
    pub idmap_dir: PathBuf,

    /// How far what all layers may still write (each up to its `disk_mb`)
    /// may exceed the free space under the data directory. Layers are sparse
    /// and most sandboxes write a small part of theirs: 10 admits ten times
    /// the free space. Creates beyond it answer 507.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_DISK_OVERCOMMIT", default_value_t = 10.0)
    )]
    pub disk_overcommit: f64,

    /// Turn on the cgroup2 hierarchy's `favordynmods` option at start: moving a
    /// new sandbox into its cgroup then skips a kernel wait (an RCU grace period,
    /// ~10 ms), at the price of slightly dearer fork and exit host-wide. `false`
    /// leaves the host's cgroup options as they are.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "ALCOVE_CGROUP_FAVOR_DYNMODS",
            default_value_t = true,
            action = clap::ArgAction::Set,
            value_name = "BOOL"
        )
    )]
    pub cgroup_favor_dynmods: bool,

    /// Base URL clients reach the proxy at (`sandbox_url`); default the --listen
    /// address (http://localhost:<port> on loopback and on every address).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_PUBLIC_URL"))]
    pub public_url: Option<String>,

    /// Serve HTTPS: the PEM certificate chain (leaf first) this server presents to
    /// clients and to other nodes. Needs --tls-key.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "ALCOVE_TLS_CERT",
            value_name = "FILE",
            requires = "tls_key"
        )
    )]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "ALCOVE_TLS_KEY",
            value_name = "FILE",
            requires = "tls_cert"
        )
    )]
    pub tls_key: Option<PathBuf>,

    /// PEM certificates this server trusts, besides the system's, when it relays a
    /// request to a node that advertises an https:// URL (a private cluster CA).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_TLS_CA", value_name = "FILE"))]
    pub tls_ca: Option<PathBuf>,

    /// Domain of user-port URLs: `<port>-<sandbox id or name>.<domain>` reaches an
    /// exposed port (`*.localhost` resolves to loopback in browsers and curl).
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            env = "ALCOVE_INGRESS_DOMAIN",
            default_value = "sandbox.localhost"
        )
    )]
    pub ingress_domain: String,

    /// Accepted API key; repeat for several. Without one, auth is off.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "api-key",
            env = "ALCOVE_API_KEYS",
            value_delimiter = ',',
            hide_env_values = true
        )
    )]
    pub api_keys: Vec<String>,

    /// `host[:port]`: a name this server answers to without API keys, besides
    /// `localhost`, `*.localhost`, IP addresses and the ingress domain (requests naming
    /// another host are refused: a guard against DNS rebinding); repeat for several, `*`
    /// for any. Pages of that host at that port (80 and 443 without one) may call the API.
    #[cfg_attr(
        feature = "cli",
        arg(
            long = "allowed-host",
            env = "ALCOVE_ALLOWED_HOSTS",
            value_delimiter = ',',
            value_name = "HOST"
        )
    )]
    pub allowed_hosts: Vec<String>,

    /// Seconds a client may take to send a request's headers once it has started
    /// (slowloris guard); the connection is closed after that.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)
    )]
    pub header_read_timeout_secs: u64,

    /// Seconds a new sandbox's agent has to answer before its start counts as
    /// failed (a loaded machine boots more slowly).
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_AGENT_READY_TIMEOUT_SECS", default_value_t = 30)
    )]
    pub agent_ready_timeout_secs: u64,

    /// Seconds a connection may stay open with no request in flight (also a new
    /// connection that sends nothing); streaming responses are never cut by it.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_IDLE_TIMEOUT_SECS", default_value_t = 60)
    )]
    pub idle_timeout_secs: u64,

    /// Most client connections open at once; at the cap a new one evicts the
    /// longest idle one, and is answered 503 and closed only when all are busy
    /// (default: the smaller of 4096 and the open-files limit minus 512).
    #[cfg_attr(feature = "cli", arg(long, env = "ALCOVE_MAX_CONNECTIONS"))]
    pub max_connections: Option<usize>,

    /// Most requests in flight from one client IP address; more are answered 429.
    #[cfg_attr(
        feature = "cli",
        arg(long, env = "ALCOVE_MAX_REQUESTS_PER_CLIENT", default_value_t = 256)
    )]
    pub max_requests_per_client: usize,
}

/// Reads a retention such as `--archive-ttl`: whole seconds (`3600`), or a whole number
/// followed by one unit, `s`, `m`, `h` or `d` (`90s`, `30m`, `12h`, `7d`). At least one
/// second, at most 100 years.
pub fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    const MAX_SECS: u64 = 100 * 365 * 86_400;
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let per_unit: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: the unit must be s, m, h or d (as in 90s, 30m, 12h, 7d)"
            ));
        }
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?}: expected whole seconds or a whole number with a unit (90, 30m, 12h, 7d)"
        ));
    }
    let secs = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit))
        .filter(|secs| *secs <= MAX_SECS)
        .ok_or_else(|| format!("{text:?}: at most 100 years"))?;
    if secs == 0 {
        return Err(format!("{text:?}: must be at least one second"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Listening beyond loopback without API keys.
    #[error("listening on {0} (not loopback) requires at least one --api-key")]
    OpenWithoutKeys(SocketAddr),
    /// Bad subnet.
    #[error(transparent)]
    Subnet(#[from] alcove_runtime::RuntimeError),
    /// No agent binary found.
    #[error("agent binary not found at {0}; pass --agent-path")]
    NoAgent(PathBuf),
    /// A value out of its range.
    #[error("{0}")]
    Invalid(String),
    /// A `--database` URL that cannot be used (the error never shows the URL).
    #[error(transparent)]
    Database(#[from] crate::store::DatabaseUrlError),
    /// A connection limit or timeout of zero.
    #[error("--{0} must be at least 1")]
    ZeroLimit(&'static str),
}

impl Config {
    /// Checks the configuration before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.disk_overcommit.is_finite() && self.disk_overcommit > 0.0) {
            return Err(ConfigError::Invalid(format!(
                "--disk-overcommit must be a positive number, not {}",
                self.disk_overcommit
            )));
        }
        for (flag, value) in [
            ("--cpu-overcommit", self.cpu_overcommit),
            ("--memory-overcommit", self.memory_overcommit),
        ] {
            if !(value.is_finite() && (0.1..=100.0).contains(&value)) {
                return Err(ConfigError::Invalid(format!(
                    "{flag} must be 0.1 to 100, not {value}"
                )));
            }
        }
        if let Some(cpus) = self.node_cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            return Err(ConfigError::Invalid(format!(
                "--node-cpus must be a positive number, not {cpus}"
            )));
        }
        if let Some(mb) = self.node_memory_mb
            && mb <= 0
        {
            return Err(ConfigError::Invalid(format!(
                "--node-memory-mb must be positive, not {mb}"
            )));
        }
        if !self.listen.ip().is_loopback() && self.api_keys.iter().all(String::is_empty) {
            return Err(ConfigError::OpenWithoutKeys(self.listen));
        }
        self.subnet()?;
        if let Some(database) = &self.database {
            database.parse()?;
        }
        if !(3..=600).contains(&self.node_lease_secs) {
            return Err(ConfigError::Invalid(format!(
                "--node-lease-secs must be 3 to 600, not {}",
                self.node_lease_secs
            )));
        }
        if let Some(name) = &self.node_name {
            validate_node_name(name)?;
        }
        if let Some(url) = &self.advertise_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "--advertise-url {url:?} must start with http:// or https://"
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "--tls-cert and --tls-key go together: give both or neither".into(),
            ));
        }
        if self.tls() {
            for (flag, url) in [
                ("--advertise-url", &self.advertise_url),
                ("--public-url", &self.public_url),
            ] {
                if let Some(url) = url
                    && url.starts_with("http://")
                {
                    return Err(ConfigError::Invalid(format!(
                        "{flag} {url:?} is plain http://, but with --tls-cert this server \
                         speaks only HTTPS: give an https:// URL"
                    )));
                }
            }
        }
        if self.database.is_some()
            && self.advertise_url.is_none()
            && self.listen.ip().is_unspecified()
        {
            return Err(ConfigError::Invalid(format!(
                "--listen {} is every address of this machine: with --database, give \
                 --advertise-url, the URL other nodes reach this one at",
                self.listen
            )));
        }
        if let Some(url) = &self.blob_store {
            alcove_blobs::BlobLocation::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("--blob-store: {e}")))?;
        }
        for (flag, value) in [
            ("header-read-timeout-secs", self.header_read_timeout_secs),
            ("idle-timeout-secs", self.idle_timeout_secs),
            ("agent-ready-timeout-secs", self.agent_ready_timeout_secs),
            (
                "max-requests-per-client",
                self.max_requests_per_client as u64,
            ),
            ("max-connections", self.max_connections.unwrap_or(1) as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(flag));
            }
        }
        let agent = self.agent_path();
        if !agent.is_file() {
            return Err(ConfigError::NoAgent(agent));
        }
        Ok(())
    }

    /// This server's identity among the nodes; `bound` is the address it listens on.
    pub fn node_identity(
        &self,
        bound: SocketAddr,
        machine: String,
        host: crate::control::validate::HostLimits,
    ) -> Result<crate::control::NodeIdentity, ConfigError> {
        let name = match &self.node_name {
            Some(name) => name.clone(),
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "alcove".into()),
        };
        validate_node_name(&name)?;
        let mut labels = std::collections::BTreeMap::new();
        for label in self.node_labels.iter().filter(|l| !l.is_empty()) {
            let Some((k, v)) = label.split_once('=') else {
                return Err(ConfigError::Invalid(format!(
                    "--node-label {label:?}: expected key=value"
                )));
            };
            validate_node_name(k)
                .map_err(|_| ConfigError::Invalid(format!("--node-label {label:?}: bad key")))?;
            if !crate::control::node_selector::is_label_value(v) {
                return Err(ConfigError::Invalid(format!(
                    "--node-label {label:?}: bad value"
                )));
            }
            labels.insert(k.to_string(), v.to_string());
        }
        Ok(crate::control::NodeIdentity {
            name,
            address: self.node_address(bound),
            subnet: self.subnet.clone(),
            labels,
            lease: std::time::Duration::from_secs(self.node_lease_secs),
            machine,
            capacity: crate::control::NodeCapacity {
                cpus: self.node_cpus.unwrap_or(host.cpus),
                memory_mb: self.node_memory_mb.unwrap_or(host.memory_mb),
                cpu_overcommit: self.cpu_overcommit,
                memory_overcommit: self.memory_overcommit,
            },
        })
    }

    /// How to reach an S3 blob store.
    pub fn s3_settings(&self) -> alcove_blobs::S3Settings {
        alcove_blobs::S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.as_ref().map(|s| s.0.clone()),
        }
    }

    /// Limits of the HTTP listener; the connection cap is resolved against the
    /// process's open-files limit (`fd_soft_limit`).
    pub fn http_limits(&self, fd_soft_limit: Option<u64>) -> crate::listener::HttpLimits {
        crate::listener::HttpLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            max_connections: crate::listener::connection_cap(self.max_connections, fd_soft_limit),
            max_requests_per_client: self.max_requests_per_client,
        }
    }

    /// The parsed subnet.
    pub fn subnet(&self) -> Result<Subnet, alcove_runtime::RuntimeError> {
        self.subnet.parse()
    }

    /// The lxcfs directory, unless turned off with an empty value.
    pub fn lxcfs_dir(&self) -> Option<PathBuf> {
        (!self.lxcfs_dir.as_os_str().is_empty()).then(|| self.lxcfs_dir.clone())
    }

    /// The images directory.
    pub fn images_dir(&self) -> PathBuf {
        self.images_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("images"))
    }

    /// The agent binary.
    pub fn agent_path(&self) -> PathBuf {
        self.agent_path.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join("alcove-agent")))
                .unwrap_or_else(|| PathBuf::from("alcove-agent"))
        })
    }

    /// Idle time after which stored state is packed.
    pub fn compress_after(&self) -> Option<std::time::Duration> {
        u64::try_from(self.compress_after_secs)
            .ok()
            .map(std::time::Duration::from_secs)
    }

    /// The CRIU binary.
    pub fn criu_path(&self) -> PathBuf {
        self.criu.clone().unwrap_or_else(|| {
            let built = PathBuf::from("/usr/local/sbin/criu");
            if built.is_file() {
                built
            } else {
                PathBuf::from("criu")
            }
        })
    }

    /// Whether the listener serves HTTPS (`--tls-cert` and `--tls-key`).
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The scheme of the URLs this server derives for itself.
    fn scheme(&self) -> &'static str {
        if self.tls() { "https" } else { "http" }
    }

    /// `ingress_endpoint` given to clients: the ingress domain on the server's port.
    pub fn ingress_endpoint(&self, bound: SocketAddr) -> String {
        format!(
            "{}://{}:{}",
            self.scheme(),
            self.ingress_domain,
            bound.port()
        )
    }

    /// The URL other nodes reach this one at: `--advertise-url`, else the address
    /// it listens on. A wildcard listen address names no one address; `validate`
    /// refuses it without `--advertise-url` when other nodes share the store.
    fn node_address(&self, bound: SocketAddr) -> String {
        match &self.advertise_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if bound.ip().is_unspecified() => self.sandbox_url(bound),
            None => format!("{}://{bound}", self.scheme()),
        }
    }

    /// `sandbox_url` given to clients: `--public-url`, else the address it
    /// listens on (`localhost` for loopback and for every address).
    pub fn sandbox_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if bound.ip().is_unspecified() || bound.ip().is_loopback() => {
                format!("{}://localhost:{}", self.scheme(), bound.port())
            }
            None => format!("{}://{bound}", self.scheme()),
        }
    }
}

/// A node name or label key: 1 to 63 letters, digits, '-', '_' or '.', starting
/// with a letter or digit.
fn validate_node_name(name: &str) -> Result<(), ConfigError> {
    let ok = crate::control::node_selector::is_label_key(name);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "node name {name:?}: 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}
