//! Turning a create request into a pending sandbox record: defaults, validation,
//! and what is not supported (yet).

use alcove_runtime::SandboxId;
use alcove_wire::sandbox::{CreateSandboxRequest, SandboxStatus};
use alcove_wire::time::now_millis;

use super::ControlError;
use super::lifecycle::Boot;
use super::lifecycle::Sandboxes;
use super::validate;
use crate::store::SandboxRecord;

impl Sandboxes {
    /// Turns a create request into a pending record, or says what is wrong.
    pub(super) async fn prepare(
        &self,
        namespace: &str,
        req: &CreateSandboxRequest,
    ) -> Result<(SandboxRecord, Boot), ControlError> {
        let (req, boot) = match &req.snapshot_id {
            Some(sid) => self.snapshots.restore_request(namespace, sid, req).await?,
            None => (req.clone(), Boot::Fresh),
        };
        let req = &req;
        let mut secret_names: Vec<String> = Vec::new();
        for name in req.secret_names.iter().flatten() {
            super::secrets::validate_name(name)?;
            if !secret_names.contains(name) {
                secret_names.push(name.clone());
            }
        }
        // Unknown secrets are a 400 now, not a failed start later.
        self.secrets.sealed(namespace, &secret_names).await?;
        let file_systems = req.file_systems.clone().unwrap_or_default();
        for m in &file_systems {
            super::file_systems::mount(m)?;
        }
        super::file_systems::distinct(&file_systems)?;
        if let Some(n) = &req.network {
            // Unresolvable or malformed destinations are a 400 now, not a failed start.
            super::network::egress_policy(n).await?;
        }
        let (cpus, memory_mb, disk_mb) =
            validate::requested_resources(req.resources.as_ref(), self.ctx.cfg.host)?;
        if let Some(name) = &req.name {
            validate::name(name)?;
        }
        let timeout_secs = req.timeout_secs.unwrap_or(0);
        validate::timeout_secs(timeout_secs)?;
        let exposed_ports = validate::ports(req.exposed_ports.as_deref().unwrap_or(&[]))?;
        let entrypoint = req.entrypoint.clone().unwrap_or_default();
        validate::entrypoint(&entrypoint)?;
        let node_selector = req.node_selector.clone().unwrap_or_default();
        super::node_selector::validate(&node_selector)?;
        if req.auto_resume == Some(false) && req.name.is_none() {
            return Err(ControlError::InvalidArgument {
                field: "auto_resume",
                reason: "turning auto_resume off needs a named sandbox".into(),
            });
        }
        let record = SandboxRecord {
            id: SandboxId::random(),
            namespace: namespace.to_string(),
            name: req.name.clone(),
            status: SandboxStatus::Pending,
            image: req.image.clone().unwrap_or_else(|| "default".into()),
            cpus,
            memory_mb,
            disk_mb,
            timeout_secs,
            entrypoint,
            network_policy: req
                .network
                .clone()
                .unwrap_or_else(super::network::open_policy),
            secret_names,
            exposed_ports,
            allow_unauthenticated_access: req.allow_unauthenticated_access.unwrap_or(false),
            auto_resume: req.auto_resume.unwrap_or(true),
            slot: None,
            created_at: now_millis(),
            terminated_at: None,
            deadline_at: None,
            pending_reason: Some("scheduling".into()),
            termination_reason: None,
            error_details: None,
            timeout_remaining_ms: None,
            transition: None,
            suspended_at: None,
            archived_at: None,
            resource_resize: None,
            pool_id: None,
            pool_state: None,
            file_systems,
            node: self.ctx.local_node().map(String::from),
            node_selector,
        };
        Ok((record, boot))
    }
}
