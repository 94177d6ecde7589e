//! One scrape: the counted metrics and the figures read now, as text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use super::Metrics;

/// The host's capacity, read at the scrape.
#[derive(Debug, Clone, Default)]
pub struct HostFigures {
    /// CPUs online.
    pub cpus: u64,
    /// `kernel.pid_max`.
    pub pid_max: u64,
    /// Total memory in bytes.
    pub memory_total_bytes: u64,
    /// Memory available in bytes.
    pub memory_available_bytes: u64,
    /// Free bytes under the data directory.
    pub disk_free_bytes: u64,
    /// Size of the file system of the data directory.
    pub disk_total_bytes: u64,
}

/// One running sandbox's use, read at the scrape.
#[derive(Debug, Clone)]
pub struct SandboxFigures {
    /// Sandbox id.
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// Its use against its limits.
    pub usage: alcove_runtime::usage::SandboxUsage,
}

/// What a scrape reads now.
#[derive(Debug, Clone, Default)]
pub struct ScrapeData {
    /// Sandboxes by status (every status, zero included).
    pub by_status: Vec<(String, u64)>,
    /// The host.
    pub host: HostFigures,
    /// Running sandboxes.
    pub sandboxes: Vec<SandboxFigures>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxLabels {
    sandbox_id: String,
    namespace: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// A per-sandbox gauge family with its name, help and unit.
type SandboxGauge = (
    &'static str,
    &'static str,
    Option<Unit>,
    Family<SandboxLabels, FloatGauge>,
);

/// The whole `/metrics` text: counted metrics, then what was read now.
pub fn render(metrics: &Metrics, data: &ScrapeData) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    metrics.register(&mut registry);

    let by_status = Family::<StatusLabels, Gauge>::default();
    for (status, n) in &data.by_status {
        by_status
            .get_or_create(&StatusLabels {
                status: status.clone(),
            })
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    registry.register("alcove_sandboxes", "Sandboxes by status", by_status);

    let host = &data.host;
    for (name, help, unit, value) in [
        ("alcove_host_cpus", "CPUs online", None, host.cpus),
        ("alcove_host_pid_max", "kernel.pid_max", None, host.pid_max),
        (
            "alcove_host_memory_total",
            "Memory of the host",
            Some(Unit::Bytes),
            host.memory_total_bytes,
        ),
        (
            "alcove_host_memory_available",
            "Memory available on the host",
            Some(Unit::Bytes),
            host.memory_available_bytes,
        ),
        (
            "alcove_host_disk_free",
            "Free space under the data directory",
            Some(Unit::Bytes),
            host.disk_free_bytes,
        ),
        (
            "alcove_host_disk_total",
            "Size of the data directory's file system",
            Some(Unit::Bytes),
            host.disk_total_bytes,
        ),
    ] {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, gauge),
            None => registry.register(name, help, gauge),
        }
    }

    let cpu = Family::<SandboxLabels, Counter<f64, AtomicU64>>::default();
    let gauges: Vec<SandboxGauge> = vec![
        (
            "alcove_sandbox_memory",
            "Memory a sandbox uses (without reclaimable cache)",
            Some(Unit::Bytes),
            Family::default(),
        ),
        (
            "alcove_sandbox_memory_limit",
            "A sandbox's memory limit",
            Some(Unit::Bytes),
            Family::default(),
        ),
        (
            "alcove_sandbox_pids",
            "Tasks in a sandbox",
            None,
            Family::default(),
        ),
        (
            "alcove_sandbox_pids_limit",
            "A sandbox's task limit",
            None,
            Family::default(),
        ),
        (
            "alcove_sandbox_disk_used",
            "Bytes written to a sandbox's layer",
            Some(Unit::Bytes),
            Family::default(),
        ),
        (
            "alcove_sandbox_disk_limit",
            "Size of a sandbox's layer",
            Some(Unit::Bytes),
            Family::default(),
        ),
    ];
    for s in &data.sandboxes {
        let labels = SandboxLabels {
            sandbox_id: s.id.clone(),
            namespace: s.namespace.clone(),
        };
        cpu.get_or_create(&labels).inc_by(s.usage.cpu_seconds);
        let u = &s.usage;
        let values = [
            Some(u.memory_bytes),
            u.memory_limit_bytes,
            Some(u.pids),
            u.pids_limit,
            Some(u.disk_used_bytes),
            Some(u.disk_limit_bytes),
        ];
        for ((_, _, _, family), value) in gauges.iter().zip(values) {
            if let Some(v) = value {
                family.get_or_create(&labels).set(v as f64);
            }
        }
    }
    registry.register_with_unit(
        "alcove_sandbox_cpu",
        "CPU time a running sandbox used (user and system)",
        Unit::Seconds,
        cpu,
    );
    for (name, help, unit, family) in gauges {
        match unit {
            Some(unit) => registry.register_with_unit(name, help, unit, family),
            None => registry.register(name, help, family),
        }
    }

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_scrape_has_every_family_with_its_values() {
        let metrics = Metrics::default();
        metrics.request(super::super::RequestLabels {
            route: "/sandboxes".into(),
            method: "POST".into(),
            status: 200,
        });
        metrics.operation(
            super::super::Operation::Suspend,
            true,
            Duration::from_millis(250),
        );
        let data = ScrapeData {
            by_status: vec![("running".into(), 2), ("suspended".into(), 0)],
            host: HostFigures {
                cpus: 2,
                pid_max: 4_194_304,
                ..HostFigures::default()
            },
            sandboxes: vec![SandboxFigures {
                id: "a".into(),
                namespace: "default".into(),
                usage: alcove_runtime::usage::SandboxUsage {
                    cpu_seconds: 1.5,
                    memory_bytes: 1 << 20,
                    memory_limit_bytes: Some(1 << 30),
                    pids: 3,
                    pids_limit: None,
                    disk_used_bytes: 5,
                    disk_limit_bytes: 10,
                },
            }],
        };
        let text = render(&metrics, &data).expect("renders");
        for line in [
            r#"alcove_http_requests_total{route="/sandboxes",method="POST",status="200"} 1"#,
            r#"alcove_operation_duration_seconds_count{operation="suspend",outcome="ok"} 1"#,
            r#"alcove_sandboxes{status="running"} 2"#,
            r#"alcove_sandboxes{status="suspended"} 0"#,
            "alcove_host_pid_max 4194304",
            r#"alcove_sandbox_cpu_seconds_total{sandbox_id="a",namespace="default"} 1.5"#,
            r#"alcove_sandbox_memory_limit_bytes{sandbox_id="a",namespace="default"} 1073741824.0"#,
            r#"alcove_sandbox_pids{sandbox_id="a",namespace="default"} 3.0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // No pids limit, no series (rather than a made-up one).
        assert!(!text.contains("alcove_sandbox_pids_limit{"));
        assert!(text.ends_with("# EOF\n"));
    }
}
