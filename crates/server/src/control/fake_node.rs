//! An in-memory [`SandboxNode`] for the control plane's tests: containers,
//! dumps and slots are entries in maps, and any operation can be made to fail
//! (or to block until released) to test error paths and concurrency.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use alcove_runtime::error::CommandError;
use alcove_runtime::network::{EgressPolicy, Slot};
use alcove_runtime::node::Recovery;
use alcove_runtime::resize::Resize;
use alcove_runtime::runc::ContainerStatus;
use alcove_runtime::usage::SandboxUsage;
use alcove_runtime::{RuntimeError, SandboxHandle, SandboxId, SandboxSpec};

use crate::store::test_id;
use async_trait::async_trait;
use tokio::sync::Semaphore;

use super::SandboxNode;

/// Operations that can be made to fail or to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Create,
    Suspend,
    Resume,
    Snapshot,
    Restore,
    RemoveLeftovers,
    Resize,
    AttachVolume,
    DetachVolume,
}

#[derive(Debug, Default)]
struct State {
    containers: HashMap<SandboxId, ContainerStatus>,
    checkpoints: HashSet<SandboxId>,
    slots: BTreeSet<u32>,
    failures: HashMap<Op, usize>,
    /// The next call of an op fails with this error instead of an injected command failure.
    refusals: HashMap<Op, RuntimeError>,
    full: bool,
    destroyed: Vec<SandboxId>,
    egress: Vec<(u32, bool)>,
    in_progress: HashSet<SandboxId>,
    leftovers: HashSet<SandboxId>,
    memory_used: Option<u64>,
    resizes: Vec<(SandboxId, Resize)>,
    resumed: Vec<(SandboxId, Resize)>,
    /// Volume keys that exist.
    volumes: HashSet<String>,
    /// Volumes mounted live: (sandbox, key, mount path).
    mounted: Vec<(SandboxId, String, String)>,
}

/// The fake node; cheap to clone (clones share their state).
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeNode {
    state: Arc<Mutex<State>>,
    gates: Arc<Mutex<HashMap<Op, Arc<Semaphore>>>>,
}

/// The error a failed fake operation returns: shaped like a runc failure,
/// host path and argv included, as the real one is.
fn failure(op: Op) -> RuntimeError {
    RuntimeError::Command(CommandError {
        argv: format!("runc --root /var/lib/alcove/runc {op:?}"),
        reason: "exit status: 1: injected failure".into(),
    })
}

impl FakeNode {
    /// The volume keys that exist and the mount paths of `id`'s live-attached volumes.
    pub(crate) fn volumes(&self, id: &SandboxId) -> (HashSet<String>, Vec<String>) {
        let s = self.state();
        let paths = s
            .mounted
            .iter()
            .filter(|(sb, _, _)| sb == id)
            .map(|(_, _, p)| p.clone())
            .collect();
        (s.volumes.clone(), paths)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets an existing container's status (freeze, thaw, kill).
    fn set_container_status(
        &self,
        id: &SandboxId,
        to: ContainerStatus,
    ) -> Result<(), RuntimeError> {
        match self.state().containers.get_mut(id) {
            Some(status) => {
                *status = to;
                Ok(())
            }
            None => Err(RuntimeError::Config(format!("no container {id}"))),
        }
    }

    /// Starts `spec`'s container with its egress policy recorded, as the real node applies it
    /// before the container starts.
    fn start_with_policy(
        &self,
        spec: &SandboxSpec,
        slot: Option<Slot>,
    ) -> Result<SandboxHandle, RuntimeError> {
        let handle = self.start(&spec.id, slot)?;
        self.state()
            .egress
            .push((handle.slot.0, spec.egress.is_open()));
        Ok(handle)
    }

    /// Makes the next `times` calls of `op` fail.
    pub(crate) fn fail(&self, op: Op, times: usize) {
        self.state().failures.insert(op, times);
    }

    /// Makes the next call of `op` fail with `e` (e.g. what the sandbox does refusing it).
    pub(crate) fn refuse(&self, op: Op, e: RuntimeError) {
        self.state().refusals.insert(op, e);
    }

    /// Makes calls of `op` wait until [`FakeNode::release`].
    pub(crate) fn hold(&self, op: Op) {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(op, Arc::new(Semaphore::new(0)));
    }

    /// Lets held calls of `op` go on (all of them, now and later).
    pub(crate) fn release(&self, op: Op) {
        if let Some(gate) = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&op)
        {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    /// Makes admission refuse everything (a full host).
    pub(crate) fn set_full(&self, full: bool) {
        self.state().full = full;
    }

    /// Sets a container's status as if runc reported it.
    pub(crate) fn set_container(&self, label: &str, status: Option<ContainerStatus>) {
        let id = test_id(label);
        let mut s = self.state();
        match status {
            Some(st) => s.containers.insert(id.clone(), st),
            None => s.containers.remove(&id),
        };
    }

    /// Puts or removes a complete dump of `id`.
    pub(crate) fn set_checkpoint(&self, label: &str, present: bool) {
        let id = test_id(label);
        let mut s = self.state();
        if present {
            s.checkpoints.insert(id.clone());
        } else {
            s.checkpoints.remove(&id);
        }
    }

    /// The container's status.
    pub(crate) fn container(&self, label: &str) -> Option<ContainerStatus> {
        self.state().containers.get(&test_id(label)).copied()
    }

    /// Whether a dump of `id` is there.
    pub(crate) fn has_dump(&self, label: &str) -> bool {
        self.state().checkpoints.contains(&test_id(label))
    }

    /// Leaves files of `label` behind, as a destroy whose removal failed would.
    pub(crate) fn set_leftovers(&self, label: &str) {
        self.state().leftovers.insert(test_id(label));
    }

    /// Whether files of `label` are left behind.
    pub(crate) fn has_leftovers(&self, label: &str) -> bool {
        self.state().leftovers.contains(&test_id(label))
    }

    /// Sandboxes destroyed so far.
    pub(crate) fn destroyed(&self) -> Vec<SandboxId> {
        self.state().destroyed.clone()
    }

    /// Makes running sandboxes report `bytes` of memory in use (default 64 MiB).
    pub(crate) fn set_memory_used(&self, bytes: u64) {
        self.state().memory_used = Some(bytes);
    }

    /// The resizes applied so far.
    pub(crate) fn resizes(&self) -> Vec<(SandboxId, Resize)> {
        self.state().resizes.clone()
    }

    /// The limits of each resume's spec so far.
    pub(crate) fn resumed(&self) -> Vec<(SandboxId, Resize)> {
        self.state().resumed.clone()
    }

    /// Slots in use now.
    pub(crate) fn slots_in_use(&self) -> usize {
        self.state().slots.len()
    }

    /// Egress policies applied: (slot, open?).
    pub(crate) fn egress(&self) -> Vec<(u32, bool)> {
        self.state().egress.clone()
    }

    async fn step(&self, op: Op) -> Result<(), RuntimeError> {
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&op)
            .cloned();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await;
        }
        let mut s = self.state();
        if let Some(e) = s.refusals.remove(&op) {
            return Err(e);
        }
        if let Some(left) = s.failures.get_mut(&op).filter(|n| **n > 0) {
            *left -= 1;
            return Err(failure(op));
        }
        Ok(())
    }

    fn start(&self, id: &SandboxId, slot: Option<Slot>) -> Result<SandboxHandle, RuntimeError> {
        let mut s = self.state();
        let slot = match slot {
            Some(slot) => slot.0,
            None => (1..).find(|n| !s.slots.contains(n)).unwrap_or(1),
        };
        s.slots.insert(slot);
        s.containers.insert(id.clone(), ContainerStatus::Running);
        Ok(SandboxHandle::new(
            id.clone(),
            Slot(slot),
            Ipv4Addr::new(10, 0, 0, 2),
        ))
    }
}

#[async_trait]
impl SandboxNode for FakeNode {
    fn upper_dir(&self, _id: &SandboxId) -> Option<std::path::PathBuf> {
        None
    }

    fn admit_snapshot(&self, _id: &SandboxId, _memory_mb: Option<u64>) -> Result<(), RuntimeError> {
        if self.state().full {
            return Err(RuntimeError::Capacity("no room for the snapshot".into()));
        }
        Ok(())
    }

    fn admit(&self, _disk_mb: u64) -> Result<(), RuntimeError> {
        if self.state().full {
            return Err(RuntimeError::Capacity("the host is full".into()));
        }
        Ok(())
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle, RuntimeError> {
        self.step(Op::Create).await?;
        self.start_with_policy(spec, None)
    }

    async fn destroy(&self, id: &SandboxId, slot: Slot) {
        let mut s = self.state();
        s.containers.remove(id);
        s.checkpoints.remove(id);
        s.slots.remove(&slot.0);
        s.destroyed.push(id.clone());
    }

    async fn remove_leftovers(&self, id: &SandboxId) -> Result<bool, RuntimeError> {
        self.step(Op::RemoveLeftovers).await?;
        Ok(self.state().leftovers.remove(id))
    }

    async fn suspend(&self, id: &SandboxId) -> Result<u64, RuntimeError> {
        self.step(Op::Suspend).await?;
        let mut s = self.state();
        if s.containers.remove(id).is_none() {
            return Err(RuntimeError::Config(format!("no container {id}")));
        }
        s.checkpoints.insert(id.clone());
        Ok(4096)
    }

    async fn resume(
        &self,
        spec: &SandboxSpec,
        slot: Option<Slot>,
    ) -> Result<SandboxHandle, RuntimeError> {
        self.step(Op::Resume).await?;
        if !self.state().checkpoints.remove(&spec.id) {
            return Err(RuntimeError::Config(format!("no dump of {}", spec.id)));
        }
        self.state().resumed.push((
            spec.id.clone(),
            Resize {
                cpus: spec.cpus,
                memory_mb: spec.memory_mb,
                disk_mb: spec.disk_mb,
            },
        ));
        self.start_with_policy(spec, slot)
    }

    async fn snapshot(
        &self,
        id: &SandboxId,
        dest: &Path,
        _memory: bool,
    ) -> Result<u64, RuntimeError> {
        self.step(Op::Snapshot).await?;
        if self.container(id) != Some(ContainerStatus::Running) {
            return Err(RuntimeError::Config(format!("{id} is not running")));
        }
        std::fs::create_dir_all(dest).map_err(RuntimeError::io("creating", dest))?;
        Ok(8192)
    }

    async fn restore_snapshot(
        &self,
        spec: &SandboxSpec,
        source: &Path,
        _memory: bool,
    ) -> Result<SandboxHandle, RuntimeError> {
        self.step(Op::Restore).await?;
        if !source.is_dir() {
            return Err(RuntimeError::Config(format!(
                "no snapshot at {}",
                source.display()
            )));
        }
        self.start_with_policy(spec, None)
    }

    async fn pack_suspended(&self, _id: &SandboxId) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn pack_snapshot(&self, _dir: &Path) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn is_suspended_packed(&self, _id: &SandboxId) -> bool {
        false
    }

    fn is_snapshot_packed(&self, _dir: &Path) -> bool {
        false
    }

    fn has_checkpoint(&self, id: &SandboxId) -> bool {
        self.has_dump(id)
    }

    async fn discard_checkpoint(&self, id: &SandboxId) {
        self.set_checkpoint(id, false);
    }

    fn checkpoint_in_progress(&self, id: &SandboxId) -> bool {
        self.state().in_progress.contains(id)
    }

    async fn container_status(&self, id: &SandboxId) -> Option<ContainerStatus> {
        self.container(id)
    }

    fn usage(&self, id: &SandboxId) -> Option<SandboxUsage> {
        // A running container uses a little of everything; anything else has no cgroup.
        let s = self.state();
        (s.containers.get(id) == Some(&ContainerStatus::Running)).then_some(SandboxUsage {
            cpu_seconds: 1.5,
            memory_bytes: s.memory_used.unwrap_or(64 << 20),
            memory_limit_bytes: Some(1024 << 20),
            pids: 3,
            pids_limit: Some(1024),
            disk_used_bytes: 8 << 20,
            disk_limit_bytes: 10 << 30,
        })
    }

    async fn thaw(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        self.set_container_status(id, ContainerStatus::Running)
    }

    async fn freeze(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        self.set_container_status(id, ContainerStatus::Paused)
    }

    async fn kill_all(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        self.set_container_status(id, ContainerStatus::Stopped)
    }

    async fn stop_keeping_files(&self, id: &SandboxId) {
        self.state().containers.remove(id);
    }

    async fn recover(
        &self,
        expected: &[(SandboxId, Slot)],
        suspended: &[(SandboxId, Slot)],
    ) -> Recovery {
        let mut report = Recovery::default();
        let mut s = self.state();
        for (id, slot) in expected {
            if s.containers.get(id) == Some(&ContainerStatus::Running) {
                s.slots.insert(slot.0);
                report.adopted.push(SandboxHandle::new(
                    id.clone(),
                    *slot,
                    Ipv4Addr::new(10, 0, 0, 2),
                ));
            } else {
                s.containers.remove(id);
                report.lost.push(id.clone());
            }
        }
        for (_, slot) in suspended {
            s.slots.insert(slot.0);
        }
        let known: HashSet<&str> = expected
            .iter()
            .chain(suspended)
            .map(|(id, _)| id.as_str())
            .collect();
        let stray: Vec<SandboxId> = s
            .containers
            .keys()
            .filter(|id| !known.contains(id.as_str()))
            .cloned()
            .collect();
        for id in stray {
            s.containers.remove(&id);
            report.swept.push(format!("container {id}"));
        }
        report
    }

    async fn shutdown(&self, _sandboxes_left: usize) {}

    async fn apply_egress(&self, slot: Slot, policy: &EgressPolicy) -> Result<(), RuntimeError> {
        self.state().egress.push((slot.0, policy.is_open()));
        Ok(())
    }

    async fn resize(&self, id: &SandboxId, to: Resize) -> Result<(), RuntimeError> {
        self.step(Op::Resize).await?;
        let mut s = self.state();
        if s.containers.get(id) != Some(&ContainerStatus::Running) {
            return Err(RuntimeError::Config(format!("no running container {id}")));
        }
        s.resizes.push((id.clone(), to));
        Ok(())
    }

    async fn create_volume(&self, key: &str, _size_mb: u64) -> Result<(), RuntimeError> {
        self.state().volumes.insert(key.to_string());
        Ok(())
    }

    async fn delete_volume(&self, key: &str) -> Result<(), RuntimeError> {
        let mut s = self.state();
        if s.mounted.iter().any(|(_, k, _)| k == key) {
            return Err(RuntimeError::Busy(format!("volume {key} is mounted")));
        }
        s.volumes.remove(key);
        Ok(())
    }

    async fn attach_volume(
        &self,
        id: &SandboxId,
        mount: &alcove_runtime::volume::VolumeMount,
    ) -> Result<(), RuntimeError> {
        self.step(Op::AttachVolume).await?;
        let mut s = self.state();
        if !s.volumes.contains(&mount.key) {
            return Err(RuntimeError::Config(format!(
                "volume {} has no image",
                mount.key
            )));
        }
        s.mounted
            .push((id.clone(), mount.key.clone(), mount.mount_path.clone()));
        Ok(())
    }

    async fn detach_volume(
        &self,
        id: &SandboxId,
        mount: &alcove_runtime::volume::VolumeMount,
    ) -> Result<(), RuntimeError> {
        self.step(Op::DetachVolume).await?;
        let mut s = self.state();
        s.mounted
            .retain(|(sb, _, p)| !(sb == id && *p == mount.mount_path));
        Ok(())
    }
}
