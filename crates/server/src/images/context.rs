//! A build's files: the uploaded context unpacked into a private directory,
//! and the copying of `COPY`/`ADD` sources into a new layer's tree.
//!
//! Both sides are untrusted: the context comes from the client and the
//! sources of `COPY --from` from a sandbox's layers. Nothing here follows a
//! symlink: parents are checked with `lstat` and created as real directories,
//! files are opened with `O_NOFOLLOW`, and a symlink is copied as a symlink.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Why a build's files could not be prepared; the message is for the client.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The client's input is unusable (the message says why, naming the path).
    #[error("{0}")]
    Invalid(String),
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + use<> {
    let path = path.to_path_buf();
    move |source| ContextError::Io { op, path, source }
}

/// A path inside a tree, as its normal components; `..` is refused, a
/// leading `/` and `.` components are dropped.
pub fn relative(path: &str) -> Result<PathBuf, ContextError> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(ContextError::Invalid(format!(
                    "{path:?} leaves the build context"
                )));
            }
        }
    }
    Ok(out)
}

/// Checks that every parent of `root/rel` is a real directory (no symlink on
/// the way), creating missing ones with `mode`.
fn real_parents(root: &Path, rel: &Path, mode: u32) -> Result<(), ContextError> {
    let mut cur = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ContextError::Invalid(format!(
                    "{} goes through something that is not a directory",
                    rel.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(io("creating", &cur))?;
                std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(mode))
                    .map_err(io("setting the mode of", &cur))?;
            }
            Err(e) => return Err(io("inspecting", &cur)(e)),
        }
    }
    Ok(())
}

/// Unpacks a build-context tar (optionally gzip) from `archive` into `dest`
/// (which must exist): regular files, directories and symlinks; hard links
/// become copies; devices and other entries are left out. At most
/// `max_bytes` of file content.
pub fn extract(archive: &Path, dest: &Path, max_bytes: u64) -> Result<(), ContextError> {
    let mut file = File::open(archive).map_err(io("opening", archive))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(io("reading", archive))?;
    let file = File::open(archive).map_err(io("opening", archive))?;
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut tar = tar::Archive::new(reader);
    let bad = |e: std::io::Error| {
        ContextError::Invalid(format!("the build context is not a tar archive: {e}"))
    };
    let mut total: u64 = 0;
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let rel = relative(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&rel);
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        real_parents(dest, &rel, 0o755)?;
        if kind.is_dir() {
            match std::fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => std::fs::remove_file(&target).map_err(io("replacing", &target))?,
                Err(_) => std::fs::create_dir(&target).map_err(io("creating", &target))?,
            }
            if !target.is_dir() {
                std::fs::create_dir(&target).map_err(io("creating", &target))?;
            }
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o700))
                .map_err(io("setting the mode of", &target))?;
            continue;
        }
        remove_non_dir(&target)?;
        if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| ContextError::Invalid(format!("symlink {raw:?} has no target")))?;
            std::os::unix::fs::symlink(&link, &target).map_err(io("creating", &target))?;
        } else if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| ContextError::Invalid(format!("link {raw:?} has no target")))?;
            let source = dest.join(relative(&link.to_string_lossy())?);
            real_parents(dest, &relative(&link.to_string_lossy())?, 0o755)?;
            let meta = std::fs::symlink_metadata(&source).map_err(|_| {
                ContextError::Invalid(format!("link {raw:?} points at a file not in the context"))
            })?;
            if !meta.is_file() {
                return Err(ContextError::Invalid(format!(
                    "link {raw:?} does not point at a file"
                )));
            }
            total = total.saturating_add(meta.len());
            copy_file(&source, &target, meta.mode() & 0o777, None)?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            total = total.saturating_add(entry.size());
            if total > max_bytes {
                return Err(ContextError::Invalid(format!(
                    "the build context holds more than {} MiB",
                    max_bytes >> 20
                )));
            }
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(mode)
                .open(&target)
                .map_err(io("creating", &target))?;
            std::io::copy(&mut entry, &mut out).map_err(io("writing", &target))?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(io("setting the mode of", &target))?;
        }
        // Devices, FIFOs and the like have no place in a build context.
    }
    Ok(())
}

fn remove_non_dir(target: &Path) -> Result<(), ContextError> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(target).map_err(io("replacing", target)),
        Ok(_) => std::fs::remove_file(target).map_err(io("replacing", target)),
        Err(_) => Ok(()),
    }
}

fn copy_file(
    src: &Path,
    dst: &Path,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<u64, ContextError> {
    let mut input = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(src)
        .map_err(io("opening", src))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(dst)
        .map_err(io("creating", dst))?;
    let n = std::io::copy(&mut input, &mut out).map_err(io("copying to", dst))?;
    out.flush().map_err(io("writing", dst))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of", dst))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(io("chown", dst))?;
    }
    Ok(n)
}

/// How copied files are owned and moded (`COPY --chown`, `--chmod`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyMode {
    /// Owner of everything copied (default root).
    pub owner: Option<(u32, u32)>,
    /// Mode of everything copied (default: as in the source).
    pub mode: Option<u32>,
}

/// Copies `src` (a file, symlink or directory in a source tree) to `dst` in
/// a layer's tree; a directory's contents are copied into `dst`. Returns the
/// bytes copied.
pub fn copy_tree(src: &Path, dst: &Path, how: CopyMode) -> Result<u64, ContextError> {
    let meta = std::fs::symlink_metadata(src).map_err(io("inspecting", src))?;
    let owner = how.owner.or(Some((0, 0)));
    if meta.file_type().is_symlink() {
        remove_non_dir(dst)?;
        let link = std::fs::read_link(src).map_err(io("reading", src))?;
        std::os::unix::fs::symlink(&link, dst).map_err(io("creating", dst))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(io("chown", dst))?;
        }
        return Ok(0);
    }
    if meta.is_file() {
        remove_non_dir(dst)?;
        return copy_file(
            src,
            dst,
            how.mode.unwrap_or(meta.mode() & 0o7777 & !0o6000),
            owner,
        );
    }
    if !meta.is_dir() {
        return Ok(0); // devices, sockets: not copied
    }
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            std::fs::remove_file(dst).map_err(io("replacing", dst))?;
            std::fs::create_dir(dst).map_err(io("creating", dst))?;
        }
        Err(_) => std::fs::create_dir(dst).map_err(io("creating", dst))?,
    }
    std::fs::set_permissions(
        dst,
        std::fs::Permissions::from_mode(how.mode.unwrap_or(meta.mode() & 0o7777)),
    )
    .map_err(io("setting the mode of", dst))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(io("chown", dst))?;
    }
    let mut total = 0;
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(io("listing", src))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        total += copy_tree(&src.join(&name), &dst.join(&name), how)?;
    }
    Ok(total)
}

/// A digest of what `paths` (in a source tree) hold: names, types, modes
/// and contents, never following a symlink. The step cache keys `COPY` by it.
pub fn digest_sources(paths: &[PathBuf]) -> Result<String, ContextError> {
    let mut hasher = Sha256::new();
    for p in paths {
        hash_tree(p, Path::new(""), &mut hasher)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

fn hash_tree(path: &Path, rel: &Path, h: &mut Sha256) -> Result<(), ContextError> {
    let meta = std::fs::symlink_metadata(path).map_err(io("inspecting", path))?;
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(meta.mode().to_le_bytes());
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(path).map_err(io("reading", path))?;
        h.update(link.as_os_str().as_encoded_bytes());
    } else if meta.is_file() {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io("opening", path))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(io("reading", path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    } else if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map_err(io("listing", path))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            hash_tree(&path.join(&name), &rel.join(&name), h)?;
        }
    }
    h.update([0xff]);
    Ok(())
}

/// Resolves a `COPY` source pattern against `root`: a path whose parents are
/// real directories, with `*` and `?` allowed in its last component. Returns
/// the matching paths, sorted; none is an error naming the pattern.
pub fn resolve_sources(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, ContextError> {
    let rel = relative(pattern)?;
    let (parent, last) = match (rel.parent(), rel.file_name()) {
        (Some(p), Some(l)) => (p.to_path_buf(), l.to_string_lossy().into_owned()),
        _ => return Ok(vec![root.to_path_buf()]), // "." or "/": everything
    };
    let mut dir = root.to_path_buf();
    for c in parent.components() {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            _ => {
                return Err(ContextError::Invalid(format!(
                    "COPY source {pattern:?}: {} is not a directory of the source",
                    parent.display()
                )));
            }
        }
    }
    let mut found: Vec<PathBuf> = if last.contains(['*', '?']) {
        std::fs::read_dir(&dir)
            .map_err(io("listing", &dir))?
            .flatten()
            .filter(|e| glob_match(&last, &e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect()
    } else {
        let p = dir.join(&last);
        if std::fs::symlink_metadata(&p).is_ok() {
            vec![p]
        } else {
            Vec::new()
        }
    };
    found.sort();
    if found.is_empty() {
        return Err(ContextError::Invalid(format!(
            "COPY source {pattern:?} matches nothing"
        )));
    }
    Ok(found)
}

/// `*` and `?` matching of one path component.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Creates the directory `rel` (and its parents) in a new layer's tree
/// `fs`, each missing one with the mode and owner the image's merged view
/// (`layers`) has for it, or 0755 root when the image has none — so a layer
/// never changes the metadata of a directory it only passes through.
pub fn ensure_dir_in_layer(fs: &Path, layers: &[PathBuf], rel: &Path) -> Result<(), ContextError> {
    let mut cur = fs.to_path_buf();
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        parts.push(name);
        cur.push(name);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(ContextError::Invalid(format!(
                    "{} is not a directory",
                    rel.display()
                )));
            }
            Err(_) => {}
        }
        let (mode, uid, gid) = match alcove_runtime::layer::lookup_in_layers(layers, &parts) {
            Some(m) if m.is_dir() => (m.mode() & 0o7777, m.uid(), m.gid()),
            Some(_) => {
                return Err(ContextError::Invalid(format!(
                    "/{} exists in the image and is not a directory",
                    parts
                        .iter()
                        .map(|p| p.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/")
                )));
            }
            None => (0o755, 0, 0),
        };
        std::fs::create_dir(&cur).map_err(io("creating", &cur))?;
        std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(mode))
            .map_err(io("setting the mode of", &cur))?;
        std::os::unix::fs::lchown(&cur, Some(uid), Some(gid)).map_err(io("chown", &cur))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_never_climb() {
        assert_eq!(relative("/a/./b").expect("ok"), PathBuf::from("a/b"));
        assert!(relative("a/../../x").is_err());
        assert!(relative("../x").is_err());
    }

    #[test]
    fn globs_match_one_component() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("*.txt", "a.md"));
    }

    #[test]
    fn an_extracted_context_keeps_links_as_links_and_refuses_escapes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let archive = tmp.path().join("ctx.tar");
        let mut b = tar::Builder::new(File::create(&archive).expect("create"));
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "dir/file", &b"hi"[..])
            .expect("append");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "out", "/etc/shadow").expect("link");
        b.into_inner().expect("finish");
        let dest = tmp.path().join("ctx");
        std::fs::create_dir(&dest).expect("mkdir");
        extract(&archive, &dest, 1 << 20).expect("extract");
        assert_eq!(std::fs::read(dest.join("dir/file")).expect("read"), b"hi");
        assert!(
            std::fs::symlink_metadata(dest.join("out"))
                .expect("link")
                .file_type()
                .is_symlink()
        );
        // Copying the link copies the link, not /etc/shadow.
        let layer = tmp.path().join("layer");
        std::fs::create_dir(&layer).expect("mkdir");
        copy_tree(&dest.join("out"), &layer.join("out"), CopyMode::default()).expect("copy");
        assert!(
            std::fs::symlink_metadata(layer.join("out"))
                .expect("copied")
                .file_type()
                .is_symlink()
        );
        // A source through the link is refused.
        assert!(resolve_sources(&dest, "out/x").is_err());
    }

    #[test]
    fn a_climbing_entry_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let archive = tmp.path().join("ctx.tar");
        let mut data = Vec::new();
        {
            let mut b = tar::Builder::new(&mut data);
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            // The tar crate refuses to write `..`; write the name by hand.
            h.as_gnu_mut().expect("gnu").name[..9].copy_from_slice(b"../escape");
            h.set_cksum();
            b.append(&h, &b"x"[..]).expect("append");
            b.finish().expect("finish");
        }
        std::fs::write(&archive, data).expect("write");
        let dest = tmp.path().join("ctx");
        std::fs::create_dir(&dest).expect("mkdir");
        assert!(matches!(
            extract(&archive, &dest, 1 << 20),
            Err(ContextError::Invalid(_))
        ));
        assert!(!tmp.path().join("escape").exists());
    }
}
