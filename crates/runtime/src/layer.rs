//! The writable layer of a sandbox and its root filesystem.
//!
//! The layer is a sparse ext4 image of `disk_mb` on a loop device (so the kernel
//! enforces the size), mounted `nosuid,nodev` at `layer/`. It holds overlayfs's
//! `upper/` and `work/` and the generated `etc/` files, all stored with the
//! sandbox's own ids (its root is 0 on disk). For the sandbox, the image
//! (`lower/`) and the layer (`upper/`) are attached again as idmapped mounts
//! that shift those ids into the sandbox's host range, and its root is an
//! overlay of the two at `rootfs/`:
//!
//! ```text
//! sandboxes/<id>/disk.img   ext4 image, 0600
//!                layer/     the image, mounted as is (host view, root only)
//!                lower/     the image root filesystem, idmapped
//!                upper/     layer/, idmapped (upper/upper, upper/work, upper/etc)
//!                rootfs/    overlay: lowerdir=lower, upperdir=upper/upper
//! ```
//!
//! Every mount is `nosuid,nodev` and the sandbox directory is 0700, so nothing
//! a sandbox writes (a setuid binary, a device node) is usable on the host.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::MntFlags;

use crate::cmd;
use crate::error::{Result, RuntimeError, path_str};
use crate::idmap::IdRange;
use crate::userns;

/// `FS_IOC_SHUTDOWN` (linux/fs.h: `_IOR('X', 125, __u32)`).
const FS_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587D;

/// Its argument for a shutdown that writes nothing more
/// (`EXT4_GOING_FLAGS_NOLOGFLUSH`).
const SHUTDOWN_NOLOGFLUSH: u32 = 2;

/// The on-disk paths of one sandbox's filesystem.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `sandboxes/<id>/`.
    pub dir: PathBuf,
}

/// A path the sandbox's bundle mounts something on, which must exist in the
/// root filesystem before runc (or a restore, done as host root) mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mountpoint {
    /// Absolute path inside the sandbox.
    pub path: String,
    /// Whether the mount point is a file (a bind mount of a file) or a directory.
    pub is_file: bool,
}

impl Layer {
    /// The layer of the sandbox whose directory is `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The ext4 image file.
    pub fn disk_image(&self) -> PathBuf {
        self.dir.join("disk.img")
    }

    /// Where the ext4 image is mounted as is (ids as stored).
    pub fn disk_mount(&self) -> PathBuf {
        self.dir.join("layer")
    }

    /// Where the generated `/etc` files are written (inside the ext4 image,
    /// outside the overlay: the sandbox cannot change them).
    pub fn etc_dir(&self) -> PathBuf {
        self.disk_mount().join("etc")
    }

    /// The generated `/etc` files as the sandbox sees them (through the
    /// idmapped mount, so they belong to its root): bind-mount sources.
    pub fn etc_source(&self) -> PathBuf {
        self.disk_view().join("etc")
    }

    /// The disk as the sandbox sees it: the idmapped mount of [`Self::disk_mount`],
    /// whose files belong to the sandbox's root.
    pub fn disk_view(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// The overlay mount: the sandbox's `/`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn stack(&self) -> [PathBuf; 4] {
        [
            self.rootfs(),
            self.dir.join("upper"),
            self.dir.join("lower"),
            self.disk_mount(),
        ]
    }

    /// Creates the disk image (`disk_mb` MiB, sparse, mode 0600) and formats it
    /// (in `ns`, when given: see [`format_image`]).
    pub async fn create_disk(
        &self,
        disk_mb: u64,
        ns: Option<&std::sync::Arc<crate::runc_ns::RuncNamespace>>,
    ) -> Result<()> {
        create_private_dir(&self.dir)?;
        format_image(&self.disk_image(), disk_mb, ns, false).await
    }

    /// Creates the disk image as [`Layer::create_disk`] does, taking a formatted
    /// one of that size from `spares` when it has one (the format is off the
    /// critical path then), and asks `spares` to make the next.
    pub async fn create_disk_from(
        &self,
        spares: &std::sync::Arc<crate::spare_layers::SpareLayers>,
        disk_mb: u64,
    ) -> Result<()> {
        create_private_dir(&self.dir)?;
        let taken = spares.take(disk_mb, &self.disk_image());
        spares.refill(disk_mb);
        if taken {
            return Ok(());
        }
        format_image(&self.disk_image(), disk_mb, spares.namespace(), false).await
    }

    /// The size of the disk image in MiB.
    pub fn disk_mb(&self) -> Result<u64> {
        let image = self.disk_image();
        let meta = std::fs::metadata(&image).map_err(RuntimeError::io("measuring", &image))?;
        Ok(meta.len() / (1024 * 1024))
    }

    /// Grows the mounted disk to `disk_mb` MiB, online: the sparse image is lengthened,
    /// its loop device re-reads its size (`losetup -c`) and `resize2fs` grows the ext4 to
    /// fill it (the kernel asks for `CAP_SYS_RESOURCE`). Nothing happens when the image is
    /// that big already (a disk never shrinks); on failure the image and the device get their
    /// old size back.
    pub async fn grow(&self, disk_mb: u64) -> Result<()> {
        let image = self.disk_image();
        let old_len = std::fs::metadata(&image)
            .map_err(RuntimeError::io("measuring", &image))?
            .len();
        let new_len = disk_mb * 1024 * 1024;
        if new_len <= old_len {
            return Ok(());
        }
        if !crate::host::has_sys_resource() {
            return Err(RuntimeError::Unsupported(
                "growing the disk of a running sandbox needs CAP_SYS_RESOURCE, which this \
                 server lacks; suspend the sandbox, resize it and resume it instead"
                    .into(),
            ));
        }
        let image_str = path_str(&image)?;
        let found = cmd::run(&[
            "losetup",
            "--list",
            "--noheadings",
            "--output",
            "NAME",
            "--associated",
            image_str,
        ])
        .await?;
        let device = found
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                RuntimeError::Config(format!("{} is not on a loop device", image.display()))
            })?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .map_err(RuntimeError::io("opening", &image))?;
        file.set_len(new_len)
            .map_err(RuntimeError::io("sizing", &image))?;
        let grown = async {
            cmd::run(&["losetup", "--set-capacity", &device]).await?;
            cmd::run(&["resize2fs", &device]).await
        }
        .await;
        if let Err(e) = grown {
            // The file system has its old size: the device and the image may shrink back.
            let _ = file.set_len(old_len);
            let _ = cmd::run(&["losetup", "--set-capacity", &device]).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Grows the disk to `disk_mb` MiB offline, before the sandbox starts (one resized while
    /// suspended): everything of the layer is unmounted, the image lengthened, checked and
    /// grown with `resize2fs`. Nothing happens when the image is that big already.
    pub async fn grow_offline(&self, disk_mb: u64) -> Result<()> {
        let image = self.disk_image();
        let old_len = std::fs::metadata(&image)
            .map_err(RuntimeError::io("measuring", &image))?
            .len();
        let new_len = disk_mb * 1024 * 1024;
        if new_len <= old_len {
            return Ok(());
        }
        let layer = self.clone();
        crate::blocking::run(move || layer.unmount()).await??;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .map_err(RuntimeError::io("opening", &image))?;
        file.set_len(new_len)
            .map_err(RuntimeError::io("sizing", &image))?;
        drop(file);
        let image_str = path_str(&image)?;
        // e2fsck -p exits 1 when it fixed something, which is fine here.
        if let Err(e) = cmd::run(&["e2fsck", "-f", "-p", image_str]).await
            && !e.reason.starts_with("exit status: 1")
        {
            return Err(e.into());
        }
        cmd::run(&["resize2fs", image_str]).await?;
        Ok(())
    }

    /// Mounts the disk image at `layer/` (`nosuid,nodev`) and makes its
    /// `upper/`, `work/` and `etc/` directories.
    pub async fn mount_disk(&self) -> Result<()> {
        let disk = self.disk_mount();
        if !is_mountpoint(&disk) {
            create_private_dir(&disk)?;
            crate::loopdev::mount_image(&self.disk_image(), &disk).await?;
        }
        // `upper/` is the sandbox's `/` as far as its attributes go (overlayfs
        // shows the upper directory's): 0755 like any root directory.
        for (sub, mode) in [("upper", 0o755), ("work", 0o700), ("etc", 0o755)] {
            ensure_real_dir(&disk.join(sub), mode)?;
        }
        Ok(())
    }

    /// Makes each of `mountpoints` exist in the root filesystem the overlay
    /// of `lower` and the layer will show, by creating what is missing in the
    /// upper directory. Run with the overlay unmounted (overlayfs must not see
    /// its layers change under it).
    ///
    /// The upper directory holds whatever the sandbox wrote, so nothing in it is
    /// trusted: no symlink is followed, a whiteout in the way is removed, and a
    /// non-directory where a directory is needed is an error.
    pub fn prepare_mountpoints(
        &self,
        layers: &[PathBuf],
        mountpoints: &[Mountpoint],
    ) -> Result<()> {
        let upper = self.disk_mount().join("upper");
        for mp in mountpoints {
            ensure_mountpoint(&upper, layers, mp)?;
        }
        Ok(())
    }

    /// Attaches the image's distinct layers (`lower/0` bottom … `lower/<n-1>` top) and
    /// the writable layer (`upper/`) idmapped for `range`, and mounts the
    /// overlay at `rootfs/`. The disk must be mounted.
    pub async fn mount_root(&self, layers: &[PathBuf], range: IdRange) -> Result<()> {
        if layers.is_empty() {
            return Err(RuntimeError::Config(
                "an image has at least one layer".into(),
            ));
        }
        let dir = self.dir.clone();
        let layers = distinct_layers(layers);
        let disk = self.disk_mount();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let (lower_root, upper_mnt, rootfs) =
                (dir.join("lower"), dir.join("upper"), dir.join("rootfs"));
            for d in [&lower_root, &upper_mnt, &rootfs] {
                ensure_real_dir(d, 0o700)?;
            }
            if is_mountpoint(&rootfs) {
                return Ok(());
            }
            let ns = userns::mapping_namespace(range)?;
            // The image is shared by every sandbox: its view is read-only
            // (overlayfs never writes to a lower layer, and nothing else may).
            for (i, layer) in layers.iter().enumerate() {
                let mnt = lower_root.join(i.to_string());
                ensure_real_dir(&mnt, 0o700)?;
                if !is_mountpoint(&mnt) {
                    let tree = crate::layer_trees::clone_layer(layer)?;
                    userns::attach_idmapped(tree, layer, &mnt, &ns, true)?;
                }
            }
            if !is_mountpoint(&upper_mnt) {
                userns::idmapped_clone(&disk, &upper_mnt, &ns, false)?;
            }
            userns::mount_overlay(&dir, range, layers.len())
        })
        .await
        .map_err(|e| RuntimeError::Config(format!("mount task failed: {e}")))?
    }

    /// Unmounts the overlay and the idmapped mounts, keeping the disk mounted
    /// (they belong to one id range; the disk does not).
    pub fn unmount_root(&self) -> Result<()> {
        self.unmount_views()?;
        self.root_mount_points()
            .iter()
            .try_for_each(|m| unmount_all(m))
    }

    /// Unmounts the sandbox's views of its volumes (crate::volume), which belong to its
    /// uid range too. Never lazily: a volume's file system must be free for its next user
    /// as soon as this returns.
    fn unmount_views(&self) -> Result<()> {
        child_dirs(&self.dir.join(crate::volume::VIEWS_DIR))
            .iter()
            .try_for_each(|view| unmount_all(view))
    }

    /// Where the root's mounts are, in the order they come down: the overlay, its upper
    /// layer, the image's layers under `lower/`, then `lower/` itself (where a sandbox made
    /// before images had layers mounted its one image).
    fn root_mount_points(&self) -> Vec<PathBuf> {
        let [rootfs, upper, lower, _] = self.stack();
        let mut points = vec![rootfs, upper];
        points.extend(child_dirs(&lower));
        points.push(lower);
        points
    }

    /// Unmounts everything (the loop device is freed by autoclear).
    pub fn unmount(&self) -> Result<()> {
        self.unmount_root()?;
        unmount_all(&self.disk_mount())
    }

    /// Whether the overlay and everything under it are mounted.
    pub fn is_mounted(&self) -> bool {
        let [rootfs, upper, lower, disk] = self.stack();
        [rootfs, upper, disk].iter().all(|m| is_mountpoint(m)) && !mounts_under(&lower).is_empty()
    }

    /// Takes every mount of this sandbox out of the host's mount table, leaving
    /// the teardown of its own file systems (the ext4 disk and its loop device,
    /// the overlay) to whoever drops the result. Only for a sandbox whose files
    /// are thrown away: the disk is shut down before its teardown (see
    /// [`DetachedMounts`]). Its views of volumes are unmounted outright: a
    /// volume's file system must be free for its next user as soon as this
    /// returns.
    pub fn detach(&self) -> Result<DetachedMounts> {
        self.unmount_views()?;
        let mut held = DetachedMounts {
            mounts: Vec::new(),
            disk: self.own_disk(),
        };
        for point in self.root_mount_points().iter().chain([&self.disk_mount()]) {
            detach_all(point, &mut held)?;
        }
        Ok(held)
    }

    /// The root of the file system mounted at the disk's mount point, opened for
    /// its shutdown, when it is this layer's own disk: ext4 on a loop device
    /// backed by this layer's image. Anything else mounted there is never shut
    /// down.
    fn own_disk(&self) -> Option<std::fs::File> {
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(self.disk_mount())
            .ok()?;
        let dev = root.metadata().ok()?.dev();
        crate::loopdev::is_backed_by(dev, &self.disk_image()).then_some(root)
    }

    /// Takes everything of this sandbox off the host's mount table and hands its
    /// files and its detached file systems to `trash`, which tears them down and
    /// removes them in the background (see [`crate::trash`]).
    pub async fn discard(&self, trash: std::sync::Arc<crate::trash::Trash>) -> Result<()> {
        let layer = self.clone();
        crate::blocking::run(move || {
            let held = layer.detach()?;
            let label = layer
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            trash.discard(&layer.dir, label.as_deref().unwrap_or("sandbox"), held)
        })
        .await?
    }
}

/// File systems detached from every mount namespace and not torn down yet:
/// each descriptor (`O_PATH`, of a mount's root) holds the last reference to
/// one mount. Nothing can reach them any more; dropping this closes the
/// descriptors, and the kernel tears the file systems down on the dropping
/// thread (for the ext4 disk, then its loop device's release). A crash of the
/// server closes them as well.
///
/// Dropping it first makes the sandbox's disk write nothing more (see
/// [`shut_down_discarded_disk`]): its image is deleted right after, and the
/// teardown would otherwise write every page the sandbox left unwritten
/// through the loop device to the host's disk, for nothing.
#[derive(Debug, Default)]
pub struct DetachedMounts {
    mounts: Vec<std::fs::File>,
    /// The disk's root (not `O_PATH`: the ioctl needs a real descriptor), when
    /// it is the layer's own disk.
    disk: Option<std::fs::File>,
}

impl Drop for DetachedMounts {
    fn drop(&mut self) {
        if let Some(disk) = self.disk.take() {
            shut_down_discarded_disk(&disk);
        }
    }
}

/// Makes a discarded disk (its root) write nothing more: its file system is
/// shut down (`FS_IOC_SHUTDOWN`) without flushing its journal or data. A
/// failure only costs the writing it spares.
fn shut_down_discarded_disk(root: &std::fs::File) {
    let flags: u32 = SHUTDOWN_NOLOGFLUSH;
    // SAFETY: FS_IOC_SHUTDOWN reads a u32 through the pointer, valid for the call.
    let rc = unsafe { libc::ioctl(root.as_raw_fd(), FS_IOC_SHUTDOWN, &flags) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "shutting down a discarded disk");
    }
}

/// Detaches every mount stacked on `path`, keeping a descriptor of each in `held`
/// so that detaching does not wait for its file system's teardown.
fn detach_all(path: &Path, held: &mut DetachedMounts) -> Result<()> {
    for _ in 0..8 {
        if !is_mountpoint(path) {
            return Ok(());
        }
        // The root of the topmost mount at `path`; never a symlink's target.
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(RuntimeError::io("opening", path))?;
        nix::mount::umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| RuntimeError::io("detaching", path)(e.into()))?;
        held.mounts.push(root);
    }
    Ok(())
}

/// Creates `image` (`disk_mb` MiB, sparse, mode 0600) and formats it as ext4 with
/// lazy initialisation (the kernel zeroes inode tables in the background).
///
/// `mkfs.ext4` checks that its target is not mounted by reading the whole
/// mount table and `stat`ing the source of every entry, so on the host, where
/// each sandbox holds a handful of mounts, it took ~5 times as long with 600
/// sandboxes up. Given `ns` (the template namespace runc runs in, which holds
/// the host's own mounts only), it runs in a copy of that instead.
///
/// With `background`, `mkfs.ext4` runs at idle CPU priority (`SCHED_IDLE`): spares
/// are formatted while a create is booting, and on a machine with few CPUs a
/// format at normal priority took CPU time from that very boot.
pub async fn format_image(
    image: &Path,
    disk_mb: u64,
    ns: Option<&std::sync::Arc<crate::runc_ns::RuncNamespace>>,
    background: bool,
) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(image)
        .map_err(RuntimeError::io("creating", image))?;
    file.set_len(disk_mb * 1024 * 1024)
        .map_err(RuntimeError::io("sizing", image))?;
    drop(file);
    let argv = [
        "mkfs.ext4",
        "-q",
        "-F",
        "-m",
        "0",
        "-E",
        "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
        path_str(image)?,
    ];
    cmd::run_spawned(&argv, None, (ns, None), background).await?;
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    create_dir_with_mode(dir, 0o700)
}

fn create_dir_with_mode(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(RuntimeError::io("creating", dir))?;
    // The umask may have taken bits away.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(RuntimeError::io("setting the mode of", dir))
}

/// `layers` (bottom first) with each layer once, at its topmost place. overlayfs refuses a
/// directory given twice (`ELOOP`), and images repeat layers: an empty one (a build step
/// that changed nothing, a metadata-only step of a pulled image) comes out the same each
/// time. The lower copy changes nothing: whatever it holds or hides, the same layer above
/// it holds or hides again.
pub fn distinct_layers(layers: &[PathBuf]) -> Vec<PathBuf> {
    let mut kept: Vec<PathBuf> = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        if !layers[i + 1..].contains(layer) {
            kept.push(layer.clone());
        }
    }
    kept
}

/// Creates `path` as a directory with `mode` unless it already is one; a
/// symlink or file in its place is an error. (The mount points under a
/// sandbox directory are 0700: their own mode shows only while nothing is
/// mounted on them.) On the create path the directory is usually new: it is
/// made first, with its mode, in one system call, and inspected only when
/// something is there already.
pub(crate) fn ensure_real_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) if mode & umask() == 0 => Ok(()),
        // The umask took bits away.
        Ok(()) => {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(RuntimeError::io("setting the mode of", path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(RuntimeError::Config(format!(
                    "{} exists and is not a directory",
                    path.display()
                ))),
                Err(e) => Err(RuntimeError::io("inspecting", path)(e)),
            }
        }
        // A parent is missing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_dir_with_mode(path, mode),
        Err(e) => Err(RuntimeError::io("creating", path)(e)),
    }
}

/// This process's umask, read once (all bits where it cannot be read, so that
/// every directory made gets its mode set).
fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("Umask:"))?;
                u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).ok()
            })
            .unwrap_or(0o777)
    })
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// See [`Layer::prepare_mountpoints`]. Walks the mount point's path in the
/// upper directory; a component missing there but present in the image is
/// left to the image (created in the upper directory only when something
/// below it has to be), so nothing of the image is shadowed.
fn ensure_mountpoint(upper: &Path, layers: &[PathBuf], mp: &Mountpoint) -> Result<()> {
    let rel: Vec<&std::ffi::OsStr> = Path::new(&mp.path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut cur_upper = upper.to_path_buf();
    // Directories present in the image but not (yet) in the upper directory.
    let mut pending: Vec<PathBuf> = Vec::new();
    for (i, name) in rel.iter().enumerate() {
        let want_file = i + 1 == rel.len() && mp.is_file;
        cur_upper.push(name);
        let in_upper = match std::fs::symlink_metadata(&cur_upper) {
            Ok(m) if is_whiteout(&m) => {
                // The sandbox deleted what the image had here; without the
                // whiteout the image's entry shows again as the mount point.
                std::fs::remove_file(&cur_upper)
                    .map_err(RuntimeError::io("removing", &cur_upper))?;
                None
            }
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(RuntimeError::io("inspecting", &cur_upper)(e)),
        };
        match in_upper {
            Some(m) if m.is_dir() && !want_file => continue,
            Some(m) if m.is_file() && want_file => return Ok(()),
            Some(_) => {
                return Err(RuntimeError::Config(format!(
                    "the sandbox replaced the mount point {} with something else",
                    mp.path
                )));
            }
            None => {}
        }
        let in_lower = lookup_in_layers(layers, &rel[..=i])
            .is_some_and(|m| if want_file { m.is_file() } else { m.is_dir() });
        if in_lower {
            if i + 1 == rel.len() {
                return Ok(());
            }
            pending.push(cur_upper.clone());
            continue;
        }
        for dir in pending.drain(..) {
            std::fs::create_dir(&dir).map_err(RuntimeError::io("creating", &dir))?;
        }
        if want_file {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&cur_upper)
                .map_err(RuntimeError::io("creating", &cur_upper))?;
        } else {
            std::fs::create_dir(&cur_upper).map_err(RuntimeError::io("creating", &cur_upper))?;
        }
    }
    Ok(())
}

/// What the image's merged view (its layers as overlayfs stacks them) has at
/// the relative path `rel`, looked up from the top layer down: a whiteout
/// hides the path and everything below it, an opaque directory hides the
/// layers under it, and nothing is followed through a symlink (a path through
/// a symlink counts as absent: the mount point is then made in the upper
/// directory, where runc resolves it inside the sandbox's root).
pub fn lookup_in_layers(layers: &[PathBuf], rel: &[&std::ffi::OsStr]) -> Option<std::fs::Metadata> {
    for layer in layers.iter().rev() {
        let mut cur = layer.clone();
        for (i, name) in rel.iter().enumerate() {
            cur.push(name);
            let meta = match std::fs::symlink_metadata(&cur) {
                Ok(m) => m,
                // Absent here: a lower layer may have it, unless a directory
                // above it in this layer is opaque.
                Err(_) => break,
            };
            if is_whiteout(&meta) {
                return None;
            }
            if i + 1 == rel.len() {
                return Some(meta);
            }
            if !meta.is_dir() {
                return None;
            }
        }
        if rel
            .iter()
            .scan(layer.clone(), |p, name| {
                p.push(name);
                Some(p.clone())
            })
            .take(rel.len().saturating_sub(1))
            .any(|dir| is_opaque(&dir))
        {
            return None;
        }
    }
    None
}

/// Whether overlayfs treats the directory `dir` of a lower layer as opaque.
fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 2];
    // SAFETY: both strings are NUL-terminated and `value` is a writable
    // buffer of the length passed.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// Deletes `dir` recursively, unless something is still mounted below it: a
/// recursive delete would go through the mount, and a sandbox's mounts lead
/// to the shared image and to its layer.
pub fn remove_unmounted_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    refuse_mounts(dir)?;
    crate::remove_tree::remove_tree(dir).map_err(RuntimeError::io("removing", dir))
}

/// Deletes what `dir` holds and leaves `dir` itself, empty, unless something is
/// still mounted below it (as [`remove_unmounted_tree`]). Symlinks are removed,
/// never followed.
pub fn empty_unmounted_tree(dir: &Path) -> Result<()> {
    refuse_mounts(dir)?;
    for entry in std::fs::read_dir(dir).map_err(RuntimeError::io("reading", dir))? {
        let entry = entry.map_err(RuntimeError::io("reading", dir))?;
        let path = entry.path();
        crate::remove_tree::remove_tree(&path).map_err(RuntimeError::io("removing", &path))?;
    }
    Ok(())
}

/// Fails if `dir` or a directory below it is a mount point. The walk never
/// enters a mount, so it only visits what is removed anyway (no read of the
/// host's whole mount table, which grows with every sandbox).
pub(crate) fn refuse_mounts(dir: &Path) -> Result<()> {
    if is_mountpoint(dir) {
        return Err(RuntimeError::Config(format!(
            "not removing it: {} is still mounted",
            dir.display()
        )));
    }
    for entry in std::fs::read_dir(dir).map_err(RuntimeError::io("reading", dir))? {
        let entry = entry.map_err(RuntimeError::io("reading", dir))?;
        // `file_type` does not follow symlinks: a link to elsewhere is not walked.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            refuse_mounts(&entry.path())?;
        }
    }
    Ok(())
}

/// The directories directly in `dir` (none if it does not exist).
fn child_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Unmounts every mount stacked on `path`, detaching lazily if it is busy.
pub fn unmount_all(path: &Path) -> Result<()> {
    for _ in 0..8 {
        if !is_mountpoint(path) {
            return Ok(());
        }
        if nix::mount::umount2(path, MntFlags::empty()).is_err() {
            nix::mount::umount2(path, MntFlags::MNT_DETACH)
                .map_err(|e| RuntimeError::io("unmounting", path)(e.into()))?;
        }
    }
    Ok(())
}

/// Mount points currently mounted at or below `prefix`, deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(prefix))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Whether `path` is a mount point: one `statx` (the root of a mount carries
/// `STATX_ATTR_MOUNT_ROOT`), or, on a kernel that does not report it, a read of
/// `/proc/self/mountinfo`. A symlink is never followed.
pub fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: a NUL-terminated path and a buffer of the right type, both live for the call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            0,
            buf.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return false;
    }
    // SAFETY: statx filled the buffer (it was zeroed before, too).
    let st = unsafe { buf.assume_init() };
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if st.stx_attributes_mask & flag != 0 {
        return st.stx_attributes & flag != 0;
    }
    is_mountpoint_per_mountinfo(path)
}

fn is_mountpoint_per_mountinfo(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|p| Path::new(&unescape_mountinfo(p)) == path)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(v) = (bytes[i] == b'\\')
            .then(|| field.get(i + 1..i + 4))
            .flatten()
            .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_layer_is_kept_once_at_its_topmost_place() {
        let l = |n: &str| PathBuf::from(format!("/layers/{n}"));
        assert_eq!(
            distinct_layers(&[l("base"), l("empty"), l("app"), l("empty"), l("top")]),
            vec![l("base"), l("app"), l("empty"), l("top")]
        );
        assert_eq!(distinct_layers(&[l("a"), l("a")]), vec![l("a")]);
        assert_eq!(distinct_layers(&[l("a"), l("b")]), vec![l("a"), l("b")]);
    }

    #[test]
    fn unescapes_mountinfo_octal() {
        assert_eq!(unescape_mountinfo(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\134"), r"/end\");
    }

    fn mp(path: &str, is_file: bool) -> Mountpoint {
        Mountpoint {
            path: path.into(),
            is_file,
        }
    }

    #[test]
    fn mountpoints_are_made_only_where_the_image_lacks_them() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        std::fs::create_dir_all(lower.join("proc")).expect("mkdir");
        std::fs::create_dir_all(lower.join("etc")).expect("mkdir");
        std::fs::write(lower.join("etc/hosts"), "image").expect("write");
        std::fs::create_dir_all(&upper).expect("mkdir");
        for m in [
            mp("/proc/meminfo", true),
            mp("/sys/devices/system/cpu/online", true),
            mp("/etc/hosts", true),
            mp("/proc", false),
            mp("/.alcove/alcove-agent", true),
        ] {
            ensure_mountpoint(&upper, std::slice::from_ref(&lower), &m).expect("mountpoint");
        }
        assert!(upper.join("proc/meminfo").is_file());
        assert!(upper.join("sys/devices/system/cpu/online").is_file());
        assert!(upper.join(".alcove/alcove-agent").is_file());
        assert!(
            !upper.join("etc").exists(),
            "the image's /etc/hosts is not shadowed"
        );
        // Idempotent.
        ensure_mountpoint(
            &upper,
            std::slice::from_ref(&lower),
            &mp("/proc/meminfo", true),
        )
        .expect("again");
    }

    #[test]
    fn hostile_upper_entries_are_never_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (lower, upper, outside) = (
            tmp.path().join("lower"),
            tmp.path().join("upper"),
            tmp.path().join("outside"),
        );
        for d in [&lower, &upper, &outside] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::os::unix::fs::symlink(&outside, upper.join(".alcove")).expect("symlink");
        let err = ensure_mountpoint(
            &upper,
            std::slice::from_ref(&lower),
            &mp("/.alcove/alcove-agent", true),
        );
        assert!(err.is_err(), "a symlink in the way is refused");
        assert!(std::fs::read_dir(&outside).expect("read").next().is_none());
        std::fs::write(upper.join("proc"), "file").expect("write");
        assert!(
            ensure_mountpoint(
                &upper,
                std::slice::from_ref(&lower),
                &mp("/proc/meminfo", true)
            )
            .is_err()
        );
    }

    #[test]
    #[ignore = "needs root (mknod)"]
    fn a_whiteout_gives_way_to_the_mount_point() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        std::fs::create_dir_all(lower.join("etc")).expect("mkdir");
        std::fs::write(lower.join("etc/hosts"), "image").expect("write");
        std::fs::create_dir_all(upper.join("etc")).expect("mkdir");
        nix::sys::stat::mknod(
            &upper.join("etc/hosts"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .expect("mknod (tests run as root)");
        ensure_mountpoint(
            &upper,
            std::slice::from_ref(&lower),
            &mp("/etc/hosts", true),
        )
        .expect("mountpoint");
        assert!(
            !upper.join("etc/hosts").exists(),
            "the whiteout is gone, so the image's file is the mount point again"
        );
    }

    #[test]
    #[ignore = "needs root (mount)"]
    fn a_tree_with_a_mount_inside_is_not_removed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let inner = tmp.path().join("sandbox/lower");
        std::fs::create_dir_all(&inner).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            &inner,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount tmpfs");
        std::fs::write(inner.join("shared"), b"image").expect("write");
        assert!(remove_unmounted_tree(&tmp.path().join("sandbox")).is_err());
        assert!(
            inner.join("shared").exists(),
            "nothing was deleted through the mount"
        );
        unmount_all(&inner).expect("unmount");
        remove_unmounted_tree(&tmp.path().join("sandbox")).expect("removed");
        assert!(!tmp.path().join("sandbox").exists());
    }

    #[test]
    #[ignore = "needs root (mount)"]
    fn detaching_leaves_no_mount_and_defers_the_teardown_to_the_holder() {
        use std::os::fd::AsRawFd;
        let tmp = tempfile::tempdir().expect("tmp");
        let layer = Layer::new(tmp.path().join("sb"));
        let mount_tmpfs = |at: &Path| {
            std::fs::create_dir_all(at).expect("mkdir");
            nix::mount::mount(
                Some("tmpfs"),
                at,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .expect("mount tmpfs");
        };
        // Two mounts stacked on the root, one on the disk, with a file in it.
        mount_tmpfs(&layer.rootfs());
        mount_tmpfs(&layer.rootfs());
        mount_tmpfs(&layer.disk_mount());
        std::fs::write(layer.disk_mount().join("f"), b"still here").expect("write");
        let held = layer.detach().expect("detach");
        assert_eq!(held.mounts.len(), 3);
        assert!(
            mounts_under(&layer.dir).is_empty(),
            "{:?}",
            mounts_under(&layer.dir)
        );
        assert!(
            !layer.disk_mount().join("f").exists(),
            "the mount point is bare"
        );
        // The disk's file system is alive until the holder lets go of it.
        let disk = held.mounts.last().expect("the disk");
        let through = format!("/proc/self/fd/{}/f", disk.as_raw_fd());
        assert_eq!(std::fs::read(&through).expect("read"), b"still here");
        drop(held);
        remove_unmounted_tree(&layer.dir).expect("removed");
    }

    #[tokio::test]
    #[ignore = "needs root (loop devices, mount)"]
    async fn a_discarded_disk_writes_nothing_left_unwritten_and_only_its_own_is_shut_down() {
        use std::io::Write;
        let tmp = tempfile::tempdir().expect("tmp");
        let layer = Layer::new(tmp.path().join("sb"));
        create_private_dir(&layer.dir).expect("mkdir");
        format_image(&layer.disk_image(), 256, None, false)
            .await
            .expect("format");
        layer.mount_disk().await.expect("mount");
        let allocated = || {
            std::fs::metadata(layer.disk_image())
                .expect("stat image")
                .blocks()
                * 512
        };
        let before = allocated();
        let mut file = std::fs::File::create(layer.disk_mount().join("upper/big")).expect("create");
        for _ in 0..64 {
            file.write_all(&[7u8; 1 << 20]).expect("write");
        }
        drop(file); // closed, not synced: the data is in dirty pages only
        drop(layer.detach().expect("detach"));
        let written = allocated() - before;
        assert!(
            written < 8 << 20,
            "{written} bytes reached the image of a discarded disk"
        );

        // Another image mounted where this layer's disk goes is not this layer's
        // disk: it is detached but keeps working for whoever holds it.
        let other = Layer::new(tmp.path().join("other"));
        create_private_dir(&other.dir).expect("mkdir");
        format_image(&other.disk_image(), 64, None, false)
            .await
            .expect("format");
        create_private_dir(&layer.disk_mount()).expect("mkdir");
        crate::loopdev::mount_image(&other.disk_image(), &layer.disk_mount())
            .await
            .expect("mount");
        let held = layer.detach().expect("detach");
        let disk = held.mounts.last().expect("the disk");
        let through = format!("/proc/self/fd/{}/still-writable", disk.as_raw_fd());
        std::fs::write(&through, b"yes").expect("the other disk was shut down");
        drop(held);
    }

    #[test]
    fn emptying_a_tree_keeps_it_and_never_follows_a_symlink() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (tree, outside) = (tmp.path().join("tree"), tmp.path().join("outside"));
        std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), b"host").expect("write");
        std::fs::write(tree.join("file"), b"x").expect("write");
        std::fs::write(tree.join("sub/file"), b"x").expect("write");
        std::os::unix::fs::symlink(&outside, tree.join("link")).expect("symlink");
        empty_unmounted_tree(&tree).expect("emptied");
        assert_eq!(std::fs::read_dir(&tree).expect("read").count(), 0);
        assert_eq!(std::fs::read(outside.join("keep")).expect("read"), b"host");
    }

    #[test]
    fn paths_are_under_the_sandbox_dir() {
        let layer = Layer::new("/data/sandboxes/x");
        assert_eq!(layer.disk_image(), Path::new("/data/sandboxes/x/disk.img"));
        assert_eq!(layer.rootfs(), Path::new("/data/sandboxes/x/rootfs"));
    }

    #[test]
    fn the_merged_view_of_layers_honours_whiteouts_and_opaque_dirs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (base, top) = (tmp.path().join("base"), tmp.path().join("top"));
        for d in ["etc", "opt/old", "srv"] {
            std::fs::create_dir_all(base.join(d)).expect("mkdir");
        }
        std::fs::write(base.join("etc/hosts"), "base").expect("write");
        std::fs::write(base.join("etc/gone"), "base").expect("write");
        std::fs::write(base.join("opt/kept"), "base").expect("write");
        std::fs::create_dir_all(top.join("opt")).expect("mkdir");
        std::fs::create_dir_all(top.join("etc")).expect("mkdir");
        nix::sys::stat::mknod(
            &top.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("whiteout");
        let opt = std::ffi::CString::new(top.join("opt").into_os_string().into_encoded_bytes())
            .expect("cstring");
        // SAFETY: NUL-terminated strings and a value buffer of the length given.
        let rc = unsafe {
            libc::setxattr(
                opt.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                c"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0, "setting the opaque xattr (needs root)");
        let layers = [base, top];
        let look = |p: &str| {
            let parts: Vec<&std::ffi::OsStr> = p.split('/').map(std::ffi::OsStr::new).collect();
            lookup_in_layers(&layers, &parts).map(|m| m.is_dir())
        };
        assert_eq!(
            look("etc/hosts"),
            Some(false),
            "from the base, through a plain dir"
        );
        assert_eq!(look("etc/gone"), None, "whited out by the top layer");
        assert_eq!(look("opt/kept"), None, "hidden by the opaque dir");
        assert_eq!(look("opt"), Some(true));
        assert_eq!(look("srv"), Some(true), "only in the base");
        assert_eq!(look("nothing"), None);
    }
}
