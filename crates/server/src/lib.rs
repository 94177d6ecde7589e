//! The control plane, API and proxy of `alcove serve`.
//!
//! Owns the HTTP surface (the control plane and the proxy of docs/protocol/),
//! the sandbox lifecycle and its store. Asks the node runtime (`alcove-runtime`)
//! for everything that touches the host; never runs `runc` or `nft`
//! or speaks netlink itself.

pub mod api;
pub mod auth;
pub mod config;
pub mod console;
pub mod control;
pub mod desktop;
pub mod images;
pub mod listener;
pub mod logs;
pub mod metrics;
pub mod proxy;
pub mod redact;
pub mod secrets;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod tls;

pub use config::Config;
pub use server::{ServeError, serve, shutdown_channel};
