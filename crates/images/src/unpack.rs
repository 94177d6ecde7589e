//! Unpacking a layer archive into a directory, treating every byte as
//! hostile.
//!
//! An OCI layer is a tar stream (possibly gzip or zstd compressed). The
//! unpacker:
//!
//! * never writes outside the layer directory: entries with `..` components
//!   are refused, absolute paths are taken relative to the layer, and no
//!   path component is ever followed through a symlink (each parent is
//!   created as a real directory, or known to be one: the unpacker keeps
//!   the set of directories it made, and forgets those an entry replaces);
//! * refuses names and paths longer than the kernel takes (`NAME_MAX`,
//!   `PATH_MAX` below the layer directory) as a bad layer, and stops with
//!   [`crate::ImageStoreError::TooLarge`] past [`MAX_PATH_BYTES`] of paths,
//!   so that work and memory stay linear in the stream however deep or
//!   often repeated its paths are;
//! * turns `.wh.<name>` into an overlayfs whiteout (a 0/0 character device)
//!   and `.wh..wh..opq` into the `trusted.overlay.opaque` xattr;
//! * creates symlinks as they are (their targets are never followed here),
//!   and hard links only to entries earlier in the same layer;
//! * leaves out device nodes (a FIFO is kept), and every xattr but `user.*`;
//! * keeps modes (setuid included: every sandbox mount is `nosuid`) and
//!   numeric owners (the sandbox's own ids; ids past 65535 become 65534);
//! * stops with [`crate::ImageStoreError::TooLarge`] past
//!   [`UnpackLimits::max_bytes`] unpacked or [`UnpackLimits::max_entries`]
//!   entries (a decompression bomb), and removes what it wrote on any error.
//!
//! The tar reader runs in raw mode: PAX and GNU long-name records are read
//! here, with a size cap, because the `tar` crate would read them whole
//! into memory (a memory bomb of one huge PAX header).
//!
//! The layer directory is private to the unpacker while it works (under the
//! store's root-only `tmp/`), so a path checked with `lstat` stays what it
//! was until it is used: only the archive's own entries change the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};

/// Bounds on one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes of file content, in all.
    pub max_bytes: u64,
    /// Entries, in all.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// OCI layer, plain tar.
pub const MEDIA_TYPE_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip.
pub const MEDIA_TYPE_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd.
pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker layer, gzip.
pub const MEDIA_TYPE_DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker layer, plain tar (what `docker save` archives hold).
pub const MEDIA_TYPE_DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Whether the unpacker takes layers of `media_type`.
pub fn is_supported_media_type(media_type: &str) -> bool {
    [
        MEDIA_TYPE_TAR,
        MEDIA_TYPE_TAR_GZIP,
        MEDIA_TYPE_TAR_ZSTD,
        MEDIA_TYPE_DOCKER_GZIP,
        MEDIA_TYPE_DOCKER_TAR,
    ]
    .contains(&media_type)
}

/// What [`unpack_layer`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of regular file content written.
    pub unpacked_size: u64,
    /// Entries of the archive (extension headers not counted).
    pub entries: u64,
    /// Device nodes left out.
    pub skipped_devices: u64,
}

/// PAX records larger than this are refused (real ones are a few hundred
/// bytes; xattrs of a file are bounded by the kernel at 64 KiB each).
const MAX_EXTENSION_BYTES: u64 = 1 << 20;
/// Bytes of paths a layer may hold: every entry's path and link target,
/// and the path of every parent directory it leaves to be made. Real layers
/// hold a few MiB (a million entries of 128-byte paths would be 128 MiB);
/// the bound keeps the unpacker's work and memory linear in the stream
/// however the paths nest or repeat. Past it:
/// [`crate::ImageStoreError::TooLarge`].
pub const MAX_PATH_BYTES: u64 = 128 << 20;
/// Longest name of one path component the kernel takes (`NAME_MAX`).
const MAX_NAME: usize = 255;
/// Longest path a system call takes, its NUL included (`PATH_MAX`).
const MAX_PATH: usize = libc::PATH_MAX as usize;
/// Longest xattr name and value the kernel takes (`XATTR_NAME_MAX`,
/// `XATTR_SIZE_MAX`).
const MAX_XATTR_NAME: usize = 255;
const MAX_XATTR_VALUE: usize = 65536;
/// Ids past this become [`NOBODY`] (a sandbox maps 65536 ids).
const MAX_ID: u64 = 65535;
const NOBODY: u32 = 65534;

/// Unpacks the layer `reader` (compressed or not: the first bytes decide,
/// `media_type` must only be one the store takes) into `dest`, which must
/// not exist yet. `layer` names the layer in errors. On error, `dest` is
/// removed again.
pub fn unpack_layer<R: Read>(
    reader: R,
    media_type: &str,
    dest: &Path,
    limits: &UnpackLimits,
    layer: &str,
) -> Result<Unpacked> {
    // Never remove what was there before (then creating `dest` failed).
    let existed = fs::symlink_metadata(dest).is_ok();
    let result = unpack_into(reader, media_type, dest, limits, layer);
    if result.is_err() && !existed && fs::symlink_metadata(dest).is_ok() {
        // Best effort: the store unpacks under `tmp/` and removes its whole
        // work directory anyway. The layer is hostile: any depth, symlinks
        // never followed.
        let _ = crate::remove_tree::remove_tree(dest);
    }
    result
}

fn unpack_into<R: Read>(
    reader: R,
    media_type: &str,
    dest: &Path,
    limits: &UnpackLimits,
    layer: &str,
) -> Result<Unpacked> {
    if !is_supported_media_type(media_type) {
        return Err(ImageStoreError::UnsupportedMediaType(
            media_type.to_string(),
        ));
    }
    let bad = |reason: String| ImageStoreError::BadLayer {
        layer: layer.to_string(),
        reason,
    };
    let stream = decompressor(reader).map_err(|e| bad(format!("cannot decompress: {e}")))?;
    // Headers and padding are not file content but still cost decompression
    // time: bound the whole stream too.
    let stream_limit = limits
        .max_bytes
        .saturating_add(limits.max_entries.saturating_mul(3 * 512))
        .saturating_add(MAX_EXTENSION_BYTES);
    let hashing = HashingReader {
        inner: stream,
        hasher: Sha256::new(),
        count: 0,
        limit: stream_limit,
        layer: layer.to_string(),
    };
    fs::DirBuilder::new()
        .mode(0o755)
        .create(dest)
        .map_err(ImageStoreError::io("create directory", dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .map_err(ImageStoreError::io("chmod", dest))?;
    let mut unpacker = Unpacker::new(dest, layer, limits);
    let mut archive = tar::Archive::new(hashing);
    unpacker.run(&mut archive)?;
    // The diff id covers the stream to its end: the end-of-archive blocks
    // and any padding after them.
    let mut hashing = archive.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| unpacker.read_error(e))?;
    unpacker.finish_dirs()?;
    if unpacker.devices > 0 {
        tracing::warn!(
            layer,
            devices = unpacker.devices,
            "device nodes in the layer were left out"
        );
    }
    Ok(Unpacked {
        diff_id: Digest::from_hasher(hashing.hasher),
        unpacked_size: unpacker.bytes,
        entries: unpacker.entries,
        skipped_devices: unpacker.devices,
    })
}

/// Picks the decompressor by the stream's magic bytes: `docker save`
/// archives often hold plain tar under a gzip media type, so the bytes are
/// trusted over the name.
fn decompressor<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(256 << 10, reader);
    let head = buf.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        // Multi-member: concatenated gzip streams are valid layers.
        Box::new(flate2::bufread::MultiGzDecoder::new(buf))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buf)?)
    } else {
        Box::new(buf)
    })
}

/// Hashes and counts the uncompressed stream as the tar reader pulls it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
    layer: String,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            return Err(ImageStoreError::TooLarge {
                what: format!("layer {} (uncompressed stream)", self.layer),
                limit: self.limit,
            }
            .into_io());
        }
        Ok(n)
    }
}

/// Metadata applied to an entry.
#[derive(Debug, Clone)]
struct Meta {
    attrs: Attrs,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// What of an entry's metadata is applied to a directory at the end (its
/// xattrs are set at once).
#[derive(Debug, Clone, Copy)]
struct Attrs {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
}

/// PAX and GNU records describing the next entry.
#[derive(Debug, Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    size: Option<u64>,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Unpacker {
    root: PathBuf,
    layer: String,
    limits: UnpackLimits,
    bytes: u64,
    entries: u64,
    devices: u64,
    /// Path bytes so far, against `max_path_bytes`.
    path_bytes: u64,
    /// [`MAX_PATH_BYTES`] (lower in tests).
    max_path_bytes: u64,
    /// Directories whose mode, owner and mtime are applied at the end (a
    /// 0500 directory must not block the entries below it), by relative
    /// path: one record per path, the last entry's, however often a layer
    /// repeats it.
    dirs: BTreeMap<Vec<u8>, Attrs>,
    /// The relative paths (`a/b`, the root is empty) of every real
    /// directory in the tree. The tree is private to the unpacker and only
    /// its own steps change it, so the set is exact: a parent found here
    /// needs no `lstat`, and what an entry replaces is forgotten with what
    /// was below it ([`Unpacker::replace`]).
    known: BTreeSet<Vec<u8>>,
}

impl Unpacker {
    fn new(root: &Path, layer: &str, limits: &UnpackLimits) -> Self {
        Self {
            root: root.to_path_buf(),
            layer: layer.to_string(),
            limits: *limits,
            bytes: 0,
            entries: 0,
            devices: 0,
            path_bytes: 0,
            max_path_bytes: MAX_PATH_BYTES,
            dirs: BTreeMap::new(),
            known: BTreeSet::from([Vec::new()]),
        }
    }

    fn bad(&self, reason: String) -> ImageStoreError {
        ImageStoreError::BadLayer {
            layer: self.layer.clone(),
            reason,
        }
    }

    /// An error reading the archive: a limit we raised, or a malformed or
    /// corrupt stream.
    fn read_error(&self, e: io::Error) -> ImageStoreError {
        match ImageStoreError::take_inner(e) {
            Ok(inner) => inner,
            Err(e) => self.bad(format!("malformed archive: {e}")),
        }
    }

    fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<()> {
        let entries = archive.entries().map_err(|e| self.read_error(e))?;
        let mut pending = Pending::default();
        for entry in entries.raw(true) {
            let mut entry = entry.map_err(|e| self.read_error(e))?;
            let kind = entry.header().entry_type();
            if kind.is_pax_local_extensions() {
                let data = self.read_extension(&mut entry)?;
                self.parse_pax(&data, &mut pending)?;
                continue;
            }
            if kind.is_pax_global_extensions() {
                // Global records (a comment, a default mtime) are of no use
                // here; read them within the cap and drop them.
                self.read_extension(&mut entry)?;
                continue;
            }
            if kind.is_gnu_longname() {
                pending.path = Some(trim_nul(self.read_extension(&mut entry)?));
                continue;
            }
            if kind.is_gnu_longlink() {
                pending.link = Some(trim_nul(self.read_extension(&mut entry)?));
                continue;
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(ImageStoreError::TooLarge {
                    what: format!("layer {} (entry count)", self.layer),
                    limit: self.limits.max_entries,
                });
            }
            let pending = std::mem::take(&mut pending);
            self.entry(&mut entry, pending)?;
        }
        Ok(())
    }

    fn read_extension<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>> {
        let size = entry.size();
        if size > MAX_EXTENSION_BYTES {
            return Err(self.bad(format!(
                "an extension header of {size} bytes (at most {MAX_EXTENSION_BYTES})"
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| self.read_error(e))?;
        Ok(data)
    }

    fn parse_pax(&self, data: &[u8], pending: &mut Pending) -> Result<()> {
        for ext in tar::PaxExtensions::new(data) {
            let ext = ext.map_err(|e| self.bad(format!("malformed PAX record: {e}")))?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
            };
            match key {
                b"path" => pending.path = Some(value.to_vec()),
                b"linkpath" => pending.link = Some(value.to_vec()),
                b"uid" => pending.uid = number(),
                b"gid" => pending.gid = number(),
                b"size" => {
                    pending.size =
                        Some(number().ok_or_else(|| self.bad("malformed PAX size".to_string()))?);
                }
                b"mtime" => pending.mtime = std::str::from_utf8(value).ok().and_then(parse_time),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        pending
                            .xattrs
                            .push((OsStr::from_bytes(name).to_os_string(), value.to_vec()));
                    }
                }
            }
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, pending: Pending) -> Result<()> {
        let header = entry.header();
        let raw_path = match &pending.path {
            Some(p) => p.clone(),
            None => header.path_bytes().into_owned(),
        };
        let name = lossy(&raw_path);
        // The tar crate (raw mode) reads the data by the header's size; a
        // PAX size that says otherwise would desynchronize the two views of
        // the stream, so it is refused rather than guessed at.
        if let Some(size) = pending.size
            && size != entry.size()
        {
            return Err(self.bad(format!(
                "entry {name:?}: a PAX size ({size}) unlike the header's is not supported"
            )));
        }
        let kind = header.entry_type();
        let link = match &pending.link {
            Some(l) => Some(l.clone()),
            None => header.link_name_bytes().map(|l| l.into_owned()),
        };
        self.charge(raw_path.len() + link.as_ref().map_or(0, Vec::len))?;
        let rel = self.clean(&raw_path, &name)?;
        let meta = self.meta(header, &pending, &name)?;
        if kind.is_dir() {
            return self.dir(&rel, meta, &name);
        }
        let Some((parent, last)) = split_last(&rel) else {
            return Err(self.bad(format!("entry {name:?} has an empty path")));
        };
        if last == b".wh..wh..opq" {
            let parent = self.parents(parent, &name)?;
            return xattr::lset(&parent, "trusted.overlay.opaque", b"y")
                .map_err(ImageStoreError::io("set opaque xattr", parent));
        }
        if last.starts_with(b".wh..wh.") {
            // Other AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): ignored.
            return Ok(());
        }
        if let Some(hidden) = last.strip_prefix(b".wh.") {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(self.bad(format!("whiteout {name:?} names no entry")));
            }
            self.parents(parent, &name)?;
            let target = self.replace(&join(parent, hidden))?;
            return nix::sys::stat::mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| ImageStoreError::io("mknod whiteout", &target)(e.into()));
        }
        if kind.is_character_special() || kind.is_block_special() {
            self.devices += 1;
            return Ok(());
        }
        self.parents(parent, &name)?;
        if kind.is_file() || kind.is_contiguous() {
            let target = self.replace(&rel)?;
            self.file(entry, &target, &meta, &name)
        } else if kind.is_symlink() {
            let link = link.unwrap_or_default();
            if link.is_empty() || link.contains(&0) {
                return Err(self.bad(format!("symlink {name:?} has an empty or invalid target")));
            }
            if link.len() >= MAX_PATH {
                return Err(self.bad(format!(
                    "symlink {name:?} has a target of {} bytes (at most {})",
                    link.len(),
                    MAX_PATH - 1
                )));
            }
            let target = self.replace(&rel)?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                .map_err(ImageStoreError::io("symlink", &target))?;
            std::os::unix::fs::lchown(&target, Some(meta.attrs.uid), Some(meta.attrs.gid))
                .map_err(ImageStoreError::io("lchown", &target))?;
            set_times_nofollow(&target, meta.attrs.mtime)
        } else if kind.is_hard_link() {
            self.hard_link(&link.unwrap_or_default(), &rel, &name)
        } else if kind.is_fifo() {
            let target = self.replace(&rel)?;
            nix::unistd::mkfifo(&target, Mode::from_bits_truncate(0o600))
                .map_err(|e| ImageStoreError::io("mkfifo", &target)(e.into()))?;
            std::os::unix::fs::lchown(&target, Some(meta.attrs.uid), Some(meta.attrs.gid))
                .map_err(ImageStoreError::io("lchown", &target))?;
            // The path is the FIFO just made (no symlink): chmod may follow.
            fs::set_permissions(&target, fs::Permissions::from_mode(meta.attrs.mode))
                .map_err(ImageStoreError::io("chmod", &target))?;
            set_times_nofollow(&target, meta.attrs.mtime)
        } else if kind.is_gnu_sparse() {
            Err(self.bad(format!(
                "entry {name:?}: GNU sparse files are not supported"
            )))
        } else {
            tracing::debug!(layer = %self.layer, entry = %name, kind = ?kind, "unknown tar entry type left out");
            Ok(())
        }
    }

    /// Counts `n` path bytes against [`MAX_PATH_BYTES`].
    fn charge(&mut self, n: usize) -> Result<()> {
        self.path_bytes = self.path_bytes.saturating_add(n as u64);
        if self.path_bytes > self.max_path_bytes {
            return Err(ImageStoreError::TooLarge {
                what: format!("layer {} (path bytes)", self.layer),
                limit: self.max_path_bytes,
            });
        }
        Ok(())
    }

    /// The entry's path below the root, `a/b/c` (empty for the root
    /// itself): leading `/` and `./` dropped, `..` refused, and so are
    /// names and paths longer than the kernel takes.
    fn clean(&self, raw: &[u8], name: &str) -> Result<Vec<u8>> {
        if raw.contains(&0) {
            return Err(self.bad(format!("entry {name:?} has a NUL byte in its path")));
        }
        let mut rel = Vec::with_capacity(raw.len());
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    return Err(self.bad(format!("entry {name:?} has a .. component")));
                }
                p if p.len() > MAX_NAME => {
                    return Err(self.bad(format!(
                        "entry {name:?} has a name of {} bytes (at most {MAX_NAME})",
                        p.len()
                    )));
                }
                p => {
                    if !rel.is_empty() {
                        rel.push(b'/');
                    }
                    rel.extend_from_slice(p);
                }
            }
        }
        // Every step on the entry names it by its whole path below the
        // root: past PATH_MAX the kernel would refuse it (and the server
        // take the archive's fault for its own).
        let len = self.root.as_os_str().len() + 1 + rel.len();
        if len >= MAX_PATH {
            return Err(self.bad(format!(
                "entry {name:?}: its path is {len} bytes long in the layer directory (at most {})",
                MAX_PATH - 1
            )));
        }
        Ok(rel)
    }

    fn meta(&self, header: &tar::Header, pending: &Pending, name: &str) -> Result<Meta> {
        let field = |r: io::Result<u64>| {
            r.map_err(|e| self.bad(format!("entry {name:?}: malformed header: {e}")))
        };
        let clamp = |id: u64| if id > MAX_ID { NOBODY } else { id as u32 };
        let uid = match pending.uid {
            Some(u) => u,
            None => field(header.uid())?,
        };
        let gid = match pending.gid {
            Some(g) => g,
            None => field(header.gid())?,
        };
        let mtime = match pending.mtime {
            Some(t) => t,
            None => (field(header.mtime())?.min(i64::MAX as u64) as i64, 0),
        };
        let mode = header
            .mode()
            .map_err(|e| self.bad(format!("entry {name:?}: malformed mode: {e}")))?;
        let xattrs: Vec<_> = pending
            .xattrs
            .iter()
            .filter(|(k, _)| keep_xattr(k.as_bytes()))
            .cloned()
            .collect();
        if let Some((k, v)) = xattrs
            .iter()
            .find(|(k, v)| k.len() > MAX_XATTR_NAME || v.len() > MAX_XATTR_VALUE)
        {
            return Err(self.bad(format!(
                "entry {name:?}: xattr {:?} of {} bytes is past what the kernel takes",
                lossy(k.as_bytes()),
                v.len()
            )));
        }
        Ok(Meta {
            attrs: Attrs {
                mode: mode & 0o7777,
                uid: clamp(uid),
                gid: clamp(gid),
                mtime,
            },
            xattrs,
        })
    }

    /// The absolute path of `rel`.
    fn abs(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    /// Makes sure `parent` (a relative path) and each directory above it is
    /// a real directory of this layer, creating missing ones 0755, and
    /// returns its path. A symlink or non-directory on the way is refused:
    /// following it could lead out of the layer.
    fn parents(&mut self, parent: &[u8], name: &str) -> Result<PathBuf> {
        if self.known.contains(parent) {
            return Ok(self.abs(parent));
        }
        let ends: Vec<usize> = parent
            .iter()
            .enumerate()
            .filter_map(|(i, b)| (*b == b'/').then_some(i))
            .chain([parent.len()])
            .collect();
        // From the deepest up to the first known directory (the root at
        // least): every miss is one directory to make, charged below.
        let first_missing = ends
            .iter()
            .rposition(|&end| self.known.contains(&parent[..end]))
            .map_or(0, |i| i + 1);
        for &end in &ends[first_missing..] {
            let dir = &parent[..end];
            self.charge(dir.len())?;
            let path = self.abs(dir);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(self.bad(format!(
                        "entry {name:?}: its parent {} is not a directory",
                        lossy(dir)
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&path)?,
                Err(e) => return Err(ImageStoreError::io("stat", &path)(e)),
            }
            self.known.insert(dir.to_vec());
        }
        Ok(self.abs(parent))
    }

    /// Removes whatever is at `rel` (a whole directory too) to make room
    /// for an entry; returns its path.
    fn replace(&mut self, rel: &[u8]) -> Result<PathBuf> {
        let path = self.abs(rel);
        remove_existing(&path)?;
        self.forget(rel);
        Ok(path)
    }

    /// Drops `rel` and every directory below it from [`Unpacker::known`].
    fn forget(&mut self, rel: &[u8]) {
        self.known.remove(rel);
        // `a/b/...` sorts from `a/b/` up to before `a/b0` ('0' follows '/').
        let below = join(rel, b"");
        let mut end = rel.to_vec();
        end.push(b'/' + 1);
        let doomed: Vec<Vec<u8>> = self.known.range(below..end).cloned().collect();
        for d in doomed {
            self.known.remove(&d);
        }
    }

    fn dir(&mut self, rel: &[u8], meta: Meta, name: &str) -> Result<()> {
        let path = self.abs(rel);
        if let Some((parent, _)) = split_last(rel)
            && !self.known.contains(rel)
        {
            self.parents(parent, name)?;
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    self.replace(rel)?;
                    make_dir(&path)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&path)?,
                Err(e) => return Err(ImageStoreError::io("stat", &path)(e)),
            }
            self.known.insert(rel.to_vec());
        }
        for (key, value) in &meta.xattrs {
            xattr::lset(&path, key, value).map_err(|e| self.xattr_error(e, &path, name))?;
        }
        self.dirs.insert(rel.to_vec(), meta.attrs);
        Ok(())
    }

    /// An xattr the file system refused: the layer's fault when it is too
    /// large for it (past the room an inode has for xattrs, say).
    fn xattr_error(&self, e: io::Error, path: &Path, name: &str) -> ImageStoreError {
        match e.raw_os_error() {
            Some(libc::E2BIG | libc::ERANGE | libc::ENOSPC) => self.bad(format!(
                "entry {name:?}: the file system refuses its xattrs: {e}"
            )),
            _ => ImageStoreError::io("set xattr", path)(e),
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        meta: &Meta,
        name: &str,
    ) -> Result<()> {
        let size = entry.size();
        if self.bytes.saturating_add(size) > self.limits.max_bytes {
            return Err(ImageStoreError::TooLarge {
                what: format!("layer {} (unpacked bytes, at {name:?})", self.layer),
                limit: self.limits.max_bytes,
            });
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(target)
            .map_err(ImageStoreError::io("create", target))?;
        let mut buf = vec![0u8; 128 << 10];
        let mut copied = 0u64;
        loop {
            let n = entry.read(&mut buf).map_err(|e| self.read_error(e))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])
                .map_err(ImageStoreError::io("write", target))?;
            copied += n as u64;
        }
        if copied != size {
            return Err(self.bad(format!(
                "entry {name:?} ends after {copied} of {size} bytes"
            )));
        }
        self.bytes += size;
        // Owner before mode: chown clears setuid and setgid.
        std::os::unix::fs::fchown(&file, Some(meta.attrs.uid), Some(meta.attrs.gid))
            .map_err(ImageStoreError::io("chown", target))?;
        file.set_permissions(fs::Permissions::from_mode(meta.attrs.mode))
            .map_err(ImageStoreError::io("chmod", target))?;
        for (key, value) in &meta.xattrs {
            xattr::fset(&file, key, value).map_err(|e| self.xattr_error(e, target, name))?;
        }
        let t = system_time(meta.attrs.mtime);
        file.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
            .map_err(ImageStoreError::io("set times", target))
    }

    fn hard_link(&mut self, link: &[u8], rel: &[u8], name: &str) -> Result<()> {
        let link_name = lossy(link);
        let source_rel = self.clean(link, &format!("{name} -> {link_name}"))?;
        let refuse = |why: &str| self.bad(format!("hard link {name:?} to {link_name:?}: {why}"));
        let Some((source_parent, _)) = split_last(&source_rel) else {
            return Err(refuse("empty target"));
        };
        if !self.known.contains(source_parent) {
            return Err(refuse("no such entry earlier in the layer"));
        }
        let source = self.abs(&source_rel);
        match fs::symlink_metadata(&source) {
            Ok(m) if m.is_dir() => return Err(refuse("the target is a directory")),
            Ok(_) => {}
            Err(_) => return Err(refuse("no such entry earlier in the layer")),
        }
        if source_rel == rel {
            return Ok(());
        }
        let target = self.replace(rel)?;
        // No AT_SYMLINK_FOLLOW: a symlink source is linked itself.
        match nix::unistd::linkat(
            AT_FDCWD,
            &source,
            AT_FDCWD,
            &target,
            nix::fcntl::AtFlags::empty(),
        ) {
            Ok(()) => Ok(()),
            // The source was below what the link replaced.
            Err(nix::errno::Errno::ENOENT) => Err(self.bad(format!(
                "hard link {name:?} to {link_name:?}: the target went with what the link replaced"
            ))),
            Err(e) => Err(ImageStoreError::io("link", &target)(e.into())),
        }
    }

    /// Applies the directories' metadata, now that nothing more is written
    /// into them, innermost first. A directory replaced later in the layer
    /// (or whose path now crosses a symlink) is no longer known: skipped.
    fn finish_dirs(&mut self) -> Result<()> {
        for (rel, attrs) in std::mem::take(&mut self.dirs).into_iter().rev() {
            if !self.known.contains(&rel) {
                continue;
            }
            let path = self.abs(&rel);
            std::os::unix::fs::lchown(&path, Some(attrs.uid), Some(attrs.gid))
                .map_err(ImageStoreError::io("lchown", &path))?;
            // A real directory (known): chmod following is harmless.
            fs::set_permissions(&path, fs::Permissions::from_mode(attrs.mode))
                .map_err(ImageStoreError::io("chmod", &path))?;
            set_times_nofollow(&path, attrs.mtime)?;
        }
        Ok(())
    }
}

/// `parent/name` (`name` alone below the root; `parent/` for an empty
/// `name`).
fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// A relative path's parent and last name; `None` for the root.
fn split_last(rel: &[u8]) -> Option<(&[u8], &[u8])> {
    if rel.is_empty() {
        return None;
    }
    Some(match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    })
}

/// Whether an xattr travels with a layer: `user.*` only, and not overlayfs'
/// own `user.overlay.*` (which a userxattr overlay would obey).
pub(crate) fn keep_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.") && !name.starts_with(b"user.overlay.")
}

fn make_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(ImageStoreError::io("create directory", path))?;
    // Not subject to the umask.
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(ImageStoreError::io("chmod", path))
}

/// Removes whatever is at `path` (a whole directory too), without following
/// symlinks.
fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            crate::remove_tree::remove_tree(path).map_err(ImageStoreError::io("remove", path))
        }
        Ok(_) => fs::remove_file(path).map_err(ImageStoreError::io("remove", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageStoreError::io("stat", path)(e)),
    }
}

fn set_times_nofollow(path: &Path, (secs, nanos): (i64, u32)) -> Result<()> {
    let t = TimeSpec::new(secs, i64::from(nanos));
    nix::sys::stat::utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| ImageStoreError::io("set times", path)(e.into()))
}

/// The time of a header; the epoch for one `SystemTime` cannot hold (its
/// operators would panic).
fn system_time((secs, nanos): (i64, u32)) -> SystemTime {
    let t = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), 0))
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::new(secs.unsigned_abs(), 0))
    };
    t.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A PAX time: `<seconds>[.<fraction>]`, seconds possibly negative.
fn parse_time(v: &str) -> Option<(i64, u32)> {
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) => (s, f),
        None => (v, ""),
    };
    let secs = secs.parse::<i64>().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos = digits.parse::<u32>().ok()?;
    // A negative time with a fraction counts the fraction toward zero; a
    // sub-second error on pre-1970 files does not matter.
    Some((secs, if secs < 0 { 0 } else { nanos }))
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// An entry name for messages (bounded: names come from the archive).
fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(512)]).into_owned()
}

/// Extended attributes by path (without following) and by descriptor:
/// `nix` has no wrapper for them.
pub(crate) mod xattr {
    use std::ffi::{CString, OsStr};
    use std::io;
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    /// Tries at asking the size first: a live tree (a sandbox's) can grow
    /// an attribute between the two calls forever; after these, a buffer of
    /// the kernel's maximum (`XATTR_SIZE_MAX`, `XATTR_LIST_MAX`) is used.
    const SIZED_TRIES: usize = 4;
    const MAX_XATTR_BUFFER: usize = 65536;

    fn cstr(s: &[u8]) -> io::Result<CString> {
        CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    /// `lsetxattr`: sets `name` on `path` itself (a symlink is not followed).
    pub(crate) fn lset(path: &Path, name: impl AsRef<OsStr>, value: &[u8]) -> io::Result<()> {
        let p = cstr(path.as_os_str().as_bytes())?;
        let n = cstr(name.as_ref().as_bytes())?;
        // SAFETY: both strings are NUL-terminated and outlive the call; the
        // value pointer and length describe a live slice.
        let r = unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// `fsetxattr` on an open file.
    pub(crate) fn fset(fd: impl AsFd, name: impl AsRef<OsStr>, value: &[u8]) -> io::Result<()> {
        let n = cstr(name.as_ref().as_bytes())?;
        // SAFETY: the descriptor is borrowed live for the call; the name is
        // NUL-terminated; the value pointer and length describe a live slice.
        let r = unsafe {
            libc::fsetxattr(
                fd.as_fd().as_raw_fd(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// `fgetxattr`: the value, or `None` when the attribute is not set.
    pub(crate) fn fget(fd: impl AsFd, name: impl AsRef<OsStr>) -> io::Result<Option<Vec<u8>>> {
        let n = cstr(name.as_ref().as_bytes())?;
        let fd = fd.as_fd().as_raw_fd();
        for attempt in 0..=SIZED_TRIES {
            let len = if attempt == SIZED_TRIES {
                MAX_XATTR_BUFFER
            } else {
                // SAFETY: a NULL buffer of size 0 asks for the size only.
                let len = unsafe { libc::fgetxattr(fd, n.as_ptr(), std::ptr::null_mut(), 0) };
                if len < 0 {
                    let e = io::Error::last_os_error();
                    return match e.raw_os_error() {
                        Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
                        _ => Err(e),
                    };
                }
                len as usize
            };
            let mut buf = vec![0u8; len];
            // SAFETY: the buffer is live and `buf.len()` bytes long.
            let got =
                unsafe { libc::fgetxattr(fd, n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            if got >= 0 {
                buf.truncate(got as usize);
                return Ok(Some(buf));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // Grew between the two calls: ask again.
                Some(libc::ERANGE) => continue,
                Some(libc::ENODATA) => return Ok(None),
                _ => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::ERANGE))
    }

    /// `flistxattr`: the names of an open file's attributes.
    pub(crate) fn flist(fd: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
        let fd = fd.as_fd().as_raw_fd();
        for attempt in 0..=SIZED_TRIES {
            let len = if attempt == SIZED_TRIES {
                MAX_XATTR_BUFFER
            } else {
                // SAFETY: a NULL buffer of size 0 asks for the size only.
                let len = unsafe { libc::flistxattr(fd, std::ptr::null_mut(), 0) };
                if len < 0 {
                    let e = io::Error::last_os_error();
                    return match e.raw_os_error() {
                        Some(libc::ENOTSUP) => Ok(Vec::new()),
                        _ => Err(e),
                    };
                }
                len as usize
            };
            let mut buf = vec![0u8; len];
            // SAFETY: the buffer is live and `buf.len()` bytes long.
            let got = unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if got >= 0 {
                buf.truncate(got as usize);
                return Ok(buf
                    .split(|b| *b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ERANGE) {
                return Err(e);
            }
        }
        Err(io::Error::from_raw_os_error(libc::ERANGE))
    }

    /// `lgetxattr` (tests only read attributes by path).
    #[cfg(test)]
    pub(crate) fn lget(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
        let p = cstr(path.as_os_str().as_bytes())?;
        let n = cstr(name.as_bytes())?;
        let mut buf = vec![0u8; 65536];
        // SAFETY: strings NUL-terminated, buffer live and of the given size.
        let got =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODATA) => Ok(None),
                _ => Err(e),
            };
        }
        buf.truncate(got as usize);
        Ok(Some(buf))
    }
}

#[cfg(test)]
mod tests;
