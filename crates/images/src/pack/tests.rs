//! Tests of the packer's walk: the exact bytes for a fixed tree, and trees
//! deeper than any stack or descriptor budget.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, OFlag};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::*;
use crate::unpack::xattr;

/// Levels of the chain in [`fixed_tree`]: more than the walk keeps
/// descriptors open for, so that returning up it goes through `..`.
const CHAIN: usize = 40;

fn digest_of(dir: &Path, exclude: &[&str]) -> (Digest, Packed) {
    let (h, packed) = pack_dir_excluding(
        dir,
        HashingWriter::new(io::sink()),
        &UnpackLimits::default(),
        exclude,
    )
    .expect("pack");
    (h.finish().1, packed)
}

fn set_mtime(path: &Path, secs: i64) {
    let t = TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .expect("utimensat");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every path below `root`, parents before children (for mtimes: set
/// children first by walking this list backwards).
fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_dir() {
                todo.push(e.path());
            }
            out.push(e.path());
        }
    }
    out
}

/// A tree with every kind of entry the packer handles, fixed modes, owners
/// and mtimes: its packed bytes must never change.
fn fixed_tree(root: &Path) -> PathBuf {
    let up = root.join("up");
    fs::create_dir_all(up.join("a/opq")).expect("mkdir");
    fs::write(up.join("a/file"), b"hello").expect("write");
    fs::hard_link(up.join("a/file"), up.join("a/hard")).expect("link");
    std::os::unix::fs::symlink("../b/x", up.join("a/link")).expect("symlink");
    nix::unistd::mkfifo(&up.join("a/fifo"), Mode::from_bits_truncate(0o600)).expect("fifo");
    fs::write(up.join("a/.hidden"), b"h").expect("write");
    nix::sys::stat::mknod(&up.join("a/gone"), SFlag::S_IFCHR, Mode::empty(), 0).expect("mknod");
    fs::write(up.join("a/opq/in"), b"in").expect("write");
    xattr::lset(&up.join("a/opq"), "trusted.overlay.opaque", b"y").expect("opaque");
    fs::create_dir(up.join("b")).expect("mkdir");
    fs::write(up.join("b/x"), b"x").expect("write");
    xattr::lset(&up.join("b"), "user.dir", b"v").expect("xattr");
    xattr::lset(&up.join("b/x"), "user.file", b"w").expect("xattr");
    xattr::lset(&up.join("b/x"), "trusted.drop", b"1").expect("xattr");
    std::os::unix::fs::lchown(up.join("b/x"), Some(1000), Some(70000)).expect("chown");
    fs::write(up.join("b/suid"), b"elf").expect("write");
    std::os::unix::fs::lchown(up.join("b/suid"), Some(1000), Some(1000)).expect("chown");
    fs::create_dir_all(up.join("excluded/below")).expect("mkdir");
    fs::write(up.join("excluded/below/f"), b"no").expect("write");
    let long = up.join("l".repeat(120));
    fs::create_dir(&long).expect("mkdir");
    fs::write(long.join("f".repeat(100)), b"long").expect("write");
    // A chain deeper than the descriptors kept open, with a file before and
    // a directory after the next level at every level.
    let mut p = up.join("c");
    fs::create_dir(&p).expect("mkdir");
    for i in 0..CHAIN {
        fs::write(p.join("f"), i.to_string()).expect("write");
        fs::create_dir(p.join("s")).expect("mkdir");
        fs::write(p.join("s/z"), b"z").expect("write");
        p = p.join("n");
        fs::create_dir(&p).expect("mkdir");
    }
    fs::write(p.join("bottom"), b"bottom").expect("write");

    for (i, path) in all_paths(&up).iter().enumerate().rev() {
        let meta = fs::symlink_metadata(path).expect("stat");
        let ft = meta.file_type();
        if ft.is_dir() {
            chmod(path, 0o755);
        } else if ft.is_file() {
            chmod(path, 0o644);
        }
        set_mtime(path, 1_600_000_000 + i as i64);
    }
    chmod(&up.join("b"), 0o700);
    chmod(&up.join("b/x"), 0o640);
    chmod(&up.join("b/suid"), 0o4755);
    // chmod changes no mtime; the order above set children before parents.
    up
}

/// The digest the packer gave for [`fixed_tree`] before its walk became a
/// loop: layers packed from the same tree keep their diff ids.
const FIXED_TREE_DIFF_ID: &str =
    "sha256:55f4655396058d7e45c312421426ce6ef1684a452c86a1727e2b5f18fd982869";

#[test]
fn a_fixed_tree_packs_to_the_same_bytes_as_ever() {
    let t = tempfile::tempdir().expect("tempdir");
    let up = fixed_tree(t.path());
    let (digest, packed) = digest_of(&up, &["excluded"]);
    // Entries: a/ (8 + opq marker + opq/in), b/ (3), l/ (2), c/ (1 + 4 per
    // level + the bottom file).
    assert_eq!(packed.entries, 10 + 3 + 2 + 1 + 4 * CHAIN as u64 + 1);
    assert_eq!(digest.to_string(), FIXED_TREE_DIFF_ID);
}

/// Makes a chain of `levels` directories `name` below `root`, a file
/// `bottom` in the last, by descriptors: its paths get longer than PATH_MAX.
fn deep_chain(root: &Path, name: &str, levels: usize) {
    let mut fd =
        nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("open");
    for _ in 0..levels {
        nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o755)).expect("mkdirat");
        fd = open_dir_at(&fd, std::ffi::OsStr::new(name)).expect("openat");
    }
    let f = nix::fcntl::openat(
        &fd,
        "bottom",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .expect("create");
    nix::unistd::write(&f, b"deep").expect("write");
}

/// Removes what [`deep_chain`] made, bottom up through `..`, holding one
/// descriptor (std's `remove_dir_all` holds one per level).
fn remove_deep_chain(root: &Path, name: &str, levels: usize) {
    let mut fd =
        nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("open");
    for _ in 0..levels {
        fd = open_dir_at(&fd, std::ffi::OsStr::new(name)).expect("openat");
    }
    nix::unistd::unlinkat(&fd, "bottom", nix::unistd::UnlinkatFlags::NoRemoveDir).expect("unlink");
    for _ in 0..levels {
        fd = open_dir_at(&fd, std::ffi::OsStr::new("..")).expect("openat ..");
        nix::unistd::unlinkat(&fd, name, nix::unistd::UnlinkatFlags::RemoveDir).expect("rmdir");
    }
}

/// Packing ran recursively once, one stack frame per level: 900 levels
/// overflowed a blocking thread's 2 MiB stack and aborted the server.
#[test]
fn a_tree_deeper_than_any_stack_packs_in_a_small_one() {
    const LEVELS: usize = 3000;
    let t = tempfile::tempdir().expect("tempdir");
    let up = t.path().join("up");
    fs::create_dir(&up).expect("mkdir");
    deep_chain(&up, "d", LEVELS);
    let dir = up.clone();
    let packed = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let mut tar = Vec::new();
            let (_, packed) = pack_dir(&dir, &mut tar, &UnpackLimits::default()).expect("pack");
            let mut names = Vec::new();
            let mut archive = tar::Archive::new(tar.as_slice());
            for e in archive.entries().expect("entries") {
                names.push(e.expect("entry").path_bytes().len());
            }
            (packed, names)
        })
        .expect("spawn")
        .join()
        .expect("no overflow");
    let (packed, lengths) = packed;
    assert_eq!(packed.entries, LEVELS as u64 + 1);
    assert_eq!(packed.file_bytes, 4);
    // Depth first: `d/`, `d/d/`, ..., then `d/.../d/bottom`.
    let expected: Vec<usize> = (1..=LEVELS)
        .map(|k| 2 * k)
        .chain([2 * LEVELS + 6])
        .collect();
    assert_eq!(lengths, expected);
    remove_deep_chain(&up, "d", LEVELS);
}

/// A writer that runs `hook` once, at the first write naming `marker`.
struct Trigger<F: FnMut()> {
    out: Vec<u8>,
    marker: &'static [u8],
    hook: Option<F>,
}

impl<F: FnMut()> Write for Trigger<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.windows(self.marker.len()).any(|w| w == self.marker)
            && let Some(mut hook) = self.hook.take()
        {
            hook();
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The entry paths of a tar stream, in order.
fn paths(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .expect("entries")
        .map(|e| String::from_utf8_lossy(&e.expect("entry").path_bytes()).into_owned())
        .collect()
}

/// A chain `c/n/.../n` of `levels` with a file `f` before and a directory
/// `s` after the next level at each; returns the paths of each level.
fn chain(up: &Path, levels: usize) -> Vec<PathBuf> {
    let mut dirs = vec![up.join("c")];
    fs::create_dir_all(&dirs[0]).expect("mkdir");
    for _ in 0..levels {
        let p = dirs.last().expect("a level").clone();
        fs::write(p.join("f"), b"f").expect("write");
        fs::create_dir(p.join("s")).expect("mkdir");
        fs::create_dir(p.join("n")).expect("mkdir");
        dirs.push(p.join("n"));
    }
    fs::write(dirs.last().expect("a level").join("bottom"), b"b").expect("write");
    dirs
}

fn pack_with<F: FnMut()>(up: &Path, hook: F) -> Vec<u8> {
    let w = Trigger {
        out: Vec::new(),
        marker: b"bottom",
        hook: Some(hook),
    };
    let (w, _) = pack_dir(up, w, &UnpackLimits::default()).expect("pack");
    w.out
}

#[test]
fn directories_moved_while_packing_are_found_again_or_left_out() {
    const LEVELS: usize = 30;
    let t = tempfile::tempdir().expect("tempdir");
    let up = t.path().join("up");
    let dirs = chain(&up, LEVELS);
    let all = paths(&pack_with(&up, || {}));

    // Moving a level out from under its parent while below it: going back
    // up, `..` leads elsewhere, so its parent is found again by name and
    // nothing is lost (what was below had been walked already).
    let (from, to) = (dirs[LEVELS - 20].clone(), up.join("moved"));
    let moved = paths(&pack_with(&up, || fs::rename(&from, &to).expect("rename")));
    assert_eq!(moved, all);
    fs::rename(up.join("moved"), &dirs[LEVELS - 20]).expect("rename back");

    // Moving its parent away too: the parent is no longer where it was;
    // what it still held is left out, the rest packed.
    let (from, to) = (dirs[LEVELS - 20].clone(), up.join("moved"));
    let (pfrom, pto) = (dirs[LEVELS - 21].clone(), up.join("gone"));
    let gone = paths(&pack_with(&up, || {
        fs::rename(&from, &to).expect("rename");
        fs::rename(&pfrom, &pto).expect("rename");
    }));
    let lost = format!(
        "{}/s/",
        dirs[LEVELS - 21]
            .strip_prefix(&up)
            .expect("below")
            .display()
    );
    assert!(all.contains(&lost), "{lost}");
    let expected: Vec<String> = all
        .iter()
        .filter(|p| !p.starts_with(&lost))
        .cloned()
        .collect();
    assert_eq!(gone, expected);
}

/// A sandbox can nest directories past what a path names: its layer packs,
/// and the store refuses it as a bad layer (a 400), not an I/O error.
#[test]
fn a_tree_deeper_than_a_path_is_a_bad_layer() {
    // 50 names of 100 bytes: 5050 bytes, past PATH_MAX.
    const LEVELS: usize = 50;
    let name = "n".repeat(100);
    let t = tempfile::tempdir().expect("tempdir");
    let s = crate::store::ImageStore::open(t.path().join("images")).expect("open");
    let up = t.path().join("up");
    fs::create_dir(&up).expect("mkdir");
    deep_chain(&up, &name, LEVELS);
    let r = s.layer_from_dir(&up, &UnpackLimits::default());
    match r {
        Err(ImageStoreError::BadLayer { reason, .. }) => {
            assert!(reason.contains("its path is"), "{reason}")
        }
        other => panic!("expected BadLayer, got {other:?}"),
    }
    assert!(
        fs::read_dir(s.root().join("tmp"))
            .expect("tmp")
            .next()
            .is_none(),
        "the half-made layer is removed"
    );
    remove_deep_chain(&up, &name, LEVELS);
}
