//! The node: creates and destroys sandboxes from their parts (layer, network,
//! bundle, runc container) and, at start-up, adopts what still runs and sweeps
//! away what is half-made.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bundle::{self, BundleSpec};
use crate::cgroups::CgroupTree;
use crate::cpuset::CpuPlan;
use crate::error::{Result, RuntimeError};
use crate::hook::HookSpec;
use crate::idmap::{IdAllocator, IdRange};
use crate::image::Image;
use crate::layer::{self, Layer, Mountpoint};
use crate::network::{Network, SandboxNet, Slot, Subnet};
use crate::runc::{ContainerStatus, Runc};
use crate::sandbox_id::SandboxId;
use crate::{host, lxcfs, perms};

/// The port the agent listens on inside every sandbox.
pub const AGENT_PORT: u16 = 9501;

/// How long after its container starts a sandbox's agent is polled every
/// millisecond before the polls back off.
const FAST_AGENT_POLL_FOR: Duration = Duration::from_millis(250);

/// How long one connect to a new agent may take while it is polled fast.
const FAST_CONNECT_BOUND: Duration = Duration::from_millis(25);

/// Settings of the node runtime (the `runtime` and `network` config sections).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory; sandboxes live in `<data_dir>/sandboxes/<id>`.
    pub data_dir: PathBuf,
    /// Where images are (`<images_dir>/<name>/{rootfs,manifest.json}`).
    pub images_dir: PathBuf,
    /// The statically linked agent binary on the host. Sandboxes bind a copy
    /// of it from the node's store of builds ([`crate::agent_builds`]), so
    /// replacing this file never touches them.
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
    /// What runc runs as each restored sandbox's hook (see [`crate::hook`]).
    pub hook: crate::hook::HookProgram,
    /// The host-wide directory of taken uid ranges (see [`crate::idmap`]).
    pub idmap_dir: PathBuf,
    /// Where lxcfs is (or is to be) mounted; `None` leaves the host's `/proc`
    /// figures in sandboxes.
    pub lxcfs_dir: Option<PathBuf>,
    /// How far what sandboxes may still write to their layers (each up to its
    /// `disk_mb`) may exceed the free space under the data directory.
    pub disk_overcommit: f64,
    /// Turn on the cgroup2 hierarchy's `favordynmods` at start (host-wide; see
    /// [`crate::cgroup_dynmods`]).
    pub favor_dynamic_cgroup_moves: bool,
}

/// Host pids kept out of reach of sandboxes (`pids_limit` x running
/// sandboxes must fit in `pid_max` minus this).
pub const HOST_PID_RESERVE: u64 = 65_536;

/// Free space under the data directory that creates never eat into, so the
/// store and dumps can still be written when sandboxes fill their layers.
pub const DISK_RESERVE_MB: u64 = 1024;

/// What to create.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Sandbox id.
    pub id: SandboxId,
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
    /// Volumes mounted into it when it boots (see [`crate::volume`]).
    pub volumes: Vec<crate::volume::VolumeMount>,
    /// Its outbound policy, in force before any of its processes runs (a restored process
    /// runs as soon as CRIU has restored it).
    pub egress: crate::network::EgressPolicy,
}

/// A sandbox the node knows is (or should be) running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxHandle {
    /// Sandbox id.
    pub id: SandboxId,
    /// Its network slot.
    pub slot: Slot,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Which run of a network stack at that address this is (see [`SandboxHandle::run`]).
    run: u64,
}

/// The next [`SandboxHandle::run`].
static NEXT_RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl SandboxHandle {
    /// The handle of sandbox `id` started (created, resumed, restored or found running)
    /// now at `ip` in `slot`.
    pub fn new(id: SandboxId, slot: Slot, ip: Ipv4Addr) -> Self {
        let run = NEXT_RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self { id, slot, ip, run }
    }

    /// A number no other handle made by this process has. A sandbox's address outlives
    /// its network stack (a resume or a restore builds a new one at the same address, and
    /// a new sandbox may get an ended one's address): a TCP connection made to an earlier
    /// run is dead, and when the stack went without saying so, nothing tells a client
    /// that keeps connections alive. Clients that do key them by this as well.
    pub fn run(&self) -> u64 {
        self.run
    }

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
    pub lost: Vec<SandboxId>,
    /// Leftovers of unknown sandboxes that were removed (for the log).
    pub swept: Vec<String>,
}

/// What a running container holds on the host besides its files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holding {
    pub(crate) slot: Slot,
    pub(crate) range: IdRange,
}

/// The network slots in use, and the one a new sandbox took last: the next
/// is looked for after it ([`crate::network::Subnet::next_free`]).
#[derive(Debug)]
struct SlotBook {
    used: BTreeSet<Slot>,
    last: Slot,
}

impl Default for SlotBook {
    fn default() -> Self {
        // Slot 0 is never handed out: the first search starts at 1.
        Self {
            used: BTreeSet::new(),
            last: Slot(0),
        }
    }
}

/// One runtime instance on this host.
#[derive(Debug)]
pub struct Node {
    pub(crate) cfg: NodeConfig,
    tag: String,
    pub(crate) network: Network,
    pub(crate) cgroups: CgroupTree,
    pub(crate) runc: Runc,
    slots: Mutex<SlotBook>,
    ids: IdAllocator,
    pub(crate) cpus: CpuPlan,
    /// Running containers by sandbox id.
    pub(crate) running: Mutex<HashMap<String, Holding>>,
    /// Writable layers formatted ahead of time.
    spares: Arc<crate::spare_layers::SpareLayers>,
    /// What layers and volumes may still write, measured now and then.
    pub(crate) disk_promises: crate::disk_promises::DiskPromises,
    /// Deleted sandboxes' files and used dumps, removed in the background.
    pub(crate) trash: Arc<crate::trash::Trash>,
    /// Held while a volume's host mount is made or used for a new view, and
    /// while unused ones are released (see [`crate::volume`]).
    pub(crate) volume_mounts: Arc<Mutex<()>>,
    /// Every agent build sandboxes here were made with, by content.
    agent_builds: crate::agent_builds::AgentBuilds,
    /// The build new sandboxes get: the stored copy of `cfg.agent_binary`.
    agent: crate::agent_builds::AgentBuild,
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
    /// Prepares the node: directories (root-only), host kernel limits, lxcfs
    /// and the firewall table.
    pub async fn new(cfg: NodeConfig) -> Result<Self> {
        // Made with the modes `perms::secure_tree` checks, so that a start finds nothing to repair.
        for (dir, mode) in [
            (cfg.data_dir.clone(), 0o711),
            (cfg.data_dir.join("sandboxes"), 0o711),
            (cfg.data_dir.join("runc"), 0o700),
        ] {
            perms::make_dir(&dir, mode)?;
        }
        for file in [&cfg.agent_binary, &cfg.hook.path] {
            if !file.is_file() {
                return Err(RuntimeError::Config(format!(
                    "{} not found (build it with scripts/setup.sh build)",
                    file.display()
                )));
            }
        }
        if std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .is_ok_and(|v| v.trim() == "0")
        {
            return Err(RuntimeError::Config(
                "user namespaces are disabled (user.max_user_namespaces = 0)".into(),
            ));
        }
        let tag = instance_tag(&cfg.data_dir);
        let ids = IdAllocator::new(
            &cfg.idmap_dir,
            crate::idmap::DEFAULT_FIRST_ID,
            crate::idmap::DEFAULT_COUNT,
            &tag,
        );
        ids.validate()?;
        perms::check_ancestors_searchable(&cfg.data_dir)?;
        let (data_dir, images_dir, lxcfs_dir, favor_dynmods) = (
            cfg.data_dir.clone(),
            cfg.images_dir.clone(),
            cfg.lxcfs_dir.clone(),
            cfg.favor_dynamic_cgroup_moves,
        );
        tokio::task::spawn_blocking(move || -> Result<()> {
            let repaired = perms::secure_tree(&data_dir)?;
            if !repaired.is_empty() {
                tracing::warn!(entries = repaired.len(), dir = %data_dir.display(), paths = ?repaired, "made data files root-only");
            }
            if images_dir.is_dir() && perms::close_dir(&images_dir)? {
                tracing::warn!(dir = %images_dir.display(), "made the image directory root-only");
            }
            for change in host::raise_kernel_floors()? {
                tracing::info!(%change, "raised a host kernel limit");
            }
            if favor_dynmods {
                log_dynmods(crate::cgroup_dynmods::favor_dynamic_moves());
            }
            if let Some(dir) = lxcfs_dir
                && lxcfs::ensure_running(&dir)?
            {
                tracing::info!(dir = %dir.display(), "started lxcfs");
            }
            Ok(())
        })
        .await
        .map_err(|e| RuntimeError::Config(format!("start-up task failed: {e}")))??;
        let network = Network::new(&tag, cfg.subnet.clone());
        network.check_subnet_is_free()?;
        network.install_firewall().await?;
        // Mounted last of what can refuse a start, and unmounted again if what follows fails
        // while no container of an earlier run needs it.
        let agent_builds = crate::agent_builds::AgentBuilds::open(&cfg.data_dir)?;
        let unmount_unless_needed = |e: RuntimeError| {
            let containers = std::fs::read_dir(cfg.data_dir.join("runc"))
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false);
            if !containers {
                agent_builds.unmount_run();
            }
            e
        };
        let agent = agent_builds
            .install(&cfg.agent_binary)
            .map_err(unmount_unless_needed)?;
        tracing::info!(agent_build = %agent.digest, "agent build stored");
        let mut runc = Runc::new(cfg.runc_binary.clone(), cfg.data_dir.join("runc"));
        let hidden = [
            cfg.data_dir
                .canonicalize()
                .unwrap_or_else(|_| cfg.data_dir.clone()),
            PathBuf::from(crate::network::NETNS_DIR),
        ];
        let needed: Vec<PathBuf> = [
            Some(&cfg.data_dir),
            Some(&cfg.images_dir),
            // Sandboxes bind the agent from here, never from `cfg.agent_binary`.
            Some(&agent_builds.run_dir().to_path_buf()),
            Some(&cfg.hook.path),
            Some(&cfg.criu_binary),
            cfg.lxcfs_dir.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .collect();
        match crate::runc_ns::RuncNamespace::new(&hidden, &needed) {
            Ok(ns) => runc = runc.in_namespace(ns),
            // Correct without it, only slower with many sandboxes up.
            Err(e) => tracing::warn!(error = %e, "runc runs in the host's mount namespace"),
        }
        let spares = Arc::new(
            crate::spare_layers::SpareLayers::open(
                cfg.data_dir.join("spare-layers"),
                runc.namespace().cloned(),
            )
            .map_err(unmount_unless_needed)?,
        );
        let trash = Arc::new(
            crate::trash::Trash::open(cfg.data_dir.join("trash")).map_err(unmount_unless_needed)?,
        );
        Ok(Self {
            trash,
            spares,
            cgroups: CgroupTree::new(&tag),
            runc,
            network,
            tag,
            cfg,
            slots: Mutex::new(SlotBook::default()),
            ids,
            cpus: CpuPlan::of_host(),
            running: Mutex::new(HashMap::new()),
            disk_promises: Default::default(),
            volume_mounts: Arc::default(),
            agent_builds,
            agent,
        })
    }

    /// The node's store of agent builds.
    pub fn agent_builds(&self) -> &crate::agent_builds::AgentBuilds {
        &self.agent_builds
    }

    /// Removes the stored agent builds that no sandbox or snapshot under the
    /// data directory was made with (the current build stays). Only for a node
    /// whose dumps all live under its data directory: a dump kept only in a
    /// blob store names its build in its own files.
    pub fn forget_unused_agent_builds(&self) {
        let mut keep = std::collections::HashSet::from([self.agent.digest.clone()]);
        for parent in [
            self.cfg.data_dir.join("sandboxes"),
            self.cfg.data_dir.join("snapshots"),
        ] {
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            keep.extend(
                entries
                    .flatten()
                    .filter_map(|e| crate::agent_builds::read_marker(&e.path())),
            );
        }
        let removed = self.agent_builds.retain(&keep);
        if removed > 0 {
            tracing::info!(removed, kept = keep.len(), "unused agent builds removed");
        }
    }

    /// The agent build to bind for a restore from `images`: the one that made
    /// the dump, or the current one for a dump that names none.
    fn agent_for_dump(&self, images: &Path) -> Result<crate::agent_builds::AgentBuild> {
        let Some(digest) = crate::agent_builds::read_marker(images) else {
            return Ok(self.agent.clone());
        };
        self.agent_builds.get(&digest)?.ok_or_else(|| {
            RuntimeError::Config(format!(
                "the dump was made by agent build {digest}, which this node does not have \
                 (its processes run that build's code, so no other build can stand in)"
            ))
        })
    }

    /// Records in a dump's directory the agent build the sandbox `id` runs, so
    /// a restore binds the same one.
    pub(crate) fn mark_dump(&self, id: &str, images: &Path) -> Result<()> {
        match crate::agent_builds::read_marker(&self.sandbox_dir(id)) {
            Some(digest) => crate::agent_builds::write_marker(images, &digest),
            // Booted before builds were stored: its build is unknown.
            None => Ok(()),
        }
    }

    /// The instance tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The overlay upper directory of a sandbox's layer (host view, ids as
    /// the sandbox sees them): what it wrote over its image. Only meaningful
    /// while its disk is mounted (it runs).
    pub fn upper_dir(&self, id: &str) -> PathBuf {
        Layer::new(self.sandbox_dir(id)).disk_mount().join("upper")
    }

    pub(crate) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join("sandboxes").join(id)
    }

    pub(crate) fn reserve_slot(&self) -> Result<Slot> {
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        let slot = self
            .network
            .subnet()
            .next_free(&slots.used, slots.last)
            .ok_or_else(|| RuntimeError::SubnetExhausted(self.network.subnet().to_string()))?;
        slots.used.insert(slot);
        slots.last = slot;
        Ok(slot)
    }

    /// Reserves a given slot (a sandbox coming back keeps its address).
    pub(crate) fn reserve_exact_slot(&self, slot: Slot) -> Result<()> {
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        slots.used.insert(slot);
        Ok(())
    }

    pub(crate) fn release_slot(&self, slot: Slot) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.used.remove(&slot);
        }
    }

    /// Creates and starts a sandbox, waiting until its agent listens.
    /// On failure nothing of it is left behind.
    pub async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle> {
        self.admit(spec.disk_mb)?;
        let slot = self.reserve_slot()?;
        let result = async {
            Layer::new(self.sandbox_dir(&spec.id))
                .create_disk_from(&self.spares, spec.disk_mb)
                .await?;
            self.boot(spec, slot, None).await
        }
        .await;
        if result.is_err() {
            self.remove_parts(&spec.id, slot).await;
            self.release_slot(slot);
        }
        result
    }

    /// Starts the container of `spec` in `slot` from its disk image: a new
    /// uid range and CPUs, the mounts, the bundle, then `runc run` or, given a
    /// CRIU image directory, `runc restore`. On failure the caller cleans up
    /// (the range and CPUs are given back by [`Node::release_holding`]).
    pub(crate) async fn boot(
        &self,
        spec: &SandboxSpec,
        slot: Slot,
        restore: Option<(&Path, &Path)>,
    ) -> Result<SandboxHandle> {
        let started = Instant::now();
        let mut lap = Laps::new(started);
        let layer = Layer::new(self.sandbox_dir(&spec.id));
        let agent = match restore {
            Some((images, _)) => self.agent_for_dump(images)?,
            None => self.agent.clone(),
        };
        // CRIU's own memory in every restored task counts against the sandbox until the
        // restore is done: it is restored under a higher limit, lowered after
        // (crate::restore_memory).
        let restoring;
        let own = spec;
        let spec = match restore {
            Some((images, _)) => {
                let tasks = crate::restore_memory::task_count(images)?;
                restoring = SandboxSpec {
                    memory_mb: spec.memory_mb + crate::restore_memory::allowance_mb(tasks),
                    ..spec.clone()
                };
                &restoring
            }
            None => spec,
        };
        crate::agent_builds::write_marker(&layer.dir, &agent.digest)?;
        let range = self.take_range(&spec.id, slot)?;
        // runc walks to the root file system from inside the user namespace.
        perms::own_sandbox_dir(&layer.dir, Some(range.first))?;
        // A sandbox resized while suspended comes back with the bigger disk.
        layer.grow_offline(spec.disk_mb).await?;
        let ids_ms = lap.split();
        // The cgroups are made while the layer's mount waits for the kernel.
        let (mounted, net, user_cgroups) =
            tokio::join!(layer.mount_disk(), self.network.prepare(slot), async {
                self.cgroups.prepare_user(
                    &spec.id,
                    crate::user_cgroup::SandboxLimits {
                        pids: self.cfg.pids_limit,
                        memory_bytes: spec.memory_mb << 20,
                    },
                    range.first,
                )
            });
        mounted?;
        let user_cgroups = user_cgroups?;
        // Keyed by the veth's name, which the map takes before the veth exists.
        self.network.apply_egress(&net, &spec.egress).await?;
        let disk_ms = lap.split();
        let cpuset = self.cpus.assign(&spec.id, spec.cpus);
        let own_cpuset = cpuset.clone().unwrap_or_default();
        let cgroups_ms = lap.split();
        let volumes = self
            .prepare_volume_views(&spec.id, &spec.volumes, range)
            .await?;
        // A restored container's network is plumbed by its hook, before CRIU
        // restores any process; a new one has no hook (crate::net_plumbing).
        let (bundle_dir, mountpoints) = self.write_bundle(
            spec,
            (&layer, &agent.path),
            (&net, restore.is_some()),
            range,
            cpuset,
            (user_cgroups, volumes),
        )?;
        let bundle_ms = lap.split();
        layer.prepare_mountpoints(&spec.image.layers, &mountpoints)?;
        layer.mount_root(&spec.image.layers, range).await?;
        let root_ms = lap.split();
        // The lowering of a restored sandbox's limits, timed apart from runc's restore.
        let mut settle_ms = 0.0;
        match restore {
            None => self.runc.run_detached(&spec.id, &bundle_dir).await?,
            Some((images, work)) => {
                crate::criu_images::retarget_userns(images, range.first)?;
                perms::open_criu_images(images)?;
                self.runc
                    .restore(&spec.id, &self.cfg.criu_binary, &bundle_dir, images, work)
                    .await?;
                let limits = crate::resize::Resize {
                    cpus: own.cpus,
                    memory_mb: own.memory_mb,
                    disk_mb: own.disk_mb,
                };
                let restored = Instant::now();
                self.settle_restored_limits(&spec.id, limits, &own_cpuset)
                    .await?;
                settle_ms = (restored.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
            }
        }
        let runc_ms = ((lap.split() - settle_ms) * 100.0).round() / 100.0;
        // Read once: the plumbing and the namespace's name both need it.
        let pid = self.runc.init_pid(&spec.id).ok_or_else(|| {
            RuntimeError::Config(format!("runc keeps no state of container {}", spec.id))
        })?;
        if restore.is_none() {
            // Plumbed while the agent starts.
            crate::net_plumbing::plumb(
                net.clone(),
                self.network.subnet().pair_prefix_len(),
                pid,
                host::namespace_limits(),
            )
            .await?;
        }
        // The server's plumbing of a new container (0 on restore: the hook did it).
        let net_ms = lap.split();
        self.network.name(&net, pid)?;
        let handle = SandboxHandle::new(spec.id.clone(), slot, net.sandbox_ip);
        self.wait_for_agent(&handle).await?;
        let agent_ms = lap.split();
        tracing::debug!(
            sandbox_id = %spec.id,
            restored = restore.is_some(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            ids_ms,
            disk_ms,
            cgroups_ms,
            bundle_ms,
            root_ms,
            runc_ms,
            settle_ms,
            net_ms,
            agent_ms,
            "sandbox started"
        );
        Ok(handle)
    }

    /// Names the network namespace of sandbox `id`'s running container.
    pub(crate) fn name_netns(&self, id: &str, net: &crate::network::SandboxNet) -> Result<()> {
        let pid = self.runc.init_pid(id).ok_or_else(|| {
            RuntimeError::Config(format!("runc keeps no state of container {id}"))
        })?;
        self.network.name(net, pid)
    }

    /// Checks that the host has room for one more running container whose
    /// layer adds `new_disk_mb` of possible writes: its tasks must fit in
    /// `kernel.pid_max` next to every other sandbox at its pids limit, and
    /// what all layers may still write must stay within `disk_overcommit`
    /// times the free space (less a reserve for the store and dumps).
    pub fn admit(&self, new_disk_mb: u64) -> Result<()> {
        let running = self.running.lock().map(|r| r.len()).unwrap_or(0) as u64;
        let pid_max = host::pid_max();
        let per = u64::try_from(self.cfg.pids_limit).unwrap_or(0);
        if (running + 1).saturating_mul(per) > pid_max.saturating_sub(HOST_PID_RESERVE) {
            return Err(RuntimeError::Capacity(format!(
                "the host's pids are committed: {running} sandboxes x {per} tasks leave no room \
                 for another within kernel.pid_max {pid_max}"
            )));
        }
        self.admit_disk(new_disk_mb)
    }

    /// Checks that `new_disk_mb` more of possible writes (a layer or a volume)
    /// fit within `disk_overcommit` times the free space, less the reserve.
    pub fn admit_disk(&self, new_disk_mb: u64) -> Result<()> {
        if new_disk_mb == 0 {
            return Ok(());
        }
        let (free_mb, _) = host::disk_space_mb(&self.cfg.data_dir)?;
        // Deleted sandboxes' files being removed are free space in a moment.
        let free_mb = free_mb.saturating_add(self.trash.pending_bytes() / (1024 * 1024));
        let room =
            (free_mb.saturating_sub(DISK_RESERVE_MB) as f64 * self.cfg.disk_overcommit) as u64;
        let admitted = self
            .disk_promises
            .admit(new_disk_mb, room, Instant::now(), || {
                self.unwritten_layer_mb()
            });
        if let Err(promised) = admitted {
            return Err(RuntimeError::Capacity(format!(
                "not enough disk space for a {new_disk_mb} MB layer: sandboxes may still write \
                 {promised} MB in all, and {free_mb} MB are free under the data directory \
                 (overcommit {}); ask for a smaller disk_mb, free space, or raise \
                 --disk-overcommit",
                self.cfg.disk_overcommit
            )));
        }
        Ok(())
    }

    /// Checks that a snapshot of sandbox `id` fits on the disk: the blocks its layer holds
    /// (a copy takes every allocated block, a deleted file's too), and `memory_mb` more for a
    /// memory dump, must leave the reserve and what the layers may still write (as creates
    /// count it) free. A sandbox could otherwise fill the host's disk with snapshots of itself.
    pub fn admit_snapshot(&self, id: &SandboxId, memory_mb: Option<u64>) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let image = Layer::new(self.sandbox_dir(id)).disk_image();
        let layer_mb = std::fs::metadata(&image)
            .map_err(RuntimeError::io("reading", &image))?
            .blocks()
            .saturating_mul(512)
            .div_ceil(1024 * 1024);
        let need_mb = layer_mb.saturating_add(memory_mb.unwrap_or(0));
        let (free_mb, _) = host::disk_space_mb(&self.cfg.data_dir)?;
        let free_mb = free_mb.saturating_add(self.trash.pending_bytes() / (1024 * 1024));
        // What running layers may still write, as the creates' admission counts it.
        let promised = (self.unwritten_layer_mb() as f64 / self.cfg.disk_overcommit) as u64;
        let room = free_mb
            .saturating_sub(DISK_RESERVE_MB)
            .saturating_sub(promised);
        if need_mb > room {
            return Err(RuntimeError::Capacity(format!(
                "not enough disk space for the snapshot: it takes up to {need_mb} MB (the \
                 sandbox's disk holds {layer_mb} MB{}), and {room} MB are left under the data \
                 directory once the sandboxes' disks and a reserve are counted; delete \
                 snapshots or free space",
                memory_mb
                    .map(|m| format!(", its memory up to {m} MB"))
                    .unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// MiB the sandboxes' layers may still grow by (their size less what they
    /// already take), over every layer on disk.
    fn unwritten_layer_mb(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        // Volumes (crate::volume) are images of the same kind and count alike.
        ["sandboxes", "volumes"]
            .iter()
            .filter_map(|d| std::fs::read_dir(self.cfg.data_dir.join(d)).ok())
            .flat_map(|entries| entries.flatten())
            .filter_map(|e| std::fs::metadata(e.path().join("disk.img")).ok())
            .map(|m| m.len().saturating_sub(m.blocks() * 512) / (1024 * 1024))
            .sum()
    }

    /// Allocates a uid range for a container of `id` about to start in `slot`.
    fn take_range(&self, id: &str, slot: Slot) -> Result<IdRange> {
        self.release_holding(id);
        let range = self.ids.allocate(id)?;
        self.running
            .lock()
            .map_err(|_| poisoned())?
            .insert(id.to_string(), Holding { slot, range });
        Ok(range)
    }

    /// Gives back the uid range and CPUs of `id`'s container (stopped, dumped
    /// or never started).
    pub(crate) fn release_holding(&self, id: &str) {
        let held = self
            .running
            .lock()
            .map(|mut r| r.remove(id))
            .unwrap_or_default();
        if let Some(h) = held {
            self.ids.release(id, h.range);
        }
        self.cpus.release(id);
        let dir = self.sandbox_dir(id);
        if dir.is_dir() {
            let _ = perms::own_sandbox_dir(&dir, None);
        }
    }

    /// The slot of `id`'s running container.
    pub(crate) fn slot_of(&self, id: &str) -> Option<Slot> {
        self.running.lock().ok()?.get(id).map(|h| h.slot)
    }

    /// Re-registers the range and CPUs of a container found running (after a
    /// restart of the server), from its bundle.
    pub(crate) fn adopt_holding(&self, id: &str, slot: Slot) -> Result<()> {
        let config = self.sandbox_dir(id).join("bundle/config.json");
        let text =
            std::fs::read_to_string(&config).map_err(RuntimeError::io("reading", &config))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| RuntimeError::Spec(format!("reading {}: {e}", config.display())))?;
        let first = json["linux"]["uidMappings"][0]["hostID"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                RuntimeError::Spec(format!("{} has no uid mapping", config.display()))
            })?;
        let range = self.ids.claim(id, first)?;
        if let Some(cpus) = json["linux"]["resources"]["cpu"]["cpus"].as_str() {
            self.cpus.adopt(id, cpus);
        }
        self.running
            .lock()
            .map_err(|_| poisoned())?
            .insert(id.to_string(), Holding { slot, range });
        Ok(())
    }

    /// Writes `etc/`, `criu.conf` and `bundle/config.json` of a sandbox, with
    /// its user cgroups and volume views bound in; returns the bundle dir and
    /// the mount points its root file system needs.
    pub(crate) fn write_bundle(
        &self,
        spec: &SandboxSpec,
        (layer, agent_binary): (&Layer, &Path),
        (net, with_hook): (&SandboxNet, bool),
        range: IdRange,
        cpuset: Option<String>,
        (user_cgroups, volumes): (
            Vec<crate::user_cgroup::UserCgroupMount>,
            Vec<crate::volume::VolumeBind>,
        ),
    ) -> Result<(PathBuf, Vec<Mountpoint>)> {
        let dir = self.sandbox_dir(&spec.id);
        bundle::write_etc_files(&layer.etc_dir(), &spec.hostname, &self.cfg.host_resolv)?;
        let criu_config = dir.join("criu.conf");
        crate::perms::write_file(&criu_config, bundle::CRIU_CONFIG.as_bytes(), 0o600)?;
        let bundle_dir = dir.join("bundle");
        std::fs::create_dir_all(&bundle_dir).map_err(RuntimeError::io("creating", &bundle_dir))?;
        // config.json carries the sandbox's environment, secrets included: root only.
        std::fs::set_permissions(&bundle_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(RuntimeError::io("restricting", &bundle_dir))?;
        let hook = HookSpec {
            net: net.clone(),
            prefix_len: self.network.subnet().pair_prefix_len(),
            limits: host::namespace_limits(),
        };
        let hook_args = self.cfg.hook.argv(&hook);
        let cgroups_path = self.cgroups.path_for(&spec.id);
        let sys_view = crate::sys_view::prepare(
            &layer.disk_mount(),
            &layer.disk_view(),
            crate::sys_view::host_cgroup_layout(),
            &cgroups_path,
            crate::sys_view::host_masked_sys_dirs(),
        )?;
        let oci = bundle::build_spec(&BundleSpec {
            hostname: spec.hostname.clone(),
            rootfs: layer.rootfs(),
            agent_binary: agent_binary.to_path_buf(),
            etc_dir: layer.etc_source(),
            range,
            hook: with_hook.then(|| (self.cfg.hook.path.clone(), hook_args)),
            lxcfs_dir: self.cfg.lxcfs_dir.clone(),
            cpuset,
            cgroups_path,
            cpus: spec.cpus,
            memory_mb: spec.memory_mb,
            limit_swap: self.cgroups.setup().has_swap_limit(),
            pids_limit: self.cfg.pids_limit,
            env: spec.env.clone(),
            nofile: bundle::nofile_limit(),
            criu_config,
            user_cgroups,
            volumes,
            sys_view: Some(sys_view),
        })?;
        let config = bundle_dir.join("config.json");
        oci.save(&config)
            .map_err(|e| RuntimeError::Spec(format!("writing {}: {e}", config.display())))?;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
            .map_err(RuntimeError::io("restricting", &config))?;
        Ok((bundle_dir, bundle::mountpoints(&oci)))
    }

    /// Waits until the sandbox's agent accepts connections (at most the
    /// configured `agent_ready_timeout`).
    pub(crate) async fn wait_for_agent(&self, handle: &SandboxHandle) -> Result<()> {
        let started = Instant::now();
        let deadline = started + self.cfg.agent_ready_timeout;
        let mut delay = Duration::from_millis(1);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // Bounded: a connect to an address nothing answers for (no ARP entry, a
            // link that is not up) would otherwise wait for the kernel's SYN retries,
            // the first of them a second later. While polling fast, a connect that
            // has no answer in a few milliseconds (on a local veth it has one in
            // microseconds) is given up for a fresh one.
            let left = deadline.saturating_duration_since(Instant::now());
            let bound = if started.elapsed() > FAST_AGENT_POLL_FOR {
                Duration::from_secs(1)
            } else {
                FAST_CONNECT_BOUND
            };
            let attempt = tokio::time::timeout(
                left.min(bound),
                tokio::net::TcpStream::connect(handle.agent_addr()),
            );
            if matches!(attempt.await, Ok(Ok(_))) {
                tracing::debug!(
                    sandbox_id = %handle.id,
                    attempts,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "agent ready"
                );
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::AgentNotReady {
                    id: handle.id.to_string(),
                    secs: self.cfg.agent_ready_timeout.as_secs(),
                });
            }
            tokio::time::sleep(delay).await;
            // An agent usually listens within a few tens of milliseconds: polling every
            // millisecond (a refused local connect costs microseconds) finds it as soon as
            // it does, where a doubling delay overshot by up to half its last step. A slow
            // one is polled less often.
            if started.elapsed() > FAST_AGENT_POLL_FOR {
                delay = (delay * 2).min(Duration::from_millis(20));
            }
        }
    }

    /// Stops a sandbox and removes everything it had on this host.
    pub async fn destroy(&self, id: &SandboxId, slot: Slot) {
        self.remove_parts(id, slot).await;
        self.release_slot(slot);
    }

    pub(crate) async fn remove_parts(&self, id: &str, slot: Slot) {
        let mut lap = Laps::new(Instant::now());
        if let Err(e) = self.runc.destroy(id).await {
            tracing::warn!(sandbox_id = %id, error = %e, "deleting container");
        }
        let runc_ms = lap.split();
        self.cgroups.remove(id).await;
        let cgroups_ms = lap.split();
        self.network.destroy(&self.network.describe(slot)).await;
        let net_ms = lap.split();
        self.release_holding(id);
        let layer = Layer::new(self.sandbox_dir(id));
        if let Err(e) = layer.discard(Arc::clone(&self.trash)).await {
            tracing::warn!(sandbox_id = %id, error = %e, "removing sandbox files");
        }
        let layer_ms = lap.split();
        // Its layer no longer takes room.
        self.disk_promises.forget();
        self.release_unused_volumes();
        tracing::debug!(
            sandbox_id = %id,
            runc_ms,
            cgroups_ms,
            net_ms,
            layer_ms,
            volumes_ms = lap.split(),
            "sandbox parts removed"
        );
    }

    /// What the sandbox uses now against its limits (`None` when it has no
    /// cgroup, e.g. while suspended). Reads files: call it off the async workers.
    pub fn usage(&self, id: &SandboxId) -> Option<crate::usage::SandboxUsage> {
        let mut usage = self.cgroups.usage(id)?;
        if let Some((used, total)) = crate::usage::disk_use(&self.sandbox_dir(id).join("layer")) {
            usage.disk_used_bytes = used;
            usage.disk_limit_bytes = total;
        }
        Some(usage)
    }

    /// Removes what an ended sandbox left in its directory (files fetched for a
    /// suspended one moved from another node, or a removal that failed when it was
    /// destroyed); whether there was anything. Never touches a sandbox that still runs:
    /// the caller asks only for ended ones.
    pub async fn remove_leftovers(&self, id: &SandboxId) -> Result<bool> {
        let dir = self.sandbox_dir(id);
        if std::fs::symlink_metadata(&dir).is_err() {
            return Ok(false);
        }
        Layer::new(dir).discard(Arc::clone(&self.trash)).await?;
        self.disk_promises.forget();
        Ok(true)
    }

    /// Whether the sandbox's container is running right now.
    pub async fn is_running(&self, id: &SandboxId) -> bool {
        matches!(self.runc.state(id).await, Ok(Some(s)) if s.status == ContainerStatus::Running)
    }

    /// Adopts the sandboxes in `expected` that still run, removes the remains of
    /// the others, keeps the files and slots of the `suspended` ones, and sweeps
    /// every leftover of this instance that belongs to no known sandbox
    /// (containers, cgroups, netns, veths, mounts, files).
    pub async fn recover(
        &self,
        expected: &[(SandboxId, Slot)],
        suspended: &[(SandboxId, Slot)],
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
                .any(|c| c.id == id.as_str() && c.status == ContainerStatus::Running);
            // A crash between `runc run` and naming left it unnamed.
            if running
                && !self.network.exists(&net)
                && let Err(e) = self.name_netns(id, &net)
            {
                tracing::warn!(sandbox_id = %id, error = %e, "naming network namespace");
            }
            let intact = running
                && self.network.exists(&net)
                && Layer::new(self.sandbox_dir(id)).is_mounted();
            let intact = intact
                && self
                    .adopt_holding(id, *slot)
                    .inspect_err(|e| tracing::warn!(sandbox_id = %id, error = %e, "adopting"))
                    .is_ok();
            if intact {
                if let Ok(mut slots) = self.slots.lock() {
                    slots.used.insert(*slot);
                }
                report
                    .adopted
                    .push(SandboxHandle::new(id.clone(), *slot, net.sandbox_ip));
            } else {
                self.remove_parts(id, *slot).await;
                report.lost.push(id.clone());
            }
        }
        let mut keep = report.adopted.clone();
        for (id, slot) in suspended {
            if let Ok(mut slots) = self.slots.lock() {
                slots.used.insert(*slot);
            }
            // A suspended sandbox has no container and no mounts; its dump stays.
            let _ = Layer::new(self.sandbox_dir(id)).unmount();
            let _ = perms::own_sandbox_dir(&self.sandbox_dir(id), None);
            crate::archive::clean_partial(&self.sandbox_dir(id));
            keep.push(SandboxHandle::new(
                id.clone(),
                *slot,
                self.network.describe(*slot).sandbox_ip,
            ));
        }
        self.sweep(&keep, &containers, &mut report.swept).await;
        for key in self.release_unused_volumes() {
            report.swept.push(format!("mount of volume {key}"));
        }
        let adopted: Vec<&str> = report.adopted.iter().map(|h| h.id.as_str()).collect();
        for id in self.ids.release_all_but(&adopted) {
            report.swept.push(format!("uid range of {id}"));
        }
        report
    }

    /// runc's status of the sandbox's container, if it has one.
    pub async fn container_status(&self, id: &SandboxId) -> Option<ContainerStatus> {
        self.runc.state(id).await.ok().flatten().map(|s| s.status)
    }

    /// Thaws a paused container (after a crash during a snapshot).
    pub async fn thaw(&self, id: &SandboxId) -> Result<()> {
        self.runc.resume(id).await
    }

    /// Kills every process of a sandbox, frozen or not, without letting a frozen
    /// one run again first; [`Node::destroy`] removes the rest.
    pub async fn kill_all(&self, id: &SandboxId) -> Result<()> {
        self.runc.kill_all(id).await
    }

    /// Freezes a running sandbox's processes (`runc pause`) until [`Node::thaw`].
    pub async fn freeze(&self, id: &SandboxId) -> Result<()> {
        self.runc.pause(id).await
    }

    /// Stops a container and unmounts its layer but keeps its files, network
    /// and slot (a half-done restore of a suspended sandbox).
    pub async fn stop_keeping_files(&self, id: &SandboxId) {
        let _ = self.runc.destroy(id).await;
        self.cgroups.remove(id).await;
        self.release_holding(id);
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
            self.cgroups.remove(&id).await;
            swept.push(format!("cgroup {id}"));
        }
        let mut slots = self.network.list_slots();
        slots.extend(self.network.list_veth_slots());
        slots.extend(self.network.egress_slots());
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
                let path = entry.path();
                let removed =
                    crate::blocking::run(move || layer::remove_unmounted_tree(&path)).await;
                if let Err(e) = removed.and_then(|r| r) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "removing leftover");
                }
                swept.push(format!("files of {name}"));
            }
        }
    }

    /// Called on orderly shutdown: the host veths and files of removed sandboxes
    /// are gone before it returns, and the firewall table goes when no sandbox is
    /// left.
    pub async fn shutdown(&self, sandboxes_left: usize) {
        self.network.settle().await;
        self.trash.drained().await;
        if sandboxes_left == 0 {
            if let Err(e) = self.network.remove_firewall().await {
                tracing::warn!(error = %e, "removing firewall table");
            }
            self.cgroups.remove_parent_if_empty();
            self.agent_builds.unmount_run();
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

/// Milliseconds between successive points of a start, a removal, a plumbing or
/// a sandbox's end, for their debug log lines.
pub struct Laps(Instant);

impl Laps {
    /// Laps counted from `start`.
    pub fn new(start: Instant) -> Self {
        Self(start)
    }

    /// Time since the last call (or the start), in fractional milliseconds.
    pub fn split(&mut self) -> f64 {
        let now = Instant::now();
        let ms = now.duration_since(self.0).as_secs_f64() * 1000.0;
        self.0 = now;
        (ms * 100.0).round() / 100.0
    }
}

/// Logs what turning on `favordynmods` did; failing is not fatal (starts are only
/// slower without it).
fn log_dynmods(outcome: Result<crate::cgroup_dynmods::DynmodsOutcome>) {
    use crate::cgroup_dynmods::DynmodsOutcome as Outcome;
    match outcome {
        Ok(Outcome::TurnedOn(at)) => {
            tracing::info!(mount = %at.display(), "turned on the cgroup2 option favordynmods")
        }
        Ok(Outcome::AlreadyOn(at)) => {
            tracing::debug!(mount = %at.display(), "cgroup2 favordynmods already on")
        }
        Ok(Outcome::NoCgroup2) => tracing::info!("no cgroup2 mount: favordynmods left off"),
        Ok(Outcome::NotApplied(at)) => tracing::warn!(
            mount = %at.display(),
            "cgroup2 favordynmods did not take (not the host's cgroup namespace?)"
        ),
        Err(e) => tracing::warn!(error = %e, "could not turn on cgroup2 favordynmods"),
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
