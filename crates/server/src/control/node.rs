//! The seam between the control plane and a node: everything the control plane
//! asks of the machine that runs sandboxes, as one trait.
//!
//! The production implementation is the local runtime ([`alcove_runtime::Node`]);
//! tests use an in-memory fake (`control::fake_node`), so the control plane's
//! rules are tested without root, runc or CRIU; a node on another machine can
//! implement it too.

use std::path::Path;

use alcove_runtime::network::{EgressPolicy, Slot};
use alcove_runtime::node::Recovery;
use alcove_runtime::resize::Resize;
use alcove_runtime::runc::ContainerStatus;
use alcove_runtime::usage::SandboxUsage;
use alcove_runtime::volume::VolumeMount;
use alcove_runtime::{RuntimeError, SandboxHandle, SandboxId, SandboxSpec};
use async_trait::async_trait;

/// What the control plane needs from a node. Methods that change a sandbox
/// leave nothing behind on failure unless they say otherwise.
#[async_trait]
pub trait SandboxNode: Send + Sync + std::fmt::Debug {
    /// Checks there is room for one more sandbox with a layer of `disk_mb`.
    fn admit(&self, disk_mb: u64) -> Result<(), RuntimeError>;

    /// Checks there is room on the disk for a snapshot of `id` (with its memory, up to
    /// `memory_mb`, for a memory snapshot).
    fn admit_snapshot(&self, id: &SandboxId, memory_mb: Option<u64>) -> Result<(), RuntimeError>;

    /// The directory holding what a running sandbox wrote over its image
    /// (overlayfs upper form: whiteouts, opaque directories), if the node
    /// keeps one on this machine.
    fn upper_dir(&self, id: &SandboxId) -> Option<std::path::PathBuf>;

    /// Creates and starts a sandbox; returns once its agent listens.
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle, RuntimeError>;

    /// Stops a sandbox and removes all it has on the node (never fails).
    async fn destroy(&self, id: &SandboxId, slot: Slot);

    /// Removes the files an ended sandbox left on the node, if any (those of a suspended
    /// one moved from another node, or a destroy whose removal failed); whether there
    /// were any.
    async fn remove_leftovers(&self, id: &SandboxId) -> Result<bool, RuntimeError>;

    /// Dumps a running sandbox and stops it; on failure it keeps running.
    /// Returns the size of the dump in bytes.
    async fn suspend(&self, id: &SandboxId) -> Result<u64, RuntimeError>;

    /// Restores a suspended sandbox in its slot, or a new one when it has
    /// none on this node (it moved here); on failure its dump stays.
    async fn resume(
        &self,
        spec: &SandboxSpec,
        slot: Option<Slot>,
    ) -> Result<SandboxHandle, RuntimeError>;

    /// Captures a running sandbox into `dest` (its layer, and its memory
    /// with `memory`); it keeps running. Returns the size in bytes.
    async fn snapshot(
        &self,
        id: &SandboxId,
        dest: &Path,
        memory: bool,
    ) -> Result<u64, RuntimeError>;

    /// Creates a new sandbox from a snapshot directory.
    async fn restore_snapshot(
        &self,
        spec: &SandboxSpec,
        source: &Path,
        memory: bool,
    ) -> Result<SandboxHandle, RuntimeError>;

    /// Packs a suspended sandbox's dump and layer for cold storage.
    async fn pack_suspended(&self, id: &SandboxId) -> Result<(), RuntimeError>;

    /// Packs a snapshot's files for cold storage.
    async fn pack_snapshot(&self, dir: &Path) -> Result<(), RuntimeError>;

    /// Whether a suspended sandbox's dump is packed.
    fn is_suspended_packed(&self, id: &SandboxId) -> bool;

    /// Whether a snapshot's files are packed.
    fn is_snapshot_packed(&self, dir: &Path) -> bool;

    /// Whether a complete dump of the sandbox is on the node.
    fn has_checkpoint(&self, id: &SandboxId) -> bool;

    /// The directory holding a suspended sandbox's dump and layer
    /// (`alcove_runtime::checkpoint::SUSPENDED_MEMBERS`, raw or packed), when
    /// the node keeps them as files here; what the blob store copies.
    fn suspended_dir(&self, id: &SandboxId) -> Option<std::path::PathBuf> {
        let _ = id;
        None
    }

    /// Makes a suspended sandbox's files consistent for reading (its layer
    /// flushed to its image file).
    fn settle_suspended(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let _ = id;
        Ok(())
    }

    /// Marks a dump put in [`Self::suspended_dir`] from the blob store as complete.
    fn mark_checkpoint_complete(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let _ = id;
        Err(RuntimeError::Config(
            "this node keeps no dumps as files".into(),
        ))
    }

    /// Drops a dump that will not be resumed.
    async fn discard_checkpoint(&self, id: &SandboxId);

    /// Whether a dump or restore of the sandbox (started by a server that
    /// died) is still running.
    fn checkpoint_in_progress(&self, id: &SandboxId) -> bool;

    /// What the sandbox's container is doing, if it has one.
    async fn container_status(&self, id: &SandboxId) -> Option<ContainerStatus>;

    /// Thaws a frozen container.
    async fn thaw(&self, id: &SandboxId) -> Result<(), RuntimeError>;

    /// Freezes a running container (a node that may have lost its lease).
    async fn freeze(&self, id: &SandboxId) -> Result<(), RuntimeError>;

    /// Kills every process of a container, frozen or not, without letting a
    /// frozen one run again first.
    async fn kill_all(&self, id: &SandboxId) -> Result<(), RuntimeError>;

    /// Stops a container but keeps its files, network and slot (a half-done
    /// restore of a suspended sandbox).
    async fn stop_keeping_files(&self, id: &SandboxId);

    /// Adopts `expected` sandboxes that still run, keeps `suspended` ones'
    /// files and slots, and sweeps every other leftover.
    async fn recover(
        &self,
        expected: &[(SandboxId, Slot)],
        suspended: &[(SandboxId, Slot)],
    ) -> Recovery;

    /// Orderly shutdown with `sandboxes_left` still running.
    async fn shutdown(&self, sandboxes_left: usize);

    /// What a running sandbox uses now against its limits (`None` when it has
    /// no cgroup). May read files: call it on the blocking pool.
    fn usage(&self, id: &SandboxId) -> Option<SandboxUsage>;

    /// Enforces an outbound network policy on the sandbox in `slot`.
    async fn apply_egress(&self, slot: Slot, policy: &EgressPolicy) -> Result<(), RuntimeError>;

    /// Applies new limits to a running sandbox: CPU and memory at once, its layer grown
    /// to `to.disk_mb` (never shrunk). On failure it keeps its CPU and memory limits.
    async fn resize(&self, id: &SandboxId, to: Resize) -> Result<(), RuntimeError>;

    /// Creates volume `key`, an image of `size_mb` MiB (docs/volumes.md).
    async fn create_volume(&self, key: &str, size_mb: u64) -> Result<(), RuntimeError> {
        let _ = (key, size_mb);
        Err(no_volumes())
    }

    /// Deletes volume `key` and its data; refused while a sandbox has it mounted.
    async fn delete_volume(&self, key: &str) -> Result<(), RuntimeError> {
        let _ = key;
        Err(no_volumes())
    }

    /// MiB volume `key`'s files take, when known. May read files.
    fn volume_used_mb(&self, key: &str) -> Option<u64> {
        let _ = key;
        None
    }

    /// Mounts a volume into a running sandbox; on failure nothing stays mounted.
    async fn attach_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<(), RuntimeError> {
        let _ = (id, mount);
        Err(no_volumes())
    }

    /// Unmounts a volume from a running sandbox; files in use refuse it.
    async fn detach_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<(), RuntimeError> {
        let _ = (id, mount);
        Err(no_volumes())
    }

    /// Mounts what a running sandbox lacks of `mounts` (after a crash); returns what failed.
    async fn ensure_volumes(
        &self,
        id: &SandboxId,
        mounts: &[VolumeMount],
    ) -> Vec<(VolumeMount, RuntimeError)> {
        let _ = id;
        mounts.iter().map(|m| (m.clone(), no_volumes())).collect()
    }

    /// Removes the files of volumes whose keys are not in `known` and unmounts unused ones.
    async fn sweep_volumes(&self, known: &[String]) -> Vec<String> {
        let _ = known;
        Vec::new()
    }

    /// The node's store of agent builds (`alcove_runtime::agent_builds`), if it keeps one:
    /// what its dumps need restored elsewhere, and where builds from elsewhere go.
    fn agent_builds(&self) -> Option<&alcove_runtime::agent_builds::AgentBuilds> {
        None
    }
}

fn no_volumes() -> RuntimeError {
    RuntimeError::Config("this node has no volumes".into())
}

#[async_trait]
impl SandboxNode for alcove_runtime::Node {
    fn admit(&self, disk_mb: u64) -> Result<(), RuntimeError> {
        alcove_runtime::Node::admit(self, disk_mb)
    }

    fn admit_snapshot(&self, id: &SandboxId, memory_mb: Option<u64>) -> Result<(), RuntimeError> {
        alcove_runtime::Node::admit_snapshot(self, id, memory_mb)
    }

    fn upper_dir(&self, id: &SandboxId) -> Option<std::path::PathBuf> {
        Some(alcove_runtime::Node::upper_dir(self, id))
    }

    fn agent_builds(&self) -> Option<&alcove_runtime::agent_builds::AgentBuilds> {
        Some(alcove_runtime::Node::agent_builds(self))
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxHandle, RuntimeError> {
        alcove_runtime::Node::create(self, spec).await
    }

    async fn destroy(&self, id: &SandboxId, slot: Slot) {
        alcove_runtime::Node::destroy(self, id, slot).await;
    }

    async fn remove_leftovers(&self, id: &SandboxId) -> Result<bool, RuntimeError> {
        alcove_runtime::Node::remove_leftovers(self, id).await
    }

    async fn suspend(&self, id: &SandboxId) -> Result<u64, RuntimeError> {
        alcove_runtime::Node::suspend(self, id).await
    }

    async fn resume(
        &self,
        spec: &SandboxSpec,
        slot: Option<Slot>,
    ) -> Result<SandboxHandle, RuntimeError> {
        alcove_runtime::Node::resume(self, spec, slot).await
    }

    async fn snapshot(
        &self,
        id: &SandboxId,
        dest: &Path,
        memory: bool,
    ) -> Result<u64, RuntimeError> {
        alcove_runtime::Node::snapshot(self, id, dest, memory).await
    }

    async fn restore_snapshot(
        &self,
        spec: &SandboxSpec,
        source: &Path,
        memory: bool,
    ) -> Result<SandboxHandle, RuntimeError> {
        alcove_runtime::Node::restore_snapshot(self, spec, source, memory).await
    }

    async fn pack_suspended(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        alcove_runtime::Node::pack_suspended(self, id).await
    }

    async fn pack_snapshot(&self, dir: &Path) -> Result<(), RuntimeError> {
        alcove_runtime::Node::pack_snapshot(self, dir).await
    }

    fn is_suspended_packed(&self, id: &SandboxId) -> bool {
        alcove_runtime::Node::is_suspended_packed(self, id)
    }

    fn is_snapshot_packed(&self, dir: &Path) -> bool {
        alcove_runtime::Node::is_snapshot_packed(self, dir)
    }

    fn has_checkpoint(&self, id: &SandboxId) -> bool {
        alcove_runtime::Node::has_checkpoint(self, id)
    }

    fn suspended_dir(&self, id: &SandboxId) -> Option<std::path::PathBuf> {
        Some(alcove_runtime::Node::suspended_dir(self, id))
    }

    fn settle_suspended(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        alcove_runtime::Node::settle_suspended(self, id)
    }

    fn mark_checkpoint_complete(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        alcove_runtime::Node::mark_checkpoint_complete(self, id)
    }

    async fn discard_checkpoint(&self, id: &SandboxId) {
        alcove_runtime::Node::discard_checkpoint(self, id).await;
    }

    fn checkpoint_in_progress(&self, id: &SandboxId) -> bool {
        self.runc_operation_in_progress(id)
    }

    async fn container_status(&self, id: &SandboxId) -> Option<ContainerStatus> {
        alcove_runtime::Node::container_status(self, id).await
    }

    async fn thaw(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        alcove_runtime::Node::thaw(self, id).await
    }

    async fn freeze(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        alcove_runtime::Node::freeze(self, id).await
    }

    async fn kill_all(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        alcove_runtime::Node::kill_all(self, id).await
    }

    async fn stop_keeping_files(&self, id: &SandboxId) {
        alcove_runtime::Node::stop_keeping_files(self, id).await;
    }

    fn usage(&self, id: &SandboxId) -> Option<SandboxUsage> {
        alcove_runtime::Node::usage(self, id)
    }

    async fn recover(
        &self,
        expected: &[(SandboxId, Slot)],
        suspended: &[(SandboxId, Slot)],
    ) -> Recovery {
        alcove_runtime::Node::recover(self, expected, suspended).await
    }

    async fn shutdown(&self, sandboxes_left: usize) {
        alcove_runtime::Node::shutdown(self, sandboxes_left).await;
    }

    async fn apply_egress(&self, slot: Slot, policy: &EgressPolicy) -> Result<(), RuntimeError> {
        alcove_runtime::Node::apply_egress(self, slot, policy).await
    }

    async fn resize(&self, id: &SandboxId, to: Resize) -> Result<(), RuntimeError> {
        alcove_runtime::Node::resize(self, id, to).await
    }

    async fn create_volume(&self, key: &str, size_mb: u64) -> Result<(), RuntimeError> {
        alcove_runtime::Node::create_volume(self, key, size_mb).await
    }

    async fn delete_volume(&self, key: &str) -> Result<(), RuntimeError> {
        alcove_runtime::Node::delete_volume(self, key).await
    }

    fn volume_used_mb(&self, key: &str) -> Option<u64> {
        alcove_runtime::Node::volume_used_mb(self, key)
    }

    async fn attach_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<(), RuntimeError> {
        alcove_runtime::Node::attach_volume(self, id, mount).await
    }

    async fn detach_volume(&self, id: &SandboxId, mount: &VolumeMount) -> Result<(), RuntimeError> {
        alcove_runtime::Node::detach_volume(self, id, mount).await
    }

    async fn ensure_volumes(
        &self,
        id: &SandboxId,
        mounts: &[VolumeMount],
    ) -> Vec<(VolumeMount, RuntimeError)> {
        alcove_runtime::Node::ensure_volumes(self, id, mounts).await
    }

    async fn sweep_volumes(&self, known: &[String]) -> Vec<String> {
        alcove_runtime::Node::sweep_volumes(self, known).await
    }
}
