//! The OCI `createRuntime` hook of a restored sandbox: wires its network
//! namespace to the host and sets the limits of its user namespace.
//!
//! A sandbox's network namespace belongs to its user namespace (so that
//! `/sys` can be mounted and the sandbox's root has its network capabilities
//! there), which means runc creates both and the host can only plumb the
//! network once they exist. On `runc restore`, runc runs this hook once CRIU
//! has created the (empty) namespaces and before any process is restored, so
//! a restored sandbox finds its address, loopback and route in place, exactly
//! as a new one does. A new sandbox has no hook: the server does the same
//! work once `runc run` has returned, while the agent starts
//! ([`crate::net_plumbing`]), which spares runc a hook process per start.
//!
//! The hook is the small `alcove-hook` binary, or where that is not installed
//! the `alcove` binary itself (`alcove __hook ARGS`): runc gives it the
//! container's state on stdin, of which it needs the pid.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, RuntimeError};
use crate::network::SandboxNet;
use crate::userns;

/// The first argument that marks an `alcove` invocation as this hook.
pub const HOOK_COMMAND: &str = "__hook";

/// The name of the dedicated hook binary, installed next to `alcove`.
pub const HOOK_BINARY: &str = "alcove-hook";

/// The program runc runs as the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookProgram {
    /// The executable.
    pub path: PathBuf,
    /// Whether it is `alcove` (which needs [`HOOK_COMMAND`] first) rather than
    /// `alcove-hook`.
    pub is_alcove: bool,
}

impl HookProgram {
    /// `alcove-hook` next to `alcove_exe` when it is installed there (it loads in
    /// about a millisecond, where `alcove` takes about four), else `alcove_exe`
    /// itself.
    pub fn beside(alcove_exe: &Path) -> Self {
        let dedicated = alcove_exe.with_file_name(HOOK_BINARY);
        if dedicated.is_file() {
            Self {
                path: dedicated,
                is_alcove: false,
            }
        } else {
            Self {
                path: alcove_exe.to_path_buf(),
                is_alcove: true,
            }
        }
    }

    /// The hook's whole argv (`args[0]` included) for `spec`.
    pub fn argv(&self, spec: &HookSpec) -> Vec<String> {
        let mut argv = if self.is_alcove {
            vec!["alcove".to_string(), HOOK_COMMAND.to_string()]
        } else {
            vec![HOOK_BINARY.to_string()]
        };
        argv.extend(spec.to_args());
        argv
    }
}

/// Everything the hook does for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    /// Network names and addresses.
    pub net: SandboxNet,
    /// Prefix length of the point-to-point block.
    pub prefix_len: u8,
    /// `/proc/sys/user/<name>` values for the sandbox's user namespace.
    pub limits: Vec<(String, u64)>,
}

impl HookSpec {
    /// The hook's arguments after [`HOOK_COMMAND`].
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--netns".into(),
            self.net.netns.clone(),
            "--veth".into(),
            self.net.host_veth.clone(),
            "--host-ip".into(),
            self.net.host_ip.to_string(),
            "--sandbox-ip".into(),
            self.net.sandbox_ip.to_string(),
            "--prefix".into(),
            self.prefix_len.to_string(),
            "--slot".into(),
            self.net.slot.0.to_string(),
        ];
        for (name, value) in &self.limits {
            args.push("--limit".into());
            args.push(format!("{name}={value}"));
        }
        args
    }

    /// Parses what [`HookSpec::to_args`] wrote.
    pub fn from_args(args: &[String]) -> Result<Self> {
        let bad = |what: &str| RuntimeError::Config(format!("hook arguments: {what}"));
        let mut netns = None;
        let mut veth = None;
        let mut host_ip = None;
        let mut sandbox_ip = None;
        let mut prefix = None;
        let mut slot = None;
        let mut limits = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| bad(&format!("{flag} needs a value")))?;
            match flag.as_str() {
                "--netns" => netns = Some(value.clone()),
                "--veth" => veth = Some(value.clone()),
                "--host-ip" => host_ip = Some(parse_ip(value)?),
                "--sandbox-ip" => sandbox_ip = Some(parse_ip(value)?),
                "--prefix" => prefix = Some(value.parse().map_err(|_| bad("bad --prefix"))?),
                "--slot" => slot = Some(value.parse().map_err(|_| bad("bad --slot"))?),
                "--limit" => {
                    let (name, n) = value.split_once('=').ok_or_else(|| bad("bad --limit"))?;
                    if name.contains('/') || name.contains("..") {
                        return Err(bad("bad --limit name"));
                    }
                    let n = n.parse().map_err(|_| bad("bad --limit value"))?;
                    limits.push((name.to_string(), n));
                }
                other => return Err(bad(&format!("unknown flag {other}"))),
            }
        }
        Ok(Self {
            net: SandboxNet {
                slot: crate::network::Slot(slot.ok_or_else(|| bad("missing --slot"))?),
                netns: netns.ok_or_else(|| bad("missing --netns"))?,
                host_veth: veth.ok_or_else(|| bad("missing --veth"))?,
                host_ip: host_ip.ok_or_else(|| bad("missing --host-ip"))?,
                sandbox_ip: sandbox_ip.ok_or_else(|| bad("missing --sandbox-ip"))?,
            },
            prefix_len: prefix.ok_or_else(|| bad("missing --prefix"))?,
            limits,
        })
    }
}

fn parse_ip(s: &str) -> Result<Ipv4Addr> {
    s.parse()
        .map_err(|_| RuntimeError::Config(format!("hook arguments: bad address {s:?}")))
}

/// The part of the OCI state the hook reads.
#[derive(Debug, Deserialize)]
struct State {
    pid: i32,
}

/// The whole hook process, `alcove-hook` and `alcove __hook` alike: `args` are
/// those after the program name (or after [`HOOK_COMMAND`]). On failure it
/// prints the error on stderr, which runc shows in its own, and exits 1.
pub fn process_main(args: &[String]) -> std::process::ExitCode {
    match run_with_stdin(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alcove hook: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses `args`, reads the OCI state runc writes on stdin and runs the hook.
fn run_with_stdin(args: &[String]) -> Result<()> {
    use std::io::Read;
    let spec = HookSpec::from_args(args)?;
    let mut state = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut state)
        .map_err(RuntimeError::io("reading", "stdin"))?;
    run(&spec, &state)
}

/// Runs the hook: `state` is the OCI state runc wrote on stdin. Blocking;
/// meant for the short-lived hook process.
pub fn run(spec: &HookSpec, state: &str) -> Result<()> {
    let state: State = serde_json::from_str(state)
        .map_err(|e| RuntimeError::Config(format!("hook: reading the container state: {e}")))?;
    if state.pid <= 0 {
        return Err(RuntimeError::Config(
            "hook: the container has no pid".into(),
        ));
    }
    crate::network::attach_blocking(&spec.net, spec.prefix_len, state.pid)?;
    if !spec.limits.is_empty() {
        userns::write_namespace_limits(state.pid, &spec.limits)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_and_bad_ones_are_refused() {
        let spec = HookSpec {
            net: SandboxNet {
                slot: crate::network::Slot(7),
                netns: "alcove-ab12-7".into(),
                host_veth: "avab127".into(),
                host_ip: "10.88.0.29".parse().expect("ip"),
                sandbox_ip: "10.88.0.30".parse().expect("ip"),
            },
            prefix_len: 30,
            limits: vec![("max_inotify_instances".into(), 1024)],
        };
        assert_eq!(HookSpec::from_args(&spec.to_args()).expect("parse"), spec);
        let mut args = spec.to_args();
        args.push("--limit".into());
        args.push("../../kernel/x=1".into());
        assert!(HookSpec::from_args(&args).is_err());
        assert!(HookSpec::from_args(&["--netns".into()]).is_err());
        assert!(run(&spec, "{}").is_err());
        let dedicated = HookProgram {
            path: "/usr/local/bin/alcove-hook".into(),
            is_alcove: false,
        };
        assert_eq!(dedicated.argv(&spec)[0], HOOK_BINARY);
        assert_eq!(
            HookSpec::from_args(&dedicated.argv(&spec)[1..]).expect("parse"),
            spec
        );
        let alcove = HookProgram {
            path: "/usr/local/bin/alcove".into(),
            is_alcove: true,
        };
        assert_eq!(alcove.argv(&spec)[..2], ["alcove", HOOK_COMMAND]);
        assert_eq!(
            HookSpec::from_args(&alcove.argv(&spec)[2..]).expect("parse"),
            spec
        );
        assert!(run(&spec, "{\"pid\": 0}").is_err());
    }
}
