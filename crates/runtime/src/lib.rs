//! The node runtime: turns "a sandbox with this image, these resources and this
//! network" into a running runc container and back.
//!
//! Owns images, writable layers, OCI bundles, cgroups, network namespaces and the
//! calls to `runc`, `ip` and `nft`. Knows nothing about HTTP, the store or the API.

pub mod archive;
pub mod bundle;
pub mod cgroups;
pub mod checkpoint;
mod cmd;
pub mod error;
pub mod image;
pub mod layer;
pub mod network;
pub mod node;
pub mod runc;
pub mod security;

pub use error::{Result, RuntimeError};
pub use node::{Node, NodeConfig, SandboxHandle, SandboxSpec};
