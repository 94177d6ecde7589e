//! The node runtime: turns "a sandbox with this image, these resources and this
//! network" into a running runc container and back.
//!
//! Owns images, writable layers, OCI bundles, cgroups, user and network
//! namespaces (plumbed over netlink), host kernel limits and the calls to `runc` and
//! `nft`.
//! Knows nothing about HTTP, the store or the API.

pub mod agent_builds;
pub mod archive;
pub mod blocking;
pub mod bundle;
pub mod cgroup_dynmods;
pub mod cgroups;
pub mod checkpoint;
mod cmd;
pub mod cpuset;
pub mod criu_images;
pub mod disk_promises;
pub mod error;
mod freeze;
pub mod hook;
pub mod host;
pub mod idmap;
pub mod image;
pub mod layer;
mod layer_trees;
pub mod loopdev;
pub mod lxcfs;
pub mod net_plumbing;
pub mod network;
pub mod node;
pub mod perms;
pub mod pidfd;
mod procfs;
pub mod remove_tree;
pub mod resize;
pub mod restore_memory;
pub mod runc;
pub mod runc_ns;
pub mod sandbox_id;
pub mod security;
pub mod spare_layers;
mod spawn;
pub mod spawn_slots;
pub mod sys_view;
pub mod trash;
pub mod usage;
pub mod user_cgroup;
pub mod userns;
pub mod volume;
pub mod volume_ns;

pub use error::{Result, RuntimeError};
pub use node::{Laps, Node, NodeConfig, SandboxHandle, SandboxSpec};
pub use sandbox_id::{InvalidSandboxId, SandboxId};
