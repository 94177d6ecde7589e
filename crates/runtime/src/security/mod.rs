//! Hardening defaults of a sandbox: its capabilities, the `/proc` and `/sys`
//! paths it may not see or write, and its seccomp filter.
//!
//! A sandbox runs arbitrary user code as root in its own user namespace (its
//! root is an unprivileged host uid range, see [`crate::idmap`]) in a runc
//! container on a cgroup v1 host. These defaults are what keeps it in: they
//! are Docker's defaults (moby's `oci/defaults.go`, `caps/defaults.go` and
//! `profiles/seccomp/default.json`, as of Docker 29), resolved for an x86_64
//! host and for the capability set below, and nowhere looser. They differ
//! from Docker in these ways, each stricter:
//!
//! - `keyctl`, `add_key` and `request_key` are denied (recent Docker allows
//!   them): the kernel's key quotas and keyrings are one more thing sandboxes
//!   would share with each other; `/proc/keys` is masked too.
//! - `mq_open` fails with `ENOSYS`: POSIX message-queue bytes are charged to
//!   the owner of the sandbox's user namespace, which is host root (runc and
//!   CRIU create it), so every sandbox would draw from host root's pool.
//! - Only x86_64 system calls run: the filter covers no other ABI, so an
//!   i386 call (`int 0x80`, also from a 64-bit program) or an x32 call is a
//!   "bad architecture" and kills the caller (SIGSYS). Docker covers x86 and
//!   x32 too. libseccomp filters the i386 `socket` as `socketcall(SYS_SOCKET,
//!   args)`, whose arguments sit behind a pointer: the family rules on
//!   `socket` would be compared with the pointer, and an i386 `socketcall`
//!   opened `AF_ALG` sockets past them (Docker relies on AppArmor or SELinux
//!   there; Alcove hosts have neither). The cost: 32-bit x86 programs do not
//!   run in a sandbox. Each ABI is also a filter of its own for runc to build
//!   at every start (~20 ms of a ~60 ms `runc run` here for the two).
//! - The `socket` filter (no `AF_ALG`, CVE-2026-31431, and no `AF_VSOCK`)
//!   looks only at the low 32 bits of the family, as the kernel does. Docker
//!   compares all 64 bits, so a family of `(1 << 32) | AF_VSOCK` gets through
//!   its filter but reaches the kernel as `AF_VSOCK`.
//!
//! `io_uring` is denied, as in Docker. `clone3` fails with
//! `ENOSYS`, so glibc and Rust's std fall back to `clone`, whose flags can be
//! checked for new namespaces. `ptrace`, `process_vm_readv` and
//! `process_vm_writev` are allowed, as Docker allows them on kernels >= 4.8
//! (older kernels let a tracer skip seccomp); Alcove needs a much newer kernel
//! anyway.
//!
//! CRIU restores a checkpointed sandbox's seccomp filter from the checkpoint
//! itself, so nothing here is needed at restore.

mod capabilities;
mod paths;
mod seccomp;
mod syscalls;

pub use capabilities::default_capabilities;
pub use paths::{masked_paths, readonly_paths};
pub use seccomp::default_seccomp;
