//! Persistent volumes ("file systems", docs/volumes.md): create, list, get and
//! delete them, and the rules of mounting them into sandboxes.
//!
//! A read-write mount is exclusive: a volume mounted read-write is mounted in
//! no other sandbox, and a volume mounted read-only anywhere is mounted
//! read-only everywhere. Who holds a volume is read from the live sandboxes'
//! records, under one lock ([`VOLUME_LOCK`]) taken after a sandbox's op lock.

use std::sync::Arc;

use alcove_runtime::volume::VolumeMount;
use alcove_runtime::{RuntimeError, SandboxId};
use alcove_wire::file_system::{
    CreateFileSystemRequest, FileSystemAttachment, FileSystemInfo, FileSystemMount,
};
use alcove_wire::time::now_millis;
use sha2::{Digest, Sha256};

use super::ControlError;
use super::context::Context;
use super::validate;
use crate::store::{FileSystemRecord, SandboxRecord};

/// The op-lock key that serializes every decision about who holds a volume.
pub(super) const VOLUME_LOCK: &str = "file-systems";

/// Largest volume, in MiB (as for a writable layer).
pub const MAX_SIZE_MB: i64 = validate::DISK_MB_RANGE.1;

/// Paths a volume may not be mounted on or under: the kernel's file systems
/// and the runtime's own mounts.
const RESERVED: &[&str] = &["/proc", "/sys", "/dev", "/.alcove"];

/// Paths a volume may not be mounted on exactly (files and directories the
/// runtime binds into every sandbox, or their parents).
const RESERVED_EXACT: &[&str] = &["/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// The directory name of a volume on the node: derived from namespace and
/// name, so it is a plain name whatever they hold.
pub(super) fn volume_key(namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}\0{name}").as_bytes());
    hex::encode(&digest[..16])
}

/// What the node needs for the mounts of a sandbox in `namespace`.
pub(super) fn node_mounts(namespace: &str, mounts: &[FileSystemMount]) -> Vec<VolumeMount> {
    mounts.iter().map(|m| node_mount(namespace, m)).collect()
}

fn node_mount(namespace: &str, m: &FileSystemMount) -> VolumeMount {
    VolumeMount {
        key: volume_key(namespace, &m.file_system_id),
        mount_path: m.mount_path.clone(),
        read_only: m.read_only,
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ControlError {
    ControlError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

/// Checks a mount path: absolute, normalized (no `.`, `..`, empty or trailing
/// component), of plain characters, and not on a reserved path.
pub fn mount_path(path: &str) -> Result<(), ControlError> {
    const FIELD: &str = "mount_path";
    if !path.starts_with('/') {
        return Err(invalid(FIELD, format!("{path:?} is not an absolute path")));
    }
    if path == "/" {
        return Err(invalid(FIELD, "a volume cannot be mounted on /"));
    }
    if path.len() > 1024 {
        return Err(invalid(FIELD, "longer than 1024 bytes"));
    }
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'));
    if !plain {
        return Err(invalid(
            FIELD,
            format!("{path:?} may hold only letters, digits and / . _ -"),
        ));
    }
    if path[1..]
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(
            FIELD,
            format!("{path:?} is not normalized (no empty, '.' or '..' components, no trailing /)"),
        ));
    }
    // The kernel's NAME_MAX: a longer component fails the mount point's making.
    if path[1..].split('/').any(|c| c.len() > 255) {
        return Err(invalid(FIELD, "has a component longer than 255 bytes"));
    }
    let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
    if let Some(root) = RESERVED.iter().find(|r| under(r)) {
        return Err(invalid(
            FIELD,
            format!("{path} is under {root}, which the runtime owns"),
        ));
    }
    if RESERVED_EXACT.contains(&path) {
        return Err(invalid(
            FIELD,
            format!("{path} is a path the runtime mounts files on"),
        ));
    }
    Ok(())
}

/// Checks one mount of a request: the fields this server does not support,
/// the path, and the name's form.
pub fn mount(m: &FileSystemMount) -> Result<(), ControlError> {
    if m.snapshot_id.is_some() {
        return Err(invalid(
            "snapshot_id",
            "volumes have no snapshots; a mount cannot be pinned to one",
        ));
    }
    if m.owner.is_some() {
        return Err(invalid(
            "owner",
            "not supported: a volume's files keep their own owners (chown them inside the sandbox)",
        ));
    }
    name(&m.file_system_id).map_err(|_| {
        invalid(
            "file_system_id",
            format!("{:?} is not a volume name", m.file_system_id),
        )
    })?;
    mount_path(&m.mount_path)
}

/// Checks a volume name (the rules of sandbox names).
pub fn name(name: &str) -> Result<(), ControlError> {
    validate::name(name)
}

/// Whether mount path `inner` lies below `outer` (both absolute and normalized).
fn below(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Checks that `mounts` fit together in one sandbox: no path and no volume twice, and no
/// volume inside another (the outer one, mounted later, hid the inner one while both were
/// listed as mounted; and the inner one's mount point was made on the outer volume).
pub fn distinct(mounts: &[FileSystemMount]) -> Result<(), ControlError> {
    for (i, m) in mounts.iter().enumerate() {
        for other in &mounts[..i] {
            if other.mount_path == m.mount_path {
                return Err(ControlError::Conflict(format!(
                    "two volumes on {} in one sandbox",
                    m.mount_path
                )));
            }
            if below(&m.mount_path, &other.mount_path) || below(&other.mount_path, &m.mount_path) {
                return Err(ControlError::Conflict(format!(
                    "volumes cannot be mounted inside one another: {} and {}",
                    other.mount_path, m.mount_path
                )));
            }
            if other.file_system_id == m.file_system_id {
                return Err(ControlError::Conflict(format!(
                    "volume {} is mounted twice in one sandbox",
                    m.file_system_id
                )));
            }
        }
    }
    Ok(())
}

/// Volumes: their rows, their files on the node, and who holds them.
#[derive(Debug, Clone)]
pub struct FileSystems {
    ctx: Arc<Context>,
}

impl FileSystems {
    /// The volume service over `ctx`.
    pub(super) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// Creates a volume of `size_mb` MiB.
    pub async fn create(
        &self,
        namespace: &str,
        req: CreateFileSystemRequest,
    ) -> Result<FileSystemInfo, ControlError> {
        name(&req.name)?;
        if !(1..=MAX_SIZE_MB).contains(&req.size_mb) {
            return Err(invalid(
                "size_mb",
                format!("{} is outside 1-{MAX_SIZE_MB}", req.size_mb),
            ));
        }
        let lock = self.ctx.op_lock(VOLUME_LOCK);
        let _guard = lock.lock().await;
        if self
            .ctx
            .store
            .get_file_system(namespace, &req.name)
            .await?
            .is_some()
        {
            return Err(ControlError::Conflict(format!(
                "a file system named {} exists already",
                req.name
            )));
        }
        let key = volume_key(namespace, &req.name);
        let size = u64::try_from(req.size_mb).unwrap_or(0);
        // The files first: a crash before the row leaves files the start-up sweep removes.
        self.ctx.node.create_volume(&key, size).await?;
        let record = FileSystemRecord {
            namespace: namespace.to_string(),
            name: req.name.clone(),
            size_mb: req.size_mb,
            created_at: now_millis(),
        };
        if let Err(e) = self.ctx.store.insert_file_system(&record).await {
            let _ = self.ctx.node.delete_volume(&key).await;
            return Err(e.into());
        }
        tracing::info!(namespace, file_system = %req.name, size_mb = req.size_mb, "volume created");
        Ok(self.info(&record, Vec::new()))
    }

    /// The volumes of a namespace.
    pub async fn list(&self, namespace: &str) -> Result<Vec<FileSystemInfo>, ControlError> {
        let rows = self.ctx.store.list_file_systems(Some(namespace)).await?;
        let live = self.ctx.store.list_holders_in(namespace).await?;
        Ok(rows
            .iter()
            .map(|r| self.info(r, attachments(&live, &r.name)))
            .collect())
    }

    /// One volume.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<FileSystemInfo, ControlError> {
        let row = self.row(namespace, name).await?;
        let live = self.ctx.store.list_holders_in(namespace).await?;
        Ok(self.info(&row, attachments(&live, name)))
    }

    /// Deletes a volume and its data; refused while a live sandbox has it mounted
    /// (a suspended one included: it gets it back when it resumes).
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ControlError> {
        let lock = self.ctx.op_lock(VOLUME_LOCK);
        let _guard = lock.lock().await;
        self.row(namespace, name).await?;
        let live = self.ctx.store.list_holders_in(namespace).await?;
        if let Some(a) = attachments(&live, name).first() {
            return Err(ControlError::FileSystemInUse(format!(
                "file system {name} is mounted in sandbox {} at {}; detach it first",
                a.sandbox_id, a.mount_path
            )));
        }
        // The row first: a crash before the files are gone leaves files the sweep removes.
        self.ctx.store.delete_file_system(namespace, name).await?;
        if let Err(e) = self
            .ctx
            .node
            .delete_volume(&volume_key(namespace, name))
            .await
        {
            tracing::warn!(namespace, file_system = %name, error = %e, "removing a deleted volume's files (the start-up sweep retries)");
        }
        tracing::info!(namespace, file_system = %name, "volume deleted");
        Ok(())
    }

    async fn row(&self, namespace: &str, name: &str) -> Result<FileSystemRecord, ControlError> {
        self.ctx
            .store
            .get_file_system(namespace, name)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                kind: "file system",
                id: name.to_string(),
            })
    }

    fn info(&self, r: &FileSystemRecord, attachments: Vec<FileSystemAttachment>) -> FileSystemInfo {
        let used = self
            .ctx
            .node
            .volume_used_mb(&volume_key(&r.namespace, &r.name));
        FileSystemInfo {
            id: r.name.clone(),
            name: r.name.clone(),
            size_mb: r.size_mb,
            used_mb: used.and_then(|u| i64::try_from(u).ok()),
            created_at: r.created_at,
            attachments,
        }
    }
}

/// Where volume `name` is mounted among `live` sandboxes (of its namespace).
fn attachments(live: &[SandboxRecord], name: &str) -> Vec<FileSystemAttachment> {
    live.iter()
        .flat_map(|s| {
            s.file_systems
                .iter()
                .filter(|m| m.file_system_id == name)
                .map(|m| FileSystemAttachment {
                    sandbox_id: s.id.to_string(),
                    mount_path: m.mount_path.clone(),
                    read_only: m.read_only,
                })
        })
        .collect()
}

impl Context {
    /// Checks that `new` mounts may join sandbox `id` (which has `existing`) in
    /// `namespace`: every volume exists, no path or volume twice, and no
    /// read-write mount shares a volume with any other sandbox. Call it under
    /// [`VOLUME_LOCK`], and store the result before releasing it.
    pub(super) async fn check_mounts(
        &self,
        namespace: &str,
        id: &SandboxId,
        existing: &[FileSystemMount],
        new: &[FileSystemMount],
    ) -> Result<(), ControlError> {
        let mut all = existing.to_vec();
        all.extend(new.iter().cloned());
        distinct(&all)?;
        if new.is_empty() {
            return Ok(());
        }
        let live = self.store.list_holders_in(namespace).await?;
        for m in new {
            mount(m)?;
            if self
                .store
                .get_file_system(namespace, &m.file_system_id)
                .await?
                .is_none()
            {
                return Err(ControlError::NotFound {
                    kind: "file system",
                    id: m.file_system_id.clone(),
                });
            }
            let others: Vec<FileSystemAttachment> = attachments(&live, &m.file_system_id)
                .into_iter()
                .filter(|a| a.sandbox_id != id.as_str())
                .collect();
            let clash = others.iter().find(|a| !m.read_only || !a.read_only);
            if let Some(a) = clash {
                return Err(ControlError::FileSystemInUse(format!(
                    "file system {} is mounted {} in sandbox {}; a volume is mounted read-write \
                     in one sandbox at a time, or read-only in any number",
                    m.file_system_id,
                    if a.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    },
                    a.sandbox_id
                )));
            }
        }
        Ok(())
    }
}

/// The control-plane error for a node's refusal of a mount or unmount.
pub(super) fn mount_error(e: RuntimeError) -> ControlError {
    match e {
        RuntimeError::Refused(m) => ControlError::Conflict(m),
        RuntimeError::Busy(m) => ControlError::FileSystemInUse(m),
        other => ControlError::Runtime(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_absolute_normalized_and_off_the_runtimes_own() {
        for ok in [
            "/mnt/data",
            "/data",
            "/home/user/work-1",
            "/srv/a.b_c",
            "/devices",
            "/etc/app",
        ] {
            assert!(mount_path(ok).is_ok(), "{ok}");
        }
        assert!(mount_path(&format!("/mnt/{}", "a".repeat(255))).is_ok());
        let long = format!("/mnt/{}", "a".repeat(256));
        assert!(
            matches!(
                mount_path(&long),
                Err(ControlError::InvalidArgument {
                    field: "mount_path",
                    ..
                })
            ),
            "a component over NAME_MAX"
        );
        for bad in [
            "/",
            "",
            "mnt",
            "./mnt",
            "/mnt/../etc",
            "/mnt/./x",
            "/mnt//x",
            "/mnt/",
            "/proc",
            "/proc/self",
            "/sys/x",
            "/dev",
            "/dev/shm",
            "/.alcove",
            "/.alcove/alcove-agent",
            "/etc",
            "/etc/hosts",
            "/mnt/da ta",
            "/mnt/\u{e9}",
        ] {
            assert!(mount_path(bad).is_err(), "{bad:?}");
        }
    }

    fn m(id: &str, path: &str, ro: bool) -> FileSystemMount {
        FileSystemMount {
            file_system_id: id.into(),
            mount_path: path.into(),
            read_only: ro,
            prefetch: None,
            snapshot_id: None,
            owner: None,
        }
    }

    #[test]
    fn pins_and_owners_are_refused_and_mounts_are_distinct() {
        let mut pinned = m("data", "/mnt/d", true);
        pinned.snapshot_id = Some("s".into());
        assert!(mount(&pinned).is_err());
        let mut owned = m("data", "/mnt/d", false);
        owned.owner = Some("1000:1000".into());
        assert!(mount(&owned).is_err());
        assert!(mount(&m("Bad_Name", "/mnt/d", false)).is_err());
        assert!(distinct(&[m("a", "/x", false), m("b", "/y", true)]).is_ok());
        assert!(distinct(&[m("a", "/x", false), m("b", "/x", true)]).is_err());
        assert!(distinct(&[m("a", "/x", true), m("a", "/y", true)]).is_err());
        // Nested, in either order; a shared prefix of names is not nesting.
        assert!(distinct(&[m("a", "/x/y", false), m("b", "/x", false)]).is_err());
        assert!(distinct(&[m("a", "/x", false), m("b", "/x/y/z", true)]).is_err());
        assert!(distinct(&[m("a", "/x", false), m("b", "/xy", false)]).is_ok());
    }

    #[test]
    fn keys_are_plain_and_differ_by_namespace() {
        let k = volume_key("default", "data");
        assert_eq!(k.len(), 32);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(k, volume_key("other", "data"));
        assert_eq!(k, volume_key("default", "data"));
    }
}
