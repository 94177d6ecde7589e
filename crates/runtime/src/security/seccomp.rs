//! The seccomp filter of a sandbox, assembled from the tables in
//! [`syscalls`](super::syscalls) and the argument rules below.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::capabilities::default_capabilities;
use super::syscalls::{ALLOWED, CAPABILITY_GATED};

/// `errno` returned for a denied syscall (`EPERM`), as Docker does.
const EPERM: u32 = 1;

/// `errno` returned for `clone3` (`ENOSYS`): glibc and Rust's std then fall
/// back to `clone`, whose flags the filter can read (`clone3` takes them
/// behind a pointer).
const ENOSYS: u32 = 38;

/// The namespace flags of `clone`: `CLONE_NEWNS | CLONE_NEWCGROUP |
/// CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
/// Without `CAP_SYS_ADMIN`, `clone` is allowed only with none of them.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Syscalls that fail with `ENOSYS`, as if the kernel lacked them: `mq_open`.
/// The kernel charges POSIX message-queue bytes (`RLIMIT_MSGQUEUE`) to the
/// user that owns the sandbox's user namespace, and runc and CRIU create that
/// namespace as host root, so every sandbox would draw from one pool shared
/// with host root (one sandbox could make `mq_open` fail for all). System V
/// message queues (`msgget`) are per IPC namespace and stay available.
const UNCHARGEABLE: &[&str] = &["mq_open"];

/// Socket families no sandbox may open: `AF_ALG` (38), the kernel crypto API
/// (CVE-2026-31431, "Copy Fail"), and `AF_VSOCK` (40), which reaches the
/// hypervisor when the host is a VM.
const DENIED_SOCKET_FAMILIES: &[u32] = &[38, 40];

/// `personality(2)` arguments allowed: `PER_LINUX` (0), `PER_LINUX32` (8),
/// `UNAME26` (0x20000), `PER_LINUX32 | UNAME26`, and `0xffffffff`, which only
/// queries. Others (e.g. `ADDR_NO_RANDOMIZE`, `READ_IMPLIES_EXEC`) weaken
/// exploit mitigations.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xFFFF_FFFF];

/// The seccomp filter of a sandbox: Docker's default profile for x86_64,
/// resolved for [`default_capabilities`]. Anything not listed fails with
/// `EPERM`; `clone` may not create namespaces; `clone3` fails with `ENOSYS`;
/// `socket` may not open `AF_ALG` or `AF_VSOCK`; `personality` may only take
/// harmless values. See the [`security`](super) module doc for where it
/// differs from Docker.
pub fn default_seccomp() -> LinuxSeccomp {
    let caps = default_capabilities();
    profile_for(caps.bounding().as_ref().unwrap_or(&Capabilities::new()))
}

fn profile_for(caps: &Capabilities) -> LinuxSeccomp {
    let sys_admin = caps.contains(&Capability::SysAdmin);

    // Unconditional names plus those of the granted capabilities; a name
    // gated by two capabilities (bpf, syslog, ...) is listed once.
    let mut seen = BTreeSet::new();
    let mut names: Vec<String> = ALLOWED
        .iter()
        .chain(
            CAPABILITY_GATED
                .iter()
                .filter(|(cap, _)| caps.contains(cap))
                .flat_map(|(_, names)| names.iter()),
        )
        .filter(|name| seen.insert(**name))
        .map(|name| (*name).to_owned())
        .collect();
    if sys_admin {
        names.push("clone".to_owned());
        names.push("clone3".to_owned());
    }

    let mut syscalls = vec![syscall(&names, LinuxSeccompAction::ScmpActAllow)];
    if !sys_admin {
        syscalls.push(with_arg(
            "clone",
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            CLONE_NAMESPACE_FLAGS,
            Some(0),
        ));
        let mut clone3 = syscall(&["clone3".to_owned()], LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(ENOSYS));
        syscalls.push(clone3);
    }
    let mut unchargeable = syscall(
        &UNCHARGEABLE
            .iter()
            .map(|n| (*n).to_owned())
            .collect::<Vec<_>>(),
        LinuxSeccompAction::ScmpActErrno,
    );
    unchargeable.set_errno_ret(Some(ENOSYS));
    syscalls.push(unchargeable);
    syscalls.extend(PERSONALITIES.iter().map(|&persona| {
        with_arg(
            "personality",
            LinuxSeccompOperator::ScmpCmpEq,
            persona,
            None,
        )
    }));
    syscalls.extend(
        low32_complement(DENIED_SOCKET_FAMILIES)
            .into_iter()
            .map(|(mask, value)| {
                with_arg(
                    "socket",
                    LinuxSeccompOperator::ScmpCmpMaskedEq,
                    mask,
                    Some(value),
                )
            }),
    );

    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        // x86_64 only: a system call of another ABI (i386 through `int 0x80`,
        // x32) is a "bad architecture" and never runs. libseccomp filters an
        // i386 `socket` as `socketcall(SYS_SOCKET, args)`, whose family sits
        // behind a pointer: the family rules would compare the pointer, and
        // AF_ALG sockets would get through. One ABI is also one filter for
        // runc to build at each start instead of three (~20 ms here).
        .set_architectures(Some(vec![Arch::ScmpArchX86_64]))
        .set_syscalls(Some(syscalls));
    seccomp
}

/// A rule applying `action` to `names`, whatever their arguments.
fn syscall(names: &[String], action: LinuxSeccompAction) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.to_vec()).set_action(action);
    rule
}

/// A rule allowing `name` when its first argument satisfies `op` against
/// `value` (and `value_two`, the expected result for a masked comparison).
/// One condition per rule: runtimes disagree on what several conditions on
/// one argument mean (runc splits them into separate, ORed rules), so the
/// rules never rely on it.
fn with_arg(
    name: &str,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSyscall {
    let mut arg = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .op(op)
        .value(value);
    if let Some(value_two) = value_two {
        arg = arg.value_two(value_two);
    }
    // The builder fails only on a missing field, and every field has a default.
    let arg = arg
        .build()
        .expect("LinuxSeccompArg fields all have defaults");
    let mut rule = syscall(&[name.to_owned()], LinuxSeccompAction::ScmpActAllow);
    rule.set_args(Some(vec![arg]));
    rule
}

/// `(mask, value)` pairs such that `arg & mask == value` for one of them
/// exactly when the low 32 bits of `arg` are not in `denied`.
///
/// An `int` argument reaches the kernel as the low 32 bits of a 64-bit
/// register, but seccomp compares the whole register, so `!=`, `<` and `>`
/// against it can be fooled by setting high bits. Masked comparisons on
/// the low 32 bits cannot. The pairs are the largest bit-prefixes (from bit
/// 31 down) that no denied value starts with: at most 32 per denied value.
fn low32_complement(denied: &[u32]) -> Vec<(u64, u64)> {
    fn walk(prefix: u32, len: u32, denied: &[u32], out: &mut Vec<(u64, u64)>) {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        if !denied.iter().any(|d| d & mask == prefix) {
            out.push((u64::from(mask), u64::from(prefix)));
        } else if len < 32 {
            let bit = 1u32 << (31 - len);
            walk(prefix, len + 1, denied, out);
            walk(prefix | bit, len + 1, denied, out);
        }
    }
    let mut out = Vec::new();
    walk(0, 0, denied, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::capabilities::CAPABILITIES;
    use std::collections::HashSet;

    /// Whether `rule`'s conditions all hold for a syscall whose first
    /// arguments are `args` (as the kernel's seccomp data, 64-bit).
    fn conditions_hold(rule: &LinuxSyscall, args: &[u64]) -> bool {
        rule.args().iter().flatten().all(|arg| {
            let x = args[arg.index()];
            let v = arg.value();
            match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => x != v,
                LinuxSeccompOperator::ScmpCmpLt => x < v,
                LinuxSeccompOperator::ScmpCmpLe => x <= v,
                LinuxSeccompOperator::ScmpCmpEq => x == v,
                LinuxSeccompOperator::ScmpCmpGe => x >= v,
                LinuxSeccompOperator::ScmpCmpGt => x > v,
                LinuxSeccompOperator::ScmpCmpMaskedEq => x & v == arg.value_two().unwrap_or(0),
            }
        })
    }

    /// What `profile` does with syscall `name` given `args`: the action and
    /// errno of the first matching rule, else the default. (The profile never
    /// has two rules with different actions for one name; a test checks.)
    fn decide(profile: &LinuxSeccomp, name: &str, args: &[u64]) -> (LinuxSeccompAction, u32) {
        profile
            .syscalls()
            .iter()
            .flatten()
            .find(|rule| rule.names().iter().any(|n| n == name) && conditions_hold(rule, args))
            .map(|rule| (rule.action(), rule.errno_ret().unwrap_or(EPERM)))
            .unwrap_or((
                profile.default_action(),
                profile.default_errno_ret().unwrap_or(EPERM),
            ))
    }

    fn allowed(profile: &LinuxSeccomp, name: &str, args: &[u64]) -> bool {
        decide(profile, name, args).0 == LinuxSeccompAction::ScmpActAllow
    }

    /// Names allowed whatever their arguments.
    fn unconditional(profile: &LinuxSeccomp) -> Vec<String> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
            .flat_map(|r| r.names().iter().cloned())
            .collect()
    }

    /// Names appearing in any rule.
    fn mentioned(profile: &LinuxSeccomp) -> HashSet<String> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names().iter().cloned())
            .collect()
    }

    #[test]
    fn serializes_with_errno_default() {
        let json = serde_json::to_value(default_seccomp()).expect("serialize");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64"])
        );
        let rules = json["syscalls"].as_array().expect("syscalls array");
        assert!(rules.iter().any(|r| r["action"] == "SCMP_ACT_ALLOW"));
        // And it reads back to the same profile.
        let back: LinuxSeccomp = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, default_seccomp());
    }

    #[test]
    fn agent_and_user_programs_syscalls_allowed() {
        let p = default_seccomp();
        for name in [
            "read",
            "write",
            "openat",
            "close",
            "mmap",
            "epoll_wait",
            "epoll_pwait",
            "epoll_ctl",
            "eventfd2",
            "signalfd4",
            "pipe2",
            "execve",
            "wait4",
            "waitid",
            "setsid",
            "setpgid",
            "prctl",
            "ioctl",
            "futex",
            "rseq",
            "getrandom",
            "statx",
            "connect",
            "sendmsg",
            "ptrace",
            "chroot",
            "arch_prctl",
            "pidfd_open",
        ] {
            assert!(allowed(&p, name, &[0; 6]), "{name} should be allowed");
        }
    }

    #[test]
    fn dangerous_syscalls_denied() {
        let p = default_seccomp();
        let names = mentioned(&p);
        for name in [
            "mount",
            "umount",
            "umount2",
            "fsopen",
            "fsmount",
            "move_mount",
            "open_tree",
            "pivot_root",
            "unshare",
            "setns",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "bpf",
            "perf_event_open",
            "reboot",
            "swapon",
            "swapoff",
            "open_by_handle_at",
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "socketcall",
            "acct",
            "settimeofday",
            "clock_settime",
            "sethostname",
            "syslog",
            "kcmp",
            "pidfd_getfd",
            "iopl",
            "ioperm",
            "mbind",
            "vhangup",
            "lookup_dcookie",
            "quotactl",
            "fanotify_init",
        ] {
            assert!(!names.contains(name), "{name} should not be mentioned");
            assert_eq!(
                decide(&p, name, &[0; 6]),
                (LinuxSeccompAction::ScmpActErrno, EPERM),
                "{name} should fail with EPERM"
            );
        }
    }

    #[test]
    fn clone_may_not_create_namespaces() {
        let p = default_seccomp();
        let rules: Vec<_> = p
            .syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == "clone"))
            .collect();
        assert_eq!(rules.len(), 1, "clone has exactly its masked rule");
        let args = rules[0].args().as_ref().expect("clone rule has args");
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(args[0].value(), 0x7E02_0000);
        assert_eq!(args[0].value_two(), Some(0));

        // What glibc's fork and pthread_create pass.
        let fork = 0x0120_0011; // CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
        let thread = 0x003D_0F00;
        assert!(allowed(&p, "clone", &[fork, 0, 0, 0, 0, 0]));
        assert!(allowed(&p, "clone", &[thread, 0, 0, 0, 0, 0]));
        for ns in [
            0x0002_0000u64, // CLONE_NEWNS
            0x0200_0000,    // CLONE_NEWCGROUP
            0x0400_0000,    // CLONE_NEWUTS
            0x0800_0000,    // CLONE_NEWIPC
            0x1000_0000,    // CLONE_NEWUSER
            0x2000_0000,    // CLONE_NEWPID
            0x4000_0000,    // CLONE_NEWNET
        ] {
            assert!(!allowed(&p, "clone", &[fork | ns, 0, 0, 0, 0, 0]));
        }
        assert_eq!(
            decide(&p, "clone3", &[0; 6]),
            (LinuxSeccompAction::ScmpActErrno, ENOSYS)
        );
    }

    #[test]
    fn posix_message_queues_look_absent() {
        let p = default_seccomp();
        assert_eq!(
            decide(&p, "mq_open", &[0; 6]),
            (LinuxSeccompAction::ScmpActErrno, ENOSYS)
        );
        assert!(allowed(&p, "msgget", &[0; 6]), "System V queues stay");
    }

    #[test]
    fn personality_only_harmless_values() {
        let p = default_seccomp();
        for ok in [0x0, 0x8, 0x2_0000, 0x2_0008, 0xFFFF_FFFF] {
            assert!(allowed(&p, "personality", &[ok, 0, 0, 0, 0, 0]));
        }
        for bad in [0x4_0000u64, 0x40_0000, 0x0100_0000, 0x1_0000_0000] {
            assert!(!allowed(&p, "personality", &[bad, 0, 0, 0, 0, 0]));
        }
    }

    #[test]
    fn socket_families_filtered_on_low_32_bits() {
        let p = default_seccomp();
        for family in [1u64, 2, 10, 16, 17, 37, 39, 41, 45, 0xFFFF_FFFF] {
            assert!(allowed(&p, "socket", &[family, 1, 0, 0, 0, 0]), "{family}");
        }
        for family in [38u64, 40] {
            assert!(!allowed(&p, "socket", &[family, 1, 0, 0, 0, 0]));
            // High bits the kernel drops do not smuggle it through.
            for high in [1u64 << 32, 0xFFFF_FFFF_0000_0000, 1 << 63] {
                assert!(!allowed(&p, "socket", &[high | family, 1, 0, 0, 0, 0]));
            }
        }
    }

    #[test]
    fn low32_complement_is_exact() {
        for denied in [&[38u32, 40][..], &[0], &[u32::MAX], &[5, 6, 7, 1 << 31]] {
            let pairs = low32_complement(denied);
            assert!(pairs.len() <= 32 * denied.len());
            let matches = |x: u64| pairs.iter().any(|&(m, v)| x & m == v);
            let samples = (0u64..=1024)
                .chain([
                    0x7FFF_FFFF,
                    0x8000_0000,
                    0x8000_0026,
                    0xFFFF_FFFE,
                    0xFFFF_FFFF,
                ])
                .chain(denied.iter().map(|&d| u64::from(d)));
            for low in samples {
                let expected = !denied.iter().any(|&d| u64::from(d) == low);
                for high in [0u64, 1 << 32, 0xDEAD_BEEF_0000_0000] {
                    assert_eq!(matches(high | low), expected, "{denied:?} {low:#x}");
                }
            }
        }
    }

    #[test]
    fn no_duplicate_or_conflicting_names() {
        let p = default_seccomp();
        let names = unconditional(&p);
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate unconditional names");
        // A name with conditional rules is never also allowed outright, and
        // never has rules with two different actions.
        for rule in p.syscalls().iter().flatten() {
            for name in rule.names() {
                if rule.args().is_some() {
                    assert!(!unique.contains(name), "{name} both conditional and not");
                }
                for other in p.syscalls().iter().flatten() {
                    if other.names().contains(name) {
                        assert_eq!(other.action(), rule.action(), "{name}");
                    }
                }
            }
        }
        let allowed: HashSet<_> = ALLOWED.iter().collect();
        assert_eq!(allowed.len(), ALLOWED.len(), "duplicate in ALLOWED");
    }

    #[test]
    fn capability_gating_resolves() {
        let mut caps: Capabilities = CAPABILITIES.into_iter().collect();
        caps.insert(Capability::SysAdmin);
        caps.insert(Capability::Bpf);
        let p = profile_for(&caps);
        let names = unconditional(&p);
        for name in ["mount", "unshare", "setns", "clone", "clone3", "chroot"] {
            assert!(names.iter().any(|n| n == name), "{name}");
        }
        // bpf is gated twice, listed once.
        assert_eq!(names.iter().filter(|n| *n == "bpf").count(), 1);
        // Never allowed, whatever the capabilities.
        for name in [
            "keyctl",
            "add_key",
            "request_key",
            "socketcall",
            "kexec_load",
        ] {
            assert!(!names.iter().any(|n| n == name), "{name}");
        }
    }
}
