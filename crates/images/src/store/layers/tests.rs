//! Tests of unpacking crafted layers and packing overlay upper directories.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::digest::Digest;
use crate::error::ImageStoreError;
use crate::store::{ImageStore, LayerRecord};
use crate::unpack::{
    MEDIA_TYPE_DOCKER_GZIP, MEDIA_TYPE_TAR, MEDIA_TYPE_TAR_GZIP, MEDIA_TYPE_TAR_ZSTD, UnpackLimits,
    xattr,
};

fn store() -> (tempfile::TempDir, ImageStore) {
    let t = tempfile::tempdir().expect("tempdir");
    let s = ImageStore::open(t.path().join("images")).expect("open");
    (t, s)
}

/// A tar stream built entry by entry, names written raw so that hostile
/// names (`..`, absolute) can be crafted.
struct Tar(tar::Builder<Vec<u8>>);

struct E<'a> {
    kind: tar::EntryType,
    path: &'a str,
    link: Option<&'a str>,
    data: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
}

impl<'a> E<'a> {
    fn new(kind: tar::EntryType, path: &'a str) -> Self {
        Self {
            kind,
            path,
            link: None,
            data: b"",
            mode: if kind.is_dir() { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
        }
    }
    fn file(path: &'a str, data: &'a [u8]) -> Self {
        Self {
            data,
            ..Self::new(tar::EntryType::Regular, path)
        }
    }
    fn dir(path: &'a str) -> Self {
        Self::new(tar::EntryType::Directory, path)
    }
    fn link(kind: tar::EntryType, path: &'a str, target: &'a str) -> Self {
        Self {
            link: Some(target),
            ..Self::new(kind, path)
        }
    }
}

impl Tar {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn add(&mut self, e: E<'_>) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(1_600_000_000);
        h.set_size(e.data.len() as u64);
        let old = h.as_old_mut();
        old.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        if let Some(l) = e.link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        self.0.append(&h, e.data).expect("append");
        self
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.0
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .expect("pax");
        self
    }

    fn bytes(&mut self) -> Vec<u8> {
        self.0.finish().expect("finish");
        self.0.get_ref().clone()
    }
}

fn unpack(
    s: &ImageStore,
    bytes: &[u8],
    media_type: &str,
    limits: &UnpackLimits,
) -> crate::error::Result<LayerRecord> {
    let blob = s.put_blob(bytes).expect("put");
    s.unpack_blob(&blob, media_type, None, limits)
}

fn unpack_tar(s: &ImageStore, t: &mut Tar) -> crate::error::Result<LayerRecord> {
    unpack(s, &t.bytes(), MEDIA_TYPE_TAR, &UnpackLimits::default())
}

/// Nothing half-made stays: tmp/ is empty and no layer appeared.
fn assert_clean(s: &ImageStore) {
    assert!(
        fs::read_dir(s.root().join("tmp"))
            .expect("tmp")
            .next()
            .is_none(),
        "tmp/ not empty"
    );
    assert!(
        fs::read_dir(s.root().join("layers/sha256"))
            .expect("layers")
            .next()
            .is_none(),
        "a layer appeared"
    );
}

fn bad_layer_naming(r: crate::error::Result<LayerRecord>, needle: &str) {
    match r {
        Err(ImageStoreError::BadLayer { reason, .. }) => {
            assert!(reason.contains(needle), "{reason:?} should name {needle:?}")
        }
        other => panic!("expected BadLayer naming {needle:?}, got {other:?}"),
    }
}

#[test]
fn refuses_dotdot_escapes() {
    let (t, s) = store();
    let r = unpack_tar(
        &s,
        Tar::new()
            .add(E::file("ok", b"x"))
            .add(E::file("../../evil", b"x")),
    );
    bad_layer_naming(r, "../../evil");
    let r = unpack_tar(&s, Tar::new().add(E::file("a/../../evil", b"x")));
    bad_layer_naming(r, "a/../../evil");
    assert!(!t.path().join("evil").exists());
    assert!(!s.root().join("evil").exists());
    assert_clean(&s);
}

#[test]
fn absolute_and_dot_paths_land_inside() {
    let (_t, s) = store();
    let l = unpack_tar(
        &s,
        Tar::new()
            .add(E::dir("./"))
            .add(E::file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n"))
            .add(E::file("./etc/hostname", b"box\n")),
    )
    .expect("unpack");
    let fs_dir = s.layer_dir(&l.diff_id);
    assert_eq!(
        fs::read(fs_dir.join("etc/passwd")).expect("read"),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(
        fs::read(fs_dir.join("etc/hostname")).expect("read"),
        b"box\n"
    );
    assert_eq!(l.unpacked_size, 30);
    assert_eq!(s.layer_meta(&l.diff_id).unpacked_size, 30);
}

#[test]
fn never_writes_through_a_symlink() {
    let (t, s) = store();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    let target = outside.to_str().expect("utf8");
    // A symlink to a directory outside, then a file "through" it.
    let r = unpack_tar(
        &s,
        Tar::new()
            .add(E::link(tar::EntryType::Symlink, "esc", target))
            .add(E::file("esc/pwned", b"x")),
    );
    bad_layer_naming(r, "esc/pwned");
    // The same with a relative symlink climbing out, and with `/`.
    let r = unpack_tar(
        &s,
        Tar::new()
            .add(E::link(
                tar::EntryType::Symlink,
                "up",
                "../../../../../../../..",
            ))
            .add(E::file("up/tmp/pwned-by-layer", b"x")),
    );
    bad_layer_naming(r, "up/tmp/pwned-by-layer");
    let r = unpack_tar(
        &s,
        Tar::new()
            .add(E::link(tar::EntryType::Symlink, "root", "/"))
            .add(E::dir("root/tmp/"))
            .add(E::file("root/tmp/pwned-by-layer", b"x")),
    );
    bad_layer_naming(r, "root/tmp");
    // A file whose own name is an existing symlink replaces the link.
    let l = unpack_tar(
        &s,
        Tar::new()
            .add(E::link(
                tar::EntryType::Symlink,
                "f",
                &format!("{target}/victim"),
            ))
            .add(E::file("f", b"inside")),
    )
    .expect("unpack");
    assert_eq!(
        fs::read(s.layer_dir(&l.diff_id).join("f")).expect("read"),
        b"inside"
    );
    assert!(
        fs::read_dir(&outside).expect("outside").next().is_none(),
        "something was written outside"
    );
    assert!(!Path::new("/tmp/pwned-by-layer").exists());
}

#[test]
fn hard_links_only_to_earlier_entries_of_the_layer() {
    let (t, s) = store();
    let r = unpack_tar(
        &s,
        Tar::new().add(E::link(tar::EntryType::Link, "pw", "/etc/passwd")),
    );
    bad_layer_naming(r, "pw");
    let r = unpack_tar(
        &s,
        Tar::new()
            .add(E::file("x", b"x"))
            .add(E::link(tar::EntryType::Link, "h", "../x")),
    );
    bad_layer_naming(r, "../x");
    let r = unpack_tar(
        &s,
        Tar::new()
            .add(E::link(tar::EntryType::Link, "early", "later"))
            .add(E::file("later", b"x")),
    );
    bad_layer_naming(r, "early");
    // Through a symlinked directory pointing outside.
    let outside = t.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("secret"), b"s").expect("write");
    let r = unpack_tar(
        &s,
        Tar::new()
            .add(E::link(
                tar::EntryType::Symlink,
                "o",
                outside.to_str().expect("utf8"),
            ))
            .add(E::link(tar::EntryType::Link, "stolen", "o/secret")),
    );
    bad_layer_naming(r, "stolen");
    assert_eq!(
        fs::metadata(outside.join("secret")).expect("stat").nlink(),
        1
    );
    let r = unpack_tar(
        &s,
        Tar::new()
            .add(E::dir("d/"))
            .add(E::link(tar::EntryType::Link, "hd", "d")),
    );
    bad_layer_naming(r, "directory");
    assert_clean(&s);
    // A good pair shares its inode.
    let l = unpack_tar(
        &s,
        Tar::new().add(E::file("bin/a", b"tool")).add(E::link(
            tar::EntryType::Link,
            "bin/b",
            "./bin/a",
        )),
    )
    .expect("unpack");
    let d = s.layer_dir(&l.diff_id);
    let (a, b) = (
        fs::metadata(d.join("bin/a")).expect("a"),
        fs::metadata(d.join("bin/b")).expect("b"),
    );
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn devices_are_left_out_and_fifos_kept() {
    let (_t, s) = store();
    let mut dev = E::new(tar::EntryType::Char, "dev/null");
    dev.mode = 0o666;
    let l = unpack_tar(
        &s,
        Tar::new()
            .add(E::dir("dev/"))
            .add(dev)
            .add(E::new(tar::EntryType::Block, "dev/sda"))
            .add(E::new(tar::EntryType::Fifo, "run/fifo")),
    )
    .expect("unpack");
    let d = s.layer_dir(&l.diff_id);
    assert!(!d.join("dev/null").exists() && !d.join("dev/sda").exists());
    assert!(
        fs::symlink_metadata(d.join("run/fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo()
    );
}

#[test]
fn whiteouts_and_opaque_directories_take_the_overlay_forms() {
    let (_t, s) = store();
    let l = unpack_tar(
        &s,
        Tar::new()
            .add(E::file(".wh.gone", b""))
            .add(E::dir("etc/"))
            .add(E::file("etc/.wh..wh..opq", b""))
            .add(E::file("etc/kept", b"k"))
            .add(E::file("etc/.wh..wh.plnk", b""))
            .add(E::file("etc/replaced", b"old"))
            .add(E::file("etc/.wh.replaced", b"")),
    )
    .expect("unpack");
    let d = s.layer_dir(&l.diff_id);
    for wh in [d.join("gone"), d.join("etc/replaced")] {
        let m = fs::symlink_metadata(&wh).expect("whiteout");
        assert!(m.file_type().is_char_device(), "{wh:?}");
        assert_eq!(m.rdev(), 0);
    }
    assert_eq!(
        xattr::lget(&d.join("etc"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec())
    );
    assert!(d.join("etc/kept").exists());
    assert!(!d.join("etc/.wh..wh.plnk").exists() && !d.join(".wh.gone").exists());
    let r = unpack_tar(&s, Tar::new().add(E::file("a/.wh..", b"")));
    bad_layer_naming(r, ".wh..");
}

#[test]
fn keeps_user_xattrs_only_modes_and_clamped_owners() {
    let (_t, s) = store();
    let mut suid = E::file("bin/su", b"elf");
    suid.mode = 0o4755;
    suid.uid = 1000;
    suid.gid = 1001;
    let mut big = E::file("big-ids", b"");
    big.uid = 100_000;
    big.gid = 70_000;
    let mut sticky = E::dir("tmp/");
    sticky.mode = 0o1777;
    let mut locked = E::dir("locked/");
    locked.mode = 0o500;
    let l = unpack_tar(
        &s,
        Tar::new()
            .pax(&[
                ("SCHILY.xattr.user.note", b"hello"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02"),
                ("SCHILY.xattr.user.overlay.redirect", b"/x"),
            ])
            .add(suid)
            .add(big)
            .add(sticky)
            .add(locked)
            .add(E::file("locked/inside", b"written after its 0500 parent")),
    )
    .expect("unpack");
    let d = s.layer_dir(&l.diff_id);
    let su = d.join("bin/su");
    let m = fs::metadata(&su).expect("stat");
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(
        xattr::lget(&su, "user.note").expect("xattr"),
        Some(b"hello".to_vec())
    );
    for dropped in [
        "trusted.overlay.opaque",
        "security.capability",
        "user.overlay.redirect",
    ] {
        assert_eq!(xattr::lget(&su, dropped).expect("xattr"), None, "{dropped}");
    }
    let m = fs::metadata(d.join("big-ids")).expect("stat");
    assert_eq!((m.uid(), m.gid()), (65534, 65534));
    assert_eq!(
        fs::metadata(d.join("tmp"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    let m = fs::metadata(d.join("locked")).expect("stat");
    assert_eq!(m.permissions().mode() & 0o7777, 0o500);
    assert_eq!(m.mtime(), 1_600_000_000);
    assert!(d.join("locked/inside").exists());
}

#[test]
fn long_names_from_pax_and_gnu_records() {
    let (_t, s) = store();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    let mut t = Tar::new();
    t.pax(&[("path", long.as_bytes())])
        .add(E::file("placeholder", b"pax"));
    // GNU long name, as the tar crate writes it.
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    t.0.append_data(&mut h, format!("{}/gnu", "g".repeat(150)), &b"gnu"[..])
        .expect("append");
    let l = unpack_tar(&s, &mut t).expect("unpack");
    let d = s.layer_dir(&l.diff_id);
    assert_eq!(fs::read(d.join(&long)).expect("pax"), b"pax");
    assert_eq!(
        fs::read(d.join(format!("{}/gnu", "g".repeat(150)))).expect("gnu"),
        b"gnu"
    );
    assert!(!d.join("placeholder").exists());
    // A PAX header too large to be real is refused, not read into memory.
    let huge = vec![b'a'; 2 << 20];
    let r = unpack_tar(
        &s,
        Tar::new().pax(&[("comment", &huge)]).add(E::file("x", b"")),
    );
    bad_layer_naming(r, "extension header");
}

#[test]
fn a_decompression_bomb_hits_the_limit_and_leaves_nothing() {
    let (_t, s) = store();
    let zeros = vec![0u8; 8 << 20];
    let tar = Tar::new().add(E::file("bomb", &zeros)).bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    assert!(gz.len() < 64 << 10);
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 100,
    };
    let r = unpack(&s, &gz, MEDIA_TYPE_TAR_GZIP, &limits);
    assert!(
        matches!(r, Err(ImageStoreError::TooLarge { limit, .. }) if limit == 1 << 20),
        "{r:?}"
    );
    assert_clean(&s);
    // Many empty entries hit the entry limit.
    let mut t = Tar::new();
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    for n in &names {
        t.add(E::file(n, b""));
    }
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 10,
    };
    let r = unpack(&s, &t.bytes(), MEDIA_TYPE_TAR, &limits);
    assert!(
        matches!(r, Err(ImageStoreError::TooLarge { limit: 10, .. })),
        "{r:?}"
    );
    assert_clean(&s);
}

#[test]
fn media_types_and_compression_by_magic_bytes() {
    let (_t, s) = store();
    let tar = Tar::new().add(E::file("hello", b"world")).bytes();
    let diff_id = Digest::of(&tar);
    let r = unpack(
        &s,
        &tar,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        &UnpackLimits::default(),
    );
    assert!(
        matches!(r, Err(ImageStoreError::UnsupportedMediaType(_))),
        "{r:?}"
    );

    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    let l = unpack(&s, &zst, MEDIA_TYPE_TAR_ZSTD, &UnpackLimits::default()).expect("zstd layer");
    assert_eq!(
        l.diff_id, diff_id,
        "the diff id is the digest of the uncompressed stream"
    );
    assert_eq!(l.media_type, MEDIA_TYPE_TAR_ZSTD);
    assert_eq!(l.size, zst.len() as u64);
    assert_eq!(
        fs::read(s.layer_dir(&diff_id).join("hello")).expect("read"),
        b"world"
    );

    // docker save: plain tar under a gzip media type.
    let l =
        unpack(&s, &tar, MEDIA_TYPE_DOCKER_GZIP, &UnpackLimits::default()).expect("plain as gzip");
    assert_eq!(l.diff_id, diff_id);
    // Unpacking the same layer again keeps the one stored.
    assert_eq!(
        fs::read_dir(s.root().join("layers/sha256"))
            .expect("layers")
            .count(),
        1
    );
    assert!(
        fs::read_dir(s.root().join("tmp"))
            .expect("tmp")
            .next()
            .is_none()
    );

    // A wrong expected diff id is refused.
    let other = Tar::new().add(E::file("other", b"x")).bytes();
    let blob = s.put_blob(&other).expect("put");
    let r = s.unpack_blob(
        &blob,
        MEDIA_TYPE_TAR,
        Some(&diff_id),
        &UnpackLimits::default(),
    );
    // ...unless that layer is already there: then it is taken as is.
    assert!(r.is_ok());
    let r = s.unpack_blob(
        &blob,
        MEDIA_TYPE_TAR,
        Some(&Digest::of(b"nope")),
        &UnpackLimits::default(),
    );
    assert!(
        matches!(r, Err(ImageStoreError::DigestMismatch { .. })),
        "{r:?}"
    );
    let r = unpack(
        &s,
        b"\x1f\x8bnot gzip at all",
        MEDIA_TYPE_TAR_GZIP,
        &UnpackLimits::default(),
    );
    assert!(matches!(r, Err(ImageStoreError::BadLayer { .. })), "{r:?}");
}

#[test]
fn later_entries_replace_earlier_ones() {
    let (_t, s) = store();
    let l = unpack_tar(
        &s,
        Tar::new()
            .add(E::file("a", b"file"))
            .add(E::dir("a/"))
            .add(E::file("a/b", b"x"))
            .add(E::dir("c/"))
            .add(E::file("c/inner", b"x"))
            .add(E::link(tar::EntryType::Symlink, "c", "/etc")),
    )
    .expect("unpack");
    let d = s.layer_dir(&l.diff_id);
    assert!(fs::symlink_metadata(d.join("a")).expect("a").is_dir());
    let c = fs::symlink_metadata(d.join("c")).expect("c");
    assert!(c.file_type().is_symlink());
    assert_eq!(fs::read_link(d.join("c")).expect("link"), Path::new("/etc"));
}

// --- packing ------------------------------------------------------------------

fn mknod(path: &Path, kind: nix::sys::stat::SFlag, dev: u64) {
    nix::sys::stat::mknod(
        path,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        dev,
    )
    .expect("mknod");
}

/// An overlay upper directory as a sandbox leaves it.
fn overlay_upper(root: &Path, outside: &Path) -> std::path::PathBuf {
    let up = root.join("upper");
    fs::create_dir_all(up.join("etc/opaque/sub")).expect("mkdir");
    fs::write(up.join("etc/opaque/sub/new"), b"new").expect("write");
    xattr::lset(&up.join("etc/opaque"), "trusted.overlay.opaque", b"y").expect("opaque");
    mknod(&up.join("etc/deleted"), nix::sys::stat::SFlag::S_IFCHR, 0);
    mknod(
        &up.join("etc/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::makedev(1, 3),
    );
    mknod(
        &up.join("etc/disk"),
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::makedev(7, 0),
    );
    fs::write(up.join("etc/a"), b"linked").expect("write");
    fs::hard_link(up.join("etc/a"), up.join("etc/b")).expect("link");
    std::os::unix::fs::symlink("/etc/shadow", up.join("etc/abs")).expect("symlink");
    std::os::unix::fs::symlink(outside, up.join("escape")).expect("symlink");
    std::os::unix::fs::symlink("../../../../outside", up.join("etc/rel")).expect("symlink");
    nix::unistd::mkfifo(
        &up.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("fifo");
    let _sock = std::os::unix::net::UnixListener::bind(up.join("sock")).expect("socket");
    fs::write(up.join("suid"), b"elf").expect("write");
    // chown before chmod: chown clears setuid.
    std::os::unix::fs::lchown(up.join("suid"), Some(1000), Some(1000)).expect("chown");
    fs::set_permissions(up.join("suid"), fs::Permissions::from_mode(0o4711)).expect("chmod");
    xattr::lset(&up.join("suid"), "user.keep", b"1").expect("xattr");
    xattr::lset(&up.join("suid"), "trusted.drop", b"1").expect("xattr");
    let long = up.join("l".repeat(90)).join("n".repeat(90));
    fs::create_dir_all(long.parent().expect("parent")).expect("mkdir");
    fs::write(&long, b"long").expect("write");
    up
}

#[test]
fn packs_an_overlay_upper_deterministically_and_unpacks_it_in_overlay_form() {
    let (t, s) = store();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("secret"), b"host secret").expect("write");
    let up = overlay_upper(t.path(), &outside);
    let limits = UnpackLimits::default();
    let a = s.layer_from_dir(&up, &limits).expect("pack");
    let b = s.layer_from_dir(&up, &limits).expect("pack again");
    assert_eq!(a, b, "the same tree gives the same layer");
    assert_eq!(a.media_type, MEDIA_TYPE_TAR_GZIP);
    let blob = a.blob.clone().expect("a blob");
    assert_eq!(
        fs::metadata(s.blob_path(&blob)).expect("blob").len(),
        a.size
    );

    let d = s.layer_dir(&a.diff_id);
    let wh = fs::symlink_metadata(d.join("etc/deleted")).expect("whiteout");
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(!d.join("etc/null").exists() && !d.join("etc/disk").exists());
    assert!(!d.join("sock").exists());
    assert_eq!(
        xattr::lget(&d.join("etc/opaque"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec())
    );
    assert!(!d.join("etc/opaque/.wh..wh..opq").exists());
    assert_eq!(
        fs::read(d.join("etc/opaque/sub/new")).expect("read"),
        b"new"
    );
    let (ma, mb) = (
        fs::metadata(d.join("etc/a")).expect("a"),
        fs::metadata(d.join("etc/b")).expect("b"),
    );
    assert_eq!(ma.ino(), mb.ino());
    assert_eq!(
        fs::read_link(d.join("etc/abs")).expect("abs"),
        Path::new("/etc/shadow")
    );
    assert_eq!(fs::read_link(d.join("escape")).expect("escape"), outside);
    assert_eq!(
        fs::read_link(d.join("etc/rel")).expect("rel"),
        Path::new("../../../../outside")
    );
    assert!(
        fs::symlink_metadata(d.join("fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo()
    );
    let m = fs::metadata(d.join("suid")).expect("suid");
    assert_eq!((m.permissions().mode() & 0o7777, m.uid()), (0o4711, 1000));
    assert_eq!(
        xattr::lget(&d.join("suid"), "user.keep").expect("xattr"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        xattr::lget(&d.join("suid"), "trusted.drop").expect("xattr"),
        None
    );
    assert_eq!(
        fs::read(d.join("l".repeat(90)).join("n".repeat(90))).expect("long"),
        b"long"
    );

    // Nothing was read through the symlink: the secret is in no stored file.
    let mut stack = vec![d.clone()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).expect("read") {
            let e = e.expect("entry");
            let ft = e.file_type().expect("type");
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                assert_ne!(fs::read(e.path()).expect("read"), b"host secret");
            }
        }
    }

    // Unpacking the packed blob by hand gives the same diff id.
    let again = s
        .unpack_blob(&blob, MEDIA_TYPE_TAR_GZIP, None, &limits)
        .expect("unpack");
    assert_eq!(again.diff_id, a.diff_id);
}

#[test]
fn packing_stops_at_the_limits() {
    let (t, s) = store();
    let up = t.path().join("up");
    fs::create_dir(&up).expect("mkdir");
    fs::write(up.join("big"), vec![1u8; 4096]).expect("write");
    let r = s.layer_from_dir(
        &up,
        &UnpackLimits {
            max_bytes: 1000,
            max_entries: 10,
        },
    );
    assert!(matches!(r, Err(ImageStoreError::TooLarge { .. })), "{r:?}");
    assert!(
        fs::read_dir(s.root().join("tmp"))
            .expect("tmp")
            .next()
            .is_none()
    );
    assert!(
        fs::read_dir(s.root().join("blobs/sha256"))
            .expect("blobs")
            .next()
            .is_none()
    );
}
