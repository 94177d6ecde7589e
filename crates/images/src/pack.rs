//! Packing a directory into a layer tar stream: the overlay upper directory
//! of a sandbox (a build step, a snapshot), or a built-in image's rootfs.
//!
//! The tree is hostile and may even change while it is read: the walk goes
//! by directory descriptors (`openat` with `O_NOFOLLOW`, `fstatat` without
//! following), so no symlink, swapped in or not, ever leads it out of the
//! tree. The walk is a loop holding a bounded number of descriptors, so a
//! tree of any depth costs neither stack nor descriptors in proportion; the
//! paths it writes are bounded by [`crate::unpack::MAX_PATH_BYTES`], as the
//! unpacker would refuse more. The stream is deterministic for a tree that
//! does not change: entries in byte order of their names, a directory
//! before its contents, fixed header fields, no user or group names.
//!
//! Overlay forms become their OCI forms: a 0/0 character device (a
//! whiteout) is a `.wh.<name>` entry, a directory with
//! `trusted.overlay.opaque=y` is followed by `<dir>/.wh..wh..opq`. Other
//! devices and sockets are left out, and only `user.*` xattrs are carried.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};
use crate::unpack::{MAX_PATH_BYTES, UnpackLimits, keep_xattr, xattr};

/// What [`pack_dir`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    /// Entries written (whiteout and opaque markers included).
    pub entries: u64,
    /// Bytes of regular file content.
    pub file_bytes: u64,
}

/// Writes the tree at `dir` (not the directory itself) as a tar stream to
/// `out`; returns `out` and what was written. Past `limits` it stops with
/// [`ImageStoreError::TooLarge`].
pub fn pack_dir<W: Write>(dir: &Path, out: W, limits: &UnpackLimits) -> Result<(W, Packed)> {
    pack_dir_excluding(dir, out, limits, &[])
}

/// [`pack_dir`] leaving out the entries at the relative paths `exclude`
/// (`a/b`, no leading `/`) and everything below them: what a sandbox's
/// runtime mounted over its root (`proc`, `etc/hosts`, …) is not its work.
pub fn pack_dir_excluding<W: Write>(
    dir: &Path,
    out: W,
    limits: &UnpackLimits,
    exclude: &[&str],
) -> Result<(W, Packed)> {
    let root = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageStoreError::io("open", dir)(e.into()))?;
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let mut packer = Packer {
        builder,
        dir: dir.to_path_buf(),
        links: HashMap::new(),
        limits: *limits,
        packed: Packed::default(),
        path_bytes: 0,
        exclude: exclude
            .iter()
            .map(|p| p.trim_matches('/').as_bytes().to_vec())
            .collect(),
    };
    packer.walk(root)?;
    let packed = packer.packed;
    let out = packer
        .builder
        .into_inner()
        .map_err(ImageStoreError::from_io("write layer of", dir))?;
    Ok((out, packed))
}

/// A writer that hashes (sha256) and counts what passes through: the diff
/// id of a tar stream on its way to a compressor, or to nowhere.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the digest and the byte count of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Packer<W: Write> {
    builder: tar::Builder<W>,
    dir: PathBuf,
    /// First path of each multiply-linked inode, by (dev, ino).
    links: HashMap<(u64, u64), Vec<u8>>,
    limits: UnpackLimits,
    packed: Packed,
    /// Bytes of entry paths and link targets written, against
    /// [`MAX_PATH_BYTES`].
    path_bytes: u64,
    /// Relative paths left out with what is below them.
    exclude: Vec<Vec<u8>>,
}

/// Directory descriptors the walk keeps open below the root: those of the
/// innermost directories. An outer one is closed on the way down and
/// reopened through `..` on the way up, so a tree of any depth costs a
/// fixed number of descriptors (and, the walk being a loop, no stack).
const MAX_OPEN_DIRS: usize = 16;

/// A directory being packed.
struct Frame {
    /// `None` while closed for [`MAX_OPEN_DIRS`]; the innermost frame's is
    /// always open.
    fd: Option<OwnedFd>,
    /// Its identity when first opened: a reopened descriptor must be the
    /// same directory (a live tree may have moved it meanwhile).
    id: (u64, u64),
    /// Its name in its parent (empty for the root).
    name: OsString,
    /// Length of its relative path in the walk's path buffer.
    rel_len: usize,
    /// Names still to pack, in reverse byte order (the next is the last).
    todo: Vec<OsString>,
}

/// A directory opened for the walk, with its (dev, ino).
type OpenDir = (OwnedFd, (u64, u64));

/// Ids past what a sandbox maps are clamped as the unpacker would.
fn clamp_id(id: u32) -> u64 {
    if id > 65535 { 65534 } else { u64::from(id) }
}

/// Opens the directory `name` below `dir` without following a symlink.
fn open_dir_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// (dev, ino) of an open file.
fn identity(fd: &OwnedFd) -> nix::Result<(u64, u64)> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

impl<W: Write> Packer<W> {
    fn path_of(&self, rel: &[u8]) -> PathBuf {
        self.dir.join(std::ffi::OsStr::from_bytes(rel))
    }

    /// Packs everything below `root`, depth first, each directory's entries
    /// in byte order of their names and a directory's header before its
    /// contents: the order a recursive walk gives, without the recursion
    /// (a sandbox can nest directories deeper than any stack).
    fn walk(&mut self, root: OwnedFd) -> Result<()> {
        let id = identity(&root).map_err(|e| ImageStoreError::io("stat", &self.dir)(e.into()))?;
        let todo = self.list(&root, b"")?;
        let mut stack = vec![Frame {
            fd: Some(root),
            id,
            name: OsString::new(),
            rel_len: 0,
            todo,
        }];
        // The relative path of the entry at hand; frames keep its prefix
        // lengths, so a deep tree costs its depth in memory, not its square.
        let mut rel: Vec<u8> = Vec::new();
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.todo.pop() else {
                self.leave(&mut stack, &rel)?;
                continue;
            };
            rel.truncate(top.rel_len);
            let parent_len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(name.as_bytes());
            let Some(dir) = top.fd.as_ref() else {
                // Unreachable: the innermost frame's descriptor is open.
                return Err(ImageStoreError::io("walk", self.path_of(&rel))(
                    io::Error::from(io::ErrorKind::NotFound),
                ));
            };
            if let Some((fd, id)) = self.entry(dir, &name, &rel, parent_len)? {
                let todo = self.list(&fd, &rel)?;
                stack.push(Frame {
                    fd: Some(fd),
                    id,
                    name,
                    rel_len: rel.len(),
                    todo,
                });
                // Close the outermost descriptor past the budget (never the
                // root's: reopening starts from it).
                if let Some(i) = stack.len().checked_sub(MAX_OPEN_DIRS + 1)
                    && i > 0
                {
                    stack[i].fd = None;
                }
            }
        }
        Ok(())
    }

    /// Packs the entry `name` of `dir` (at `rel`, whose parent's path is
    /// `rel[..parent_len]`); for a directory, returns it opened, to be
    /// walked next.
    fn entry(
        &mut self,
        dir: &OwnedFd,
        name: &OsString,
        rel: &[u8],
        parent_len: usize,
    ) -> Result<Option<OpenDir>> {
        if self.exclude.iter().any(|e| e == rel) {
            return Ok(None);
        }
        let st = match nix::sys::stat::fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(st) => st,
            // Removed while we walk (a live sandbox): nothing to pack.
            Err(nix::errno::Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(ImageStoreError::io("stat", self.path_of(rel))(e.into())),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        match kind {
            SFlag::S_IFDIR => return self.directory(dir, name, rel, &st),
            SFlag::S_IFREG => self.regular(dir, name, rel, &st)?,
            SFlag::S_IFLNK => self.symlink(dir, name, rel, &st)?,
            SFlag::S_IFIFO => self.fifo(rel, &st)?,
            SFlag::S_IFCHR if st.st_rdev == 0 => {
                // An overlay whiteout. Overlayfs often makes them as links
                // of one shared inode: never a hard link entry.
                let mut wh = rel[..parent_len].to_vec();
                if !wh.is_empty() {
                    wh.push(b'/');
                }
                wh.extend_from_slice(b".wh.");
                wh.extend_from_slice(name.as_bytes());
                let h = header(tar::EntryType::Regular, &st, 0);
                self.append(h, &wh, None, &[], io::empty())?;
            }
            // Devices and sockets do not travel in layers.
            _ => {}
        }
        Ok(None)
    }

    fn symlink(&mut self, dir: &OwnedFd, name: &OsString, rel: &[u8], st: &FileStat) -> Result<()> {
        if self.hard_link(rel, st)? {
            return Ok(());
        }
        let target = nix::fcntl::readlinkat(dir, name.as_os_str())
            .map_err(|e| ImageStoreError::io("readlink", self.path_of(rel))(e.into()))?;
        let h = header(tar::EntryType::Symlink, st, 0);
        self.append(h, rel, Some(target.as_bytes()), &[], io::empty())
    }

    fn fifo(&mut self, rel: &[u8], st: &FileStat) -> Result<()> {
        if self.hard_link(rel, st)? {
            return Ok(());
        }
        let h = header(tar::EntryType::Fifo, st, 0);
        self.append(h, rel, None, &[], io::empty())
    }

    /// Done with the innermost directory: drops its frame and makes sure
    /// the next one out has an open descriptor again.
    fn leave(&self, stack: &mut Vec<Frame>, rel: &[u8]) -> Result<()> {
        let Some(done) = stack.pop() else {
            return Ok(());
        };
        let Some(parent) = stack.last_mut() else {
            return Ok(());
        };
        if parent.fd.is_some() {
            return Ok(());
        }
        // `rel` is below `parent`: its path is a prefix.
        let path = self.path_of(&rel[..parent.rel_len.min(rel.len())]);
        let err = |e: nix::errno::Errno| ImageStoreError::io("open", path.clone())(e.into());
        if let Some(child) = done.fd {
            match open_dir_at(&child, std::ffi::OsStr::new("..")) {
                Ok(fd) if identity(&fd).map_err(err)? == parent.id => {
                    parent.fd = Some(fd);
                    return Ok(());
                }
                // Moved or removed meanwhile: find it again by name.
                Ok(_) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(err(e)),
            }
        }
        self.reopen(stack, rel)
    }

    /// Reopens the innermost frame by name from the nearest open frame out,
    /// checking each directory on the way is the one walked before. Frames
    /// that cannot be found again (a live tree moved or removed them) are
    /// dropped: what they still held is left out, as if removed.
    fn reopen(&self, stack: &mut Vec<Frame>, rel: &[u8]) -> Result<()> {
        let Some(start) = stack.iter().rposition(|f| f.fd.is_some()) else {
            // Unreachable: the root's descriptor stays open.
            stack.clear();
            return Ok(());
        };
        let mut current: Option<OwnedFd> = None;
        for i in start + 1..stack.len() {
            let Some(dir) = current.as_ref().or(stack[start].fd.as_ref()) else {
                break;
            };
            let next = match open_dir_at(dir, &stack[i].name) {
                Ok(fd) => fd,
                Err(
                    nix::errno::Errno::ENOENT
                    | nix::errno::Errno::ENOTDIR
                    | nix::errno::Errno::ELOOP,
                ) => {
                    stack.truncate(i);
                    break;
                }
                Err(e) => {
                    return Err(ImageStoreError::io("open", self.frame_path(stack, i, rel))(
                        e.into(),
                    ));
                }
            };
            let id = identity(&next).map_err(|e| {
                ImageStoreError::io("stat", self.frame_path(stack, i, rel))(e.into())
            })?;
            if id != stack[i].id {
                stack.truncate(i);
                break;
            }
            current = Some(next);
        }
        if let Some(top) = stack.last_mut()
            && top.fd.is_none()
        {
            top.fd = current;
        }
        Ok(())
    }

    /// The path of `stack[i]`, for messages (`rel` is below it).
    fn frame_path(&self, stack: &[Frame], i: usize, rel: &[u8]) -> PathBuf {
        let len = stack.get(i).map_or(0, |f| f.rel_len).min(rel.len());
        self.path_of(&rel[..len])
    }

    fn list(&self, dir: &OwnedFd, rel: &[u8]) -> Result<Vec<OsString>> {
        let mut d = nix::dir::Dir::openat(
            dir,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ImageStoreError::io("open directory", self.path_of(rel))(e.into()))?;
        let mut names = Vec::new();
        for entry in d.iter() {
            let entry = entry
                .map_err(|e| ImageStoreError::io("read directory", self.path_of(rel))(e.into()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        // OsString orders by bytes on Unix: the same tree gives the same
        // order. Reversed: the walk pops the next name off the end.
        names.sort_by(|a, b| b.cmp(a));
        Ok(names)
    }

    /// Opens `name` below `dir` without following a symlink, checking that
    /// it is still the inode `st` describes (a live tree may have swapped
    /// it); `None` when it changed or vanished.
    fn open_same(
        &self,
        dir: &OwnedFd,
        name: &OsString,
        flags: OFlag,
        st: &FileStat,
        path: &[u8],
    ) -> Result<Option<File>> {
        let fd = match nix::fcntl::openat(
            dir,
            name.as_os_str(),
            flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(
                nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR,
            ) => {
                return Ok(None);
            }
            Err(e) => return Err(ImageStoreError::io("open", self.path_of(path))(e.into())),
        };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(ImageStoreError::io("stat", self.path_of(path)))?;
        Ok((meta.ino() == st.st_ino && meta.dev() == st.st_dev).then_some(file))
    }

    /// Writes a directory's header (and opaque marker); returns it opened
    /// for the walk to go through.
    fn directory(
        &mut self,
        dir: &OwnedFd,
        name: &OsString,
        path: &[u8],
        st: &FileStat,
    ) -> Result<Option<OpenDir>> {
        let Some(child) = self.open_same(dir, name, OFlag::O_DIRECTORY, st, path)? else {
            return Ok(None);
        };
        let opaque = xattr::fget(&child, "trusted.overlay.opaque")
            .map_err(ImageStoreError::io("read xattr", self.path_of(path)))?
            .is_some_and(|v| v == b"y");
        let xattrs = self.user_xattrs(&child, path)?;
        let mut dir_path = path.to_vec();
        dir_path.push(b'/');
        self.append(
            header(tar::EntryType::Directory, st, 0),
            &dir_path,
            None,
            &xattrs,
            io::empty(),
        )?;
        if opaque {
            let mut opq = dir_path;
            opq.extend_from_slice(b".wh..wh..opq");
            self.append(
                header(tar::EntryType::Regular, st, 0),
                &opq,
                None,
                &[],
                io::empty(),
            )?;
        }
        Ok(Some((OwnedFd::from(child), (st.st_dev, st.st_ino))))
    }

    fn regular(
        &mut self,
        dir: &OwnedFd,
        name: &OsString,
        path: &[u8],
        st: &FileStat,
    ) -> Result<()> {
        if self.hard_link(path, st)? {
            return Ok(());
        }
        // O_NONBLOCK: should the name have become a FIFO, opening it must
        // not hang (the inode check then skips it).
        let Some(file) = self.open_same(dir, name, OFlag::O_NONBLOCK, st, path)? else {
            return Ok(());
        };
        let size = st.st_size.max(0) as u64;
        self.packed.file_bytes += size;
        if self.packed.file_bytes > self.limits.max_bytes {
            return Err(ImageStoreError::TooLarge {
                what: format!("layer from {}", self.dir.display()),
                limit: self.limits.max_bytes,
            });
        }
        let xattrs = self.user_xattrs(&file, path)?;
        // Exactly `size` bytes whatever the file does meanwhile: the header
        // is already written when the data is read.
        let data = Padded {
            inner: file,
            left: size,
        };
        self.append(
            header(tar::EntryType::Regular, st, size),
            path,
            None,
            &xattrs,
            data,
        )
    }

    /// Writes a hard link entry if this inode was packed before; records
    /// its first path otherwise.
    fn hard_link(&mut self, path: &[u8], st: &FileStat) -> Result<bool> {
        if st.st_nlink < 2 {
            return Ok(false);
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = self.links.get(&key).cloned() {
            self.append(
                header(tar::EntryType::Link, st, 0),
                path,
                Some(&first),
                &[],
                io::empty(),
            )?;
            return Ok(true);
        }
        self.links.insert(key, path.to_vec());
        Ok(false)
    }

    fn user_xattrs(&self, file: &File, path: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let err = |e| ImageStoreError::io("read xattrs", self.path_of(path))(e);
        let mut names: Vec<Vec<u8>> = xattr::flist(file)
            .map_err(err)?
            .into_iter()
            .filter(|n| keep_xattr(n) && std::str::from_utf8(n).is_ok())
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            if let Some(v) = xattr::fget(file, std::ffi::OsStr::from_bytes(&name)).map_err(err)? {
                out.push((name, v));
            }
        }
        Ok(out)
    }

    fn append(
        &mut self,
        mut h: tar::Header,
        path: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        data: impl Read,
    ) -> Result<()> {
        self.packed.entries += 1;
        if self.packed.entries > self.limits.max_entries {
            return Err(ImageStoreError::TooLarge {
                what: format!("layer from {} (entry count)", self.dir.display()),
                limit: self.limits.max_entries,
            });
        }
        // Paths cost the unpacker memory and time beyond the file bytes and
        // entry counts: a layer it would refuse is not worth writing.
        self.path_bytes = self
            .path_bytes
            .saturating_add(path.len() as u64)
            .saturating_add(link.map_or(0, |l| l.len() as u64));
        if self.path_bytes > MAX_PATH_BYTES {
            return Err(ImageStoreError::TooLarge {
                what: format!("layer from {} (path bytes)", self.dir.display()),
                limit: MAX_PATH_BYTES,
            });
        }
        // Names are written raw (the tar crate's setters reject some valid
        // names); what does not fit a ustar field goes in a PAX record.
        let mut pax: Vec<(String, &[u8])> = Vec::new();
        let old = h.as_old_mut();
        if path.len() <= old.name.len() {
            old.name[..path.len()].copy_from_slice(path);
        } else {
            let n = old.name.len();
            old.name.copy_from_slice(&path[..n]);
            pax.push(("path".to_string(), path));
        }
        if let Some(link) = link {
            if link.len() <= old.linkname.len() {
                old.linkname[..link.len()].copy_from_slice(link);
            } else {
                let n = old.linkname.len();
                old.linkname.copy_from_slice(&link[..n]);
                pax.push(("linkpath".to_string(), link));
            }
        }
        for (name, value) in xattrs {
            // Names were checked to be UTF-8 when listed.
            let name = String::from_utf8_lossy(name);
            pax.push((format!("SCHILY.xattr.{name}"), value));
        }
        let werr = ImageStoreError::from_io("write layer of", &self.dir);
        if !pax.is_empty()
            && let Err(e) = self
                .builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
        {
            return Err(werr(e));
        }
        h.set_cksum();
        self.builder.append(&h, data).map_err(werr)
    }
}

fn header(kind: tar::EntryType, st: &FileStat, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(clamp_id(st.st_uid));
    h.set_gid(clamp_id(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(size);
    h
}

/// Exactly `left` bytes of a file: cut if it grew, zero-padded if it shrank.
struct Padded {
    inner: File,
    left: u64,
}

impl Read for Padded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
