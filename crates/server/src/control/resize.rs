//! Live resize (`PATCH` with `resources`): new CPU, memory and disk limits for a running
//! sandbox, applied through its cgroups and layer without a restart, or stored for a
//! suspended one, which gets them when it resumes.
//!
//! Every admitted resize is a new `generation` of the sandbox's `resource_resize`. It is
//! applied before the answer, so the answer already says `succeeded` (the record's
//! resources are the new ones) or `failed` (they are the old ones, `error_message` says
//! why). A request refused before it is admitted (bad values, a shrinking disk, memory
//! below what the sandbox uses, less memory for a suspended sandbox, a sandbox that is not
//! running or suspended) is an error answer and takes no generation.

use alcove_runtime::resize::Resize;
use alcove_wire::sandbox::{
    ResizeResources, ResizeStatus, ResourceResize, ResourcesRequest, SandboxStatus,
};

use super::ControlError;
use super::lifecycle::Sandboxes;
use super::validate;
use crate::redact::{Failure, public_reason};
use crate::store::SandboxRecord;

fn invalid(reason: impl Into<String>) -> ControlError {
    ControlError::InvalidArgument {
        field: "resources",
        reason: reason.into(),
    }
}

/// The target of a resize of `record` to `asked`: asked dimensions, the others as they
/// are; checked as a create's are, and the disk may only grow.
fn target(
    record: &SandboxRecord,
    asked: &ResourcesRequest,
    host: validate::HostLimits,
) -> Result<ResizeResources, ControlError> {
    if asked.gpus.as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(invalid("GPUs are not supported by this server"));
    }
    let disk_mb = asked.disk();
    if asked.cpus.is_none() && asked.memory_mb.is_none() && disk_mb.is_none() {
        return Err(invalid("give at least one of cpus, memory_mb and disk_mb"));
    }
    let to = ResizeResources {
        cpus: asked.cpus.unwrap_or(record.cpus),
        memory_mb: asked.memory_mb.unwrap_or(record.memory_mb),
        disk_mb: disk_mb.unwrap_or(record.disk_mb),
    };
    validate::resources(to.cpus, to.memory_mb, host)?;
    validate::disk(to.disk_mb)?;
    if to.disk_mb < record.disk_mb {
        return Err(ControlError::InvalidArgument {
            field: "resources.disk_mb",
            reason: format!(
                "the disk cannot shrink: {} MB asked, it has {} MB",
                to.disk_mb, record.disk_mb
            ),
        });
    }
    Ok(to)
}

impl Sandboxes {
    /// Resizes a running or suspended sandbox to `asked` (see the module documentation).
    pub(super) async fn resize(
        &self,
        namespace: &str,
        ident: &str,
        asked: ResourcesRequest,
    ) -> Result<SandboxRecord, ControlError> {
        let id = self.ctx.resolve_local(Some(namespace), ident).await?.id;
        let lock = self.ctx.op_lock(&id);
        let _guard = lock.lock().await;
        let mut record = self.ctx.resolve_local(Some(namespace), &id).await?;
        let running = record.status == SandboxStatus::Running;
        let suspended = record.status == SandboxStatus::Suspended;
        if !(running || suspended) || record.transition.is_some() {
            return Err(ControlError::InvalidState {
                id: id.to_string(),
                status: record.status,
                op: "resize",
            });
        }
        let to = target(&record, &asked, self.ctx.cfg.host)?;
        let limit = u64::try_from(to.memory_mb).unwrap_or(0) << 20;
        // What a suspended sandbox's processes use is known only while they run: less memory
        // than its dump needs would be accepted here and fail every resume.
        if suspended && to.memory_mb < record.memory_mb {
            return Err(ControlError::Conflict(format!(
                "cannot shrink the memory of suspended sandbox {id} (to {} MB from {} MB): \
                 what its processes use is known only while they run; resume it, then shrink \
                 it (growing it while suspended is fine)",
                to.memory_mb, record.memory_mb
            )));
        }
        if running
            && to.memory_mb < record.memory_mb
            && let Some(usage) = self.ctx.usage(&id).await
            && usage.memory_bytes > limit
        {
            return Err(ControlError::Conflict(format!(
                "cannot resize sandbox {id} to {} MB of memory: it uses {} MB now \
                 (limit {} MB); free memory in it first",
                to.memory_mb,
                usage.memory_bytes.div_ceil(1 << 20),
                record.memory_mb
            )));
        }
        let generation = record.resource_resize.as_ref().map_or(0, |r| r.generation) + 1;
        let applied = if running {
            self.ctx
                .node
                .resize(
                    &id,
                    Resize {
                        cpus: to.cpus,
                        memory_mb: limit >> 20,
                        disk_mb: u64::try_from(to.disk_mb).unwrap_or(0),
                    },
                )
                .await
        } else {
            // Suspended: the resume builds the cgroups and grows the layer from the record.
            Ok(())
        };
        let (status, error_message) = match applied {
            Ok(()) => {
                record.cpus = to.cpus;
                record.memory_mb = to.memory_mb;
                record.disk_mb = to.disk_mb;
                (ResizeStatus::Succeeded, None)
            }
            Err(e) => {
                tracing::warn!(sandbox_id = %id, generation, error = %e, "resize failed");
                let detail = e.to_string();
                (
                    ResizeStatus::Failed,
                    Some(format!(
                        "resize failed: {}",
                        public_reason(Failure::Other, &detail)
                    )),
                )
            }
        };
        record.resource_resize = Some(ResourceResize {
            generation,
            requested: to,
            status,
            error_message,
        });
        self.ctx.store.update(&record).await?;
        tracing::info!(sandbox_id = %id, generation, ?status, "resize recorded");
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: validate::HostLimits = validate::HostLimits {
        cpus: 4.0,
        memory_mb: 16_384,
    };

    fn asked(json: serde_json::Value) -> ResourcesRequest {
        serde_json::from_value(json).expect("resources")
    }

    #[test]
    fn unasked_dimensions_keep_their_values() {
        let record = crate::store::sample_record("a", None);
        let to = target(
            &record,
            &asked(serde_json::json!({"memory_mb": 2048})),
            HOST,
        )
        .expect("target");
        assert_eq!(to.cpus, record.cpus);
        assert_eq!(to.memory_mb, 2048);
        assert_eq!(to.disk_mb, record.disk_mb);
    }

    #[test]
    fn targets_are_checked_like_creates_and_the_disk_only_grows() {
        let record = crate::store::sample_record("a", None);
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"cpus": 0.0}),
            serde_json::json!({"cpus": 8.0, "memory_mb": 8192}),
            serde_json::json!({"memory_mb": 100}),
            serde_json::json!({"disk_mb": record.disk_mb - 1}),
            serde_json::json!({"gpus": [{"count": 1, "model": "H100"}]}),
        ] {
            assert!(
                matches!(
                    target(&record, &asked(bad.clone()), HOST),
                    Err(ControlError::InvalidArgument { .. })
                ),
                "{bad} accepted"
            );
        }
        let grown = target(
            &record,
            &asked(serde_json::json!({"disk_mb": record.disk_mb + 1024})),
            HOST,
        )
        .expect("grow");
        assert_eq!(grown.disk_mb, record.disk_mb + 1024);
    }
}
