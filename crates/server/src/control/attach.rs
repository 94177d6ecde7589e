//! Mounting volumes into running sandboxes and out of them, live (no restart).
//!
//! The attachment is stored before the node mounts the volume, and removed
//! only after the node unmounted it, so the store always lists at least what
//! is mounted: a crash in between leaves an attachment that recovery
//! completes (see [`super::recovery`]), never a mount nobody knows of.

use alcove_wire::file_system::FileSystemMount;
use alcove_wire::sandbox::SandboxStatus;

use super::ControlError;
use super::file_systems::{self, VOLUME_LOCK, mount_error, node_mounts};
use super::lifecycle::Sandboxes;
use crate::store::SandboxRecord;

impl Sandboxes {
    /// Mounts `mounts` into the running sandbox `ident` of `namespace`, in order;
    /// returns its record with them. Stops at the first that fails (409 for a
    /// volume held elsewhere or a path the sandbox made unusable, 404 for an
    /// unknown volume), keeping those mounted before it. Other control
    /// modules call it too (a pool claim applies its `file_systems` with it).
    pub async fn attach(
        &self,
        namespace: &str,
        ident: &str,
        mounts: &[FileSystemMount],
    ) -> Result<SandboxRecord, ControlError> {
        for m in mounts {
            file_systems::mount(m)?;
        }
        file_systems::distinct(mounts)?;
        let id = self.ctx.resolve_local(Some(namespace), ident).await?.id;
        let lock = self.ctx.op_lock(&id);
        let _guard = lock.lock().await;
        let mut record = self.ctx.resolve_local(Some(namespace), &id).await?;
        self.attach_locked(&mut record, mounts).await?;
        Ok(record)
    }

    /// Mounts `mounts` into the running sandbox of `record`, whose op lock the
    /// caller holds (a claim binding volumes to a sandbox it is handing out), in
    /// order, storing `record` with each; stops at the first that fails.
    pub(super) async fn attach_locked(
        &self,
        record: &mut SandboxRecord,
        mounts: &[FileSystemMount],
    ) -> Result<(), ControlError> {
        for m in mounts {
            file_systems::mount(m)?;
        }
        file_systems::distinct(mounts)?;
        let id = record.id.clone();
        for m in mounts {
            if record.status != SandboxStatus::Running {
                return Err(ControlError::InvalidState {
                    id: id.to_string(),
                    status: record.status,
                    op: "attach a file system to",
                });
            }
            {
                let vlock = self.ctx.op_lock(VOLUME_LOCK);
                let _vguard = vlock.lock().await;
                self.ctx
                    .check_mounts(
                        &record.namespace,
                        &id,
                        &record.file_systems,
                        std::slice::from_ref(m),
                    )
                    .await?;
                record.file_systems.push(m.clone());
                self.ctx.store.update(record).await?;
            }
            let node_mount = node_mounts(&record.namespace, std::slice::from_ref(m));
            let attached = match node_mount.first() {
                Some(nm) => self.ctx.node.attach_volume(&id, nm).await,
                None => Ok(()),
            };
            if let Err(e) = attached {
                tracing::warn!(sandbox_id = %id, file_system = %m.file_system_id, error = %e, "attaching a volume");
                record.file_systems.retain(|x| x.mount_path != m.mount_path);
                self.ctx.store.update(record).await?;
                return Err(mount_error(e));
            }
            tracing::info!(sandbox_id = %id, file_system = %m.file_system_id, mount_path = %m.mount_path, read_only = m.read_only, "volume attached");
        }
        Ok(())
    }

    /// Unmounts the volume at `mount_path` from the running sandbox `ident`.
    /// Files in use on it refuse this with 409 and leave it mounted.
    pub async fn detach(
        &self,
        namespace: &str,
        ident: &str,
        mount_path: &str,
    ) -> Result<SandboxRecord, ControlError> {
        file_systems::mount_path(mount_path)?;
        let id = self.ctx.resolve_local(Some(namespace), ident).await?.id;
        let lock = self.ctx.op_lock(&id);
        let _guard = lock.lock().await;
        let mut record = self.ctx.resolve_local(Some(namespace), &id).await?;
        let Some(m) = record
            .file_systems
            .iter()
            .find(|m| m.mount_path == mount_path)
            .cloned()
        else {
            return Err(ControlError::NotFound {
                kind: "file system mount",
                id: mount_path.to_string(),
            });
        };
        if record.status != SandboxStatus::Running {
            return Err(ControlError::InvalidState {
                id: id.to_string(),
                status: record.status,
                op: "detach a file system from",
            });
        }
        if let Some(nm) = node_mounts(&record.namespace, std::slice::from_ref(&m)).first() {
            self.ctx
                .node
                .detach_volume(&id, nm)
                .await
                .map_err(mount_error)?;
        }
        record.file_systems.retain(|x| x.mount_path != mount_path);
        self.ctx.store.update(&record).await?;
        tracing::info!(sandbox_id = %id, file_system = %m.file_system_id, mount_path, "volume detached");
        Ok(record)
    }
}
