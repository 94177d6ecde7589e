//! `alcove-client`: the Rust SDK of Alcove, the self-hosted sandbox platform.
//!
//! Async (tokio), built on `alcove-wire`'s types, with the surface of the Python SDK in Rust
//! naming:
//!
//! * [`SandboxClient`]: the control plane of one namespace: create (and wait), connect, get,
//!   list, rename, delete, suspend, resume, snapshots, restore, secrets, persisted logs
//!   ([`SandboxClient::get_logs`]), metrics ([`SandboxClient::metrics`]), the desktop URL
//!   ([`SandboxClient::desktop_url`]), and the server's images (list, get, delete, pull, import,
//!   build from a Dockerfile, save a snapshot as one: [`SandboxClient::pull_image`], …);
//! * [`Sandbox`]: one sandbox through the proxy: [`Sandbox::run`], background processes
//!   (stdin, signals, output, [`Sandbox::follow_output`]), supervised ("managed") processes
//!   addressed by name ([`ProcessKey`], [`Command::restart`]), files (streamed both ways),
//!   terminals ([`PtySession`]) and TCP tunnels ([`Tunnel`]);
//! * [`ClientError`]: every failure, with typed variants for what callers handle
//!   ([`ClientError::SandboxNotFound`], [`ClientError::NameConflict`],
//!   [`ClientError::ImageNotFound`], [`ClientError::Timeout`], …).
//!
//! Every call has a client-side deadline (the per-request `timeout`, default 300 s; `run` and
//! `follow_*` are bounded by silence instead, `stream_idle_timeout`, default 120 s), and
//! idempotent calls are retried after 429/502/503/504 with a doubling back-off.
//!
//! ```no_run
//! # async fn demo() -> Result<(), alcove_client::ClientError> {
//! use alcove_client::{Command, CreateOptions, SandboxClient};
//!
//! let client = SandboxClient::new()?; // ALCOVE_API_URL, default http://localhost:8900
//! let sandbox = client.create_and_connect(CreateOptions::new().cpus(1.0)).await?;
//! let result = sandbox.run(Command::new("python3").args(["-c", "print('hello')"])).await?;
//! println!("{} (exit {})", result.stdout, result.exit_code);
//! sandbox.terminate().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod archive;
mod body;
mod client;
mod command;
mod config;
mod context;
mod copy;
mod create;
mod error;
mod file_systems;
mod get_or_create;
mod images;
mod lifecycle;
mod logs;
mod nodes;
mod observe;
mod pools;
mod process_key;
mod pty;
mod retry;
mod routing;
mod sandbox;
mod secrets;
mod snapshots;
mod sse;
#[cfg(test)]
mod tests;
mod tls;
mod transport;
mod tunnel;
mod ws;

pub use alcove_wire as wire;
pub use archive::{ArchiveDirection, ArchivedPageRequest};

pub use client::SandboxClient;
pub use command::Command;
pub use config::{
    API_KEY_ENV, API_URL_ENV, CONNECT_TIMEOUT, ClientConfig, DEFAULT_API_URL, DEFAULT_NAMESPACE,
    DEFAULT_STREAM_IDLE_TIMEOUT, DEFAULT_TIMEOUT, SandboxClientBuilder,
};
pub use copy::MAX_COPIES;
pub use create::{CreateOptions, MANAGEMENT_PORT};
pub use error::{ClientError, Result, TimeoutSetting};
pub use get_or_create::BindOutcome;
pub use images::{BuildOptions, ProgressCallback, PullOptions, TAR_CONTENT_TYPE};
pub use logs::LogsRequest;
pub use process_key::ProcessKey;
pub use pty::PtySession;
pub use sandbox::{ByteStream, FOLLOW_BACKOFF, FOLLOW_RECONNECTS, OutputEvents, Sandbox};
pub use secrets::SecretInfo;
pub use sse::CommandResult;
pub use transport::USER_AGENT;
pub use tunnel::Tunnel;
