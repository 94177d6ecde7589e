//! The OCI bundle of a sandbox: `config.json` built with `oci-spec`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, UserBuilder, get_default_mounts,
};

use crate::error::{Result, RuntimeError};
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
    /// The network namespace to join.
    pub netns_path: PathBuf,
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
}

/// What CRIU is told for every dump and restore of a sandbox: no iptables network
/// lock (the host may have no iptables, and the sandbox is frozen anyway), and
/// established TCP connections are not dumped but restored closed, so a dump never
/// fails on a connection the proxy or a user process holds open.
pub const CRIU_CONFIG: &str = "network-lock skip\ntcp-close\nskip-in-flight\n";

/// The open-file limit sandboxes get: Docker's 1048576, capped at what this
/// process may grant (raising a hard limit needs CAP_SYS_RESOURCE).
pub fn nofile_limit() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(1024);
    hard.min(1_048_576)
}

const CFS_PERIOD_US: u64 = 100_000;

fn spec_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Spec(e.to_string())
}

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

    let mut mounts = get_default_mounts();
    mounts.push(
        MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(vec![
                "nosuid".to_string(),
                "noexec".to_string(),
                "nodev".to_string(),
                "relatime".to_string(),
                "ro".to_string(),
            ])
            .build()
            .map_err(spec_err)?,
    );
    mounts.push(bind_ro(&b.agent_binary, AGENT_PATH_IN_SANDBOX)?);
    for file in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(bind_ro(&b.etc_dir.join(file), &format!("/etc/{file}"))?);
    }

    let quota = (b.cpus * CFS_PERIOD_US as f64).round() as i64;
    let memory_bytes = i64::try_from(b.memory_mb * 1024 * 1024)
        .map_err(|_| RuntimeError::Spec("memory limit too large".into()))?;
    let mut memory = LinuxMemoryBuilder::default().limit(memory_bytes);
    if b.limit_swap {
        memory = memory.swap(memory_bytes);
    }
    let resources = LinuxResourcesBuilder::default()
        .memory(memory.build().map_err(spec_err)?)
        .cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CFS_PERIOD_US)
                .build()
                .map_err(spec_err)?,
        )
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
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(&b.netns_path)
            .build()
            .map_err(spec_err)?,
    ];

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(&b.cgroups_path))
        .masked_paths(security::masked_paths())
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
            etc_dir: "/data/sandboxes/x/etc".into(),
            netns_path: "/var/run/netns/alcove-ab-1".into(),
            cgroups_path: "/alcove-ab/x".into(),
            cpus: 1.5,
            memory_mb: 2048,
            limit_swap: true,
            pids_limit: 1024,
            env: vec![("A".into(), "1".into())],
            nofile: 4096,
            criu_config: "/data/sandboxes/x/criu.conf".into(),
        }
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
        let net = namespaces
            .iter()
            .find(|n| n["type"] == "network")
            .expect("network ns");
        assert_eq!(net["path"], "/var/run/netns/alcove-ab-1");
        for t in ["pid", "ipc", "uts", "mount"] {
            assert!(namespaces.iter().any(|n| n["type"] == t), "missing {t}");
        }
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
