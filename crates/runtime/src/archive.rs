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

/// Where the archive of `member` of `dir` is (or goes).
pub fn archive_of(dir: &Path, member: &str) -> PathBuf {
    dir.join(format!("{member}.tar.zst"))
}

/// Whether `member` of `dir` is there, raw or packed.
pub fn has_member(dir: &Path, member: &str) -> bool {
    dir.join(member).exists() || archive_of(dir, member).exists()
}

/// `member` of `dir` as the bytes of its archive, without writing one: the
/// archive file when it is packed, else `tar | zstd` streaming it. Call
/// [`PackedReader::finish`] after reading to the end: tar's exit status is
/// only known then.
pub async fn open_packed(dir: &Path, member: &str) -> Result<PackedReader> {
    let archive = archive_of(dir, member);
    if !dir.join(member).exists() {
        let file = tokio::fs::File::open(&archive)
            .await
            .map_err(RuntimeError::io("opening", &archive))?;
        return Ok(PackedReader::File(file));
    }
    let mut child = tokio::process::Command::new("tar")
        .args(["--sparse", "-I", "zstd -1 -T0 -q", "-C"])
        .arg(dir)
        .args(["-cf", "-", member])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(RuntimeError::io("running tar on", dir))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| RuntimeError::Config("tar's output was not captured".into()))?;
    Ok(PackedReader::Tar { child, stdout })
}

/// The bytes of a member's archive; see [`open_packed`].
#[derive(Debug)]
pub enum PackedReader {
    /// An archive already on disk.
    File(tokio::fs::File),
    /// `tar` packing the member as it is read.
    Tar {
        /// The tar process.
        child: tokio::process::Child,
        /// Its output.
        stdout: tokio::process::ChildStdout,
    },
}

impl PackedReader {
    /// After the last byte: whether the archive read was whole (tar exited 0).
    pub async fn finish(self) -> Result<()> {
        match self {
            Self::File(_) => Ok(()),
            Self::Tar { mut child, stdout } => {
                drop(stdout);
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = stderr.read_to_string(&mut err).await;
                }
                let status = child
                    .wait()
                    .await
                    .map_err(|e| RuntimeError::Config(format!("waiting for tar: {e}")))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(RuntimeError::Config(format!(
                        "tar failed ({status}): {}",
                        err.trim()
                    )))
                }
            }
        }
    }
}

impl tokio::io::AsyncRead for PackedReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::File(f) => std::pin::Pin::new(f).poll_read(cx, buf),
            Self::Tar { stdout, .. } => std::pin::Pin::new(stdout).poll_read(cx, buf),
        }
    }
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
    crate::remove_tree::remove_tree(&raw).map_err(RuntimeError::io("removing", &raw))
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
    let _ = crate::remove_tree::remove_tree(&staging);
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
    let _ = crate::remove_tree::remove_tree(&staging);
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
            let _ = crate::remove_tree::remove_tree(&entry.path());
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
    async fn a_streamed_member_unpacks_like_a_packed_one() {
        use tokio::io::AsyncReadExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        std::fs::create_dir(dir.join("criu")).expect("mkdir");
        std::fs::write(dir.join("criu/pages-1.img"), vec![3u8; 70_000]).expect("write");
        let mut reader = open_packed(dir, "criu").await.expect("open");
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).await.expect("read");
        reader.finish().await.expect("tar ok");
        // As if downloaded on another machine: only the archive is there.
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        std::fs::write(archive_of(&other, "criu"), &bytes).expect("write");
        assert!(is_packed(&other, "criu") && has_member(&other, "criu"));
        unpack(&other, "criu").await.expect("unpack");
        assert_eq!(
            std::fs::read(other.join("criu/pages-1.img")).expect("read"),
            vec![3u8; 70_000]
        );
        // A packed member is streamed from its archive file.
        pack(dir, "criu").await.expect("pack");
        let mut reader = open_packed(dir, "criu").await.expect("open");
        let mut again = Vec::new();
        reader.read_to_end(&mut again).await.expect("read");
        reader.finish().await.expect("ok");
        assert_eq!(again, std::fs::read(archive_of(dir, "criu")).expect("read"));
        assert!(open_packed(dir, "missing").await.is_err());
    }

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
