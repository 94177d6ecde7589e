//! Cold storage: a suspended sandbox's dump and a snapshot's files are packed
//! into zstd-compressed, sparse-aware tar archives when they sit idle, and
//! unpacked again when they are needed.
//!
//! Packing writes `<member>.tar.zst.tmp`, renames it into place, then removes
//! the member; unpacking does the reverse. A crash at any point leaves either
//! the member, the archive, or both (the member wins), never neither.

use std::path::{Path, PathBuf};

use crate::cmd;
use crate::error::{Result, RuntimeError, path_str};

fn archive_of(dir: &Path, member: &str) -> PathBuf {
    dir.join(format!("{member}.tar.zst"))
}

/// Whether `member` of `dir` is only available packed.
pub fn is_packed(dir: &Path, member: &str) -> bool {
    !dir.join(member).exists() && archive_of(dir, member).exists()
}

/// Packs `member` (a file or directory inside `dir`) into `<member>.tar.zst`
/// and removes it. Does nothing if it is missing or already packed.
pub async fn pack(dir: &Path, member: &str) -> Result<()> {
    let raw = dir.join(member);
    if !raw.exists() {
        return Ok(());
    }
    let archive = archive_of(dir, member);
    let tmp = dir.join(format!("{member}.tar.zst.tmp"));
    cmd::run(&[
        "tar",
        "--sparse",
        "-I",
        "zstd -1 -T0 -q",
        "-C",
        path_str(dir)?,
        "-cf",
        path_str(&tmp)?,
        member,
    ])
    .await?;
    // It holds a sandbox's memory or disk: root only, whatever tar's umask was.
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(RuntimeError::io("restricting", &tmp))?;
    std::fs::rename(&tmp, &archive).map_err(RuntimeError::io("renaming", &tmp))?;
    sync_dir(dir);
    let removed = if raw.is_dir() {
        std::fs::remove_dir_all(&raw)
    } else {
        std::fs::remove_file(&raw)
    };
    removed.map_err(RuntimeError::io("removing", &raw))
}

/// Unpacks `<member>.tar.zst` into `dir` if the member itself is missing, and
/// removes the archive. Does nothing when the member is there.
pub async fn unpack(dir: &Path, member: &str) -> Result<()> {
    let archive = archive_of(dir, member);
    if dir.join(member).exists() {
        // A crash between rename and removal left both: the member wins.
        let _ = std::fs::remove_file(&archive);
        return Ok(());
    }
    if !archive.exists() {
        return Ok(());
    }
    let staging = dir.join(format!(".unpack-{member}"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(RuntimeError::io("creating", &staging))?;
    cmd::run(&[
        "tar",
        "--sparse",
        "-I",
        "zstd -q",
        "-C",
        path_str(&staging)?,
        "-xf",
        path_str(&archive)?,
    ])
    .await?;
    let unpacked = staging.join(member);
    std::fs::rename(&unpacked, dir.join(member))
        .map_err(RuntimeError::io("renaming", &unpacked))?;
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::remove_file(&archive).map_err(RuntimeError::io("removing", &archive))
}

/// Removes what an interrupted pack, unpack or background clean-up left behind in `dir`.
pub fn clean_partial(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tar.zst.tmp") {
            let _ = std::fs::remove_file(entry.path());
        } else if name.starts_with(".unpack-") || name.starts_with(".used-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pack_and_unpack_round_trip_files_dirs_and_sparse_files() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        std::fs::create_dir(dir.join("criu")).expect("mkdir");
        std::fs::write(dir.join("criu/pages-1.img"), vec![7u8; 100_000]).expect("write");
        let sparse = std::fs::File::create(dir.join("disk.img")).expect("create");
        sparse.set_len(1 << 30).expect("len");
        drop(sparse);
        std::fs::write(dir.join("manifest.json"), b"{}").expect("write");

        for member in ["criu", "disk.img"] {
            pack(dir, member).await.expect("pack");
            assert!(is_packed(dir, member), "{member} packed");
            let mode = std::fs::metadata(archive_of(dir, member))
                .expect("meta")
                .permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600
            );
        }
        assert!(dir.join("manifest.json").exists(), "other files untouched");
        let packed_size: u64 = ["criu", "disk.img"]
            .iter()
            .map(|m| std::fs::metadata(archive_of(dir, m)).expect("meta").len())
            .sum();
        assert!(packed_size < 100_000, "compressed: {packed_size}");

        for member in ["criu", "disk.img"] {
            unpack(dir, member).await.expect("unpack");
            assert!(!is_packed(dir, member));
            assert!(!archive_of(dir, member).exists());
        }
        assert_eq!(
            std::fs::read(dir.join("criu/pages-1.img")).expect("read"),
            vec![7u8; 100_000]
        );
        assert_eq!(
            std::fs::metadata(dir.join("disk.img")).expect("meta").len(),
            1 << 30
        );
        assert!(crate::checkpoint::dir_size(dir) < 1 << 20, "still sparse");
    }

    #[tokio::test]
    async fn missing_members_and_leftovers_are_handled() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        pack(dir, "nothing")
            .await
            .expect("pack of a missing member is a no-op");
        unpack(dir, "nothing")
            .await
            .expect("unpack of a missing member is a no-op");
        std::fs::write(dir.join("x.tar.zst.tmp"), b"partial").expect("write");
        std::fs::create_dir(dir.join(".unpack-x")).expect("mkdir");
        clean_partial(dir);
        assert!(!dir.join("x.tar.zst.tmp").exists());
        assert!(!dir.join(".unpack-x").exists());
    }
}
