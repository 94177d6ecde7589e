//! Live resize of a running sandbox: new CPU and memory limits through `runc update` (which
//! writes the cgroups and keeps runc's own record of the container in step), the user
//! group's memory limit kept below the sandbox's, and a bigger writable layer (the sparse
//! image grows, the loop device is told, `resize2fs` grows the mounted ext4).
//!
//! The bundle's `config.json` is rewritten with the new limits too, so that a server that
//! restarts adopts the container with its current cpuset. A suspended sandbox needs none of
//! this: its resume writes the bundle and the user group from its spec, and grows its layer
//! to the spec's `disk_mb` (see [`crate::layer::Layer::grow`]).

use std::os::unix::fs::PermissionsExt;

use crate::bundle::CFS_PERIOD_US;
use crate::error::{Result, RuntimeError};
use crate::layer::Layer;
use crate::node::{DISK_RESERVE_MB, Node};
use crate::sandbox_id::SandboxId;

/// The limits a sandbox is resized to (every dimension, changed or not).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resize {
    /// CPUs (the CFS quota, and a cpuset of `ceil(cpus)` CPUs).
    pub cpus: f64,
    /// Memory in MiB (swap included where the host limits it).
    pub memory_mb: u64,
    /// Writable-layer size in MiB; never below the current size.
    pub disk_mb: u64,
}

/// The `runc update` resources document for `to` on CPUs `cpuset`.
fn resources_json(to: Resize, cpuset: &str, limit_swap: bool) -> serde_json::Value {
    let memory = to.memory_mb << 20;
    let mut doc = serde_json::json!({
        "memory": { "limit": memory },
        "cpu": {
            "quota": (to.cpus * CFS_PERIOD_US as f64).round() as i64,
            "period": CFS_PERIOD_US,
            "cpus": cpuset,
        },
    });
    if limit_swap {
        doc["memory"]["swap"] = serde_json::json!(memory);
    }
    doc
}

impl Node {
    /// Applies `to` to the running sandbox `id`: CPU and memory at once, and the layer
    /// grown when `to.disk_mb` is more than its size. Shrinking memory below what the
    /// sandbox uses fails (the kernel cannot reclaim enough) and leaves the old limits.
    pub async fn resize(&self, id: &SandboxId, to: Resize) -> Result<()> {
        if !self.runc.exists(id) {
            return Err(RuntimeError::Config(format!(
                "sandbox {id} has no container"
            )));
        }
        let layer = Layer::new(self.sandbox_dir(id));
        let disk_mb = layer.disk_mb()?;
        // The disk first: it is the step that may fail without changing anything (the file
        // system grows last), so a failure leaves every limit as it was.
        if to.disk_mb > disk_mb {
            self.admit_growth(to.disk_mb - disk_mb)?;
            layer.grow(to.disk_mb).await?;
            // The layer may now write more: creates measure again.
            self.disk_promises.forget();
        }
        let memory = to.memory_mb << 20;
        let old_memory = self.cgroups.usage(id).and_then(|u| u.memory_limit_bytes);
        let before = self.limits_in_bundle(id);
        // The user group stays below the sandbox: lower it first, raise it last.
        let shrinking = old_memory.is_some_and(|old| memory < old);
        if shrinking {
            self.cgroups.set_user_memory(id, memory)?;
        }
        let cpuset = self.cpus.assign_list(id, to.cpus);
        let updated = self.update_limits(id, to, &cpuset).await;
        if let Err(e) = updated {
            // runc writes the memory limit before the CPU's: a CPU limit the kernel refused
            // left the new memory limit behind. The sandbox's limits go back first, so that
            // the user group, raised after them, stays below.
            match before {
                Ok((doc, cpuset)) => {
                    if let Err(undo) = self.runc.update(id, &doc.to_string()).await {
                        tracing::warn!(sandbox_id = %id, error = %undo,
                            "could not put the limits back after a failed resize");
                    }
                    self.cpus.release(id);
                    self.cpus.adopt(id, &cpuset);
                }
                Err(undo) => tracing::warn!(sandbox_id = %id, error = %undo,
                    "no recorded limits to put back after a failed resize"),
            }
            if let (true, Some(old)) = (shrinking, old_memory) {
                let _ = self.cgroups.set_user_memory(id, old);
            }
            return Err(e);
        }
        if !shrinking {
            self.cgroups.set_user_memory(id, memory)?;
        }
        self.record_limits(id, to, &cpuset)?;
        tracing::info!(
            sandbox_id = %id,
            cpus = to.cpus,
            memory_mb = to.memory_mb,
            disk_mb = to.disk_mb.max(disk_mb),
            "sandbox resized"
        );
        Ok(())
    }

    /// Sets the CPU and memory limits of the sandbox's cgroups to `to` through `runc update`
    /// (the user group is the caller's).
    pub(crate) async fn update_limits(&self, id: &str, to: Resize, cpuset: &str) -> Result<()> {
        let limit_swap = self.cgroups.setup().has_swap_limit();
        let doc = resources_json(to, cpuset, limit_swap).to_string();
        self.runc.update(id, &doc).await
    }

    /// Records limits `to` in the sandbox's bundle, once its cgroups have them.
    pub(crate) fn record_limits(&self, id: &str, to: Resize, cpuset: &str) -> Result<()> {
        self.record_in_bundle(id, to, cpuset, self.cgroups.setup().has_swap_limit())
    }

    /// Checks that `extra_mb` more of layer fits on the data directory's disk (the same
    /// rule as creates, for the growth only).
    fn admit_growth(&self, extra_mb: u64) -> Result<()> {
        let (free_mb, _) = crate::host::disk_space_mb(&self.cfg.data_dir)?;
        let room =
            (free_mb.saturating_sub(DISK_RESERVE_MB) as f64 * self.cfg.disk_overcommit) as u64;
        if extra_mb > room {
            return Err(RuntimeError::Capacity(format!(
                "not enough disk space to grow the layer by {extra_mb} MB: {free_mb} MB are \
                 free under the data directory (overcommit {})",
                self.cfg.disk_overcommit
            )));
        }
        Ok(())
    }

    /// The CPU and memory limits the bundle's `config.json` records (those the sandbox runs
    /// with), as a `runc update` document, and its CPU list.
    fn limits_in_bundle(&self, id: &str) -> Result<(serde_json::Value, String)> {
        let (_, json) = self.bundle_config(id)?;
        let resources = &json["linux"]["resources"];
        let mut doc = serde_json::json!({"memory": {}, "cpu": {}});
        for key in ["limit", "swap"] {
            if let Some(v) = resources["memory"].get(key) {
                doc["memory"][key] = v.clone();
            }
        }
        for key in ["quota", "period", "cpus"] {
            if let Some(v) = resources["cpu"].get(key) {
                doc["cpu"][key] = v.clone();
            }
        }
        let cpuset = resources["cpu"]["cpus"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok((doc, cpuset))
    }

    /// The path and the parsed content of the sandbox's bundle `config.json`.
    fn bundle_config(&self, id: &str) -> Result<(std::path::PathBuf, serde_json::Value)> {
        let config = self.sandbox_dir(id).join("bundle/config.json");
        let text =
            std::fs::read_to_string(&config).map_err(RuntimeError::io("reading", &config))?;
        let json = serde_json::from_str(&text)
            .map_err(|e| RuntimeError::Spec(format!("reading {}: {e}", config.display())))?;
        Ok((config, json))
    }

    /// Writes the new limits into the bundle's `config.json`.
    fn record_in_bundle(&self, id: &str, to: Resize, cpuset: &str, limit_swap: bool) -> Result<()> {
        let (config, mut json) = self.bundle_config(id)?;
        let doc = resources_json(to, cpuset, limit_swap);
        let resources = &mut json["linux"]["resources"];
        for key in ["limit", "swap"] {
            if let Some(v) = doc["memory"].get(key) {
                resources["memory"][key] = v.clone();
            }
        }
        for key in ["quota", "period", "cpus"] {
            resources["cpu"][key] = doc["cpu"][key].clone();
        }
        let out = serde_json::to_vec_pretty(&json)
            .map_err(|e| RuntimeError::Spec(format!("writing {}: {e}", config.display())))?;
        let tmp = config.with_extension("json.tmp");
        std::fs::write(&tmp, out).map_err(RuntimeError::io("writing", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(RuntimeError::io("restricting", &tmp))?;
        std::fs::rename(&tmp, &config).map_err(RuntimeError::io("replacing", &config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_update_document_carries_quota_cpuset_and_memory() {
        let to = Resize {
            cpus: 0.5,
            memory_mb: 2048,
            disk_mb: 0,
        };
        let doc = resources_json(to, "1", true);
        assert_eq!(doc["cpu"]["quota"], 50_000);
        assert_eq!(doc["cpu"]["period"], 100_000);
        assert_eq!(doc["cpu"]["cpus"], "1");
        assert_eq!(doc["memory"]["limit"], 2048_i64 << 20);
        assert_eq!(doc["memory"]["swap"], 2048_i64 << 20);
        assert!(
            resources_json(to, "1", false)["memory"]
                .get("swap")
                .is_none()
        );
    }
}
