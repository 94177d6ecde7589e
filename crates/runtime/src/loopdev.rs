//! Mounting an ext4 image through a loop device with two ioctls and one
//! `mount(2)`, as `mount -o loop` does, without its two processes and its
//! reading of the whole mount table (which grows with every sandbox).
//!
//! The device is set up with `LOOP_CONFIGURE` and `LO_FLAGS_AUTOCLEAR`, so the
//! kernel frees it when the file system is unmounted, exactly as after
//! `mount -o loop`: unmounting and `losetup` work on either alike.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::error::{Result, RuntimeError};

/// `LO_FLAGS_AUTOCLEAR` (linux/loop.h): free the device on the last close of the
/// file system.
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` (linux/loop.h).
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (linux/loop.h), the argument of `LOOP_CONFIGURE`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

// LOOP_CTL_GET_FREE = 0x4C82 on /dev/loop-control; LOOP_CONFIGURE = 0x4C0A on a device.
nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);

/// How often a device another process took between "free" and "configure" is
/// asked for again.
const ATTEMPTS: usize = 8;

/// Attaches `image` to a free loop device (auto-clearing); its path, and the open
/// device, which keeps it attached until it is closed (or, once mounted, unmounted).
fn attach(image: &Path) -> Result<(PathBuf, std::fs::File)> {
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(RuntimeError::io("opening", image))?;
    let control_path = Path::new("/dev/loop-control");
    let control =
        std::fs::File::open(control_path).map_err(RuntimeError::io("opening", control_path))?;
    for _ in 0..ATTEMPTS {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { loop_ctl_get_free(control.as_raw_fd()) }.map_err(|e| {
            RuntimeError::io("asking for a free loop device", control_path)(e.into())
        })?;
        let dev = PathBuf::from(format!("/dev/loop{n}"));
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .map_err(RuntimeError::io("opening", &dev))?;
        let fd = u32::try_from(backing.as_raw_fd())
            .map_err(|_| RuntimeError::Config("a negative file descriptor".into()))?;
        let config = LoopConfig {
            fd,
            block_size: 0,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: 0,
                lo_sizelimit: 0,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: LO_FLAGS_AUTOCLEAR,
                lo_file_name: file_name(image),
                lo_crypt_name: [0; 64],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: `config` is a valid `struct loop_config` that outlives the call.
        match unsafe { loop_configure(device.as_raw_fd(), &config) } {
            Ok(_) => {
                keep_flushes(n);
                return Ok((dev, device));
            }
            // Another process configured it first: ask for the next free one.
            Err(nix::errno::Errno::EBUSY) => continue,
            Err(e) => return Err(RuntimeError::io("configuring", &dev)(e.into())),
        }
    }
    Err(RuntimeError::Config(
        "no free loop device after several attempts".into(),
    ))
}

/// Where sysfs says whether loop device `n` passes flushes on to its file.
fn write_cache_setting(n: i32) -> PathBuf {
    PathBuf::from(format!("/sys/block/loop{n}/queue/write_cache"))
}

/// Makes loop device `n` pass flushes on to its backing file again if it was
/// declared write-through. That setting survives the device's release, so a
/// device once set so by anyone would hand every later sandbox given it an ext4
/// whose fsyncs and journal commits never reach the host's disk. Reading it is
/// cheap; it is written only when wrong, and a failure is logged, not fatal
/// (the sandbox still works, only less durably).
fn keep_flushes(n: i32) {
    let setting = write_cache_setting(n);
    match std::fs::read_to_string(&setting) {
        Ok(mode) if mode.trim_end() == "write through" => {
            match std::fs::write(&setting, "write back") {
                Ok(()) => tracing::warn!(
                    device = n,
                    "loop device was write-through (flushes dropped); set back to write back"
                ),
                Err(e) => tracing::warn!(
                    device = n,
                    error = %e,
                    "loop device is write-through (flushes dropped) and could not be set back"
                ),
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(device = n, error = %e, "reading the loop device's cache mode"),
    }
}

/// The backing file's name as the kernel shows it (`losetup -l`), cut to fit.
fn file_name(image: &Path) -> [u8; 64] {
    let mut name = [0u8; 64];
    let bytes = image.as_os_str().as_encoded_bytes();
    let n = bytes.len().min(63);
    name[..n].copy_from_slice(&bytes[..n]);
    name
}

/// Mounts the ext4 `image` at `target` (`nosuid,nodev,noatime`) through a new
/// auto-clearing loop device. The device is freed if the mount fails.
pub async fn mount_image(image: &Path, target: &Path) -> Result<()> {
    let (image, target) = (image.to_path_buf(), target.to_path_buf());
    let started = std::time::Instant::now();
    let shown = image.display().to_string();
    let result = crate::blocking::run(move || mount_image_now(&image, &target)).await?;
    tracing::debug!(image = %shown, elapsed_ms = started.elapsed().as_millis() as u64, "loop mount");
    result
}

/// [`mount_image`] on the calling thread (which may block), for callers that
/// must do it under a lock of their own.
pub fn mount_image_now(image: &Path, target: &Path) -> Result<()> {
    let (dev, device) = attach(image)?;
    let mounted = nix::mount::mount(
        Some(dev.as_path()),
        target,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME,
        None::<&str>,
    );
    // Closing the device now leaves the mount as its only user (the device is
    // freed when it is unmounted) or, when the mount failed, frees it at once.
    drop(device);
    mounted.map_err(|e| RuntimeError::io("mounting", target)(e.into()))
}

/// Where sysfs shows block device `dev` (a `st_dev`).
fn sysfs_dir(dev: u64) -> PathBuf {
    PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        libc::major(dev),
        libc::minor(dev)
    ))
}

/// Whether block device `dev` (a `st_dev`) is a loop device whose backing file is
/// `image`, as sysfs tells it.
pub fn is_backed_by(dev: u64, image: &Path) -> bool {
    std::fs::canonicalize(image).is_ok_and(|image| shows_backing_file(&sysfs_dir(dev), &image))
}

/// Whether the loop device whose sysfs directory is `device` is backed by `image`
/// (a canonical path, as sysfs shows it).
fn shows_backing_file(device: &Path, image: &Path) -> bool {
    std::fs::read_to_string(device.join("loop/backing_file"))
        .is_ok_and(|shown| Path::new(shown.trim_end_matches('\n')) == image)
}

/// Whether any loop device on the host is backed by `image` (sysfs shows each
/// device's backing file). One is while any mount of a file system on it lives,
/// in any mount namespace, whether or not the node still tracks that mount.
pub fn is_attached(image: &Path) -> bool {
    let Ok(image) = std::fs::canonicalize(image) else {
        return false;
    };
    let Ok(devices) = std::fs::read_dir("/sys/block") else {
        return false;
    };
    devices.flatten().any(|device| {
        device.file_name().as_encoded_bytes().starts_with(b"loop")
            && shows_backing_file(&device.path(), &image)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_structs_match_the_kernels() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    #[ignore = "needs root (loop devices)"]
    fn a_loop_device_left_write_through_passes_flushes_on_again() {
        let tmp = tempfile::tempdir().expect("tmp");
        let image = tmp.path().join("img");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(1 << 20))
            .expect("image");
        let (dev, device) = attach(&image).expect("attach");
        let n: i32 = dev.to_string_lossy()["/dev/loop".len()..]
            .parse()
            .expect("device number");
        let setting = write_cache_setting(n);
        let mode = || std::fs::read_to_string(&setting).expect("read the setting");
        assert_eq!(mode().trim_end(), "write back");
        std::fs::write(&setting, "write through").expect("set write-through");
        assert_eq!(mode().trim_end(), "write through");
        keep_flushes(n);
        assert_eq!(mode().trim_end(), "write back");
        drop(device);
    }

    #[test]
    fn long_names_are_cut_and_nul_terminated() {
        let long = PathBuf::from(format!("/{}", "x".repeat(100)));
        let name = file_name(&long);
        assert_eq!(name[63], 0);
        assert_eq!(&name[..2], b"/x");
    }
}
