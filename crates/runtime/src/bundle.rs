//! The OCI bundle of a sandbox: `config.json` built with `oci-spec`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    HookBuilder, HooksBuilder, LinuxBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, UserBuilder, get_default_mounts,
};

use crate::error::{Result, RuntimeError};
use crate::idmap::{IdRange, RANGE_SIZE};
use crate::layer::Mountpoint;
use crate::security;

/// Where the agent binary appears inside every sandbox.
pub const AGENT_PATH_IN_SANDBOX: &str = "/.alcove/alcove-agent";

/// Everything `config.json` is made from.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// Hostname inside the sandbox.
    pub hostname: String,
    /// The mounted overlay root.
    pub rootfs: PathBuf,
    /// The agent binary on the host (bind-mounted read-only).
    pub agent_binary: PathBuf,
    /// Files generated for the sandbox (`hosts`, `hostname`, `resolv.conf`), bind-mounted.
    pub etc_dir: PathBuf,
    /// The sandbox's host id range (its user namespace's mapping).
    pub range: IdRange,
    /// The `createRuntime` hook: program and arguments (`argv[0]` included).
    pub hook: Option<(PathBuf, Vec<String>)>,
    /// Where lxcfs is mounted, if sandboxes get its views of `/proc` files.
    pub lxcfs_dir: Option<PathBuf>,
    /// The CPUs the sandbox may run on (cpuset list, e.g. `0-1`).
    pub cpuset: Option<String>,
    /// runc `cgroupsPath`.
    pub cgroups_path: String,
    /// CPUs, turned into a CFS quota.
    pub cpus: f64,
    /// Memory limit in MiB (swap included).
    pub memory_mb: u64,
    /// Whether the host can limit memory+swap.
    pub limit_swap: bool,
    /// Max number of tasks.
    pub pids_limit: i64,
    /// Extra environment of the agent (and so of every process).
    pub env: Vec<(String, String)>,
    /// Open-file limit (soft = hard); see [`nofile_limit`].
    pub nofile: u64,
    /// CRIU configuration file runc hands to CRIU on checkpoint and restore.
    pub criu_config: PathBuf,
    /// The user cgroups bound read-write into the sandbox (`crate::user_cgroup`).
    pub user_cgroups: Vec<crate::user_cgroup::UserCgroupMount>,
    /// The sandbox's idmapped views of its volumes (`crate::volume`), bound at
    /// their mount paths. As bind mounts of `config.json`, runc names them to
    /// CRIU as external mounts on dump and restore.
    pub volumes: Vec<crate::volume::VolumeBind>,
    /// Bind sources for the masked directories of `/sys` and for `/sys/fs/cgroup`
    /// (`crate::sys_view`); `None` leaves both to runc (a tmpfs per masked
    /// directory, a cgroup mount per hierarchy).
    pub sys_view: Option<crate::sys_view::SysView>,
}

/// What CRIU is told for every dump and restore of a sandbox: no iptables network
/// lock (the host may have no iptables, and the sandbox is frozen anyway);
/// established TCP connections are not dumped but restored closed, so a dump never
/// fails on a connection the proxy or a user process holds open; and the network
/// namespace is restored empty (`empty-ns net`), because the sandbox's hook plumbs
/// it again, with whatever address the restored sandbox gets.
pub const CRIU_CONFIG: &str = "network-lock skip\ntcp-close\nskip-in-flight\nempty-ns net\n";

/// `/proc` files lxcfs serves per sandbox (memory, CPUs, uptime and load of
/// the sandbox's own cgroups), and the `/sys` file glibc counts online CPUs
/// from. (Not `/proc/diskstats`: on a cgroup v1 host lxcfs falls back to the
/// host's figures for it, so it is masked instead.)
pub const LXCFS_FILES: &[&str] = &[
    "proc/cpuinfo",
    "proc/loadavg",
    "proc/meminfo",
    "proc/stat",
    "proc/swaps",
    "proc/uptime",
    "sys/devices/system/cpu/online",
];

/// The open-file limit sandboxes get: Docker's 1048576, capped at what this
/// process may grant (raising a hard limit needs CAP_SYS_RESOURCE).
pub fn nofile_limit() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(1024);
    hard.min(1_048_576)
}

/// The CFS period of every sandbox, in microseconds (its quota is `cpus` of it).
pub(crate) const CFS_PERIOD_US: u64 = 100_000;

fn spec_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Spec(e.to_string())
}

/// A non-recursive read-only bind of a directory that holds nothing to run.
fn bind_dir_ro(source: &Path, destination: &str) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(
            ["bind", "ro", "nosuid", "nodev", "noexec"]
                .map(String::from)
                .to_vec(),
        )
        .build()
        .map_err(spec_err)
}

/// Puts `view`'s binds into `mounts` (after `/sys`), and returns the masked
/// paths left to runc (files, `/proc`, paths this host does not have).
fn apply_sys_view(
    view: &crate::sys_view::SysView,
    mounts: &mut Vec<Mount>,
    masked: Vec<String>,
) -> Result<Vec<String>> {
    if let Some((skeleton, hierarchies)) = &view.cgroup {
        let at = mounts
            .iter()
            .position(|m| m.destination() == Path::new(CGROUP_DIR))
            .unwrap_or(mounts.len());
        let mut binds = vec![bind_dir_ro(skeleton, CGROUP_DIR)?];
        for (name, source) in hierarchies {
            binds.push(bind_dir_ro(source, &format!("{CGROUP_DIR}/{name}"))?);
        }
        mounts.splice(at..(at + 1).min(mounts.len()), binds);
    }
    for (path, source) in &view.masked {
        mounts.push(bind_dir_ro(source, path)?);
    }
    Ok(masked
        .into_iter()
        .filter(|p| !view.masked.iter().any(|(bound, _)| bound == p))
        .collect())
}

/// Where cgroups are in a sandbox.
const CGROUP_DIR: &str = "/sys/fs/cgroup";

fn bind_ro(source: &Path, destination: &str) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec![
            "rbind".to_string(),
            "ro".to_string(),
            "nosuid".to_string(),
            "nodev".to_string(),
        ])
        .build()
        .map_err(spec_err)
}

/// The paths `spec` mounts something on, which must exist in the sandbox's
/// root filesystem beforehand (see [`crate::layer::Layer::prepare_mountpoints`]).
pub fn mountpoints(spec: &Spec) -> Vec<Mountpoint> {
    spec.mounts()
        .iter()
        .flatten()
        .map(|m| Mountpoint {
            path: m.destination().display().to_string(),
            // Sources under the layer's idmapped mount do not exist until it
            // is attached, and those are all files but the sys view's; nor do
            // the sandbox's own cgroup directories until runc makes them.
            is_file: m.typ().as_deref() == Some("bind")
                && m.source()
                    .as_ref()
                    .is_some_and(|s| !s.is_dir() && !crate::sys_view::is_dir_source(s)),
        })
        .collect()
}

/// Builds the runtime spec of a sandbox.
pub fn build_spec(b: &BundleSpec) -> Result<Spec> {
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "HOME=/root".to_string(),
        "TERM=xterm".to_string(),
        "LANG=C.UTF-8".to_string(),
        format!("HOSTNAME={}", b.hostname),
    ];
    env.extend(b.env.iter().map(|(k, v)| format!("{k}={v}")));

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(spec_err)?,
        )
        .args(vec![AGENT_PATH_IN_SANDBOX.to_string()])
        .env(env)
        .cwd("/")
        .capabilities(security::default_capabilities())
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .hard(b.nofile)
                .soft(b.nofile)
                .build()
                .map_err(spec_err)?,
        ])
        .no_new_privileges(false)
        .build()
        .map_err(spec_err)?;

    // oci-spec's defaults already hold /proc, /dev, /dev/pts, /dev/shm,
    // /dev/mqueue, /sys and a read-only /sys/fs/cgroup.
    let mut mounts = get_default_mounts();
    mounts.push(bind_ro(&b.agent_binary, AGENT_PATH_IN_SANDBOX)?);
    for file in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(bind_ro(&b.etc_dir.join(file), &format!("/etc/{file}"))?);
    }
    if let Some(lxcfs) = &b.lxcfs_dir {
        for file in LXCFS_FILES {
            let mut m = bind_ro(&lxcfs.join(file), &format!("/{file}"))?;
            m.set_options(Some(
                ["rbind", "ro", "nosuid", "nodev", "noexec"]
                    .map(String::from)
                    .to_vec(),
            ));
            mounts.push(m);
        }
    }

    for cgroup in &b.user_cgroups {
        mounts.push(
            MountBuilder::default()
                .destination(cgroup.destination)
                .typ("bind")
                .source(&cgroup.source)
                .options(
                    ["bind", "rw", "nosuid", "nodev", "noexec"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()
                .map_err(spec_err)?,
        );
    }

    for v in &b.volumes {
        let mode = if v.read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(&v.destination)
                .typ("bind")
                .source(&v.source)
                .options(
                    ["rbind", mode, "nosuid", "nodev"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()
                .map_err(spec_err)?,
        );
    }

    let masked = match &b.sys_view {
        Some(view) => apply_sys_view(view, &mut mounts, security::masked_paths())?,
        None => security::masked_paths(),
    };

    let quota = (b.cpus * CFS_PERIOD_US as f64).round() as i64;
    let memory_bytes = i64::try_from(b.memory_mb * 1024 * 1024)
        .map_err(|_| RuntimeError::Spec("memory limit too large".into()))?;
    let mut memory = LinuxMemoryBuilder::default().limit(memory_bytes);
    if b.limit_swap {
        memory = memory.swap(memory_bytes);
    }
    let mut cpu = LinuxCpuBuilder::default()
        .quota(quota)
        .period(CFS_PERIOD_US);
    if let Some(cpus) = &b.cpuset {
        cpu = cpu.cpus(cpus.clone());
    }
    let resources = LinuxResourcesBuilder::default()
        .memory(memory.build().map_err(spec_err)?)
        .cpu(cpu.build().map_err(spec_err)?)
        .pids(
            LinuxPidsBuilder::default()
                .limit(b.pids_limit)
                .build()
                .map_err(spec_err)?,
        )
        .build()
        .map_err(spec_err)?;

    let ns = |typ: LinuxNamespaceType| LinuxNamespaceBuilder::default().typ(typ).build();
    let namespaces = vec![
        ns(LinuxNamespaceType::Pid).map_err(spec_err)?,
        ns(LinuxNamespaceType::Ipc).map_err(spec_err)?,
        ns(LinuxNamespaceType::Uts).map_err(spec_err)?,
        ns(LinuxNamespaceType::Mount).map_err(spec_err)?,
        ns(LinuxNamespaceType::Cgroup).map_err(spec_err)?,
        // Created by runc inside the user namespace, so that it belongs to it:
        // then /sys mounts and the sandbox's root has its network powers there
        // only. The hook plumbs it (see crate::hook).
        ns(LinuxNamespaceType::Network).map_err(spec_err)?,
        ns(LinuxNamespaceType::User).map_err(spec_err)?,
    ];
    let mapping = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(b.range.first)
        .size(RANGE_SIZE)
        .build()
        .map_err(spec_err)?;

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .uid_mappings(vec![mapping])
        .gid_mappings(vec![mapping])
        .resources(resources)
        .cgroups_path(PathBuf::from(&b.cgroups_path))
        .masked_paths(masked)
        .readonly_paths(security::readonly_paths())
        .seccomp(security::default_seccomp())
        .build()
        .map_err(spec_err)?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(b.hostname.clone()));
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path(&b.rootfs)
            .readonly(false)
            .build()
            .map_err(spec_err)?,
    ));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    if let Some((path, args)) = &b.hook {
        let hook = HookBuilder::default()
            .path(path)
            .args(args.clone())
            .timeout(30)
            .build()
            .map_err(spec_err)?;
        spec.set_hooks(Some(
            HooksBuilder::default()
                .create_runtime(vec![hook])
                .build()
                .map_err(spec_err)?,
        ));
    }
    spec.set_annotations(Some(
        [(
            "org.criu.config".to_string(),
            b.criu_config.display().to_string(),
        )]
        .into_iter()
        .collect(),
    ));
    Ok(spec)
}

/// Writes `hosts`, `hostname` and `resolv.conf` for the sandbox into `etc_dir`.
pub fn write_etc_files(etc_dir: &Path, hostname: &str, host_resolv: &Path) -> Result<()> {
    std::fs::create_dir_all(etc_dir).map_err(RuntimeError::io("creating", etc_dir))?;
    let write = |name: &str, text: String| {
        let path = etc_dir.join(name);
        std::fs::write(&path, text).map_err(RuntimeError::io("writing", path))
    };
    write("hostname", format!("{hostname}\n"))?;
    write(
        "hosts",
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        ),
    )?;
    write("resolv.conf", resolv_conf(host_resolv))?;
    Ok(())
}

/// The host's resolvers, minus loopback ones the sandbox cannot reach.
fn resolv_conf(host_resolv: &Path) -> String {
    let text = std::fs::read_to_string(host_resolv).unwrap_or_default();
    let mut out: String = text
        .lines()
        .filter(|l| {
            let l = l.trim();
            match l.strip_prefix("nameserver") {
                Some(addr) => {
                    let addr = addr.trim();
                    !(addr.starts_with("127.") || addr == "::1")
                }
                None => !l.is_empty() && !l.starts_with('#'),
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if !out.contains("nameserver") {
        // Without a usable host resolver, fall back to public ones.
        out.push_str("nameserver 1.1.1.1\nnameserver 8.8.8.8\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BundleSpec {
        BundleSpec {
            hostname: "box".into(),
            rootfs: "/data/sandboxes/x/rootfs".into(),
            agent_binary: "/opt/alcove-agent".into(),
            etc_dir: "/data/sandboxes/x/upper/etc".into(),
            range: IdRange {
                index: 3,
                first: 0x2003_0000,
            },
            hook: Some((
                "/usr/local/bin/alcove".into(),
                vec!["alcove".into(), "__hook".into()],
            )),
            lxcfs_dir: Some("/var/lib/lxcfs".into()),
            cpuset: Some("1".into()),
            cgroups_path: "/alcove-ab/x".into(),
            cpus: 1.5,
            memory_mb: 2048,
            limit_swap: true,
            pids_limit: 1024,
            env: vec![("A".into(), "1".into())],
            nofile: 4096,
            criu_config: "/data/sandboxes/x/criu.conf".into(),
            user_cgroups: Vec::new(),
            volumes: Vec::new(),
            sys_view: None,
        }
    }

    #[test]
    fn a_sys_view_binds_cgroups_and_masked_sys_directories() {
        let mut b = sample();
        b.sys_view = Some(crate::sys_view::SysView {
            masked: vec![(
                "/sys/firmware".to_string(),
                "/data/x/upper/sys-view/masked/sys_firmware".into(),
            )],
            cgroup: Some((
                "/data/x/upper/sys-view/cgroup".into(),
                vec![(
                    "memory".to_string(),
                    "/sys/fs/cgroup/memory/alcove-ab/x".into(),
                )],
            )),
        });
        let json = serde_json::to_value(build_spec(&b).expect("spec")).expect("json");
        let mounts = json["mounts"].as_array().expect("mounts");
        let at = |dest: &str| mounts.iter().position(|m| m["destination"] == dest);
        let (sys, cg, mem) = (
            at("/sys").expect("/sys"),
            at("/sys/fs/cgroup").expect("cgroup"),
            at("/sys/fs/cgroup/memory").expect("memory"),
        );
        assert!(
            sys < cg && cg < mem,
            "/sys, then its cgroup directory, then a hierarchy"
        );
        assert_eq!(
            mounts[cg]["type"], "bind",
            "no cgroup mount: {}",
            mounts[cg]
        );
        assert_eq!(mounts[cg]["source"], "/data/x/upper/sys-view/cgroup");
        assert_eq!(mounts[mem]["source"], "/sys/fs/cgroup/memory/alcove-ab/x");
        assert!(!mounts.iter().any(|m| m["type"] == "cgroup"));
        for m in [&mounts[cg], &mounts[mem]] {
            let options = m["options"].as_array().expect("options");
            for flag in ["ro", "nosuid", "nodev", "noexec"] {
                assert!(options.iter().any(|o| o == flag), "{m} lacks {flag}");
            }
            assert!(!options.iter().any(|o| o == "rbind"), "{m}");
        }
        // A masked directory the view binds over is not left to runc; the
        // others (/proc ones) stay masked by runc.
        let masked = json["linux"]["maskedPaths"].as_array().expect("masked");
        assert!(masked.iter().any(|p| p == "/proc/kcore"));
        assert!(masked.iter().any(|p| p == "/sys/class/block"));
        assert!(!masked.iter().any(|p| p == "/sys/firmware"));
        let m = &mounts[at("/sys/firmware").expect("bind over /sys/firmware")];
        assert_eq!(m["source"], "/data/x/upper/sys-view/masked/sys_firmware");
    }

    #[test]
    fn spec_carries_limits_namespaces_and_the_agent() {
        let spec = build_spec(&sample()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(json["process"]["args"][0], AGENT_PATH_IN_SANDBOX);
        let res = &json["linux"]["resources"];
        assert_eq!(res["memory"]["limit"], 2048 * 1024 * 1024_i64);
        assert_eq!(res["memory"]["swap"], 2048 * 1024 * 1024_i64);
        assert_eq!(res["cpu"]["quota"], 150_000);
        assert_eq!(res["pids"]["limit"], 1024);
        let namespaces = json["linux"]["namespaces"].as_array().expect("ns");
        for t in ["pid", "ipc", "uts", "mount", "network", "user", "cgroup"] {
            assert!(
                namespaces
                    .iter()
                    .any(|n| n["type"] == t && n.get("path").is_none()),
                "missing a new {t} namespace"
            );
        }
        for map in ["uidMappings", "gidMappings"] {
            assert_eq!(json["linux"][map][0]["hostID"], 0x2003_0000);
            assert_eq!(json["linux"][map][0]["containerID"], 0);
            assert_eq!(json["linux"][map][0]["size"], 65536);
        }
        assert_eq!(res["cpu"]["cpus"], "1");
        assert_eq!(json["hooks"]["createRuntime"][0]["args"][1], "__hook");
        let mounts = json["mounts"].as_array().expect("mounts");
        assert!(mounts.iter().any(|m| {
            m["destination"] == AGENT_PATH_IN_SANDBOX
                && m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "ro"))
        }));
        assert!(
            json["process"]["env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v == "A=1"))
        );
        let cgroup_mounts = mounts
            .iter()
            .filter(|m| m["destination"] == "/sys/fs/cgroup")
            .count();
        assert_eq!(cgroup_mounts, 1, "one /sys/fs/cgroup mount");
        for m in mounts.iter().filter(|m| m["type"] == "bind") {
            let options = m["options"].as_array().expect("options");
            for flag in ["nosuid", "nodev", "ro"] {
                assert!(options.iter().any(|o| o == flag), "{m} lacks {flag}");
            }
        }
        assert!(
            mounts.iter().any(|m| m["destination"] == "/proc/meminfo"
                && m["source"] == "/var/lib/lxcfs/proc/meminfo")
        );
        let points = mountpoints(&spec);
        assert!(points.iter().any(|p| p.path == "/proc/meminfo"));
        assert!(points.iter().any(|p| p.path == "/proc" && !p.is_file));
    }

    #[test]
    fn resolv_conf_drops_loopback_resolvers() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# c\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nsearch x\n",
        )
        .expect("write");
        assert_eq!(resolv_conf(&path), "nameserver 10.1.2.3\nsearch x\n");
        std::fs::write(&path, "nameserver 127.0.0.53\n").expect("write");
        assert!(resolv_conf(&path).contains("nameserver 1.1.1.1"));
    }
}
