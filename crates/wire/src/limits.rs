//! Defaults and bounds of a create request: the one home of these numbers.
//!
//! The server checks requests with them (`alcove_server::control::validate` re-exports
//! them), and the OpenAPI document publishes them as `default`, `minimum` and `maximum` of
//! the request's fields, which the SDKs' tests compare their own defaults and checks with.

/// Default CPUs of a sandbox.
pub const DEFAULT_CPUS: f64 = 1.0;
/// Default memory of a sandbox in MiB.
pub const DEFAULT_MEMORY_MB: i64 = 1024;
/// Default writable-layer size in MiB.
pub const DEFAULT_DISK_MB: i64 = 10240;
/// Fewest CPUs a sandbox may have: the kernel's smallest CFS quota is 1 ms per 100 ms period.
pub const CPUS_MIN: f64 = 0.01;
/// Longest `timeout_secs`: 365 days (0 means none).
pub const TIMEOUT_SECS_MAX: i64 = 365 * 24 * 60 * 60;
/// Memory allowed per CPU, in MiB (1024-8192 per core, as on the original
/// platform; docs/protocol/control-plane.md, Resources).
pub const MEMORY_PER_CPU_MB: (i64, i64) = (1024, 8192);
/// Bounds of `disk_mb`.
pub const DISK_MB_RANGE: (i64, i64) = (512, 1_048_576);
/// The agent's port, which users cannot expose.
pub const MANAGEMENT_PORT: i64 = 9501;

/// Bounds of an exposed user port (the TCP port range).
pub const PORT_RANGE: (i64, i64) = (1, 65535);
/// Longest sandbox name: a DNS label.
pub const NAME_MAX_LEN: usize = 63;
/// A sandbox name: a DNS label of lower-case letters, digits and `-`, not starting or
/// ending with `-` (and, checked apart, not shaped like a UUID).
pub const NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// Prefix of the agent's own configuration variables: no process inherits them, and no
/// secret, claim variable or process environment may set one.
pub const AGENT_ENV_PREFIX: &str = "ALCOVE_AGENT_";

/// Longest namespace (the `{ns}` of `/v1/namespaces/{ns}/…`).
pub const NAMESPACE_MAX_LEN: usize = 128;

/// Whether `ns` may name a namespace: 1 to [`NAMESPACE_MAX_LEN`] ASCII letters, digits, `-`,
/// `_` and `.`, not starting with `.` (so never `.`, `..` or a path).
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= NAMESPACE_MAX_LEN
        && !ns.starts_with('.')
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod namespace_tests {
    use super::*;

    #[test]
    fn namespaces_are_identifiers_not_paths() {
        for ok in ["default", "team-a", "Project_1", "a.b", "x"] {
            assert!(valid_namespace(ok), "{ok}");
        }
        let long = "n".repeat(NAMESPACE_MAX_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a b",
            "é",
            "\0",
            ".hidden",
            long.as_str(),
        ] {
            assert!(!valid_namespace(bad), "{bad:?}");
        }
    }
}
