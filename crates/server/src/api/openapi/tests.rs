//! The document against the committed file, and its schemas against what serde really reads
//! and writes.

use std::collections::BTreeSet;

use alcove_agent::http::error::AgentError;
use alcove_wire::copy::{CopiedSandbox, CopySandboxResponse};
use alcove_wire::error::ApiErrorBody;
use alcove_wire::file_system::{
    CreateFileSystemRequest, DetachFileSystemRequest, FileSystemAttachment, FileSystemInfo,
    FileSystemMount, ListFileSystemsResponse,
};
use alcove_wire::files::{FileEntry, FileList};
use alcove_wire::health::{AgentInfo, HealthResponse};
use alcove_wire::image::{
    DeleteImageResponse, ImageInfo, ImageLayerInfo, ImageListResponse, ImageRunConfig, ImageUsers,
    LayerProgress, PullImageRequest, SaveSnapshotImageRequest,
};
use alcove_wire::journal::{
    JournalBatch, JournalRecord, ProcessLogFilter, ProcessLogFiltersResponse, SandboxLogRecord,
    SandboxLogsResponse,
};
use alcove_wire::limits::{MANAGEMENT_PORT, NAME_PATTERN, PORT_RANGE};
use alcove_wire::metrics::SandboxMetrics;
use alcove_wire::node::{NodeInfo, NodeList, NodeResources};
use alcove_wire::pool::{
    ClaimSandboxRequest, CreateSandboxPoolResponse, ListSandboxPoolsResponse, PoolContainerInfo,
    SandboxPoolInfo, SandboxPoolRequest,
};
use alcove_wire::process::{
    EofEvent, ExitEvent, HealthCheck, ManagedExit, ManagedInfo, OutputBatchEvent, OutputEvent,
    OutputResponse, ProcessInfo, ProcessList, RestartConfig, RunRequest, SetEnvironmentRequest,
    SignalRequest, SignalResponse, StartProcessRequest, StartedEvent, StopAllResponse, UserIds,
};
use alcove_wire::pty::{
    CreatePtyRequest, CreatePtyResponse, PtySessionInfo, PtySessionList, ResizeRequest,
};
use alcove_wire::sandbox::{
    ArchivedSandboxInfo, CreateSandboxRequest, CreateSandboxResponse, GpuResources,
    ListArchivedSandboxesResponse, ListSandboxesResponse, NetworkConfig, ResizeResources,
    ResourceResize, ResourcesInfo, ResourcesRequest, SandboxInfo, UpdateSandboxRequest,
};
use alcove_wire::snapshot::{
    CreateSnapshotRequest, CreateSnapshotResponse, ListSnapshotsResponse, SnapshotInfo,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{REGENERATE, document};
use crate::api::pty_ticket::PtyTicket;
use crate::api::secrets::{SecretInfo, SecretList, SetSecret};
use crate::control::{secrets, validate};
use alcove_wire::desktop::{DesktopUrl, DesktopUrlRequest};

const COMMITTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/protocol/openapi.json"
);

#[test]
fn committed_document_is_the_generated_one() {
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    let generated = super::json();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/protocol/openapi.json is not the document the code generates (first \
             difference at line {}).\nRegenerate it from the repository root with:\n    {REGENERATE}",
            line + 1
        );
    }
}

// --- the schemas against serde ----------------------------------------------------------

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

/// `schema` with a `$ref` followed.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(target) => {
            let name = target.trim_start_matches("#/components/schemas/");
            resolve(doc, self::schema(doc, name))
        }
        None => schema,
    }
}

fn is_null_type(schema: &Value) -> bool {
    schema["type"] == "null"
}

/// Whether the schema admits `null` (`type: [.., "null"]` or a `oneOf` with a null branch).
fn nullable(schema: &Value) -> bool {
    let in_type = schema["type"]
        .as_array()
        .is_some_and(|types| types.iter().any(|t| t == "null"));
    let in_one_of = schema["oneOf"]
        .as_array()
        .is_some_and(|branches| branches.iter().any(is_null_type));
    in_type || in_one_of
}

/// A value the schema admits (not `null`): every property when `full`, else the required
/// ones only, required nullable ones as `null`.
fn sample(doc: &Value, schema: &Value, full: bool) -> Value {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema["oneOf"].as_array() {
        let branch = branches
            .iter()
            .find(|b| !is_null_type(b))
            .expect("a non-null branch");
        return sample(doc, branch, full);
    }
    if let Some(values) = schema["enum"].as_array() {
        return values[0].clone();
    }
    let ty = match &schema["type"] {
        Value::String(ty) => ty.as_str(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "any",
    };
    match ty {
        "string" => json!("x"),
        "integer" => json!(schema["minimum"].as_i64().unwrap_or(1)),
        "number" => json!(1.5),
        "boolean" => json!(true),
        "array" => json!([sample(doc, &schema["items"], full)]),
        "object" => match schema["properties"].as_object() {
            Some(properties) => {
                let required = required(schema);
                properties
                    .iter()
                    .filter(|(name, _)| full || required.contains(name.as_str()))
                    .map(|(name, prop)| {
                        let value = if !full && nullable(prop) {
                            Value::Null
                        } else {
                            sample(doc, prop, full)
                        };
                        (name.clone(), value)
                    })
                    .collect()
            }
            None if schema["additionalProperties"].is_object() => {
                json!({"k": sample(doc, &schema["additionalProperties"], full)})
            }
            None => json!({}),
        },
        _ => json!("any"),
    }
}

fn required(schema: &Value) -> BTreeSet<&str> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn property_names(schema: &Value) -> BTreeSet<&str> {
    schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, _)| name.as_str())
        .collect()
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect()
}

fn parse<T: DeserializeOwned>(name: &str, value: &Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{name}: the schema's sample {value} does not parse: {e}"))
}

/// An answer type: what it writes is what its schema says, key for key: without its
/// optional fields exactly the required ones (the nullable ones as `null`), with them every
/// property (so no property is misnamed).
fn check_answer<T: Serialize + DeserializeOwned>(doc: &Value, name: &str) {
    let schema = schema(doc, name);
    let minimal = sample(doc, schema, false);
    let written = serde_json::to_value(parse::<T>(name, &minimal)).expect("serializes");
    assert_eq!(
        keys(&written),
        required(schema),
        "{name}: the keys always written are not the schema's `required`"
    );
    for (key, value) in written.as_object().into_iter().flatten() {
        let prop = &schema["properties"][key];
        assert_eq!(
            value.is_null(),
            nullable(prop),
            "{name}.{key}: written as {value} but the schema's nullability differs"
        );
    }
    // A field an answer may leave out is left out when empty, never written as `null`.
    for key in property_names(schema).difference(&required(schema)) {
        assert!(
            !nullable(&schema["properties"][key]),
            "{name}.{key}: optional in the schema, so never `null` on the wire, but nullable"
        );
    }
    let full = sample(doc, schema, true);
    let written = serde_json::to_value(parse::<T>(name, &full)).expect("serializes");
    assert_eq!(
        keys(&written),
        property_names(schema),
        "{name}: written with every field set, the keys are not the schema's properties"
    );
}

/// A request type: what its schema admits parses (only the required properties; every
/// nullable one as `null`; every property, none of them dropped as unknown).
fn check_request<T: DeserializeOwned>(doc: &Value, name: &str, written: impl Fn(T) -> Value) {
    let schema = schema(doc, name);
    parse::<T>(name, &sample(doc, schema, false));
    let mut nulls = sample(doc, schema, true);
    if let (Some(values), Some(props)) = (nulls.as_object_mut(), schema["properties"].as_object()) {
        for (key, prop) in props {
            if nullable(prop) {
                values.insert(key.clone(), Value::Null);
            }
        }
    }
    parse::<T>(name, &nulls);
    let full = sample(doc, schema, true);
    let back = written(parse::<T>(name, &full));
    if !back.is_null() {
        assert_eq!(
            keys(&back),
            property_names(schema),
            "{name}: a property of the schema is not a field serde reads"
        );
    }
}

fn to_json<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("serializes")
}

#[test]
fn schemas_are_what_serde_reads_and_writes() {
    let doc = document();
    let mut checked = BTreeSet::new();
    macro_rules! answers {
        ($($ty:ty),* $(,)?) => {$(
            check_answer::<$ty>(&doc, stringify!($ty));
            checked.insert(stringify!($ty));
        )*};
    }
    macro_rules! requests {
        ($($ty:ty),* $(,)?) => {$(
            check_request::<$ty>(&doc, stringify!($ty), to_json::<$ty>);
            checked.insert(stringify!($ty));
        )*};
    }
    answers!(
        SandboxInfo,
        CreateSandboxResponse,
        ResourcesInfo,
        ResourceResize,
        ResizeResources,
        ListSandboxesResponse,
        ArchivedSandboxInfo,
        ListArchivedSandboxesResponse,
        SnapshotInfo,
        CreateSnapshotResponse,
        CopySandboxResponse,
        CopiedSandbox,
        ListSnapshotsResponse,
        ApiErrorBody,
        AgentError,
        HealthResponse,
        AgentInfo,
        FileEntry,
        FileList,
        ProcessInfo,
        ProcessList,
        ManagedInfo,
        ManagedExit,
        SignalResponse,
        OutputResponse,
        OutputEvent,
        OutputBatchEvent,
        StartedEvent,
        ExitEvent,
        EofEvent,
        CreatePtyResponse,
        PtySessionInfo,
        PtySessionList,
        SecretInfo,
        SecretList,
        DesktopUrl,
        PtyTicket,
        SandboxMetrics,
        StopAllResponse,
        SandboxLogsResponse,
        SandboxLogRecord,
        ProcessLogFiltersResponse,
        ProcessLogFilter,
        JournalBatch,
        JournalRecord,
        ImageInfo,
        ImageLayerInfo,
        ImageListResponse,
        ImageRunConfig,
        ImageUsers,
        DeleteImageResponse,
        LayerProgress,
        CreateSandboxPoolResponse,
        PoolContainerInfo,
        SandboxPoolInfo,
        ListSandboxPoolsResponse,
        FileSystemInfo,
        FileSystemAttachment,
        ListFileSystemsResponse,
        NodeInfo,
        NodeResources,
        NodeList,
    );
    requests!(
        CreateSandboxRequest,
        ResourcesRequest,
        GpuResources,
        NetworkConfig,
        UpdateSandboxRequest,
        CreateSnapshotRequest,
        RunRequest,
        StartProcessRequest,
        RestartConfig,
        HealthCheck,
        UserIds,
        SignalRequest,
        CreatePtyRequest,
        ResizeRequest,
        PullImageRequest,
        SaveSnapshotImageRequest,
        SandboxPoolRequest,
        ClaimSandboxRequest,
        SetEnvironmentRequest,
        FileSystemMount,
        CreateFileSystemRequest,
        DetachFileSystemRequest,
    );
    check_request::<SetSecret>(&doc, "SetSecret", |_| Value::Null);
    check_request::<DesktopUrlRequest>(&doc, "DesktopUrlRequest", |_| Value::Null);
    checked.insert("DesktopUrlRequest");
    checked.insert("SetSecret");
    // Schemas that are no struct of their own: enums, the untagged user, the timestamp, the
    // always-ignored transition body, and `/healthz` (a constant).
    checked.extend(["TransitionBody", "Health"]);

    let objects: BTreeSet<&str> = doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, s)| s["type"] == "object")
        .map(|(name, _)| name.as_str())
        .collect();
    let unchecked: Vec<_> = objects.difference(&checked).collect();
    assert!(
        unchecked.is_empty(),
        "object schemas not checked against serde here: {unchecked:?}"
    );
}

// --- the limits against the checks they describe ------------------------------------------

#[test]
fn the_name_pattern_is_the_name_check() {
    let pattern = regex::Regex::new(NAME_PATTERN).expect("the pattern compiles");
    let names = [
        "", "a", "0", "x1", "my-env", "a--b", "-a", "a-", "My", "a_b", "a.b", "é", " a",
    ]
    .map(String::from)
    .into_iter()
    .chain(["a".repeat(63), "a".repeat(64)]);
    for name in names {
        assert_eq!(
            pattern.is_match(&name),
            validate::name(&name).is_ok(),
            "{name:?}: the pattern and the check disagree"
        );
    }
    // The one rule the pattern cannot carry (said in the description): no UUIDs.
    let uuid = "6f1c2a43-9d0b-4f4e-9a65-3c1d2e0f4b5a";
    assert!(pattern.is_match(uuid) && validate::name(uuid).is_err());
}

#[test]
fn the_port_bounds_are_the_port_check() {
    let (lo, hi) = PORT_RANGE;
    assert!(validate::ports(&[lo, hi]).is_ok());
    assert!(validate::ports(&[lo - 1]).is_err());
    assert!(validate::ports(&[hi + 1]).is_err());
    assert!(validate::ports(&[MANAGEMENT_PORT]).is_err());
    let doc = document();
    let item = &schema(&doc, "CreateSandboxRequest")["properties"]["exposed_ports"]["items"];
    assert_eq!(item["minimum"], lo);
    assert_eq!(item["maximum"], hi);
    assert_eq!(item["x-reserved"], json!([MANAGEMENT_PORT]));
}

#[test]
fn the_secret_name_pattern_is_the_secret_name_check() {
    let doc = document();
    let param = &doc["paths"]["/secrets/{name}"]["put"]["parameters"][0];
    assert_eq!(param["name"], "name");
    let pattern = param["schema"]["pattern"].as_str().expect("a pattern");
    let pattern = regex::Regex::new(pattern).expect("the pattern compiles");
    let names = ["", "A", "_", "a1", "API_KEY", "1A", "A-B", "A B", "é"]
        .map(String::from)
        .into_iter()
        .chain(["A".repeat(128), "A".repeat(129)]);
    for name in names {
        assert_eq!(
            pattern.is_match(&name),
            secrets::validate_name(&name).is_ok(),
            "{name:?}: the pattern and the check disagree"
        );
    }
}

#[test]
fn every_operation_has_a_unique_id_and_the_namespaced_copies_their_parameter() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if method == "parameters" {
                continue;
            }
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(ids.insert(id.clone()), "operationId {id} is not unique");
        }
        if path.starts_with("/v1/namespaces/{ns}") {
            assert_eq!(item["parameters"][0]["name"], "ns", "{path}");
        }
    }
    // Every built control-plane route exists flat and namespaced.
    for path in [
        "/sandboxes",
        "/sandboxes/{id}",
        "/archived-sandboxes",
        "/archived-sandboxes/{id}",
        "/snapshots/{sid}",
        "/secrets/{name}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
        assert!(
            doc["paths"][format!("/v1/namespaces/{{ns}}{path}")].is_object(),
            "{path}"
        );
    }
}

#[test]
fn the_document_holds_no_null() {
    // OpenAPI has no member whose value may be `null`: one is always a slip of the
    // post-processing (indexing a missing key of a JSON value inserts `null`).
    fn nulls(value: &Value, at: String, found: &mut Vec<String>) {
        match value {
            Value::Null => found.push(at),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    nulls(item, format!("{at}/{i}"), found);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    nulls(item, format!("{at}/{key}"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    nulls(&document(), String::new(), &mut found);
    assert!(found.is_empty(), "null members: {found:?}");
}
