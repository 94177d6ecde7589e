//! Suspend, resume, snapshot and restore through CRIU (`runc checkpoint` /
//! `runc restore`).
//!
//! A sandbox keeps its id, network slot (address and routes) and cgroup path
//! across suspend/resume, so the restore sees the same world the dump left. A
//! snapshot restored into a new sandbox gets a new id, slot and cgroup, and its
//! own copy of the writable layer.

use std::path::{Path, PathBuf};

use crate::error::{Result, RuntimeError, path_str};
use crate::layer::Layer;
use crate::network::Slot;
use crate::node::{Node, SandboxHandle, SandboxSpec};
use crate::sandbox_id::SandboxId;
use crate::{archive, blocking, cmd};

/// File names inside a sandbox directory.
const CHECKPOINT_DIR: &str = "checkpoint";
const CHECKPOINT_WORK: &str = "checkpoint-work";
const CHECKPOINT_DONE: &str = "checkpoint.done";

/// File names inside a snapshot directory.
const SNAPSHOT_DISK: &str = "disk.img";
const SNAPSHOT_CRIU: &str = "criu";

/// What of a suspended sandbox's directory a resume needs, as archive members
/// (see [`archive`]): the dump and the writable layer.
pub const SUSPENDED_MEMBERS: [&str; 2] = [CHECKPOINT_DIR, "disk.img"];
/// What of a snapshot's directory a restore needs, as archive members (a
/// filesystem snapshot has no `criu`).
pub const SNAPSHOT_MEMBERS: [&str; 2] = [SNAPSHOT_CRIU, SNAPSHOT_DISK];

impl Node {
    fn checkpoint_paths(&self, id: &str) -> (PathBuf, PathBuf, PathBuf) {
        let dir = self.sandbox_dir(id);
        (
            dir.join(CHECKPOINT_DIR),
            dir.join(CHECKPOINT_WORK),
            dir.join(CHECKPOINT_DONE),
        )
    }

    /// Dumps a running sandbox to disk and stops it, freeing its memory and CPU.
    /// Its writable layer stays on disk (still mounted, so a quick resume skips
    /// the mount; [`Node::pack_suspended`] unmounts it) and its network namespace
    /// stays, so the address survives. Returns the size of the dump in bytes.
    ///
    /// On failure the sandbox keeps running.
    pub async fn suspend(&self, id: &SandboxId) -> Result<u64> {
        let (images, work, done) = self.checkpoint_paths(id);
        for stale in [&images, &work] {
            blocking::remove_dir_all(stale.clone()).await?;
        }
        let _ = std::fs::remove_file(&done);
        // Freezing first spares CRIU its own freeze loop (~100 ms measured here).
        self.freeze_for_dump(id).await?;
        if let Err(e) = self
            .runc
            .checkpoint(
                id,
                &self.sandbox_dir(id),
                &self.cfg.criu_binary,
                &images,
                &work,
                false,
            )
            .await
        {
            if let Err(thaw) = self.runc.resume(id).await {
                tracing::warn!(sandbox_id = %id, error = %thaw, "thawing after a failed dump");
            }
            return Err(e);
        }
        // The container is gone now: a dump without its mark is still resumed (with the
        // current build), so a failure here does not fail the suspend.
        if let Err(e) = self.mark_dump(id, &images) {
            tracing::warn!(sandbox_id = %id, error = %e, "recording the dump's agent build");
        }
        crate::perms::write_file(&done, b"", 0o600)?;
        // runc removed the container after the dump; only its cgroups may linger.
        self.cgroups.remove(id).await;
        // The network namespace died with the container (its name and veth
        // are removed; the hook plumbs a new one at resume), and the idmapped
        // mounts belong to a uid range that goes back to the pool.
        if let Some(slot) = self.slot_of(id) {
            self.network.destroy(&self.network.describe(slot)).await;
        }
        self.release_holding(id);
        if let Err(e) = Layer::new(self.sandbox_dir(id)).unmount_root() {
            tracing::warn!(sandbox_id = %id, error = %e, "unmounting a suspended sandbox's root");
        }
        self.release_unused_volumes();
        Ok(dir_size(&images))
    }

    /// Packs a suspended sandbox's dump and writable layer (zstd) to save disk
    /// while it sleeps; [`Node::resume`] unpacks them.
    pub async fn pack_suspended(&self, id: &SandboxId) -> Result<()> {
        let dir = self.sandbox_dir(id);
        Layer::new(&dir).unmount()?;
        archive::pack(&dir, CHECKPOINT_DIR).await?;
        archive::pack(&dir, "disk.img").await
    }

    /// Packs a snapshot's files (zstd); [`Node::restore_snapshot`] unpacks them.
    pub async fn pack_snapshot(&self, dir: &Path) -> Result<()> {
        archive::pack(dir, SNAPSHOT_CRIU).await?;
        archive::pack(dir, SNAPSHOT_DISK).await
    }

    /// The directory holding a suspended sandbox's [`SUSPENDED_MEMBERS`].
    pub fn suspended_dir(&self, id: &SandboxId) -> PathBuf {
        self.sandbox_dir(id)
    }

    /// Flushes a suspended sandbox's layer (still mounted after a suspend) into
    /// its image file, so reading `disk.img` sees everything it wrote.
    pub fn settle_suspended(&self, id: &SandboxId) -> Result<()> {
        let layer = Layer::new(self.sandbox_dir(id));
        if layer.is_mounted() {
            sync_filesystem(&layer.disk_mount())?;
        }
        Ok(())
    }

    /// Marks a dump put in place from elsewhere (downloaded archives of
    /// [`SUSPENDED_MEMBERS`]) as complete, as a finished suspend does.
    pub fn mark_checkpoint_complete(&self, id: &SandboxId) -> Result<()> {
        let (_, _, done) = self.checkpoint_paths(id);
        crate::perms::write_file(&done, b"", 0o600)
    }

    /// Whether a suspended sandbox's dump is packed.
    pub fn is_suspended_packed(&self, id: &SandboxId) -> bool {
        archive::is_packed(&self.sandbox_dir(id), CHECKPOINT_DIR)
    }

    /// Whether a snapshot's files are packed.
    pub fn is_snapshot_packed(&self, dir: &Path) -> bool {
        archive::is_packed(dir, SNAPSHOT_DISK)
    }

    /// Whether a complete dump of the sandbox is on disk.
    pub fn has_checkpoint(&self, id: &SandboxId) -> bool {
        let (images, work, done) = self.checkpoint_paths(id);
        let dir = self.sandbox_dir(id);
        if done.exists() && archive::is_packed(&dir, CHECKPOINT_DIR) {
            return true;
        }
        if done.exists() && images.is_dir() {
            return true;
        }
        // The server may have died between CRIU's success and our marker.
        images.is_dir()
            && std::fs::read_to_string(work.join("dump.log"))
                .is_ok_and(|log| log.contains("Dumping finished successfully"))
    }

    /// Whether a `runc checkpoint` or `runc restore` of this sandbox is still
    /// running (after a crash of the server, the dump or restore it started
    /// outlives it).
    pub fn runc_operation_in_progress(&self, id: &SandboxId) -> bool {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return false;
        };
        entries.flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|raw| {
                let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                (args.contains(&b"checkpoint".as_slice()) || args.contains(&b"restore".as_slice()))
                    && args.contains(&id.as_bytes())
            })
        })
    }

    /// Restores a suspended sandbox under its id and cgroup, in its slot, or in
    /// a new one when it has none here (it was suspended on another node).
    ///
    /// On failure the dump stays on disk and the sandbox can be resumed again.
    pub async fn resume(&self, spec: &SandboxSpec, slot: Option<Slot>) -> Result<SandboxHandle> {
        let id = &spec.id;
        let (images, work, done) = self.checkpoint_paths(id);
        let dir = self.sandbox_dir(id);
        archive::clean_partial(&dir);
        archive::unpack(&dir, CHECKPOINT_DIR).await?;
        archive::unpack(&dir, "disk.img").await?;
        if !self.has_checkpoint(id) {
            return Err(RuntimeError::Config(format!(
                "no complete checkpoint of sandbox {id} on disk"
            )));
        }
        // Its layer is on disk already: only its tasks need room.
        self.admit(0)?;
        let (slot, new_slot) = match slot {
            Some(slot) => {
                self.reserve_exact_slot(slot)?;
                (slot, false)
            }
            None => (self.reserve_slot()?, true),
        };
        let result = if self.runc.exists(id) && !new_slot {
            // A restore that outlived a crash of the server already brought it back.
            self.adopt_restored(spec, slot).await
        } else {
            self.boot(spec, slot, Some((&images, &work))).await
        };
        match result {
            Ok(handle) => {
                let _ = std::fs::remove_file(&done);
                // Unlinking hundreds of MB takes a while: the trash moves the used dump
                // out of the way at once (a new suspend starts clean) and unlinks it in
                // the background, or at the next start if the server dies first.
                for (used, what) in [(&images, "dump"), (&work, "dump-work")] {
                    if let Err(e) = self.trash.discard(
                        used,
                        &format!("{id}-{what}"),
                        crate::layer::DetachedMounts::default(),
                    ) {
                        tracing::warn!(sandbox_id = %id, error = %e, "discarding the used checkpoint");
                    }
                }
                Ok(handle)
            }
            Err(e) => {
                let _ = self.runc.destroy(id).await;
                self.cgroups.remove(id).await;
                self.network.destroy(&self.network.describe(slot)).await;
                self.release_holding(id);
                let _ = Layer::new(self.sandbox_dir(id)).unmount_root();
                self.release_unused_volumes();
                if new_slot {
                    self.release_slot(slot);
                }
                Err(e)
            }
        }
    }

    async fn adopt_restored(&self, spec: &SandboxSpec, slot: Slot) -> Result<SandboxHandle> {
        self.adopt_holding(&spec.id, slot)?;
        let net = self.network.describe(slot);
        if !self.network.exists(&net) {
            self.name_netns(&spec.id, &net)?;
        }
        let handle = SandboxHandle::new(
            spec.id.clone(),
            slot,
            self.network.describe(slot).sandbox_ip,
        );
        self.wait_for_agent(&handle).await?;
        Ok(handle)
    }

    /// Drops the dump of a sandbox that will not be resumed (it was deleted).
    pub async fn discard_checkpoint(&self, id: &SandboxId) {
        let (images, work, done) = self.checkpoint_paths(id);
        let _ = blocking::remove_dir_all(images).await;
        let _ = blocking::remove_dir_all(work).await;
        let _ = std::fs::remove_file(done);
    }

    /// Captures a running sandbox into `dest` while it keeps running: a copy of
    /// its writable layer and, with `memory`, a CRIU dump of every process. The
    /// sandbox is frozen only while the layer is copied and memory is dumped.
    /// Returns the size of the snapshot on disk.
    pub async fn snapshot(&self, id: &SandboxId, dest: &Path, memory: bool) -> Result<u64> {
        crate::layer::create_private_dir(dest)?;
        let layer = Layer::new(self.sandbox_dir(id));
        if memory {
            self.freeze_for_dump(id).await?;
        } else {
            // The disk is copied, no process dumped: a process in vfork holds nothing up.
            self.runc.pause(id).await?;
        }
        let result = async {
            // Frozen writers leave dirty pages: flush the layer's filesystem so the
            // image file holds everything the processes wrote.
            sync_filesystem(&layer.disk_mount())?;
            copy_sparse(&layer.disk_image(), &dest.join(SNAPSHOT_DISK)).await?;
            if memory {
                self.runc
                    .checkpoint(
                        id,
                        &self.sandbox_dir(id),
                        &self.cfg.criu_binary,
                        &dest.join(SNAPSHOT_CRIU),
                        &dest.join("work"),
                        true,
                    )
                    .await?;
                // In the dump (it travels with it to a blob store) and beside it (what
                // `forget_unused_agent_builds` reads).
                self.mark_dump(id, &dest.join(SNAPSHOT_CRIU))?;
                self.mark_dump(id, dest)?;
            }
            Ok::<_, RuntimeError>(())
        }
        .await;
        let thawed = self.runc.resume(id).await;
        result?;
        if let Err(e) = thawed {
            // A leave-running dump may already have thawed it.
            if !self.is_running(id).await {
                return Err(e);
            }
        }
        Ok(dir_size(dest))
    }

    /// Creates a new sandbox from a snapshot directory written by [`Node::snapshot`]:
    /// its own copy of the layer, a new slot and cgroup, and (for a memory
    /// snapshot) the processes restored from the dump.
    pub async fn restore_snapshot(
        &self,
        spec: &SandboxSpec,
        source: &Path,
        memory: bool,
    ) -> Result<SandboxHandle> {
        archive::clean_partial(source);
        archive::unpack(source, SNAPSHOT_CRIU).await?;
        archive::unpack(source, SNAPSHOT_DISK).await?;
        self.admit(spec.disk_mb)?;
        let slot = self.reserve_slot()?;
        let dir = self.sandbox_dir(&spec.id);
        // One restore's own view of the images: hard links (no page is
        // copied), in which the uid mapping is rewritten for this sandbox.
        let images = dir.join("restore-images");
        let result = async {
            crate::layer::create_private_dir(&dir)?;
            let layer = Layer::new(&dir);
            copy_sparse(&source.join(SNAPSHOT_DISK), &layer.disk_image()).await?;
            if memory {
                crate::criu_images::link_copy(&source.join(SNAPSHOT_CRIU), &images)?;
                let work = dir.join("restore-work");
                self.boot(spec, slot, Some((&images, &work))).await
            } else {
                self.boot(spec, slot, None).await
            }
        }
        .await;
        let _ = blocking::remove_dir_all(images).await;
        if result.is_err() {
            self.remove_parts(&spec.id, slot).await;
            self.release_slot(slot);
        }
        result
    }
}

/// Bytes allocated on disk under `dir` (sparse files count what they use).
pub fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = std::fs::File::open(path).map_err(RuntimeError::io("opening", path))?;
    nix::unistd::syncfs(&dir).map_err(|e| RuntimeError::io("syncing", path)(e.into()))
}

async fn copy_sparse(from: &Path, to: &Path) -> Result<()> {
    cmd::run(&["cp", "--sparse=always", path_str(from)?, path_str(to)?]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_size_counts_allocated_blocks() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(tmp.path().join("sub")).expect("mkdir");
        std::fs::write(tmp.path().join("sub/a"), vec![1u8; 8192]).expect("write");
        let sparse = std::fs::File::create(tmp.path().join("sparse")).expect("create");
        sparse.set_len(1 << 30).expect("len");
        let size = dir_size(tmp.path());
        assert!(size >= 8192, "{size}");
        assert!(
            size < 1 << 20,
            "a sparse file must not count its holes: {size}"
        );
    }
}
