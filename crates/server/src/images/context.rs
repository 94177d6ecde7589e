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

/// Most a build context may hold, in file content and as uploaded.
pub const MAX_CONTEXT_BYTES: u64 = 8 << 30;

/// The longest name of one path component Linux takes (`NAME_MAX`).
const MAX_NAME_BYTES: usize = 255;

/// The longest path Linux takes (`PATH_MAX` less its terminating NUL).
const MAX_PATH_BYTES: usize = 4095;

/// Most of a client's name quoted in an error (names may be megabytes long).
const SHOWN_CHARS: usize = 200;

/// `text`, cut to [`SHOWN_CHARS`] characters (with `…`) for an error message.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
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
                    "{:?} leaves the build context",
                    shown(path)
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

/// Checks that `rel` (from entry `raw` of a context) can be made under
/// `dest`: no component longer than `NAME_MAX`, the whole path within
/// `PATH_MAX`. The OS would refuse either, which would read as the server
/// failing rather than as a bad context.
fn check_length(raw: &str, dest: &Path, rel: &Path) -> Result<(), ContextError> {
    let too_long = |what: String| {
        ContextError::Invalid(format!("build context entry {:?}: {what}", shown(raw)))
    };
    if let Some(long) = rel
        .components()
        .map(|c| c.as_os_str().len())
        .find(|&len| len > MAX_NAME_BYTES)
    {
        return Err(too_long(format!(
            "a name of {long} bytes (at most {MAX_NAME_BYTES})"
        )));
    }
    // What the OS sees is the path under `dest`.
    let room = MAX_PATH_BYTES.saturating_sub(dest.as_os_str().len() + 1);
    let len = rel.as_os_str().len();
    if len > room {
        return Err(too_long(format!(
            "a path of {len} bytes (at most {room} in a build context)"
        )));
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
        check_length(&raw, dest, &rel)?;
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
            let link = entry.link_name().map_err(bad)?.ok_or_else(|| {
                ContextError::Invalid(format!("symlink {:?} has no target", shown(&raw)))
            })?;
            if link.as_os_str().len() > MAX_PATH_BYTES {
                return Err(ContextError::Invalid(format!(
                    "build context entry {:?}: a symlink target of {} bytes (at most {MAX_PATH_BYTES})",
                    shown(&raw),
                    link.as_os_str().len()
                )));
            }
            std::os::unix::fs::symlink(&link, &target).map_err(io("creating", &target))?;
        } else if kind.is_hard_link() {
            let link = entry.link_name().map_err(bad)?.ok_or_else(|| {
                ContextError::Invalid(format!("link {:?} has no target", shown(&raw)))
            })?;
            let link_rel = relative(&link.to_string_lossy())?;
            check_length(&raw, dest, &link_rel)?;
            let source = dest.join(&link_rel);
            real_parents(dest, &link_rel, 0o755)?;
            let meta = std::fs::symlink_metadata(&source).map_err(|_| {
                ContextError::Invalid(format!(
                    "link {:?} points at a file not in the context",
                    shown(&raw)
                ))
            })?;
            if !meta.is_file() {
                return Err(ContextError::Invalid(format!(
                    "link {:?} does not point at a file",
                    shown(&raw)
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
        // What is replaced is the user's: any depth, symlinks never followed.
        Ok(m) if m.is_dir() => {
            alcove_runtime::remove_tree::remove_tree(target).map_err(io("replacing", target))
        }
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
///
/// The walk keeps its own stack: a tree may be thousands of directories
/// deep, and a call per level overflowed the blocking thread's stack.
pub fn copy_tree(src: &Path, dst: &Path, how: CopyMode) -> Result<u64, ContextError> {
    let mut total = 0;
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((src, dst)) = pending.pop() {
        total += copy_entry(&src, &dst, how, &mut pending)?;
    }
    Ok(total)
}

/// Copies one entry of [`copy_tree`]; a directory is made, and its entries
/// pushed on `pending` (in reverse, so they are copied in name order).
fn copy_entry(
    src: &Path,
    dst: &Path,
    how: CopyMode,
    pending: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<u64, ContextError> {
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
    let names = sorted_names(src)?;
    pending.extend(
        names
            .iter()
            .rev()
            .map(|name| (src.join(name), dst.join(name))),
    );
    Ok(0)
}

/// The names in directory `dir`, sorted.
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, ContextError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io("listing", dir))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    Ok(names)
}

/// A digest of what `paths` (in a source tree) hold: names, types, modes
/// and contents, never following a symlink. The step cache keys `COPY` by it.
pub fn digest_sources(paths: &[PathBuf]) -> Result<String, ContextError> {
    let mut hasher = Sha256::new();
    for p in paths {
        hash_tree(p, &mut hasher)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// What [`hash_tree`] has left to do.
enum HashWork {
    /// Hash an entry: its path, and its name relative to the tree's root.
    Entry(PathBuf, PathBuf),
    /// Close a directory whose entries are hashed.
    Close,
}

/// Hashes the tree at `root`: per entry, in name order, its relative name,
/// mode and content, then `0xff` (after a directory's entries).
///
/// Its own stack, as in [`copy_tree`]: the tree may be thousands deep.
fn hash_tree(root: &Path, h: &mut Sha256) -> Result<(), ContextError> {
    let mut pending = vec![HashWork::Entry(root.to_path_buf(), PathBuf::new())];
    while let Some(work) = pending.pop() {
        match work {
            HashWork::Entry(path, rel) => hash_entry(&path, &rel, h, &mut pending)?,
            HashWork::Close => h.update([0xff]),
        }
    }
    Ok(())
}

/// Hashes one entry of [`hash_tree`]; a directory's entries are pushed on
/// `pending` (in reverse, so they are hashed in name order) after its close.
fn hash_entry(
    path: &Path,
    rel: &Path,
    h: &mut Sha256,
    pending: &mut Vec<HashWork>,
) -> Result<(), ContextError> {
    let meta = std::fs::symlink_metadata(path).map_err(io("inspecting", path))?;
    h.update(rel.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(meta.mode().to_le_bytes());
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(path).map_err(io("reading", path))?;
        h.update(link.as_os_str().as_encoded_bytes());
    } else if meta.is_file() {
        hash_file(path, h)?;
    } else if meta.is_dir() {
        pending.push(HashWork::Close);
        let names = sorted_names(path)?;
        pending.extend(
            names
                .iter()
                .rev()
                .map(|name| HashWork::Entry(path.join(name), rel.join(name))),
        );
        return Ok(());
    }
    h.update([0xff]);
    Ok(())
}

fn hash_file(path: &Path, h: &mut Sha256) -> Result<(), ContextError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io("opening", path))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io("reading", path))?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// The longest `COPY` source (pattern) taken: no path of a file system is
/// longer, and it bounds the work of matching it.
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Resolves a `COPY` source pattern against `root`: a path whose parents are
/// real directories, with `*` and `?` allowed in its last component. Returns
/// the matching paths, sorted; none is an error naming the pattern.
pub fn resolve_sources(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, ContextError> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(ContextError::Invalid(format!(
            "COPY source {:?}: longer than {MAX_PATTERN_BYTES} bytes ({} bytes)",
            shown(pattern),
            pattern.len()
        )));
    }
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

/// `*` and `?` matching of one path component, byte by byte: `*` matches
/// any run of bytes (none too), `?` exactly one byte, any other byte itself.
///
/// Iterative, and backtracking only to the last `*` seen: a later `*` can
/// absorb whatever an earlier one would have, so retrying earlier ones never
/// finds a match the last one misses. That bounds the work by
/// pattern × name bytes, where a recursive matcher took a stack frame per `*`
/// and exponential time on patterns like `*a*a*a…b`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    let (mut p, mut n) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and the name
    // position that `*` has absorbed up to.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&byte) = name.get(n) {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some(&b'?') => (p, n) = (p + 1, n + 1),
            Some(&wanted) if wanted == byte => (p, n) = (p + 1, n + 1),
            _ => match star {
                // The last `*` absorbs one more byte; the rest retries.
                Some((resume, absorbed)) => {
                    star = Some((resume, absorbed + 1));
                    (p, n) = (resume, absorbed + 1);
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
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

    /// The recursive matcher `glob_match` replaced: the reference for its
    /// semantics (fine on the small inputs of the tests).
    fn old_glob_match(pattern: &str, name: &str) -> bool {
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

    #[test]
    fn globs_keep_their_semantics() {
        let cases = [
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("*", "anything.at-all", true),
            ("**", "", true),
            ("?", "", false),
            ("?", "a", true),
            ("?", "ab", false),
            ("??", "ab", true),
            ("a*", "a", true),
            ("a*", "ba", false),
            ("*a", "bba", true),
            ("*a", "ab", false),
            ("*.txt", ".txt", true),
            ("*.txt", "a.txt.md", false),
            ("*.tar.*", "x.tar.gz", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "acb", false),
            ("a*b?c", "abbbXc", true),
            ("*?", "", false),
            ("*?", "x", true),
            ("?*?", "x", false),
            ("*ab", "aab", true),
            ("*aab", "aaab", true),
            ("*a*a*a", "aa", false),
            ("file[1].txt", "file[1].txt", true),
            ("file[1].txt", "file1.txt", false),
            ("a\\*", "a\\b", true),
            ("a\\*", "a*", false),
            // `?` is one byte: a two-byte character needs two.
            ("?", "é", false),
            ("??", "é", true),
            ("é*", "éa", true),
            ("A*", "a", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                old_glob_match(pattern, name),
                expected,
                "old {pattern:?} {name:?}"
            );
            assert_eq!(glob_match(pattern, name), expected, "{pattern:?} {name:?}");
        }
    }

    /// Every string of up to `max` bytes from `alphabet`.
    fn all_strings(alphabet: &[u8], max: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |&c| format!("{s}{}", c as char)))
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    #[test]
    fn globs_agree_with_the_old_matcher_on_every_small_case() {
        let names = all_strings(b"ab", 6);
        for pattern in all_strings(b"ab*?", 5) {
            for name in &names {
                assert_eq!(
                    glob_match(&pattern, name),
                    old_glob_match(&pattern, name),
                    "{pattern:?} {name:?}"
                );
            }
        }
    }

    #[test]
    fn pathological_globs_finish_on_a_small_stack() {
        let run = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let a60 = "a".repeat(60);
                let started = std::time::Instant::now();
                // Exponential for a backtracking matcher (over a minute).
                assert!(!glob_match(&format!("{}b", "*a".repeat(10)), &a60));
                assert!(glob_match(&format!("{}a", "*a".repeat(10)), &a60));
                // A stack frame per `*` overflowed the stack.
                let stars = "*".repeat(50_000);
                assert!(glob_match(&stars, &a60));
                assert!(glob_match(&stars, ""));
                assert!(!glob_match(&format!("{stars}b"), &a60));
                assert!(glob_match(&format!("{stars}a{stars}"), &a60));
                let long_name = "a".repeat(255);
                let worst = format!("{}b", "*a".repeat(2000));
                assert!(!glob_match(&worst, &long_name));
                started.elapsed()
            })
            .expect("spawn")
            .join()
            .expect("no crash");
        assert!(run < std::time::Duration::from_secs(5), "took {run:?}");
    }

    #[test]
    fn a_long_copy_source_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join("a"), b"x").expect("write");
        let at_most = "*".repeat(MAX_PATTERN_BYTES);
        assert_eq!(
            resolve_sources(tmp.path(), &at_most).expect("matches"),
            vec![tmp.path().join("a")]
        );
        let over = "*".repeat(MAX_PATTERN_BYTES + 1);
        match resolve_sources(tmp.path(), &over) {
            Err(ContextError::Invalid(message)) => {
                assert!(
                    message.ends_with(": longer than 4096 bytes (4097 bytes)"),
                    "{message}"
                );
                assert!(message.len() < 300, "{message}");
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    /// A context tar of one file at `path` (long names in GNU extensions).
    fn context_with(tmp: &Path, path: &str) -> PathBuf {
        let archive = tmp.join("ctx.tar");
        let mut b = tar::Builder::new(File::create(&archive).expect("create"));
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, path, &b"x"[..]).expect("append");
        b.into_inner().expect("finish");
        archive
    }

    fn extract_error(tmp: &Path, archive: &Path) -> String {
        let dest = tmp.join("ctx");
        std::fs::create_dir_all(&dest).expect("mkdir");
        match extract(archive, &dest, 1 << 20) {
            Err(ContextError::Invalid(message)) => message,
            other => panic!("not refused as invalid: {other:?}"),
        }
    }

    #[test]
    fn names_the_os_would_refuse_are_invalid_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        // NAME_MAX exactly is fine.
        let fine = format!("d/{}", "n".repeat(255));
        let dest = tmp.path().join("ok");
        std::fs::create_dir(&dest).expect("mkdir");
        extract(&context_with(tmp.path(), &fine), &dest, 1 << 20).expect("extract");
        assert!(dest.join(&fine).is_file());

        let long_name = format!("d/{}", "n".repeat(256));
        let message = extract_error(tmp.path(), &context_with(tmp.path(), &long_name));
        assert!(
            message.starts_with("build context entry \"d/nnn")
                && message.ends_with("…\": a name of 256 bytes (at most 255)"),
            "{message}"
        );

        let long_path = vec!["p".repeat(200); 21].join("/");
        let message = extract_error(tmp.path(), &context_with(tmp.path(), &long_path));
        assert!(
            message.contains(": a path of 4220 bytes (at most ")
                && message.ends_with(" in a build context)"),
            "{message}"
        );
        assert!(message.len() < 400, "{message}");
    }

    #[test]
    fn a_symlink_target_the_os_would_refuse_is_invalid_input() {
        let tmp = tempfile::tempdir().expect("tmp");
        let archive = tmp.path().join("ctx.tar");
        let mut b = tar::Builder::new(File::create(&archive).expect("create"));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", "t".repeat(5000))
            .expect("link");
        b.into_inner().expect("finish");
        let message = extract_error(tmp.path(), &archive);
        assert_eq!(
            message,
            "build context entry \"link\": a symlink target of 5000 bytes (at most 4095)"
        );
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

    /// The recursive digest `digest_sources` replaced: the cache keys of
    /// existing build caches depend on it giving the same bytes.
    fn old_digest(paths: &[PathBuf]) -> String {
        fn go(path: &Path, rel: &Path, h: &mut Sha256) {
            let meta = std::fs::symlink_metadata(path).expect("meta");
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update([0]);
            h.update(meta.mode().to_le_bytes());
            if meta.file_type().is_symlink() {
                h.update(
                    std::fs::read_link(path)
                        .expect("link")
                        .as_os_str()
                        .as_encoded_bytes(),
                );
            } else if meta.is_file() {
                h.update(std::fs::read(path).expect("read"));
            } else if meta.is_dir() {
                let mut names: Vec<_> = std::fs::read_dir(path)
                    .expect("list")
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for name in names {
                    go(&path.join(&name), &rel.join(&name), h);
                }
            }
            h.update([0xff]);
        }
        let mut h = Sha256::new();
        for p in paths {
            go(p, Path::new(""), &mut h);
        }
        hex::encode(h.finalize())
    }

    /// A small tree: files, nested and empty directories, a symlink.
    fn sample_tree(root: &Path) {
        for dir in ["src/a/b", "src/empty", "src/z"] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        for (file, text) in [
            ("src/top", "1"),
            ("src/a/one", "22"),
            ("src/a/b/two", "333"),
            ("src/z/last", ""),
        ] {
            std::fs::write(root.join(file), text).expect("write");
        }
        std::os::unix::fs::symlink("a/one", root.join("src/link")).expect("symlink");
    }

    #[test]
    fn digests_and_copies_are_unchanged_by_the_walk() {
        let tmp = tempfile::tempdir().expect("tmp");
        sample_tree(tmp.path());
        let src = tmp.path().join("src");
        let sources = [src.clone(), src.join("a"), src.join("top")];
        assert_eq!(
            digest_sources(&sources).expect("digest"),
            old_digest(&sources)
        );
        let dst = tmp.path().join("dst");
        let copied = copy_tree(&src, &dst, CopyMode::default()).expect("copy");
        assert_eq!(copied, 6);
        assert_eq!(std::fs::read(dst.join("a/b/two")).expect("read"), b"333");
        assert!(dst.join("empty").is_dir());
        assert_eq!(
            std::fs::read_link(dst.join("link")).expect("link"),
            PathBuf::from("a/one")
        );
        // Same names, types, modes and contents: the same digest.
        assert_eq!(
            digest_sources(std::slice::from_ref(&dst)).expect("digest"),
            digest_sources(std::slice::from_ref(&src)).expect("digest")
        );
    }

    #[test]
    fn a_tree_as_deep_as_paths_allow_is_copied_and_digested_on_a_small_stack() {
        // ~2000 levels: a walk with a call per level overflowed a blocking
        // thread's 2 MiB stack, aborting the server.
        let tmp = tempfile::tempdir().expect("tmp");
        let base = tmp.path().to_path_buf();
        let levels = (MAX_PATH_BYTES - base.as_os_str().len() - 16) / 2;
        let deep = vec!["a"; levels].join("/");
        std::fs::create_dir_all(base.join("src").join(&deep)).expect("deep");
        std::fs::write(base.join("src").join(&deep).join("f"), b"x").expect("write");
        let (src, dst) = (base.join("src"), base.join("dst"));
        let (copied, same) = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let copied = copy_tree(&src, &dst, CopyMode::default()).expect("copy");
                let digest = |p: &PathBuf| digest_sources(std::slice::from_ref(p)).expect("digest");
                (copied, digest(&src) == digest(&dst))
            })
            .expect("spawn")
            .join()
            .expect("no crash");
        assert_eq!((copied, same), (1, true));
        assert!(base.join("dst").join(&deep).join("f").is_file());
    }
}
