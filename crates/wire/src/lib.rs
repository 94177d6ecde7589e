//! The JSON types of WIRE.md, shared by the server, the agent and the clients.
//!
//! This crate does no I/O: it only defines what travels on the wire (request and
//! response bodies, status enums, error bodies) and small pure helpers around them.

pub mod error;
pub mod files;
pub mod health;
pub mod limits;
pub mod process;
pub mod pty;
pub mod sandbox;
pub mod snapshot;
pub mod time;
