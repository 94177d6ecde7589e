//! The OpenAPI 3.1 document of `alcove serve`, generated from the code: the control plane
//! from this module's routes (see [`super::api_router`]), the in-sandbox API that the proxy
//! forwards from the agent's routes (`alcove_agent::http::api_router`), the bodies from the
//! types of `alcove_wire`, and here what holds for every route (authentication, the
//! connection limits, the proxy's own errors, the request id).
//!
//! Served at `GET /openapi.json` and committed as `docs/protocol/openapi.json`, which a test
//! keeps equal to it; `cargo run -p alcove-server --example openapi` prints it.

use std::sync::OnceLock;

use alcove_agent::http::error::AgentError;
use alcove_agent::http::openapi::tags as agent_tags;
use alcove_wire::error::ApiErrorBody;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, LicenseBuilder};
use utoipa::{IntoParams, PartialSchema, ToSchema};

/// The command that prints the document, for messages telling how to regenerate the file.
pub const REGENERATE: &str =
    "cargo run -q -p alcove-server --example openapi > docs/protocol/openapi.json";

/// Tags of the control-plane routes.
pub mod tags {
    /// Sandboxes: create, list, get, update, delete, suspend, resume.
    pub const SANDBOXES: &str = "sandboxes";
    /// Snapshots of sandboxes.
    pub const SNAPSHOTS: &str = "snapshots";
    /// Ended sandboxes, kept for the archive's retention.
    pub const ARCHIVE: &str = "archived sandboxes";
    /// The image store: pulls, imports, builds.
    pub const IMAGES: &str = "images";
    /// Warm pools and their claims.
    pub const POOLS: &str = "pools";
    /// Alcove's own secret store.
    pub const SECRETS: &str = "secrets";
    /// Persistent volumes and their mounts into sandboxes.
    pub const FILE_SYSTEMS: &str = "file systems";
    /// The server itself: health and this document.
    pub const SERVER: &str = "server";
    /// The nodes (servers) sharing this server's store.
    pub const NODES: &str = "nodes";
    /// Routes of the protocol this server answers 501 on.
    pub const NOT_IMPLEMENTED: &str = "not implemented";
}

/// The `{id}` path parameter of the sandbox routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SandboxParam {
    /// The sandbox's id or name.
    #[allow(dead_code)]
    id: String,
}

/// The `{id}` path parameter of the archived-sandbox routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ArchivedParam {
    /// The sandbox's id (names of ended sandboxes no longer resolve).
    #[allow(dead_code)]
    id: String,
}

/// The `{sid}` path parameter of the snapshot routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SnapshotParam {
    /// The snapshot's id.
    #[allow(dead_code)]
    sid: String,
}

/// The `{pool}` path parameter of the pool routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PoolParam {
    /// The pool's id.
    #[allow(dead_code)]
    pool: String,
}

/// The `{node}` path parameter of the node routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodeParam {
    /// The node's name.
    #[allow(dead_code)]
    node: String,
}

/// The `{name}` path parameter of the secret routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SecretParam {
    /// The secret's name: an environment variable name (letters, digits and `_`, not
    /// starting with a digit, at most 128 characters).
    #[allow(dead_code)]
    #[param(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
    name: String,
}

/// `GET /openapi.json`: this document (no API key needed).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = tags::SERVER,
    operation_id = "openapi",
    responses((status = 200, description = "This OpenAPI document.", content_type = "application/json"))
)]
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json()).into_response()
}

/// The document as pretty-printed JSON with sorted keys and a final newline, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text =
            serde_json::to_string_pretty(&document()).expect("a JSON value always serializes");
        text.push('\n');
        text
    })
}

/// Prefix of the namespaced copies of the control-plane routes.
const NAMESPACED: &str = "/v1/namespaces/{ns}";
/// Prefix of the in-sandbox routes the proxy forwards to the agent.
const IN_SANDBOX: &str = "/api/v1/";
/// Routes that never need an API key.
const PUBLIC: [&str; 2] = ["/healthz", "/openapi.json"];
/// The security scheme of API keys.
const API_KEY: &str = "apiKey";

const DESCRIPTION: &str = "\
Alcove's HTTP API, generated from its code.

* **Control plane**: every route under `/v1/namespaces/{ns}`, and the same routes flat for the \
namespace `default` (`{B}` in summaries stands for either prefix).
* **In-sandbox API** (`/api/v1/...`): served by the sandbox's agent; the server forwards it to the \
sandbox named by `X-Tensorlake-Sandbox-Id`, by `Host: <id or name>.local`, or by the path \
`/sandboxes/{id or name}/api/v1/...`. The agent answers errors as `{\"error\", \"code\"}` \
(`AgentError`), the server as `{\"message\", \"code\", \"request_id\"}` (`ApiErrorBody`).
* **Authentication**: when the server is started with API keys, every route but `/healthz` and \
`/openapi.json` needs `Authorization: Bearer <key>`; without keys none does.
* Every answer carries an `x-request-id` header; 5xx bodies of the server carry the same id.

See docs/api.md for what is built and where Alcove chooses.";

/// The whole document, as a JSON value whose objects have sorted keys.
pub fn document() -> Value {
    let mut doc = super::api_router().into_openapi();
    doc.merge(alcove_agent::http::openapi::openapi());
    doc.info = InfoBuilder::new()
        .title("Alcove")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(
            LicenseBuilder::new()
                .name("Apache-2.0")
                .identifier(Some("Apache-2.0"))
                .build(),
        ))
        .build();
    doc.tags = Some(
        [
            (tags::SANDBOXES, "Sandboxes and their lifecycle."),
            (
                tags::SNAPSHOTS,
                "Snapshots of sandboxes, and restoring them.",
            ),
            (
                tags::ARCHIVE,
                "Ended sandboxes, newest first, kept for the server's `--archive-ttl`.",
            ),
            (
                tags::POOLS,
                "Warm pools: idle sandboxes kept started, handed out by claims that bind a name, environment, secrets and network policy.",
            ),
            (tags::SECRETS, "Alcove's secret store (its own routes)."),
            (tags::SERVER, "The server itself."),
            (
                tags::NOT_IMPLEMENTED,
                "Routes of the protocol that answer 501.",
            ),
            (agent_tags::AGENT, "In-sandbox: the agent's health."),
            (agent_tags::PROCESSES, "In-sandbox: commands and processes."),
            (agent_tags::PROCESS_IO, "In-sandbox: stdin and output."),
            (agent_tags::FILES, "In-sandbox: files."),
            (agent_tags::PTY, "In-sandbox: terminal sessions."),
            (agent_tags::TUNNELS, "In-sandbox: TCP tunnels."),
        ]
        .into_iter()
        .map(|(name, description)| {
            TagBuilder::new()
                .name(name)
                .description(Some(description))
                .build()
        })
        .collect(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        API_KEY.to_string(),
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    // Referred to by name from the common answers added below.
    components
        .schemas
        .insert(ApiErrorBody::name().into_owned(), ApiErrorBody::schema());
    let mut schemas = Vec::new();
    ApiErrorBody::schemas(&mut schemas);
    components.schemas.extend(schemas);
    // Named by hand-written operations (`images::reference_routes`) and by
    // the images' event streams.
    {
        use alcove_wire::image::{DeleteImageResponse, ImageProgressEvent, LayerProgress};
        for (name, schema) in [
            (DeleteImageResponse::name(), DeleteImageResponse::schema()),
            (ImageProgressEvent::name(), ImageProgressEvent::schema()),
            (LayerProgress::name(), LayerProgress::schema()),
        ] {
            components.schemas.insert(name.into_owned(), schema);
        }
        let mut schemas = Vec::new();
        DeleteImageResponse::schemas(&mut schemas);
        ImageProgressEvent::schemas(&mut schemas);
        components.schemas.extend(schemas);
    }

    let mut value = serde_json::to_value(&doc).expect("the OpenAPI document serializes");
    // Keys configured or not, the same document: a key is optional as far as it can tell.
    value["security"] = json!([{}, { API_KEY: [] }]);
    let responses = &mut value["components"]["responses"];
    if responses.is_null() {
        *responses = json!({});
    }
    if let Some(responses) = responses.as_object_mut() {
        responses.extend(common_responses());
    }
    value["components"]["headers"] = json!({
        "XRequestId": {
            "description": "The request's id; the server's log lines of the request carry it.",
            "schema": {"type": "string"},
        }
    });
    if let Some(paths) = value.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            complete_path(path, item);
        }
    }
    sorted(value)
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Adds to one path item what the route attributes do not say.
fn complete_path(path: &str, item: &mut Value) {
    let namespaced = path.starts_with(NAMESPACED);
    if namespaced {
        item["parameters"] = json!([{
            "name": "ns",
            "in": "path",
            "required": true,
            "description": "The namespace (the flat routes use `default`).",
            "schema": {"type": "string"},
        }]);
    }
    let Some(item) = item.as_object_mut() else {
        return;
    };
    for (method, op) in item.iter_mut() {
        if !METHODS.contains(&method.as_str()) {
            continue;
        }
        if namespaced && let Some(Value::String(id)) = op.get_mut("operationId") {
            // Each route exists twice (namespaced and flat); operation ids must be unique.
            id.push_str("InNamespace");
        }
        complete_operation(path, op);
    }
}

/// A server error answer that many routes share: a component under `responses`.
struct Common {
    name: &'static str,
    status: &'static str,
    description: &'static str,
}

/// Every route that needs an API key.
const UNAUTHORIZED: Common = Common {
    name: "Unauthorized",
    status: "401",
    description: "`UNAUTHORIZED`: API keys are configured and `Authorization: Bearer <key>` is \
                  missing or wrong.",
};
/// Every route (the listener's per-client bound).
const TOO_MANY_REQUESTS: Common = Common {
    name: "TooManyRequests",
    status: "429",
    description: "`TOO_MANY_REQUESTS`: this client has `--max-requests-per-client` requests \
                  in flight; retry after `Retry-After`.",
};
/// Every route (the listener's connection cap).
const SERVER_BUSY: Common = Common {
    name: "ServerBusy",
    status: "503",
    description: "`SERVER_BUSY`: the server is at `--max-connections` and closes the \
                  connection.",
};
/// Every control-plane route.
const INTERNAL: Common = Common {
    name: "Internal",
    status: "500",
    description: "`INTERNAL`: the server failed; its log lines carry the body's `request_id`.",
};
// The proxy's own answers to in-sandbox routes (proxy::sandbox_api), before or instead of the
// agent's.
const NO_SANDBOX: Common = Common {
    name: "NoSandboxAddressed",
    status: "400",
    description: "From the server, `INVALID_ARGUMENT`: no sandbox addressed.",
};
const NO_SUCH_SANDBOX: Common = Common {
    name: "NoSuchSandbox",
    status: "404",
    description: "From the server, `NOT_FOUND`: no such sandbox, or it has ended.",
};
const RESUME_FAILED: Common = Common {
    name: "AutoResumeFailed",
    status: "500",
    description: "From the server, `OPERATION_FAILED`: resuming the suspended sandbox for this \
                  request failed; or `INTERNAL`.",
};
const SANDBOX_UNREACHABLE: Common = Common {
    name: "SandboxUnreachable",
    status: "502",
    description: "From the server, `SANDBOX_UNREACHABLE`: the agent did not answer.",
};
const SANDBOX_NOT_READY: Common = Common {
    name: "SandboxNotReady",
    status: "503",
    description: "From the server, `SANDBOX_NOT_READY`: the sandbox is pending, suspending or \
                  resuming; or `SANDBOX_UNREACHABLE`: it accepts no connections.",
};

const ALL_COMMON: [&Common; 9] = [
    &UNAUTHORIZED,
    &TOO_MANY_REQUESTS,
    &SERVER_BUSY,
    &INTERNAL,
    &NO_SANDBOX,
    &NO_SUCH_SANDBOX,
    &RESUME_FAILED,
    &SANDBOX_UNREACHABLE,
    &SANDBOX_NOT_READY,
];

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn request_id_header() -> Value {
    json!({"x-request-id": {"$ref": "#/components/headers/XRequestId"}})
}

/// The `responses` components of [`ALL_COMMON`].
fn common_responses() -> Map<String, Value> {
    ALL_COMMON
        .iter()
        .map(|common| {
            let response = json!({
                "description": common.description,
                "content": {"application/json": {"schema": schema_ref(&ApiErrorBody::name())}},
                "headers": request_id_header(),
            });
            (common.name.to_string(), response)
        })
        .collect()
}

fn complete_operation(path: &str, op: &mut Value) {
    optional_body_is_absent_not_null(op);
    let mut common: Vec<&Common> = Vec::new();
    if PUBLIC.contains(&path) {
        op["security"] = json!([]);
    } else {
        common.push(&UNAUTHORIZED);
    }
    if path.starts_with(IN_SANDBOX) {
        common.extend([
            &NO_SANDBOX,
            &NO_SUCH_SANDBOX,
            &RESUME_FAILED,
            &SANDBOX_UNREACHABLE,
            &SANDBOX_NOT_READY,
        ]);
        let header = json!({
            "name": "X-Tensorlake-Sandbox-Id",
            "in": "header",
            "required": false,
            "description": "The sandbox (id or name). Or address it with \
                `Host: <id or name>.local`, or call `/sandboxes/{id or name}/api/v1/...`.",
            "schema": {"type": "string"},
        });
        match op.get_mut("parameters").and_then(Value::as_array_mut) {
            Some(params) => params.push(header),
            None => op["parameters"] = json!([header]),
        }
    } else if !PUBLIC.contains(&path) {
        common.push(&INTERNAL);
    }
    common.extend([&TOO_MANY_REQUESTS, &SERVER_BUSY]);

    let responses = &mut op["responses"];
    for response in responses
        .as_object_mut()
        .into_iter()
        .flat_map(|r| r.values_mut())
    {
        if response.get("$ref").is_none() {
            response["headers"] = request_id_header();
        }
    }
    let mut statuses: Vec<&str> = common.iter().map(|c| c.status).collect();
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let here: Vec<&&Common> = common.iter().filter(|c| c.status == status).collect();
        match (responses.get_mut(status), here.as_slice()) {
            (None, [only]) => {
                responses[status] =
                    json!({"$ref": format!("#/components/responses/{}", only.name)});
            }
            (existing, here) => {
                let mut merged = existing
                    .cloned()
                    .unwrap_or_else(|| json!({"description": "", "headers": request_id_header()}));
                for common in here {
                    merge_error(&mut merged, common.description);
                }
                responses[status] = merged;
            }
        }
    }
}

/// An optional request body (an `Option` in the route's attribute) may be left out, but a
/// `null` body is refused like any other non-object: drop the derive's `null` alternative.
fn optional_body_is_absent_not_null(op: &mut Value) {
    // `get_mut`, not indexing: indexing would add a `null` body to every operation.
    let Some(body) = op.get_mut("requestBody") else {
        return;
    };
    if body["required"] == true {
        return;
    }
    let Some(contents) = body.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    for schema in contents.values_mut().filter_map(|c| c.get_mut("schema")) {
        let kept: Vec<Value> = schema["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|branch| branch["type"] != "null")
            .cloned()
            .collect();
        if let [only] = kept.as_slice()
            && schema["oneOf"].as_array().is_some_and(|all| all.len() == 2)
        {
            *schema = only.clone();
        }
    }
}

/// Merges a server error answer into `response`, whose body may then be either error shape.
fn merge_error(response: &mut Value, description: &str) {
    if let Some(Value::String(text)) = response.get_mut("description") {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(description);
    }
    let schema = &mut response["content"]["application/json"]["schema"];
    let server = schema_ref(&ApiErrorBody::name());
    let agent = schema_ref(&AgentError::name());
    if *schema == agent {
        *schema = json!({"oneOf": [agent, server]});
    } else if schema.is_null() {
        *schema = server;
    }
}

/// `value` with the keys of every object in sorted order, whatever `serde_json`'s map
/// keeps, so the document's text is stable.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted(v)))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests;
