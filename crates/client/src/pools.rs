//! Warm pools (docs/protocol/control-plane.md, Warm pools): sandboxes started ahead of need,
//! handed out by a claim that binds the claimer's name, environment, secrets, network policy
//! and volumes in a couple of milliseconds.

use alcove_wire::pool::{
    ClaimSandboxRequest, CreateSandboxPoolResponse, ListSandboxPoolsResponse, SandboxPoolInfo,
    SandboxPoolRequest,
};
use alcove_wire::sandbox::{CreateSandboxResponse, SandboxInfo};
use http::Method;

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};

impl SandboxClient {
    /// Creates a pool; its refiller starts `warm_containers` idle sandboxes.
    pub async fn create_pool(
        &self,
        request: &SandboxPoolRequest,
    ) -> Result<CreateSandboxPoolResponse, ClientError> {
        let call = self
            .call(Method::POST, &["sandbox-pools"], Scope::Plain)?
            .policy(false, false)
            .json(request)?;
        self.transport.json(call, "pool").await
    }

    /// The namespace's pools (without their sandboxes).
    pub async fn list_pools(&self) -> Result<Vec<SandboxPoolInfo>, ClientError> {
        let call = self.call(Method::GET, &["sandbox-pools"], Scope::Plain)?;
        let list: ListSandboxPoolsResponse = self.transport.json(call, "pool list").await?;
        Ok(list.pools)
    }

    /// One pool, with its idle and claimed sandboxes.
    pub async fn get_pool(&self, pool_id: &str) -> Result<SandboxPoolInfo, ClientError> {
        let id = identifier_arg(pool_id, "pool id")?;
        let call = self.call(Method::GET, &["sandbox-pools", id], Scope::Plain)?;
        self.transport.json(call, "pool").await
    }

    /// Replaces a pool's configuration; idle sandboxes of the old one are recycled. A
    /// `network` of `None` keeps the pool's policy; `Some(Value::Null)` clears it.
    pub async fn update_pool(
        &self,
        pool_id: &str,
        request: &SandboxPoolRequest,
    ) -> Result<SandboxPoolInfo, ClientError> {
        let id = identifier_arg(pool_id, "pool id")?;
        let call = self
            .call(Method::PUT, &["sandbox-pools", id], Scope::Plain)?
            .json(request)?;
        self.transport.json(call, "pool").await
    }

    /// Deletes a pool and its idle sandboxes (409 `POOL_IN_USE` while claimed ones run).
    pub async fn delete_pool(&self, pool_id: &str) -> Result<(), ClientError> {
        let id = identifier_arg(pool_id, "pool id")?;
        let call = self.call(Method::DELETE, &["sandbox-pools", id], Scope::Plain)?;
        self.transport.body(call).await.map(drop)
    }

    /// Claims a sandbox from a pool, binding `request`; answers it running (429
    /// `POOL_AT_CAPACITY` when the pool is at `max_containers`).
    pub async fn claim(
        &self,
        pool_id: &str,
        request: &ClaimSandboxRequest,
    ) -> Result<SandboxInfo, ClientError> {
        let id = identifier_arg(pool_id, "pool id")?;
        let call = self
            .call(
                Method::POST,
                &["sandbox-pools", id, "sandboxes"],
                Scope::Plain,
            )?
            .policy(false, false)
            .json(request)?;
        let claimed: CreateSandboxResponse = self.transport.json(call, "claim answer").await?;
        match crate::lifecycle::running_info(&claimed) {
            Some(info) => Ok(info),
            None => self.get(&claimed.sandbox_id).await,
        }
    }
}
