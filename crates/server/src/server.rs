//! Running the server: takes a bound listener and a shutdown signal (so tests
//! can bind `127.0.0.1:0`), recovers state, serves until shutdown.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;

use alcove_runtime::{Node, NodeConfig};

use crate::api::{AppState, build_router};
use crate::auth::ApiKeys;
use crate::config::Config;
use crate::control::validate::HostLimits;
use crate::control::{
    AgentClient, Control, ControlConfig, spawn_archive_purger, spawn_compactor, spawn_crash_watch,
    spawn_membership, spawn_pool_refiller, spawn_timeout_reaper,
};
use crate::shutdown::{self, Shutdown};
use crate::store::Store;

/// Errors that stop the server from starting. Each message says what was
/// being done; the cause is the error's source (print the chain, e.g.
/// anyhow's `{:#}`), not repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened.
    #[error("opening the store")]
    Store(#[from] crate::store::StoreError),
    /// The runtime could not start.
    #[error("starting the runtime")]
    Runtime(#[from] alcove_runtime::RuntimeError),
    /// The secrets key could not be loaded or created.
    #[error("loading the secrets key")]
    Secrets(#[from] crate::secrets::SecretError),
    /// The TLS certificate, key or trusted roots could not be loaded.
    #[error("setting up TLS")]
    Tls(#[from] crate::tls::TlsError),
    /// The blob store could not be opened or reached.
    #[error("opening the blob store")]
    Blobs(#[from] alcove_blobs::BlobError),
    /// This server could not join the nodes of its store.
    #[error("registering this node: {0}")]
    Node(String),
    /// Recovery failed.
    #[error("recovering sandboxes")]
    Recover(#[from] crate::control::ControlError),
    /// Serving HTTP failed.
    #[error("serving HTTP")]
    Io(#[from] std::io::Error),
}

/// The id of a data directory (`<data-dir>/node-id`, made once): a new run of
/// the server on it is the same node.
fn data_dir_id(data_dir: &std::path::Path) -> Result<String, std::io::Error> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => {
            // Files made by older versions were world-readable.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            Ok(id.trim().to_string())
        }
        Ok(_) | Err(_) => {
            let id = uuid::Uuid::new_v4().to_string();
            let tmp = data_dir.join("node-id.tmp");
            // Root-only like everything else under the data directory: the
            // id is what lets a restart take the node's name back.
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            std::io::Write::write_all(&mut file, id.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(id)
        }
    }
}

fn host_memory_mb() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(i64::MAX)
}

/// Serves on `listener` until `shutdown` fires; sandboxes keep running after.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    config.validate()?;
    // Bad certificate files stop the start before anything is touched.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::ServerCerts::load(cert, key)?),
        _ => None,
    };
    let nodes = crate::proxy::NodeLink::new(
        crate::tls::client_config(config.tls_ca.as_deref())?,
        tls.is_some(),
    );
    let mut config = config;
    // The modes the node keeps them at (root-only; the data directory enterable, see
    // alcove_runtime::perms), so that a first start finds nothing to repair.
    alcove_runtime::perms::make_dir(&config.data_dir, 0o711)?;
    // runc resolves bind-mount sources against the bundle: every path must be absolute.
    config.data_dir = config.data_dir.canonicalize()?;
    config.agent_path = Some(config.agent_path().canonicalize()?);
    config.images_dir = Some(std::path::absolute(config.images_dir())?);
    alcove_runtime::perms::make_dir(&config.data_dir.join("snapshots"), 0o700)?;
    // Error texts naming these paths are kept from clients (see `redact`).
    for path in [
        config.data_dir.clone(),
        config.images_dir(),
        config.agent_path(),
        config.criu_path(),
    ] {
        crate::redact::register_host_path(&path);
    }
    let store = match &config.database {
        None => Store::open(&config.data_dir.join("alcove.db")).await?,
        Some(url) => Store::connect(url).await?,
    };
    // The redacted form: never the URL, which may hold a password.
    tracing::info!(store = %store.describe(), "store opened");
    let blobs = match &config.blob_store {
        None => None,
        Some(url) => {
            let blobs = alcove_blobs::BlobStore::open(url, &config.s3_settings())?;
            // Wrong credentials or an unreachable server fail here, not at the first suspend.
            blobs.check().await?;
            tracing::info!(blob_store = %blobs.location(), "blob store reachable");
            Some(blobs)
        }
    };
    let node = Node::new(NodeConfig {
        data_dir: config.data_dir.clone(),
        images_dir: config.images_dir(),
        agent_binary: config.agent_path(),
        runc_binary: config.runc.clone(),
        criu_binary: config.criu_path(),
        subnet: config.subnet()?,
        pids_limit: config.pids_limit,
        host_resolv: "/etc/resolv.conf".into(),
        agent_ready_timeout: Duration::from_secs(config.agent_ready_timeout_secs),
        // runc runs alcove-hook, or this very binary, as each restored sandbox's hook.
        hook: alcove_runtime::hook::HookProgram::beside(&std::env::current_exe()?),
        idmap_dir: config.idmap_dir.clone(),
        lxcfs_dir: config.lxcfs_dir(),
        disk_overcommit: config.disk_overcommit,
        favor_dynamic_cgroup_moves: config.cgroup_favor_dynmods,
    })
    .await?;
    // With a blob store, a dump may live only there and name a build no local file does.
    if blobs.is_none() {
        node.forget_unused_agent_builds();
    }
    let bound = listener.local_addr()?;
    let agents = AgentClient::new();
    let retention_days = config.archive_ttl.as_secs().div_ceil(86_400);
    let (logs, suspects) = crate::logs::Logs::new(
        crate::logs::files::LogFiles::new(config.data_dir.join("logs"), config.logs_max_mb << 20),
        agents.clone(),
        u32::try_from(retention_days).unwrap_or(u32::MAX),
    );
    let images_dir = config.images_dir();
    let image_settings = crate::images::ImageSettings {
        insecure_registries: config.insecure_registries.clone(),
        limits: alcove_images::unpack::UnpackLimits {
            max_bytes: config.image_max_unpacked_mb << 20,
            ..Default::default()
        },
    };
    let images = tokio::task::spawn_blocking(move || {
        crate::images::Images::open(&images_dir, image_settings)
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(std::io::Error::other)?;
    let control = Arc::new(Control::new(
        store,
        Arc::new(node),
        ControlConfig {
            sandbox_url: config.sandbox_url(bound),
            ingress_endpoint: config.ingress_endpoint(bound),
            snapshots_dir: config.data_dir.join("snapshots"),
            compress_after: config.compress_after(),
            archive_ttl: config.archive_ttl,
            timeout_suspend_attempts: config.timeout_suspend_attempts,
            timeout_suspend_retry: config.timeout_suspend_retry,
            host: HostLimits {
                cpus: alcove_runtime::node::host_cpus(),
                memory_mb: host_memory_mb(),
            },
            blobs,
        },
        agents.clone(),
        crate::secrets::SecretBox::load_or_create(&config.data_dir.join("secrets.key"))?,
        logs,
        Arc::new(images),
    ));
    // Before recovery touches anything: a live node of the same name or subnet
    // refuses this one.
    let joined = async {
        let machine = data_dir_id(&config.data_dir)?;
        let me = config.node_identity(
            bound,
            machine,
            HostLimits {
                cpus: alcove_runtime::node::host_cpus(),
                memory_mb: host_memory_mb(),
            },
        )?;
        control
            .join(me)
            .await
            .map_err(|e| ServeError::Node(e.to_string()))
    }
    .await;
    if let Err(e) = joined {
        // Refused before recovery touched anything: what this start set up on the host (its
        // firewall table) goes again, unless sandboxes of an earlier run live in this data
        // directory and still need it.
        if !holds_sandboxes(&config.data_dir) {
            control.shutdown().await;
        }
        return Err(e);
    }
    control.recover().await?;
    if let Err(e) = control.end_orphan_builders().await {
        tracing::warn!(error = %e, "ending builder sandboxes left by a crash");
    }
    if let Err(e) = control.end_interrupted_claims().await {
        tracing::warn!(error = %e, "ending sandboxes whose claim a crash cut");
    }
    let crash_watch = spawn_crash_watch(Arc::clone(&control), suspects, shutdown.clone());
    let reaper = spawn_timeout_reaper(Arc::clone(&control), shutdown.clone());
    let compactor = spawn_compactor(Arc::clone(&control), shutdown.clone());
    let purger = spawn_archive_purger(Arc::clone(&control), shutdown.clone());
    let refiller = spawn_pool_refiller(Arc::clone(&control), shutdown.clone());
    let membership = spawn_membership(Arc::clone(&control), shutdown.clone());
    let app = build_router(AppState {
        control: Arc::clone(&control),
        agents,
        nodes,
        keys: Arc::new(ApiKeys::new(config.api_keys.clone())),
        ingress_domain: Arc::from(config.ingress_domain.as_str()),
        desktop_tokens: Arc::new(crate::desktop::DesktopTokens::random()),
        novnc_dir: Arc::from(config.novnc_dir.as_path()),
        allowed_hosts: Arc::new(crate::api::site_guard::AllowedHosts::new(
            &config.allowed_hosts,
            [&config.public_url, &config.advertise_url]
                .into_iter()
                .flatten()
                .map(String::as_str),
            Some(bound.port()),
        )),
    });
    tracing::info!(%bound, "alcove serving");
    let reloader = tls
        .clone()
        .map(|certs| tokio::spawn(reload_on_hangup(certs, shutdown.clone())));
    let limits = config.http_limits(crate::listener::fd_soft_limit());
    crate::listener::serve(listener, app, limits, shutdown.clone(), tls).await?;
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    reaper.abort();
    compactor.abort();
    purger.abort();
    refiller.abort();
    crash_watch.abort();
    membership.abort();
    control.leave().await;
    control.shutdown().await;
    tracing::info!("alcove stopped");
    Ok(())
}

/// Reads the TLS certificate and key again on each SIGHUP (a renewal), until
/// shutdown; a failed read keeps the certificate in use and says why.
async fn reload_on_hangup(certs: Arc<crate::tls::ServerCerts>, shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP: the TLS certificate is not reloaded");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
                match certs.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => tracing::warn!(error = %e, "SIGHUP: the TLS certificate could not be reloaded; the one in use stays"),
                }
            }
        }
    }
}

/// Whether `data_dir` holds any sandbox's state (a directory under `sandboxes/`).
fn holds_sandboxes(data_dir: &std::path::Path) -> bool {
    std::fs::read_dir(data_dir.join("sandboxes"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

/// A shutdown pair for callers that drive shutdown themselves.
pub fn shutdown_channel() -> (shutdown::ShutdownTrigger, Shutdown) {
    shutdown::channel()
}
