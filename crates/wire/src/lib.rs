//! The JSON types of the protocol (docs/protocol/), shared by the server, the agent and the
//! clients.
//!
//! This crate does no I/O: it only defines what travels on the wire (request and
//! response bodies, status enums, error bodies) and small pure helpers around them.
//!
//! Every type derives `utoipa::ToSchema`, the source of the OpenAPI document
//! (`docs/protocol/openapi.json`). A request type is described as it is read (a field with a
//! default may be absent, an `Option` may also be `null`); an answer as it is written (a field
//! is required unless `skip_serializing_if` may leave it out, and nullable only if it can be
//! sent as `null`). Both directions need `#[schema(required, nullable)]` overrides where serde's
//! `default` and `Option` do not say how the field is written.

pub mod copy;
pub mod desktop;
pub mod error;
pub mod file_system;
pub mod files;
pub mod health;
pub mod image;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod process;
pub mod pty;
pub mod sandbox;
pub mod snapshot;
pub mod time;
