//! The writable layer of a sandbox and its root filesystem.
//!
//! The layer is a sparse ext4 image of `disk_mb` on a loop device (so the kernel
//! enforces the size), holding overlayfs's `upper/` and `work/`; the sandbox's
//! root is an overlay of the read-only image over that upper dir.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::cmd;
use crate::error::{Result, RuntimeError, path_str};

/// The on-disk paths of one sandbox's filesystem.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `sandboxes/<id>/`.
    pub dir: PathBuf,
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

    /// Where the ext4 image is mounted.
    pub fn disk_mount(&self) -> PathBuf {
        self.dir.join("layer")
    }

    /// The overlay mount: the sandbox's `/`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Creates the disk image (`disk_mb` MiB, sparse) and formats it.
    pub async fn create_disk(&self, disk_mb: u64) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(RuntimeError::io("creating", &self.dir))?;
        let image = self.disk_image();
        let file = std::fs::File::create(&image).map_err(RuntimeError::io("creating", &image))?;
        file.set_len(disk_mb * 1024 * 1024)
            .map_err(RuntimeError::io("sizing", &image))?;
        drop(file);
        let image_str = path_str(&image)?;
        cmd::run(&[
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            image_str,
        ])
        .await?;
        Ok(())
    }

    /// Mounts the disk image and the overlay of `lower` over it.
    pub async fn mount(&self, lower: &Path) -> Result<()> {
        let disk = self.disk_mount();
        let rootfs = self.rootfs();
        for dir in [&disk, &rootfs] {
            std::fs::create_dir_all(dir).map_err(RuntimeError::io("creating", dir))?;
        }
        if !is_mountpoint(&disk) {
            cmd::run(&[
                "mount",
                "-o",
                "loop,noatime",
                path_str(&self.disk_image())?,
                path_str(&disk)?,
            ])
            .await?;
        }
        let upper = disk.join("upper");
        let work = disk.join("work");
        for dir in [&upper, &work] {
            std::fs::create_dir_all(dir).map_err(RuntimeError::io("creating", dir))?;
        }
        if !is_mountpoint(&rootfs) {
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            );
            nix::mount::mount(
                Some("overlay"),
                &rootfs,
                Some("overlay"),
                MsFlags::empty(),
                Some(options.as_str()),
            )
            .map_err(|e| RuntimeError::io("mounting overlay on", &rootfs)(e.into()))?;
        }
        Ok(())
    }

    /// Unmounts the overlay and the disk (the loop device is freed by autoclear).
    pub fn unmount(&self) -> Result<()> {
        for mount in [self.rootfs(), self.disk_mount()] {
            unmount_all(&mount)?;
        }
        Ok(())
    }

    /// Whether both mounts are in place.
    pub fn is_mounted(&self) -> bool {
        is_mountpoint(&self.disk_mount()) && is_mountpoint(&self.rootfs())
    }

    /// Unmounts and deletes everything of this sandbox on disk.
    pub fn remove(&self) -> Result<()> {
        self.unmount()?;
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(RuntimeError::io("removing", &self.dir))?;
        }
        Ok(())
    }
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

/// Whether `path` is a mount point (per `/proc/self/mountinfo`).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|p| Path::new(&unescape_mountinfo(p)) == path)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
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
    fn unescapes_mountinfo_octal() {
        assert_eq!(unescape_mountinfo(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\134"), r"/end\");
    }

    #[test]
    fn paths_are_under_the_sandbox_dir() {
        let layer = Layer::new("/data/sandboxes/x");
        assert_eq!(layer.disk_image(), Path::new("/data/sandboxes/x/disk.img"));
        assert_eq!(layer.rootfs(), Path::new("/data/sandboxes/x/rootfs"));
    }
}
