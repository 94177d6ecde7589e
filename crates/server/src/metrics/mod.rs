//! Metrics in the Prometheus text format (`GET /metrics`): what the server
//! counts as it goes (requests, how long operations take) and what it reads at
//! each scrape (sandboxes by status, host capacity, each running sandbox's use
//! of CPU, memory, tasks and disk from its cgroups and layer).

mod render;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use render::{HostFigures, SandboxFigures, ScrapeData, render};

/// Labels of an API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's path template (`/v1/namespaces/{ns}/sandboxes/{id}`), not the
    /// path itself, so the number of series stays bounded.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code of the answer.
    pub status: u16,
}

/// An operation whose duration is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A fresh sandbox booted.
    Create,
    /// A sandbox restored from a snapshot.
    Restore,
    /// A sandbox dumped to disk.
    Suspend,
    /// A suspended sandbox restored.
    Resume,
    /// A snapshot taken.
    Snapshot,
    /// A pool's sandbox handed out (a claim).
    Claim,
    /// A running sandbox dumped once to be copied (the copies' restores count as `restore`).
    CopyDump,
    /// A suspended sandbox's dump or a snapshot copied to the blob store.
    BlobUpload,
    /// A dump or snapshot fetched from the blob store (checked against its digest).
    BlobDownload,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Restore => "restore",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Snapshot => "snapshot",
            Self::Claim => "claim",
            Self::CopyDump => "copy_dump",
            Self::BlobUpload => "blob_upload",
            Self::BlobDownload => "blob_download",
        }
    }
}

/// Labels of an operation's duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
    outcome: &'static str,
}

fn operation_histogram() -> Histogram {
    // 10 ms to about 80 s: from a warm create to a resume of a large packed dump.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 2.0, 14,
    ))
}

/// What the server counts between scrapes.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    operations: Family<OperationLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            operations: Family::new_with_constructor(operation_histogram),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, labels: RequestLabels) {
        self.requests.get_or_create(&labels).inc();
    }

    /// Records how long an operation took and whether it worked.
    pub fn operation(&self, op: Operation, ok: bool, took: Duration) {
        let labels = OperationLabels {
            operation: op.as_str(),
            outcome: if ok { "ok" } else { "failed" },
        };
        self.operations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Registers the counted metrics (they share their values with `self`).
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "alcove_http_requests",
            "API requests answered, by route template, method and status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "alcove_operation_duration",
            "How long sandbox operations took, by operation and outcome",
            prometheus_client::registry::Unit::Seconds,
            self.operations.clone(),
        );
    }
}
