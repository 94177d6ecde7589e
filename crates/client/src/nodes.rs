//! Nodes: the servers sharing the server's store (`GET /nodes`), and draining
//! one for maintenance.

use alcove_wire::node::{NodeInfo, NodeList};
use http::Method;

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};
use crate::transport::Call;

impl SandboxClient {
    fn node_call(&self, method: Method, segments: &[&str]) -> Result<Call, ClientError> {
        let url = crate::routing::server_url(&self.transport.config, segments)?;
        Ok(Call::new(method, url, Scope::Plain))
    }

    /// Every node the server's store knows, by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        let call = self.node_call(Method::GET, &["nodes"])?;
        let list: NodeList = self.transport.json(call, "node list").await?;
        Ok(list.nodes)
    }

    /// Drains a node: it starts and resumes nothing and suspends its named sandboxes.
    pub async fn drain_node(&self, name: &str) -> Result<NodeInfo, ClientError> {
        let name = identifier_arg(name, "node name")?;
        let call = self
            .node_call(Method::POST, &["nodes", name, "drain"])?
            .policy(true, true);
        self.transport.json(call, "node").await
    }

    /// Puts a drained node back in service.
    pub async fn activate_node(&self, name: &str) -> Result<NodeInfo, ClientError> {
        let name = identifier_arg(name, "node name")?;
        let call = self
            .node_call(Method::POST, &["nodes", name, "activate"])?
            .policy(true, true);
        self.transport.json(call, "node").await
    }
}
