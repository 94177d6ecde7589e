//! The OpenAPI description of the agent's API: the routes' own descriptions (see
//! [`super::api_router`]) plus what the derive cannot express, the server-sent-event answers.

use alcove_wire::journal::JournalBatch;
use alcove_wire::process::{EofEvent, ExitEvent, OutputBatchEvent, OutputEvent, StartedEvent};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{PartialSchema, ToResponse, ToSchema};

use crate::sse;

/// Tags of the agent's routes, one per resource.
pub mod tags {
    /// Health and version of the agent.
    pub const AGENT: &str = "agent";
    /// Running commands and managing processes.
    pub const PROCESSES: &str = "processes";
    /// Stdin and captured output of processes.
    pub const PROCESS_IO: &str = "process I/O";
    /// Reading, writing and listing files.
    pub const FILES: &str = "files";
    /// Terminal sessions.
    pub const PTY: &str = "pty";
    /// TCP tunnels into the sandbox.
    pub const TUNNELS: &str = "tunnels";
    /// The sandbox's event journal (its logs).
    pub const JOURNAL: &str = "journal";
}

/// Media-type extension mapping each SSE event name to the schema of its `data` line.
pub const SSE_EVENTS_EXTENSION: &str = "x-sse-events";

/// The 200 answer of `POST /api/v1/processes/run` (component `RunEvents`).
pub struct RunEvents;

impl<'r> ToResponse<'r> for RunEvents {
    fn response() -> (&'r str, RefOr<Response>) {
        let events = [
            ("started", StartedEvent::name()),
            ("output", OutputEvent::name()),
            ("output_batch", OutputBatchEvent::name()),
            ("exit", ExitEvent::name()),
        ];
        let description = "Server-sent events: `started` first, then one `output` per line \
                           of stdout or stderr (none is dropped; one `output_batch` per read \
                           instead when the request sets `batch_output`), then `exit`.";
        ("RunEvents", sse_response(description, &events))
    }
}

/// The 200 answer of `GET /api/v1/processes/{p}/{stdout,stderr,output}/follow` (component
/// `FollowEvents`).
pub struct FollowEvents;

impl<'r> ToResponse<'r> for FollowEvents {
    fn response() -> (&'r str, RefOr<Response>) {
        let events = [
            ("output", OutputEvent::name()),
            ("output_batch", OutputBatchEvent::name()),
            ("eof", EofEvent::name()),
        ];
        let description = "Server-sent events: the lines still buffered, then live lines, one \
                           `output` each (or one `output_batch` per group with `?batch=true`; a \
                           follower that falls behind the buffer skips lines), then `eof` once \
                           the process exited and its output is drained.";
        ("FollowEvents", sse_response(description, &events))
    }
}

/// The 200 answer of `GET /api/v1/journal` (component `JournalEvents`).
pub struct JournalEvents;

impl<'r> ToResponse<'r> for JournalEvents {
    fn response() -> (&'r str, RefOr<Response>) {
        let events = [("journal", JournalBatch::name())];
        let description = "Server-sent events: one `journal` batch per group of new records, \
                           oldest first, for as long as the client stays; never ends on its own.";
        ("JournalEvents", sse_response(description, &events))
    }
}

/// A `text/event-stream` answer whose events carry the given schemas as data.
fn sse_response(
    description: &str,
    events: &[(&str, std::borrow::Cow<'static, str>)],
) -> RefOr<Response> {
    let keepalive = sse::KEEPALIVE_INTERVAL.as_secs();
    let framing = format!(
        "Each event is `event: <name>`, `data: <one-line JSON>` and a blank line; a \
         `: keep-alive` comment follows {keepalive} s of silence. Clients tell events apart by \
         the shape of their data; `{SSE_EVENTS_EXTENSION}` names each event's data schema."
    );
    let map: serde_json::Map<String, serde_json::Value> = events
        .iter()
        .map(|(event, schema)| {
            let target = format!("#/components/schemas/{schema}");
            (event.to_string(), serde_json::json!({ "$ref": target }))
        })
        .collect();
    let content = ContentBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(framing)),
        ))
        .extensions(Some(
            ExtensionsBuilder::new()
                .add(SSE_EVENTS_EXTENSION, serde_json::Value::Object(map))
                .build(),
        ))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content(sse::CONTENT_TYPE, content)
        .build()
        .into()
}

/// Adds `T` and every schema it refers to, by name.
fn add_schema<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), <T as PartialSchema>::schema()));
    T::schemas(schemas);
}

/// The OpenAPI description of every route of [`super::api_router`], with the components
/// the route descriptions refer to by name.
pub fn openapi() -> OpenApi {
    let mut doc = super::api_router().into_openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, response) in [
        RunEvents::response(),
        FollowEvents::response(),
        JournalEvents::response(),
    ] {
        components.responses.insert(name.to_string(), response);
    }
    // Only the SSE extension names these; no route refers to them directly.
    let mut schemas = Vec::new();
    add_schema::<StartedEvent>(&mut schemas);
    add_schema::<OutputEvent>(&mut schemas);
    add_schema::<ExitEvent>(&mut schemas);
    add_schema::<EofEvent>(&mut schemas);
    add_schema::<OutputBatchEvent>(&mut schemas);
    add_schema::<JournalBatch>(&mut schemas);
    components.schemas.extend(schemas);
    doc
}

/// The `{p}` path parameter of the process routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProcessParam {
    /// Process id inside the sandbox, or the name of a managed process.
    #[allow(dead_code)]
    p: String,
}

/// The `Last-Event-ID` header of the follow routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct LastEventIdHeader {
    /// The `id` of the last `output_batch` taken: the follow starts right after it.
    #[allow(dead_code)]
    #[param(rename = "Last-Event-ID")]
    last_event_id: Option<u64>,
}

/// The `{id}` path parameter of the PTY session routes.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionParam {
    /// The session id from `POST /api/v1/pty`.
    #[allow(dead_code)]
    id: String,
}
