//! Tests of the unpacker's bookkeeping: repeated and deep paths, names and
//! paths past the kernel's limits, the path budget.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// A tar stream whose entries are named raw, through a PAX record when the
/// name does not fit the header.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn add(&mut self, kind: tar::EntryType, path: &[u8], mode: u32, pax: &[(&str, &[u8])]) {
        let mut records: Vec<(&str, &[u8])> = pax.to_vec();
        if path.len() > 100 {
            records.push(("path", path));
        }
        if !records.is_empty() {
            self.0
                .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
                .expect("pax");
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        let n = path.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&path[..n]);
        h.set_cksum();
        self.0.append(&h, io::empty()).expect("append");
    }

    fn dir(&mut self, path: &[u8]) -> &mut Self {
        self.add(tar::EntryType::Directory, path, 0o755, &[]);
        self
    }

    fn file(&mut self, path: &[u8]) -> &mut Self {
        self.add(tar::EntryType::Regular, path, 0o644, &[]);
        self
    }

    fn bytes(&mut self) -> Vec<u8> {
        self.0.finish().expect("finish");
        self.0.get_ref().clone()
    }
}

/// `levels` components `d`, slash-separated.
fn deep(levels: usize) -> Vec<u8> {
    vec!["d"; levels].join("/").into_bytes()
}

/// Runs an unpacker (its budget lowered to `max_path_bytes`) over `tar`
/// into `<dir>/fs`, short of applying directory metadata; returns it for
/// its bookkeeping, and the result.
fn run(dir: &Path, tar: &[u8], max_path_bytes: u64) -> (Unpacker, Result<()>) {
    let dest = dir.join("fs");
    fs::create_dir(&dest).expect("mkdir");
    let mut u = Unpacker::new(&dest, "test", &UnpackLimits::default());
    u.max_path_bytes = max_path_bytes;
    let mut archive = tar::Archive::new(tar);
    let r = u.run(&mut archive);
    (u, r)
}

fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<Unpacked>) {
    let t = tempfile::tempdir().expect("tempdir");
    let r = unpack_layer(
        tar,
        MEDIA_TYPE_TAR,
        &t.path().join("fs"),
        &UnpackLimits::default(),
        "test",
    );
    (t, r)
}

fn bad_layer_naming<T: std::fmt::Debug>(r: Result<T>, needle: &str) {
    match r {
        Err(ImageStoreError::BadLayer { reason, .. }) => {
            assert!(reason.contains(needle), "{reason:?} should name {needle:?}")
        }
        other => panic!("expected BadLayer naming {needle:?}, got {other:?}"),
    }
}

#[test]
fn a_repeated_deep_directory_is_recorded_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let path = deep(1000);
    let mut tar = Tar::new();
    for _ in 0..2000 {
        tar.dir(&path);
    }
    let mut bottom = path.clone();
    bottom.extend_from_slice(b"/f");
    tar.file(&bottom);
    let (mut u, r) = run(t.path(), &tar.bytes(), MAX_PATH_BYTES);
    r.expect("unpack");
    // One record for the one directory entry, however often repeated; the
    // root and the 1000 levels known once each.
    assert_eq!(u.dirs.len(), 1);
    assert_eq!(u.known.len(), 1 + 1000);
    // Charged: each entry's path once, and the 999 parents made for the
    // first (`d`, `d/d`, ...: 1 + 3 + ... + 1997 bytes).
    let parents: u64 = (1..1000u64).map(|k| 2 * k - 1).sum();
    let entries = 2000 * path.len() as u64 + bottom.len() as u64;
    assert_eq!(u.path_bytes, entries + parents);
    u.finish_dirs().expect("finish");
    assert!(
        t.path()
            .join("fs")
            .join(OsStr::from_bytes(&bottom))
            .is_file()
    );
}

#[test]
fn the_path_budget_bounds_a_layer() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut tar = Tar::new();
    for i in 0..100 {
        tar.file(format!("f{i:03}").as_bytes());
    }
    // 100 entries of 4 bytes: 400 bytes.
    let (_, r) = run(t.path(), &tar.bytes(), 399);
    match r {
        Err(ImageStoreError::TooLarge { what, limit: 399 }) => {
            assert!(what.contains("path bytes"), "{what}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let t = tempfile::tempdir().expect("tempdir");
    let (_, r) = run(t.path(), &tar.bytes(), 400);
    r.expect("within the budget");
}

#[test]
fn parents_made_for_an_entry_are_charged() {
    let t = tempfile::tempdir().expect("tempdir");
    let mut tar = Tar::new();
    let mut path = deep(100);
    path.extend_from_slice(b"/f");
    tar.file(&path);
    // The entry (201 bytes) fits, the 100 parents it needs (10000 bytes)
    // do not.
    let (_, r) = run(t.path(), &tar.bytes(), 5000);
    assert!(matches!(r, Err(ImageStoreError::TooLarge { .. })), "{r:?}");
}

#[test]
fn names_and_paths_past_the_kernel_limits_are_bad_layers() {
    let long_name = [b"a/".as_slice(), &[b'x'; 256]].concat();
    let (_t, r) = unpack(&Tar::new().file(&long_name).bytes());
    bad_layer_naming(r, "a name of 256 bytes");

    // 255 bytes is a name the kernel takes.
    let ok_name = [b"a/".as_slice(), &[b'x'; 255]].concat();
    let (t, r) = unpack(&Tar::new().file(&ok_name).bytes());
    r.expect("a 255-byte name");
    assert!(
        t.path()
            .join("fs")
            .join(OsStr::from_bytes(&ok_name))
            .is_file()
    );

    // 20 names of 250 bytes: 5019 bytes, past PATH_MAX below any root.
    let long_path = vec![vec![b'y'; 250]; 20].join(&b'/');
    let (_t, r) = unpack(&Tar::new().dir(&long_path).bytes());
    bad_layer_naming(r, "its path is");
    let (_t, r) = unpack(&Tar::new().file(&long_path).bytes());
    bad_layer_naming(r, "its path is");

    // A hard link to such a path, and a symlink with too long a target.
    let mut tar = Tar::new();
    tar.add(
        tar::EntryType::Link,
        b"link",
        0o644,
        &[("linkpath", long_path.as_slice())],
    );
    bad_layer_naming(unpack(&tar.bytes()).1, "its path is");
    let target = vec![b'z'; 5000];
    let mut tar = Tar::new();
    tar.add(
        tar::EntryType::Symlink,
        b"sym",
        0o777,
        &[("linkpath", target.as_slice())],
    );
    bad_layer_naming(unpack(&tar.bytes()).1, "a target of 5000 bytes");
}

#[test]
fn xattrs_past_the_kernel_limits_are_bad_layers() {
    let big = vec![b'v'; MAX_XATTR_VALUE + 1];
    let mut tar = Tar::new();
    tar.add(
        tar::EntryType::Regular,
        b"f",
        0o644,
        &[("SCHILY.xattr.user.big", big.as_slice())],
    );
    bad_layer_naming(unpack(&tar.bytes()).1, "user.big");
    let key = format!("SCHILY.xattr.user.{}", "k".repeat(MAX_XATTR_NAME));
    let mut tar = Tar::new();
    tar.add(
        tar::EntryType::Directory,
        b"d",
        0o755,
        &[(key.as_str(), b"1".as_slice())],
    );
    bad_layer_naming(unpack(&tar.bytes()).1, "user.kkk");
}

#[test]
fn a_replaced_directory_is_forgotten_with_what_was_below_it() {
    let mut tar = Tar::new();
    tar.dir(b"a/b/c/")
        .file(b"a/b")
        .dir(b"a/b/")
        .file(b"a/b/c/f");
    let (t, r) = unpack(&tar.bytes());
    r.expect("unpack");
    assert!(t.path().join("fs/a/b/c/f").is_file());

    // A file in the way of a parent is refused, known or not before.
    let mut tar = Tar::new();
    tar.dir(b"a/b/c/").file(b"a/b").file(b"a/b/c/f");
    bad_layer_naming(unpack(&tar.bytes()).1, "is not a directory");
}

#[test]
fn directory_modes_apply_at_the_end_the_last_entry_winning() {
    let mut tar = Tar::new();
    tar.add(tar::EntryType::Directory, b"ro/", 0o500, &[]);
    tar.file(b"ro/f");
    tar.add(tar::EntryType::Directory, b"ro/", 0o550, &[]);
    tar.add(tar::EntryType::Directory, b"ro/sub/", 0o700, &[]);
    let (t, r) = unpack(&tar.bytes());
    r.expect("unpack");
    let m = fs::metadata(t.path().join("fs/ro")).expect("ro");
    assert_eq!(m.permissions().mode() & 0o7777, 0o550);
    assert_eq!(m.mtime(), 1_600_000_000);
    assert!(t.path().join("fs/ro/f").is_file());
}

#[test]
fn extreme_mtimes_do_not_panic() {
    for t in ["9223372036854775807", "-9223372036854775808", "-1.5"] {
        let mut tar = Tar::new();
        tar.add(
            tar::EntryType::Regular,
            b"f",
            0o644,
            &[("mtime", t.as_bytes())],
        );
        let (_t, r) = unpack(&tar.bytes());
        // The kernel may clamp or refuse such a time; never a panic.
        let _ = r;
    }
    assert_eq!(
        system_time((i64::MIN, 0)),
        SystemTime::UNIX_EPOCH - Duration::from_secs(1 << 63)
    );
}
