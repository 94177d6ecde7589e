//! Hardening defaults of a sandbox: its capabilities, the `/proc` and `/sys`
//! paths it may not see or write, and its seccomp filter.
//!
//! A sandbox runs arbitrary user code as root (uid 0, no user namespace) in a
//! runc container on a cgroup v1 host. Without a user namespace, root in the
//! sandbox *is* the host's uid 0 as far as the kernel is concerned, so these
//! defaults are what keeps it in: they are Docker's defaults (moby's
//! `oci/defaults.go`, `caps/defaults.go` and `profiles/seccomp/default.json`,
//! as of Docker 29), resolved for an x86_64 host and for the capability set
//! below, and nowhere looser. They differ from Docker in these ways, each
//! stricter:
//!
//! - `keyctl`, `add_key` and `request_key` are denied (recent Docker allows
//!   them). Without a user namespace, sandbox root shares the host root's user
//!   keyring; `/proc/keys` is masked for the same reason.
//! - `socketcall` is denied. It is the 32-bit x86 socket multiplexer, whose
//!   arguments sit behind a pointer seccomp cannot read, so it would bypass the
//!   address-family filter on `socket`. Docker allows it and relies on
//!   AppArmor or SELinux to stop `AF_ALG`; Alcove hosts have neither. The cost:
//!   32-bit x86 programs whose libc creates sockets through `socketcall` get
//!   `EPERM`. 64-bit programs never use it.
//! - The `socket` filter (no `AF_ALG`, CVE-2026-31431, and no `AF_VSOCK`)
//!   looks only at the low 32 bits of the family, as the kernel does. Docker
//!   compares all 64 bits, so a family of `(1 << 32) | AF_VSOCK` gets through
//!   its filter but reaches the kernel as `AF_VSOCK`.
//!
//! The filter lists only x86_64 and its 32-bit ABIs (x86, x32), as Docker does
//! on an amd64 host. `io_uring` is denied, as in Docker. `clone3` fails with
//! `ENOSYS`, so glibc and Rust's std fall back to `clone`, whose flags can be
//! checked for new namespaces. `ptrace`, `process_vm_readv` and
//! `process_vm_writev` are allowed, as Docker allows them on kernels >= 4.8
//! (older kernels let a tracer skip seccomp); Alcove needs a much newer kernel
//! anyway.
//!
//! CRIU restores a checkpointed sandbox's seccomp filter from the checkpoint
//! itself, so nothing here is needed at restore.

use std::collections::BTreeSet;
use std::path::Path;

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

/// Docker's default capabilities. Notably absent: `SYS_ADMIN`, `NET_ADMIN`,
/// `SYS_PTRACE`, `SYS_MODULE`, `SYS_TIME`, `DAC_READ_SEARCH`.
const CAPABILITIES: [Capability; 14] = [
    Capability::AuditWrite,
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Mknod,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// Capabilities of a sandbox's processes: Docker's default set in the bounding,
/// effective and permitted sets; the inheritable and ambient sets empty, so
/// nothing survives an `execve` of a file without file capabilities.
pub fn default_capabilities() -> LinuxCapabilities {
    let set: Capabilities = CAPABILITIES.into_iter().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(Some(Capabilities::new()))
        .set_ambient(Some(Capabilities::new()));
    caps
}

/// Paths masked in every sandbox: host-wide kernel state that is not
/// namespaced, or hardware knobs. Docker's list.
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Where the host lists its CPUs, each of which may have a `thermal_throttle`
/// directory of interrupt counters (a side channel Docker masks too).
const SYS_CPU: &str = "/sys/devices/system/cpu";

/// Paths runc masks in a sandbox (an empty read-only tmpfs over a directory,
/// `/dev/null` over a file; paths absent in the sandbox are skipped).
///
/// Docker's list: `/proc/acpi`, `/proc/asound`, `/proc/interrupts`,
/// `/proc/kcore`, `/proc/keys`, `/proc/latency_stats`, `/proc/sched_debug`,
/// `/proc/scsi`, `/proc/timer_list`, `/proc/timer_stats`,
/// `/sys/devices/virtual/powercap`, `/sys/firmware`, and every
/// `/sys/devices/system/cpu/cpuN/thermal_throttle` this host has.
pub fn masked_paths() -> Vec<String> {
    let mut paths: Vec<String> = MASKED.iter().map(|p| (*p).to_owned()).collect();
    paths.extend(thermal_throttle_paths(Path::new(SYS_CPU)));
    paths
}

/// `<cpu_root>/cpuN/thermal_throttle` for each CPU under `cpu_root` that has
/// one, sorted. Best effort: an unreadable `cpu_root` yields nothing.
fn thermal_throttle_paths(cpu_root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cpu_root) else {
        return Vec::new();
    };
    let mut paths: Vec<String> = entries
        .flatten()
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|name| {
                name.strip_prefix("cpu")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .map(|entry| entry.path().join("thermal_throttle"))
        .filter(|path| path.exists())
        .filter_map(|path| path.to_str().map(str::to_owned))
        .collect();
    paths.sort();
    paths
}

/// Paths runc remounts read-only in a sandbox: kernel tunables and triggers
/// that are not namespaced. Docker's list: `/proc/bus`, `/proc/fs`,
/// `/proc/irq`, `/proc/sys`, `/proc/sysrq-trigger`.
pub fn readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .iter()
    .map(|p| (*p).to_owned())
    .collect()
}

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

/// Socket families no sandbox may open: `AF_ALG` (38), the kernel crypto API
/// (CVE-2026-31431, "Copy Fail"), and `AF_VSOCK` (40), which reaches the
/// hypervisor when the host is a VM.
const DENIED_SOCKET_FAMILIES: &[u32] = &[38, 40];

/// `personality(2)` arguments allowed: `PER_LINUX` (0), `PER_LINUX32` (8),
/// `UNAME26` (0x20000), `PER_LINUX32 | UNAME26`, and `0xffffffff`, which only
/// queries. Others (e.g. `ADDR_NO_RANDOMIZE`, `READ_IMPLIES_EXEC`) weaken
/// exploit mitigations.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xFFFF_FFFF];

/// Syscalls every sandbox may make, whatever its capabilities: Docker's
/// unconditional list for x86_64, minus the differences in the module doc.
/// The time64 and 32-suffixed names are the 32-bit x86 ABI's variants.
const ALLOWED: &[&str] = &[
    // Paths: open, stat, create, rename, remove. Every program.
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "creat",
    "faccessat",
    "faccessat2",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fstatat64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "lchown32",
    "link",
    "linkat",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "readlink",
    "readlinkat",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    // Mount table queries (no changes): newer util-linux and systemd tools.
    "listmount",
    "statmount",
    // Extended attributes: pip, tar, cp -a, git.
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    "getxattrat",
    "lgetxattr",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "removexattrat",
    "setxattr",
    "setxattrat",
    // File descriptors and I/O on them.
    "_llseek",
    "cachestat",
    "close",
    "close_range",
    "copy_file_range",
    "dup",
    "dup2",
    "dup3",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fstat",
    "fstat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "ioctl",
    "lseek",
    "memfd_create",
    "memfd_secret",
    "pipe",
    "pipe2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readv",
    "sendfile",
    "sendfile64",
    "splice",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "vmsplice",
    "write",
    "writev",
    // POSIX AIO (not io_uring, which stays denied).
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    // Readiness and event fds: the agent's tokio runtime (epoll, eventfd,
    // signalfd, timerfd), inotify for file watchers.
    "_newselect",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "fanotify_mark",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    // Memory. mlock is bounded by RLIMIT_MEMLOCK without CAP_IPC_LOCK.
    "brk",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "mseal",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "process_mrelease",
    "remap_file_pages",
    // Processes: spawn, exec, wait, process groups and sessions (the agent's
    // setsid/setpgid, wait4/waitid, pidfds). `clone` and `clone3` have their
    // own rules below.
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getsid",
    "gettid",
    "kill",
    "pidfd_open",
    "pidfd_send_signal",
    "setpgid",
    "setsid",
    "tgkill",
    "tkill",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    // Debuggers and tracers on the sandbox's own processes (gdb, strace,
    // py-spy). Safe since Linux 4.8, which rechecks seccomp after a tracer
    // changes a syscall. The CAP_SYS_PTRACE-only extras stay denied.
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    // Threads, futexes, TLS: every runtime (glibc, tokio, CPython).
    "arch_prctl",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "get_robust_list",
    "get_thread_area",
    "modify_ldt",
    "rseq",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    // Process attributes and self-sandboxing: prctl (the agent's
    // PR_SET_CHILD_SUBREAPER), dropping capabilities, nested seccomp,
    // landlock.
    "capget",
    "capset",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "prctl",
    "restart_syscall",
    "seccomp",
    "uretprobe",
    // Signals.
    "alarm",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    // User and group ids: su, sudo, sshd-style privilege drops.
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
    // Scheduling, priorities, limits, usage. Raising a priority or a hard
    // limit still needs CAP_SYS_NICE or CAP_SYS_RESOURCE, which are not granted.
    "getcpu",
    "getpriority",
    "getrlimit",
    "getrusage",
    "ioprio_get",
    "ioprio_set",
    "prlimit64",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "setpriority",
    "setrlimit",
    "ugetrlimit",
    // Clocks, timers, sleeping. Setting the clock needs CAP_SYS_TIME
    // (adjtimex and clock_adjtime only read without it).
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
    // System information.
    "getrandom",
    "sysinfo",
    "uname",
    // System V and POSIX IPC (namespaced per sandbox): PostgreSQL,
    // multiprocessing.
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    // Sockets, once made (`socket` has its own rules below; `socketcall` is
    // denied).
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketpair",
];

/// Syscalls allowed only to a sandbox holding the capability (in its bounding
/// set), as in Docker: without it they would fail with `EPERM` anyway, and
/// denying them keeps their kernel code out of reach.
const CAPABILITY_GATED: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::Bpf, &["bpf"]),
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::Perfmon, &["perf_event_open"]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "finit_module", "init_module"],
    ),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (
        Capability::SysTime,
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::Syslog, &["syslog"]),
];

/// The seccomp filter of a sandbox: Docker's default profile for x86_64,
/// resolved for [`default_capabilities`]. Anything not listed fails with
/// `EPERM`; `clone` may not create namespaces; `clone3` fails with `ENOSYS`;
/// `socket` may not open `AF_ALG` or `AF_VSOCK`; `personality` may only take
/// harmless values. See the module doc for where it differs from Docker.
pub fn default_seccomp() -> LinuxSeccomp {
    let caps = default_capabilities();
    profile_for(caps.bounding().as_ref().unwrap_or(&Capabilities::new()))
}

/// The filter for a sandbox whose bounding set is `caps`.
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
        .set_architectures(Some(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ]))
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
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
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

    #[test]
    fn capabilities_are_dockers() {
        let caps = default_capabilities();
        let expected: Capabilities = CAPABILITIES.into_iter().collect();
        assert_eq!(expected.len(), 14);
        assert_eq!(caps.bounding().as_ref(), Some(&expected));
        assert_eq!(caps.effective().as_ref(), Some(&expected));
        assert_eq!(caps.permitted().as_ref(), Some(&expected));
        assert_eq!(caps.inheritable().as_ref(), Some(&Capabilities::new()));
        assert_eq!(caps.ambient().as_ref(), Some(&Capabilities::new()));
        for cap in [
            Capability::SysAdmin,
            Capability::NetAdmin,
            Capability::SysPtrace,
            Capability::SysModule,
            Capability::SysTime,
            Capability::DacReadSearch,
            Capability::SysRawio,
        ] {
            assert!(!expected.contains(&cap), "{cap:?}");
        }
        let json = serde_json::to_value(&caps).expect("serialize");
        assert!(
            json["bounding"]
                .as_array()
                .expect("bounding array")
                .contains(&serde_json::json!("CAP_NET_BIND_SERVICE"))
        );
    }

    #[test]
    fn masked_and_readonly_paths() {
        let masked = masked_paths();
        for path in [
            "/proc/acpi",
            "/proc/asound",
            "/proc/interrupts",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/sys/devices/virtual/powercap",
            "/sys/firmware",
        ] {
            assert!(masked.iter().any(|p| p == path), "{path}");
        }
        assert!(masked.iter().all(|p| p.starts_with('/')));
        assert_eq!(
            readonly_paths(),
            [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]
        );
    }

    #[test]
    fn thermal_throttle_paths_found() {
        let root = tempfile::tempdir().expect("tempdir");
        for dir in [
            "cpu0/thermal_throttle",
            "cpu1",
            "cpu12/thermal_throttle",
            "cpufreq/thermal_throttle",
            "cpuidle",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).expect("mkdir");
        }
        let found = thermal_throttle_paths(root.path());
        let base = root.path().to_str().expect("utf-8 tempdir");
        assert_eq!(
            found,
            [
                format!("{base}/cpu0/thermal_throttle"),
                format!("{base}/cpu12/thermal_throttle"),
            ]
        );
        assert!(thermal_throttle_paths(&root.path().join("missing")).is_empty());
    }
}
