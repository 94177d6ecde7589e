//! Validation of create and update requests: resources, names, ports.

use super::ControlError;

/// Limits that depend on the host.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// CPUs the host has.
    pub cpus: f64,
    /// Memory the host has, in MiB.
    pub memory_mb: i64,
}

// The defaults and bounds live in the wire crate, so that the OpenAPI document publishes the
// very numbers this module checks.
pub use alcove_wire::limits::{
    AGENT_ENV_PREFIX, CPUS_MIN, DEFAULT_CPUS, DEFAULT_DISK_MB, DEFAULT_MEMORY_MB, DISK_MB_RANGE,
    MANAGEMENT_PORT, MEMORY_PER_CPU_MB, TIMEOUT_SECS_MAX,
};

fn invalid(field: &'static str, reason: String) -> ControlError {
    ControlError::InvalidArgument { field, reason }
}

/// Checks `cpus` and `memory_mb` against each other and the host.
pub fn resources(cpus: f64, memory_mb: i64, host: HostLimits) -> Result<(), ControlError> {
    if !cpus.is_finite() || cpus < CPUS_MIN {
        return Err(invalid(
            "resources.cpus",
            format!("must be at least {CPUS_MIN}, got {cpus}"),
        ));
    }
    if cpus > host.cpus {
        return Err(invalid(
            "resources.cpus",
            format!("{cpus} is more than the {} CPUs of this host", host.cpus),
        ));
    }
    let min = (MEMORY_PER_CPU_MB.0 as f64 * cpus).ceil() as i64;
    let max = (MEMORY_PER_CPU_MB.1 as f64 * cpus).floor() as i64;
    if memory_mb < min || memory_mb > max {
        return Err(invalid(
            "resources.memory_mb",
            format!(
                "{memory_mb} MB is outside {min}-{max} MB for {cpus} CPUs \
                 (1024-8192 MB per CPU)"
            ),
        ));
    }
    if memory_mb > host.memory_mb {
        return Err(invalid(
            "resources.memory_mb",
            format!(
                "{memory_mb} MB is more than the {} MB of this host",
                host.memory_mb
            ),
        ));
    }
    Ok(())
}

/// Checks `disk_mb`.
pub fn disk(disk_mb: i64) -> Result<(), ControlError> {
    let (lo, hi) = DISK_MB_RANGE;
    if !(lo..=hi).contains(&disk_mb) {
        return Err(invalid(
            "resources.disk_mb",
            format!("{disk_mb} is outside {lo}-{hi}"),
        ));
    }
    Ok(())
}

/// Checks a sandbox name: a DNS label (lower-case letters, digits, `-`; 1-63
/// characters; no `-` at either end) that does not look like a sandbox id.
pub fn name(name: &str) -> Result<(), ControlError> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty()
        || name.len() > 63
        || !ok_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(invalid(
            "name",
            format!(
                "{name:?} is not a valid name: use 1-63 lower-case letters, digits and '-', \
                 not starting or ending with '-'"
            ),
        ));
    }
    if uuid::Uuid::parse_str(name).is_ok() {
        return Err(invalid("name", format!("{name:?} looks like a sandbox id")));
    }
    Ok(())
}

/// The CPUs, memory and disk (MiB) that a create's or a pool's `resources` ask for,
/// defaults filled in, each checked (GPUs are refused: this server has none).
pub fn requested_resources(
    res: Option<&alcove_wire::sandbox::ResourcesRequest>,
    host: HostLimits,
) -> Result<(f64, i64, i64), ControlError> {
    let res = res.cloned().unwrap_or_default();
    if res.gpus.as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(invalid("resources.gpus", "this server has no GPUs".into()));
    }
    let cpus = res.cpus.unwrap_or(DEFAULT_CPUS);
    let memory_mb = res.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
    resources(cpus, memory_mb, host)?;
    let disk_mb = res.disk().unwrap_or(DEFAULT_DISK_MB);
    disk(disk_mb)?;
    Ok((cpus, memory_mb, disk_mb))
}

/// Checks an entrypoint: its command, if it has one, is not empty, and no part has a
/// NUL byte (which `execve` cannot take: the sandbox would only fail at start).
pub fn entrypoint(entrypoint: &[String]) -> Result<(), ControlError> {
    if entrypoint.first().is_some_and(|c| c.is_empty()) {
        return Err(invalid(
            "entrypoint",
            "the command must not be empty".into(),
        ));
    }
    if let Some(i) = entrypoint.iter().position(|part| part.contains('\0')) {
        return Err(invalid("entrypoint", format!("part {i} has a NUL byte")));
    }
    Ok(())
}

/// Checks an environment variable a claim binds: a name of letters, digits and `_`
/// not starting with a digit (what shells can read), and not one of the agent's
/// own `ALCOVE_AGENT_*`; a value without NUL.
pub fn env_var(key: &str, value: &str) -> Result<(), ControlError> {
    let valid = !key.is_empty()
        && key.len() <= 255
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(invalid(
            "env",
            format!(
                "{key:?} is not a variable name: use letters, digits and '_', not starting with a digit"
            ),
        ));
    }
    if key.starts_with(AGENT_ENV_PREFIX) {
        return Err(invalid(
            "env",
            format!("{key}: the {AGENT_ENV_PREFIX}* variables are reserved"),
        ));
    }
    if value.contains('\0') {
        return Err(invalid("env", format!("{key}: the value has a NUL byte")));
    }
    Ok(())
}

/// Checks exposed ports and returns them sorted and deduplicated.
pub fn ports(ports: &[i64]) -> Result<Vec<i64>, ControlError> {
    for &p in ports {
        if !(1..=65535).contains(&p) {
            return Err(invalid("exposed_ports", format!("{p} is not a TCP port")));
        }
        if p == MANAGEMENT_PORT {
            return Err(invalid(
                "exposed_ports",
                format!("{p} is the sandbox management port and cannot be exposed"),
            ));
        }
    }
    let mut out = ports.to_vec();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Checks `timeout_secs` (0 = none).
pub fn timeout_secs(t: i64) -> Result<(), ControlError> {
    if !(0..=TIMEOUT_SECS_MAX).contains(&t) {
        return Err(invalid(
            "timeout_secs",
            format!("must be 0 (none) to {TIMEOUT_SECS_MAX} (365 days), got {t}"),
        ));
    }
    Ok(())
}

/// The deadline, in ms since the epoch, of a sandbox that runs `timeout_secs` from `now_ms`;
/// saturating, for a record that was stored before the bound.
pub fn deadline_after(now_ms: i64, timeout_secs: i64) -> i64 {
    now_ms.saturating_add(timeout_secs.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostLimits = HostLimits {
        cpus: 2.0,
        memory_mb: 24_000,
    };

    #[test]
    fn resources_follow_the_per_cpu_rule_and_the_host() {
        assert!(resources(1.0, 1024, HOST).is_ok());
        assert!(resources(2.0, 2048, HOST).is_ok());
        assert!(resources(2.0, 16384, HOST).is_ok());
        assert!(resources(0.5, 512, HOST).is_ok());
        for (c, m) in [(-1.0, 1024), (0.0, 1024), (f64::NAN, 1024), (3.0, 4096)] {
            assert!(resources(c, m, HOST).is_err(), "cpus {c} accepted");
        }
        for m in [1023, 8193, 0, -5] {
            assert!(resources(1.0, m, HOST).is_err(), "memory {m} accepted");
        }
        let small = HostLimits {
            cpus: 2.0,
            memory_mb: 1500,
        };
        assert!(resources(1.0, 2048, small).is_err());
    }

    #[test]
    fn names_are_dns_labels() {
        for good in ["a", "my-env", "x1", &"a".repeat(63)] {
            assert!(name(good).is_ok(), "{good} refused");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "My",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "6f1c2a43-9d0b-4f4e-9a65-3c1d2e0f4b5a",
        ] {
            assert!(name(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ports_are_checked_sorted_and_deduplicated() {
        assert_eq!(ports(&[8080, 80, 8080]).expect("ok"), vec![80, 8080]);
        assert!(ports(&[0]).is_err());
        assert!(ports(&[70000]).is_err());
        assert!(ports(&[9501]).is_err());
    }

    #[test]
    fn disk_and_timeout_bounds() {
        assert!(disk(10240).is_ok());
        assert!(disk(10).is_err());
        assert!(timeout_secs(0).is_ok());
        assert!(timeout_secs(-1).is_err());
    }

    #[test]
    fn entrypoints_execve_cannot_take_are_refused() {
        let parts = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(entrypoint(&[]).is_ok());
        assert!(entrypoint(&parts(&["sleep", "infinity"])).is_ok());
        for bad in [&["", "x"][..], &["sl\0eep"], &["sleep", "inf\0"]] {
            assert!(entrypoint(&parts(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
