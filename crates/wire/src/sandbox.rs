//! Control-plane objects (docs/protocol/control-plane.md, Objects): sandboxes, their
//! resources and statuses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, Object, ObjectBuilder, SchemaFormat, Type,
};

use crate::limits::{
    CPUS_MIN, DEFAULT_CPUS, DEFAULT_DISK_MB, DEFAULT_MEMORY_MB, DISK_MB_RANGE, MANAGEMENT_PORT,
    MEMORY_PER_CPU_MB, NAME_MAX_LEN, NAME_PATTERN, PORT_RANGE, TIMEOUT_SECS_MAX,
};
use crate::time::{EpochMillis, EpochMillisSchema};

/// Sandbox status, spelled exactly as on the wire (docs/protocol/control-plane.md, Sandbox
/// status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxStatus {
    /// Accepted and durable; not running yet.
    Pending,
    /// Running and routable.
    Running,
    /// A snapshot is being taken.
    Snapshotting,
    /// Being dumped to disk.
    Suspending,
    /// Dumped to disk; memory and CPU freed.
    Suspended,
    /// Ended for good.
    Terminated,
    /// Blocking create gave up waiting (an answer, never a stored state).
    Timeout,
    /// Failed to start.
    Failed,
}

impl SandboxStatus {
    /// The wire spelling (`"running"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Snapshotting => "snapshotting",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Terminated => "terminated",
            Self::Timeout => "timeout",
            Self::Failed => "failed",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "snapshotting" => Self::Snapshotting,
            "suspending" => Self::Suspending,
            "suspended" => Self::Suspended,
            "terminated" => Self::Terminated,
            "timeout" => Self::Timeout,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the sandbox still exists (holds its name, counts against limits).
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Terminated | Self::Failed | Self::Timeout)
    }
}

impl std::fmt::Display for SandboxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A GPU request or allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuResources {
    /// Number of GPUs.
    pub count: u32,
    /// Model name as on the wire (`H100`, …).
    pub model: String,
}

/// Resources asked for in a create request (docs/protocol/control-plane.md, Resources).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourcesRequest {
    /// CPUs (fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = cpus_schema)]
    pub cpus: Option<f64>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = memory_mb_schema)]
    pub memory_mb: Option<i64>,
    /// Writable-layer size in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = disk_mb_schema)]
    pub disk_mb: Option<i64>,
    /// Alias of `disk_mb` sent by the TypeScript SDK's pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = ephemeral_disk_mb_schema)]
    pub ephemeral_disk_mb: Option<i64>,
    /// GPUs (not supported by this server; a non-empty list is rejected). Also read as
    /// `gpu_configs`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "gpu_configs"
    )]
    pub gpus: Option<Vec<GpuResources>>,
}

impl ResourcesRequest {
    /// The disk asked for: `disk_mb`, else its alias `ephemeral_disk_mb`.
    pub fn disk(&self) -> Option<i64> {
        self.disk_mb.or(self.ephemeral_disk_mb)
    }
}

// Schemas of the fields whose defaults and bounds are the constants of `crate::limits`: the
// derive's `minimum`/`maximum` take literals only, so these build them from the constants.

/// A JSON-Schema type that also admits `null` (an `Option` a request may send as `null`).
fn nullable(ty: Type) -> utoipa::openapi::schema::SchemaType {
    utoipa::openapi::schema::SchemaType::from_iter([ty, Type::Null])
}

fn optional_int64(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some(description))
}

fn cpus_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Number))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
        .description(Some(
            "CPUs (fractions allowed, down to 0.01); at most the host's CPUs. The sandbox is \
             pinned to `ceil(cpus)` CPUs.",
        ))
        .minimum(Some(CPUS_MIN))
        .default(Some(DEFAULT_CPUS.into()))
        .build()
}

fn memory_mb_schema() -> Object {
    let (per_cpu_min, per_cpu_max) = MEMORY_PER_CPU_MB;
    optional_int64(&format!(
        "Memory in MiB: {per_cpu_min}-{per_cpu_max} per CPU (see `x-memory-mb-per-cpu`), and \
         at most the host's memory."
    ))
    .minimum(Some(1))
    .default(Some(DEFAULT_MEMORY_MB.into()))
    .extensions(Some(
        ExtensionsBuilder::new()
            .add(
                "x-memory-mb-per-cpu",
                serde_json::json!({"minimum": per_cpu_min, "maximum": per_cpu_max}),
            )
            .build(),
    ))
    .build()
}

fn disk_mb_builder(description: &str) -> ObjectBuilder {
    let (lo, hi) = DISK_MB_RANGE;
    optional_int64(description)
        .minimum(Some(lo))
        .maximum(Some(hi))
        .default(Some(DEFAULT_DISK_MB.into()))
}

fn disk_mb_schema() -> Object {
    disk_mb_builder("Writable-layer size in MiB.").build()
}

fn ephemeral_disk_mb_schema() -> Object {
    disk_mb_builder("Alias of `disk_mb` (read when `disk_mb` is absent).").build()
}

fn name_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .description(Some(
            "Name (a DNS label, unique among live sandboxes, not shaped like a UUID); absent \
             for an ephemeral sandbox.",
        ))
        .min_length(Some(1))
        .max_length(Some(NAME_MAX_LEN))
        .pattern(Some(NAME_PATTERN))
        .build()
}

fn timeout_secs_schema() -> Object {
    optional_int64("Lifetime in seconds (0 or absent = none).")
        .minimum(Some(0))
        .maximum(Some(TIMEOUT_SECS_MAX))
        .default(Some(0.into()))
        .build()
}

fn exposed_ports_schema() -> utoipa::openapi::schema::Array {
    let (lo, hi) = PORT_RANGE;
    let port = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(lo))
        .maximum(Some(hi))
        .extensions(Some(
            ExtensionsBuilder::new()
                .add("x-reserved", serde_json::json!([MANAGEMENT_PORT]))
                .build(),
        ));
    ArrayBuilder::new()
        .schema_type(nullable(Type::Array))
        .items(port)
        .description(Some(format!(
            "User ports routed from the ingress; {MANAGEMENT_PORT} (the agent's port, listed \
             in `x-reserved`) is refused."
        )))
        .build()
}

/// Resources of a sandbox in responses (`ContainerResourcesInfo`).
///
/// Python requires `disk_mb`, TypeScript reads `ephemeral_disk_mb`: both are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourcesInfo {
    /// CPUs.
    pub cpus: f64,
    /// Memory in MiB.
    pub memory_mb: i64,
    /// Writable-layer size in MiB.
    pub disk_mb: i64,
    /// Same as `disk_mb`.
    pub ephemeral_disk_mb: i64,
}

/// Outbound network policy (request field `network`, response field `network_policy`).
///
/// Described as a request reads it (every field may be absent); answers always carry all three.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkConfig {
    /// Whether outbound traffic is allowed at all.
    #[serde(default = "default_true")]
    #[schema(default = default_true)]
    pub allow_internet_access: bool,
    /// Destinations allowed even when internet access is off.
    #[serde(default, deserialize_with = "trimmed_entries")]
    #[schema(default = json!([]))]
    pub allow_out: Vec<String>,
    /// Destinations always denied (deny wins).
    #[serde(default, deserialize_with = "trimmed_entries")]
    #[schema(default = json!([]))]
    pub deny_out: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// Policy entries as they are enforced: surrounding whitespace is not part of an address or
/// name, so it is not kept (nor shown back) either.
fn trimmed_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let entries = Vec::<String>::deserialize(d)?;
    Ok(entries
        .into_iter()
        .map(|entry| match entry.trim() {
            trimmed if trimmed.len() == entry.len() => entry,
            trimmed => trimmed.to_string(),
        })
        .collect())
}

/// Body of `POST {B}/sandboxes` (docs/protocol/control-plane.md, Create a sandbox). Unknown
/// fields are tolerated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateSandboxRequest {
    /// Name (a DNS label); absent for an ephemeral sandbox.
    #[serde(default)]
    #[schema(schema_with = name_schema)]
    pub name: Option<String>,
    /// Image name or alias (absent = the image `default`).
    #[serde(default)]
    pub image: Option<String>,
    /// Requested resources.
    #[serde(default)]
    pub resources: Option<ResourcesRequest>,
    /// Lifetime in seconds (0 or absent = none).
    #[serde(default)]
    #[schema(schema_with = timeout_secs_schema)]
    pub timeout_secs: Option<i64>,
    /// Custom entrypoint run beside the agent.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Outbound network policy.
    #[serde(default)]
    pub network: Option<NetworkConfig>,
    /// Whether exposed ports accept unauthenticated traffic.
    #[serde(default)]
    #[schema(default = false)]
    pub allow_unauthenticated_access: Option<bool>,
    /// User ports routed from the ingress.
    #[serde(default)]
    #[schema(schema_with = exposed_ports_schema)]
    pub exposed_ports: Option<Vec<i64>>,
    /// Secrets injected as environment variables.
    #[serde(default)]
    pub secret_names: Option<Vec<String>>,
    /// Restore from this snapshot instead of booting the image.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// `false` = answer 202 at once; absent = blocking create.
    #[serde(default)]
    pub wait: Option<bool>,
    /// Whether proxy traffic may wake a suspended sandbox.
    #[serde(default)]
    #[schema(default = true)]
    pub auto_resume: Option<bool>,
    /// Fail with `no_capacity` after this long in pending.
    #[serde(default)]
    pub max_pending_secs: Option<i64>,
    /// Alcove: pull `image` from its registry first when the store lacks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_image: Option<bool>,
    /// Volumes to mount when it boots (docs/volumes.md).
    #[serde(default)]
    pub file_systems: Option<Vec<crate::file_system::FileSystemMount>>,
    /// Alcove: run it only on a node whose labels (`--node-label key=value`) include every
    /// one of these pairs; it also holds when it resumes, is copied or moves (docs/cluster.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
}

/// Answer of create (docs/protocol/control-plane.md, CreateSandboxResponse).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateSandboxResponse {
    /// The new sandbox's UUID.
    pub sandbox_id: String,
    /// Its status when the answer was written.
    pub status: SandboxStatus,
    /// Proxy base URL, present unless pending or ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sandbox_url: Option<String>,
    /// The name, if any.
    #[serde(default)]
    #[schema(required = true)]
    pub name: Option<String>,
    /// Base of user-port URLs (as in `SandboxInfo`), present when `sandbox_url` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ingress_endpoint: Option<String>,
    /// Why it is still pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pending_reason: Option<String>,
    /// Why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub termination_reason: Option<String>,
    /// Details of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error_details: Option<String>,
    /// A claim's answer: `true` once everything the claim asked for (name,
    /// environment, secrets, network, file systems) is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub claim_configuration_applied: Option<bool>,
    /// Alcove: the whole sandbox, as `GET /sandboxes/{id}` would answer it, when it runs;
    /// a client that has it needs no GET after the create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sandbox: Option<Box<SandboxInfo>>,
}

/// A sandbox as returned by get, list and update (docs/protocol/control-plane.md,
/// SandboxInfo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SandboxInfo {
    /// UUID. Only `id` is sent: the official SDK reads `id` or `sandbox_id`
    /// but rejects a body carrying both ("duplicate field").
    #[serde(alias = "sandbox_id")]
    pub id: String,
    /// Owning namespace.
    pub namespace: String,
    /// Current status.
    pub status: SandboxStatus,
    /// Name, or null for an ephemeral sandbox.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Image in use (canonical name).
    pub image: String,
    /// Allocated resources.
    pub resources: ResourcesInfo,
    /// Proxy base URL (present for every non-pending, non-terminated state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sandbox_url: Option<String>,
    /// Injected secrets (names only).
    pub secret_names: Vec<String>,
    /// Lifetime in seconds (0 = none).
    pub timeout_secs: i64,
    /// Custom entrypoint.
    pub entrypoint: Vec<String>,
    /// Outbound network policy.
    pub network_policy: NetworkConfig,
    /// Whether exposed ports accept unauthenticated traffic.
    pub allow_unauthenticated_access: bool,
    /// Publicly routed user ports.
    pub exposed_ports: Vec<i64>,
    /// Whether proxy traffic wakes it when suspended.
    pub auto_resume: bool,
    /// Creation time.
    #[schema(value_type = EpochMillisSchema)]
    pub created_at: EpochMillis,
    /// Termination time.
    #[schema(value_type = Option<EpochMillisSchema>, required = true)]
    pub terminated_at: Option<EpochMillis>,
    /// Why it is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pending_reason: Option<String>,
    /// Why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub termination_reason: Option<String>,
    /// Details of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error_details: Option<String>,
    /// Base for user-port URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ingress_endpoint: Option<String>,
    /// Informational: the isolation technology.
    pub runtime: String,
    /// The volumes mounted in it.
    pub file_systems: Vec<crate::file_system::FileSystemMount>,
    /// The latest live resize (`PATCH` with `resources`), absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resource_resize: Option<ResourceResize>,
    /// The pool it was claimed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pool_id: Option<String>,
    /// Alcove: the labels its node must have (absent when none were asked for).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// Where a live resize stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResizeStatus {
    /// Admitted, not applied yet.
    Pending,
    /// Applied: `resources` shows the new limits.
    Succeeded,
    /// Not applied: the sandbox keeps its previous limits (`error_message` says why).
    Failed,
}

/// The latest live resize of a sandbox (`resource_resize` in SandboxInfo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceResize {
    /// Counts the sandbox's resizes, from 1.
    pub generation: i64,
    /// The target: every dimension, those not asked for at their value then.
    pub requested: ResizeResources,
    /// Where it stands.
    pub status: ResizeStatus,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error_message: Option<String>,
}

/// The target of a live resize.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResizeResources {
    /// CPUs.
    pub cpus: f64,
    /// Memory in MiB.
    pub memory_mb: i64,
    /// Writable-layer size in MiB.
    pub disk_mb: i64,
}

/// Answer of `GET {B}/sandboxes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListSandboxesResponse {
    /// The live sandboxes of the namespace, oldest first.
    pub sandboxes: Vec<SandboxInfo>,
}

/// An ended sandbox kept for the archive's retention (`--archive-ttl`): its last
/// [`SandboxInfo`] plus when it was archived (docs/protocol/control-plane.md, Archived
/// sandboxes). The official SDK's `ArchivedSandboxInfo` is its `SandboxInfo` with a
/// required `archived_at`, so the fields are flattened into one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedSandboxInfo {
    /// The sandbox as it ended.
    #[serde(flatten)]
    pub sandbox: SandboxInfo,
    /// When it was archived (the moment it ended).
    pub archived_at: EpochMillis,
}

impl utoipa::PartialSchema for ArchivedSandboxInfo {
    /// `SandboxInfo`'s object with `archived_at` added: one flat object, as serde writes it
    /// (a derived `allOf` would hide the properties from readers that look for them).
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::RefBuilder;
        use utoipa::openapi::schema::Schema;
        let mut object = match <SandboxInfo as utoipa::PartialSchema>::schema() {
            RefOr::T(Schema::Object(object)) => object,
            // The derive of a named-field struct always yields an object.
            _ => Object::new(),
        };
        object.description = Some(
            "An ended sandbox kept until the archive's retention runs out: `SandboxInfo` plus \
             `archived_at`."
                .into(),
        );
        object.properties.insert(
            "archived_at".into(),
            RefOr::Ref(
                RefBuilder::new()
                    .ref_location_from_schema_name(EpochMillisSchema::name())
                    .description(Some("When it was archived (the moment it ended)."))
                    .build(),
            ),
        );
        object.required.push("archived_at".into());
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for ArchivedSandboxInfo {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("ArchivedSandboxInfo")
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <SandboxInfo as ToSchema>::schemas(schemas);
        schemas.push((
            EpochMillisSchema::name().into_owned(),
            <EpochMillisSchema as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// Answer of `GET {B}/archived-sandboxes`: one page, newest first, with the cursors of the
/// pages around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListArchivedSandboxesResponse {
    /// This page's archived sandboxes, newest first.
    pub sandboxes: Vec<ArchivedSandboxInfo>,
    /// Pass as `cursor` with `direction=backward` for the newer page; null on the newest.
    #[schema(required = true)]
    pub prev_cursor: Option<String>,
    /// Pass as `cursor` (with `direction=forward`, the default) for the older page; null on
    /// the oldest.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Body of `PATCH {B}/sandboxes/{id}`; omitted = unchanged.
// Fields left `None` are not serialized: a `"network": null` resets the outbound policy, so a
// rename sent with it would open a locked-down sandbox. `Some(Value::Null)` sends the `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdateSandboxRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = name_schema)]
    pub name: Option<String>,
    /// New unauthenticated-access flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unauthenticated_access: Option<bool>,
    /// Full replacement list of exposed ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = exposed_ports_schema)]
    pub exposed_ports: Option<Vec<i64>>,
    /// New auto-resume flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_resume: Option<bool>,
    /// Live resize: new `cpus`, `memory_mb` and `disk_mb` (omitted = unchanged). CPU and
    /// memory apply through the cgroups at once; the disk only grows. A suspended sandbox
    /// gets them when it resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesRequest>,
    /// New outbound policy: an object replaces it, JSON `null` clears it
    /// (kept as raw JSON to tell `null` from absent).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<NetworkConfig>)]
    pub network: Option<serde_json::Value>,
}

/// Deserializes a field that is present (even as `null`) into `Some`.
pub(crate) fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_in_wire_spelling() {
        for s in [
            SandboxStatus::Pending,
            SandboxStatus::Running,
            SandboxStatus::Snapshotting,
            SandboxStatus::Suspending,
            SandboxStatus::Suspended,
            SandboxStatus::Terminated,
            SandboxStatus::Timeout,
            SandboxStatus::Failed,
        ] {
            let json = serde_json::to_string(&s).expect("serialize");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(SandboxStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(SandboxStatus::parse("Running"), None);
    }

    #[test]
    fn update_request_sends_only_what_it_changes() {
        // A rename must not carry `"network": null`: the server reads that as "reset the
        // outbound policy to open".
        let rename = UpdateSandboxRequest {
            name: Some("dev".into()),
            ..UpdateSandboxRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&rename).expect("serialize"),
            serde_json::json!({"name": "dev"})
        );
        let reset = UpdateSandboxRequest {
            network: Some(serde_json::Value::Null),
            ..UpdateSandboxRequest::default()
        };
        let body = serde_json::to_string(&reset).expect("serialize");
        assert_eq!(body, r#"{"network":null}"#);
        let back: UpdateSandboxRequest = serde_json::from_str(&body).expect("parse");
        assert_eq!(back.network, Some(serde_json::Value::Null));
        let absent: UpdateSandboxRequest = serde_json::from_str("{}").expect("parse");
        assert_eq!(absent.network, None);
    }

    #[test]
    fn create_request_tolerates_unknown_fields_and_gpu_alias() {
        let req: CreateSandboxRequest = serde_json::from_str(
            r#"{"image":"x","resources":{"cpus":2.0,"memory_mb":4096,"gpu_configs":[]},
                "future_field":1,"wait":false}"#,
        )
        .expect("parse");
        assert_eq!(req.wait, Some(false));
        let res = req.resources.expect("resources");
        assert_eq!(res.cpus, Some(2.0));
        assert_eq!(res.gpus, Some(vec![]));
    }

    #[test]
    fn update_tells_a_null_network_from_an_absent_one() {
        let absent: UpdateSandboxRequest = serde_json::from_str(r#"{"name":"a"}"#).expect("parse");
        assert_eq!(absent.network, None);
        let null: UpdateSandboxRequest =
            serde_json::from_str(r#"{"network":null}"#).expect("parse");
        assert_eq!(null.network, Some(serde_json::Value::Null));
    }

    #[test]
    fn network_config_defaults_to_internet_on() {
        let n: NetworkConfig = serde_json::from_str("{}").expect("parse");
        assert!(n.allow_internet_access);
        assert!(n.allow_out.is_empty());
        let spaced: NetworkConfig = serde_json::from_str(
            r#"{"allow_out": [" 1.2.3.4 ", "example.com"], "deny_out": ["\t10.0.0.0/8\n"]}"#,
        )
        .expect("parses");
        assert_eq!(spaced.allow_out, ["1.2.3.4", "example.com"]);
        assert_eq!(spaced.deny_out, ["10.0.0.0/8"]);
    }
}
