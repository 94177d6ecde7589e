//! The proxy: routes `/api/v1/*` to the agent of the sandbox named by the
//! request (docs/protocol/proxy.md), streaming both ways without buffering.

mod ingress;
mod node_link;
mod owner;
mod routing;
mod sandbox_api;
mod sibling;

pub use ingress::{parse_ingress_host, route_ingress};
#[cfg(test)]
pub(crate) use node_link::tls_failure;
pub use node_link::{NodeAddress, NodeLink, NodeStream};
pub use owner::{FORWARDED_BY, forward_to_owner};
pub use routing::sandbox_ident;
pub(crate) use sandbox_api::forward_to_agent;
pub use sandbox_api::{forward, forward_by_path};
