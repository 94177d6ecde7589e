//! The node: creates and destroys sandboxes from their parts (layer, network,
//! bundle, runc container) and, at start-up, adopts what still runs and sweeps
//! away what is half-made.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bundle::{self, BundleSpec};
use crate::cgroups::CgroupTree;
use crate::error::{Result, RuntimeError};
use crate::image::{Image, ImageStore};
use crate::layer::{self, Layer};
use crate::network::{Network, SandboxNet, Slot, Subnet};
use crate::runc::Runc;

/// The port the agent listens on inside every sandbox.
pub const AGENT_PORT: u16 = 9501;

/// Settings of the node runtime (the `runtime` and `network` config sections).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory; sandboxes live in `<data_dir>/sandboxes/<id>`.
    pub data_dir: PathBuf,
    /// Where images are (`<images_dir>/<name>/{rootfs,manifest.json}`).
    pub images_dir: PathBuf,
    /// The statically linked agent binary on the host.
    pub agent_binary: PathBuf,
    /// The runc binary to call.
    pub runc_binary: String,
    /// The CRIU binary runc is told to use (4.2.1 or later).
    pub criu_binary: PathBuf,
    /// Subnet sandbox addresses come from.
    pub subnet: Subnet,
    /// Max tasks per sandbox.
    pub pids_limit: i64,
    /// The host's resolv.conf, whose resolvers sandboxes use.
    pub host_resolv: PathBuf,
    /// How long a new sandbox's agent may take to listen.
    pub agent_ready_timeout: Duration,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Sandbox id (a UUID).
    pub id: String,
    /// Hostname inside.
    pub hostname: String,
    /// The image to boot.
    pub image: Image,
    /// CPUs.
    pub cpus: f64,
    /// Memory limit in MiB.
    pub memory_mb: u64,
    /// Writable-layer size in MiB.
    pub disk_mb: u64,
    /// Environment of every process in the sandbox.
    pub env: Vec<(String, String)>,
}

/// A sandbox the node knows is (or should be) running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxHandle {
    /// Sandbox id.
    pub id: String,
    /// Its network slot.
    pub slot: Slot,
    /// Its address.
    pub ip: Ipv4Addr,
}

impl SandboxHandle {
    /// Where its agent answers.
    pub fn agent_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, AGENT_PORT))
    }
}

/// Outcome of [`Node::recover`].
#[derive(Debug, Default)]
pub struct Recovery {
    /// Sandboxes found running and adopted.
    pub adopted: Vec<SandboxHandle>,
    /// Sandboxes that were expected but are gone (their remains were removed).
    pub lost: Vec<String>,
    /// Leftovers of unknown sandboxes that were removed (for the log).
    pub swept: Vec<String>,
}

/// One runtime instance on this host.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: NodeConfig,
    tag: String,
    images: ImageStore,
    pub(crate) network: Network,
    pub(crate) cgroups: CgroupTree,
    pub(crate) runc: Runc,
    slots: Mutex<BTreeSet<Slot>>,
}

/// A short tag unique to a data directory, carried by every host-wide name.
pub fn instance_tag(data_dir: &Path) -> String {
    let canonical = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    hex::encode(&digest[..2])
}

impl Node {
    /// Prepares the node: directories and the firewall table.
    pub async fn new(cfg: NodeConfig) -> Result<Self> {
        for dir in [cfg.data_dir.join("sandboxes"), cfg.data_dir.join("runc")] {
            std::fs::create_dir_all(&dir).map_err(RuntimeError::io("creating", &dir))?;
        }
        if !cfg.agent_binary.is_file() {
            return Err(RuntimeError::Config(format!(
                "agent binary {} not found (build it with scripts/setup.sh build)",
                cfg.agent_binary.display()
            )));
        }
        let tag = instance_tag(&cfg.data_dir);
        let network = Network::new(&tag, cfg.subnet.clone());
        network.install_firewall().await?;
        Ok(Self {
            images: ImageStore::new(&cfg.images_dir),
            cgroups: CgroupTree::new(&tag),
            runc: Runc::new(cfg.runc_binary.clone(), cfg.data_dir.join("runc")),
            network,
            tag,
            cfg,
            slots: Mutex::new(BTreeSet::new()),
        })
    }

    /// The instance tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The image store.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    pub(crate) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join("sandboxes").join(id)
    }

    pub(crate) fn reserve_slot(&self) -> Result<Slot> {
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        let used: Vec<Slot> = slots.iter().copied().collect();
        let slot = self
            .network
            .subnet()
            .first_free(&used)
            .ok_or_else(|| RuntimeError::SubnetExhausted(self.network.subnet().to_string()))?;
        slots.insert(slot);
        Ok(slot)
    }

    /// Reserves a given slot (a sandbox coming back keeps its address).
    pub(crate) fn reserve_exact_slot(&self, slot: Slot) -> Result<()> {
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        slots.insert(slot);
        Ok(())
    }

    pub(crate) fn release_slot(&self, slot: Slot) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&slot);
        }
    }

    /// Creates and starts a sandbox, waiting until its agent listens.
    /// On failure nothing of it is left behind.
    pub async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        let slot = self.reserve_slot()?;
        match self.create_in_slot(spec, slot).await {
            Ok(handle) => Ok(handle),
            Err(e) => {
                self.remove_parts(&spec.id, slot).await;
                self.release_slot(slot);
                Err(e)
            }
        }
    }

    async fn create_in_slot(&self, spec: &SandboxSpec, slot: Slot) -> Result<SandboxHandle> {
        let started = Instant::now();
        let dir = self.sandbox_dir(&spec.id);
        let layer = Layer::new(&dir);
        let (disk, net) = tokio::join!(
            async {
                layer.create_disk(spec.disk_mb).await?;
                layer.mount(&spec.image.rootfs).await
            },
            self.network.create(slot)
        );
        disk?;
        let net = net?;
        let bundle_dir = self.write_bundle(spec, &layer, &net)?;
        self.runc.run_detached(&spec.id, &bundle_dir).await?;
        let handle = SandboxHandle {
            id: spec.id.clone(),
            slot,
            ip: net.sandbox_ip,
        };
        self.wait_for_agent(&handle).await?;
        tracing::debug!(
            sandbox_id = %spec.id,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sandbox started"
        );
        Ok(handle)
    }

    /// Writes `etc/`, `criu.conf` and `bundle/config.json` of a sandbox; returns the bundle dir.
    pub(crate) fn write_bundle(
        &self,
        spec: &SandboxSpec,
        layer: &Layer,
        net: &SandboxNet,
    ) -> Result<PathBuf> {
        let dir = self.sandbox_dir(&spec.id);
        let etc = dir.join("etc");
        bundle::write_etc_files(&etc, &spec.hostname, &self.cfg.host_resolv)?;
        let criu_config = dir.join("criu.conf");
        std::fs::write(&criu_config, bundle::CRIU_CONFIG)
            .map_err(RuntimeError::io("writing", &criu_config))?;
        let bundle_dir = dir.join("bundle");
        std::fs::create_dir_all(&bundle_dir).map_err(RuntimeError::io("creating", &bundle_dir))?;
        // config.json carries the sandbox's environment, secrets included: root only.
        std::fs::set_permissions(&bundle_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(RuntimeError::io("restricting", &bundle_dir))?;
        let oci = bundle::build_spec(&BundleSpec {
            hostname: spec.hostname.clone(),
            rootfs: layer.rootfs(),
            agent_binary: self.cfg.agent_binary.clone(),
            etc_dir: etc,
            netns_path: net.netns_path(),
            cgroups_path: self.cgroups.path_for(&spec.id),
            cpus: spec.cpus,
            memory_mb: spec.memory_mb,
            limit_swap: self.cgroups.setup().has_swap_limit(),
            pids_limit: self.cfg.pids_limit,
            env: spec.env.clone(),
            nofile: bundle::nofile_limit(),
            criu_config,
        })?;
        let config = bundle_dir.join("config.json");
        oci.save(&config)
            .map_err(|e| RuntimeError::Spec(format!("writing {}: {e}", config.display())))?;
        Ok(bundle_dir)
    }

    pub(crate) async fn wait_for_agent(&self, handle: &SandboxHandle) -> Result<()> {
        let deadline = Instant::now() + self.cfg.agent_ready_timeout;
        let mut delay = Duration::from_millis(1);
        loop {
            if tokio::net::TcpStream::connect(handle.agent_addr())
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::AgentNotReady {
                    id: handle.id.clone(),
                    secs: self.cfg.agent_ready_timeout.as_secs(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    /// Stops a sandbox and removes everything it had on this host.
    pub async fn destroy(&self, id: &str, slot: Slot) {
        self.remove_parts(id, slot).await;
        self.release_slot(slot);
    }

    pub(crate) async fn remove_parts(&self, id: &str, slot: Slot) {
        if let Err(e) = self.runc.destroy(id).await {
            tracing::warn!(sandbox_id = %id, error = %e, "deleting container");
        }
        self.cgroups.remove(id);
        self.network.destroy(&self.network.describe(slot)).await;
        if let Err(e) = Layer::new(self.sandbox_dir(id)).remove() {
            tracing::warn!(sandbox_id = %id, error = %e, "removing sandbox files");
        }
    }

    /// Whether the sandbox's container is running right now.
    pub async fn is_running(&self, id: &str) -> bool {
        matches!(self.runc.state(id).await, Ok(Some(s)) if s.status == "running")
    }

    /// Adopts the sandboxes in `expected` that still run, removes the remains of
    /// the others, keeps the files and slots of the `suspended` ones, and sweeps
    /// every leftover of this instance that belongs to no known sandbox
    /// (containers, cgroups, netns, veths, mounts, files).
    pub async fn recover(
        &self,
        expected: &[(String, Slot)],
        suspended: &[(String, Slot)],
    ) -> Recovery {
        let mut report = Recovery::default();
        let containers = self.runc.list().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "listing containers");
            Vec::new()
        });
        for (id, slot) in expected {
            let net = self.network.describe(*slot);
            let running = containers
                .iter()
                .any(|c| &c.id == id && c.status == "running");
            let intact = running
                && self.network.exists(&net)
                && Layer::new(self.sandbox_dir(id)).is_mounted();
            if intact {
                if let Ok(mut slots) = self.slots.lock() {
                    slots.insert(*slot);
                }
                report.adopted.push(SandboxHandle {
                    id: id.clone(),
                    slot: *slot,
                    ip: net.sandbox_ip,
                });
            } else {
                self.remove_parts(id, *slot).await;
                report.lost.push(id.clone());
            }
        }
        let mut keep = report.adopted.clone();
        for (id, slot) in suspended {
            if let Ok(mut slots) = self.slots.lock() {
                slots.insert(*slot);
            }
            // A suspended sandbox has no container and no mounts; its dump stays.
            let _ = Layer::new(self.sandbox_dir(id)).unmount();
            crate::archive::clean_partial(&self.sandbox_dir(id));
            keep.push(SandboxHandle {
                id: id.clone(),
                slot: *slot,
                ip: self.network.describe(*slot).sandbox_ip,
            });
        }
        self.sweep(&keep, &containers, &mut report.swept).await;
        report
    }

    /// runc's status of the sandbox's container (`running`, `paused`, …), if any.
    pub async fn container_status(&self, id: &str) -> Option<String> {
        self.runc.state(id).await.ok().flatten().map(|s| s.status)
    }

    /// Thaws a paused container (after a crash during a snapshot).
    pub async fn thaw(&self, id: &str) -> Result<()> {
        self.runc.resume(id).await
    }

    /// Stops a container and unmounts its layer but keeps its files, network
    /// and slot (a half-done restore of a suspended sandbox).
    pub async fn stop_keeping_files(&self, id: &str) {
        let _ = self.runc.destroy(id).await;
        self.cgroups.remove(id);
        let _ = Layer::new(self.sandbox_dir(id)).unmount();
    }

    async fn sweep(
        &self,
        keep: &[SandboxHandle],
        containers: &[crate::runc::ContainerState],
        swept: &mut Vec<String>,
    ) {
        let kept_id = |id: &str| keep.iter().any(|h| h.id == id);
        let kept_slot = |slot: Slot| keep.iter().any(|h| h.slot == slot);
        for c in containers.iter().filter(|c| !kept_id(&c.id)) {
            let _ = self.runc.destroy(&c.id).await;
            swept.push(format!("container {}", c.id));
        }
        for id in self.cgroups.list().into_iter().filter(|id| !kept_id(id)) {
            self.cgroups.remove(&id);
            swept.push(format!("cgroup {id}"));
        }
        let mut slots = self.network.list_slots();
        slots.extend(self.network.list_veth_slots());
        slots.sort();
        slots.dedup();
        for slot in slots.into_iter().filter(|s| !kept_slot(*s)) {
            self.network.destroy(&self.network.describe(slot)).await;
            swept.push(format!("network slot {}", slot.0));
        }
        let sandboxes = self.cfg.data_dir.join("sandboxes");
        for mount in layer::mounts_under(&sandboxes) {
            let owner = mount
                .strip_prefix(&sandboxes)
                .ok()
                .and_then(|rest| rest.components().next())
                .map(|c| c.as_os_str().to_string_lossy().into_owned());
            if owner.as_deref().is_some_and(kept_id) {
                continue;
            }
            if let Err(e) = layer::unmount_all(&mount) {
                tracing::warn!(path = %mount.display(), error = %e, "unmounting leftover");
            }
            swept.push(format!("mount {}", mount.display()));
        }
        if let Ok(entries) = std::fs::read_dir(&sandboxes) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if kept_id(&name) {
                    continue;
                }
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "removing leftover");
                }
                swept.push(format!("files of {name}"));
            }
        }
    }

    /// Called on orderly shutdown: the firewall table goes when no sandbox is left.
    pub async fn shutdown(&self, sandboxes_left: usize) {
        if sandboxes_left == 0 {
            if let Err(e) = self.network.remove_firewall().await {
                tracing::warn!(error = %e, "removing firewall table");
            }
            self.cgroups.remove_parent_if_empty();
        }
    }

    /// Enforces an outbound policy on a sandbox (see [`EgressPolicy`]).
    pub async fn apply_egress(
        &self,
        slot: Slot,
        policy: &crate::network::EgressPolicy,
    ) -> Result<()> {
        self.network
            .apply_egress(&self.network.describe(slot), policy)
            .await
    }
}

fn poisoned() -> RuntimeError {
    RuntimeError::Config("slot table lock poisoned".into())
}

/// Number of CPUs the host can give a sandbox.
pub fn host_cpus() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_tag_is_stable_and_short() {
        let a = instance_tag(Path::new("/nonexistent/a"));
        assert_eq!(a.len(), 4);
        assert_eq!(a, instance_tag(Path::new("/nonexistent/a")));
        assert_ne!(a, instance_tag(Path::new("/nonexistent/b")));
    }
}
