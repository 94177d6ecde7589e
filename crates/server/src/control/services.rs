//! The control plane: one service per job over one shared [`Context`].
//!
//! `sandboxes` creates, finds, changes and ends sandboxes; `suspension` moves
//! them to disk and back; `snapshots` captures them and restores captures into
//! new sandboxes; `secrets` keeps sealed values; `archive` reads and purges ended
//! sandboxes. What they share (the store,
//! the node, the running handles and the per-sandbox op locks) lives in the
//! context, so two services never disagree on who holds a sandbox.

use std::sync::Arc;

use super::archive::Archive;
use super::context::{Context, ControlConfig};
use super::lifecycle::Sandboxes;
use super::secrets::Secrets;
use super::snapshots::Snapshots;
use super::suspend::Suspension;
use super::{AgentClient, InFlightGuard, SandboxNode};
use crate::store::{SandboxRecord, Store};

/// The control plane: its services, and what the server asks of all of them.
#[derive(Debug)]
pub struct Control {
    pub(super) ctx: Arc<Context>,
    /// Create, get, list, update, delete and route to sandboxes.
    pub sandboxes: Sandboxes,
    /// Suspend and resume.
    pub suspension: Suspension,
    /// Take, list, delete and restore snapshots.
    pub snapshots: Snapshots,
    /// Set, list and delete secrets.
    pub secrets: Secrets,
    /// Read ended sandboxes and purge them once the retention runs out.
    pub archive: Archive,
}

impl Control {
    /// The control plane over `store` and `node`.
    pub fn new(
        store: Store,
        node: Arc<dyn SandboxNode>,
        cfg: ControlConfig,
        agents: AgentClient,
        secret_box: crate::secrets::SecretBox,
    ) -> Self {
        let ctx = Arc::new(Context::new(store, node, cfg, secret_box));
        let secrets = Secrets::new(Arc::clone(&ctx));
        let snapshots = Snapshots::new(Arc::clone(&ctx));
        Self {
            sandboxes: Sandboxes::new(Arc::clone(&ctx), secrets.clone(), snapshots.clone(), agents),
            suspension: Suspension::new(Arc::clone(&ctx)),
            snapshots,
            secrets,
            archive: Archive::new(Arc::clone(&ctx)),
            ctx,
        }
    }

    /// Marks a proxied request to sandbox `id` in flight until the guard drops.
    pub fn enter_request(&self, id: &str) -> InFlightGuard {
        self.ctx.inflight.enter(id)
    }

    /// The proxy base URL given to clients.
    pub fn sandbox_url(&self) -> &str {
        &self.ctx.cfg.sandbox_url
    }

    /// The wire form of a sandbox.
    pub fn info(&self, record: &SandboxRecord) -> alcove_wire::sandbox::SandboxInfo {
        record.to_info(&self.ctx.cfg.sandbox_url, &self.ctx.cfg.ingress_endpoint)
    }

    /// The store (for the timeout reaper).
    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    /// Number of sandboxes running now.
    pub fn running_count(&self) -> usize {
        self.ctx.running_count()
    }

    /// Runs the node's orderly shutdown (sandboxes keep running) and closes the store.
    pub async fn shutdown(&self) {
        self.ctx.shutdown().await;
    }
}
