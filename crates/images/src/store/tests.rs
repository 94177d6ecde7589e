//! Tests of images, references, removal, garbage collection, opening and
//! built-in adoption.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;
use crate::error::ImageStoreError;

fn store() -> (tempfile::TempDir, ImageStore) {
    let t = tempfile::tempdir().expect("tempdir");
    let s = ImageStore::open(t.path().join("images")).expect("open");
    (t, s)
}

/// A layer holding `files` (path, content), made through layer_from_dir.
fn layer(s: &ImageStore, files: &[(&str, &str)]) -> LayerRecord {
    let up = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let p = up.path().join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, content).expect("write");
    }
    s.layer_from_dir(up.path(), &UnpackLimits::default())
        .expect("layer")
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn open_makes_a_private_layout() {
    let (_t, s) = store();
    for sub in ["", "blobs/sha256", "layers/sha256", "images/sha256", "tmp"] {
        let m = fs::metadata(s.root().join(sub)).expect("dir");
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{sub}");
    }
    assert!(s.root().join("lock").is_file());
    assert!(s.root().is_absolute());
}

#[test]
fn commit_tag_and_resolve_by_name_alias_id_prefix_and_manifest_digest() {
    let (_t, s) = store();
    let base = layer(&s, &[("etc/os-release", "debian")]);
    let config = RunConfig {
        env: vec!["PATH=/bin".into()],
        cmd: vec!["sh".into()],
        ..RunConfig::default()
    };
    let manifest = s.put_blob(b"{\"manifest\":1}").expect("manifest");
    let rec = s
        .commit_image(
            vec![base.clone()],
            config.clone(),
            ImageSource::Pull {
                reference: "busybox:1.36".into(),
            },
            Some(manifest.clone()),
            &names(&["busybox:1.36", "box"]),
        )
        .expect("commit");
    assert_eq!(rec.names, names(&["box:latest", "busybox:1.36"]));
    assert_eq!(rec.config, config);
    assert!(s.has_blob(&rec.id), "the config blob is the id");
    let oci: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&s.read_blob(&rec.id, 1 << 20).expect("config")).expect("parse");
    assert_eq!(oci.rootfs().diff_ids(), &vec![base.diff_id.to_string()]);
    assert!(chrono::DateTime::parse_from_rfc3339(&rec.created_at).is_ok());

    for text in [
        "busybox:1.36",
        "box",
        "box:latest",
        rec.id.as_str(),
        rec.id.short(),
        &rec.id.hex()[..20],
        &format!("sha256:{}", rec.id.short()),
        rec.id.hex(),
        &format!("busybox@{manifest}"),
        &format!("elsewhere/busybox@{manifest}"),
    ] {
        assert_eq!(s.resolve(text).expect(text).id, rec.id, "{text}");
    }
    for missing in ["busybox", "busybox:1.37", "nope", "0123456789ab"] {
        assert!(
            matches!(s.resolve(missing), Err(ImageStoreError::NotFound(ref t)) if t == missing),
            "{missing}"
        );
    }
    assert!(s.resolve("Bad Name").is_err());

    // Committing the same image again only adds names.
    let again = s
        .commit_image(
            vec![base],
            config,
            ImageSource::Pull {
                reference: "busybox:1.36".into(),
            },
            Some(manifest),
            &names(&["mirror/busybox:stable"]),
        )
        .expect("commit again");
    assert_eq!(again.id, rec.id);
    assert_eq!(again.created_at, rec.created_at);
    assert_eq!(again.names.len(), 3);
    s.tag(&rec.id, "localhost:5000/busybox:v1").expect("tag");
    assert_eq!(s.refs().expect("refs")["localhost:5000/busybox:v1"], rec.id);
    assert!(matches!(
        s.tag(&Digest::of(b"no image"), "x"),
        Err(ImageStoreError::NotFound(_))
    ));
    assert_eq!(s.list().expect("list").len(), 1);
}

#[test]
fn commit_needs_unpacked_layers() {
    let (_t, s) = store();
    let ghost = LayerRecord {
        diff_id: Digest::of(b"ghost"),
        blob: None,
        media_type: String::new(),
        size: 0,
        unpacked_size: 0,
    };
    let r = s.commit_image(
        vec![ghost],
        RunConfig::default(),
        ImageSource::Build,
        None,
        &[],
    );
    assert!(matches!(r, Err(ImageStoreError::BadImage { .. })), "{r:?}");
}

#[test]
fn pulled_images_keep_the_registry_config_as_id() {
    let (_t, s) = store();
    let l = layer(&s, &[("bin/app", "app")]);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
        "config":{{"Env":["A=1"],"Entrypoint":["/bin/app"],"ExposedPorts":{{"8080/tcp":{{}},"53/udp":{{}}}}}},
        "rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        l.diff_id
    );
    let config_blob = s.put_blob(config.as_bytes()).expect("put");
    let rec = s
        .commit_pulled_image(
            &config_blob,
            vec![l.clone()],
            None,
            ImageSource::Import,
            &names(&["app:1"]),
        )
        .expect("commit");
    assert_eq!(rec.id, config_blob);
    assert_eq!(rec.config.entrypoint, vec!["/bin/app"]);
    assert_eq!(rec.config.exposed_ports, vec![8080]);
    assert_eq!(s.resolve("app:1").expect("resolve").id, config_blob);

    let other = layer(&s, &[("bin/other", "x")]);
    let r = s.commit_pulled_image(&config_blob, vec![other], None, ImageSource::Import, &[]);
    assert!(matches!(r, Err(ImageStoreError::BadImage { .. })), "{r:?}");
}

#[test]
fn remove_and_collect_garbage_keep_shared_layers() {
    let (_t, s) = store();
    let base = layer(&s, &[("etc/base", "base")]);
    let top_a = layer(&s, &[("a", "a")]);
    let top_b = layer(&s, &[("b", "b")]);
    let a = s
        .commit_image(
            vec![base.clone(), top_a.clone()],
            RunConfig::default(),
            ImageSource::Build,
            None,
            &names(&["a", "a:v2"]),
        )
        .expect("a");
    let b = s
        .commit_image(
            vec![base.clone(), top_b.clone()],
            RunConfig::default(),
            ImageSource::Build,
            None,
            &names(&["b"]),
        )
        .expect("b");
    assert_ne!(a.id, b.id);
    // Nothing is garbage yet.
    assert_eq!(
        s.collect_garbage(&HashSet::new()).expect("gc"),
        GcReport::default()
    );

    // Untagging one of two names keeps the image.
    assert_eq!(s.remove("a", false).expect("rm"), Vec::<Digest>::new());
    assert_eq!(s.get(&a.id).expect("a").names, names(&["a:v2"]));
    // untag_only never removes the record.
    assert_eq!(s.remove("a:v2", true).expect("untag"), Vec::<Digest>::new());
    assert!(s.get(&a.id).expect("a").names.is_empty());
    // By id: the record goes.
    assert_eq!(
        s.remove(a.id.short(), false).expect("rm"),
        vec![a.id.clone()]
    );
    assert!(matches!(s.get(&a.id), Err(ImageStoreError::NotFound(_))));
    assert!(matches!(
        s.remove("a:v2", false),
        Err(ImageStoreError::NotFound(_))
    ));

    // A layer in use by a sandbox of the removed image stays when kept.
    let keep: HashSet<Digest> = [top_a.diff_id.clone()].into();
    let report = s.collect_garbage(&keep).expect("gc");
    assert_eq!(
        (report.blobs, report.layers),
        (2, 0),
        "a's config and top layer blobs"
    );
    assert!(s.has_layer(&top_a.diff_id));
    let report = s.collect_garbage(&HashSet::new()).expect("gc");
    assert_eq!((report.blobs, report.layers), (0, 1));
    assert!(report.bytes >= 1);
    assert!(!s.has_layer(&top_a.diff_id));
    assert!(s.has_layer(&base.diff_id), "the base is shared with b");
    assert!(s.has_layer(&top_b.diff_id));
    assert!(s.has_blob(&b.id));
    assert!(base.blob.as_ref().is_some_and(|d| s.has_blob(d)));

    // The last name of b goes with its record.
    assert_eq!(s.remove("b:latest", false).expect("rm"), vec![b.id.clone()]);
    let report = s.collect_garbage(&HashSet::new()).expect("gc");
    assert_eq!(report.layers, 2);
    assert!(
        fs::read_dir(s.root().join("layers/sha256"))
            .expect("layers")
            .next()
            .is_none()
    );
    assert!(
        fs::read_dir(s.root().join("blobs/sha256"))
            .expect("blobs")
            .next()
            .is_none()
    );
    assert!(
        fs::read_dir(s.root().join("tmp"))
            .expect("tmp")
            .next()
            .is_none()
    );
}

#[test]
fn gc_removes_read_only_layer_trees() {
    let (_t, s) = store();
    let l = layer(&s, &[("d/e/f", "x")]);
    let d = s.layer_dir(&l.diff_id);
    fs::set_permissions(d.join("d/e"), fs::Permissions::from_mode(0o500)).expect("chmod");
    fs::set_permissions(d.join("d"), fs::Permissions::from_mode(0o000)).expect("chmod");
    let report = s.collect_garbage(&HashSet::new()).expect("gc");
    assert_eq!(report.layers, 1);
    assert!(!s.has_layer(&l.diff_id));
}

#[test]
fn gc_waits_for_work_in_progress() {
    let (_t, s) = store();
    let l = layer(&s, &[("unnamed", "x")]);
    let work = s.work_guard().expect("guard");
    // Another handle on the same store, as another server would have.
    let other = ImageStore::open(s.root()).expect("open");
    let report = other.collect_garbage(&HashSet::new()).expect("gc");
    assert!(report.deferred && report.layers == 0, "{report:?}");
    assert!(s.has_layer(&l.diff_id), "a pull's unnamed layer survives");
    drop(work);
    let report = other.collect_garbage(&HashSet::new()).expect("gc");
    assert!(!report.deferred && report.layers == 1, "{report:?}");
}

#[test]
fn open_cleans_tmp_and_drops_records_whose_layers_are_missing() {
    let (t, s) = store();
    let kept = layer(&s, &[("kept", "k")]);
    let lost = layer(&s, &[("lost", "l")]);
    let ok = s
        .commit_image(
            vec![kept],
            RunConfig::default(),
            ImageSource::Build,
            None,
            &names(&["ok"]),
        )
        .expect("ok");
    let broken = s
        .commit_image(
            vec![lost.clone()],
            RunConfig::default(),
            ImageSource::Build,
            None,
            &names(&["broken", "broken:2"]),
        )
        .expect("broken");
    fs::create_dir_all(s.root().join("tmp/leftover/fs/etc")).expect("mkdir");
    fs::write(s.root().join("tmp/4194304.1.2"), b"crash").expect("write");
    let live = s.root().join("tmp").join(super::fsutil::tmp_name());
    fs::write(&live, b"in progress").expect("write");
    fs::remove_dir_all(s.layer_dir(&lost.diff_id)).expect("remove layer");

    let s = ImageStore::open(t.path().join("images")).expect("reopen");
    let left: Vec<_> = fs::read_dir(s.root().join("tmp"))
        .expect("tmp")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(left, vec![live], "only a live process's work stays");
    assert!(matches!(
        s.get(&broken.id),
        Err(ImageStoreError::NotFound(_))
    ));
    assert_eq!(
        s.refs().expect("refs").keys().collect::<Vec<_>>(),
        vec!["ok:latest"]
    );
    assert_eq!(
        s.list()
            .expect("list")
            .iter()
            .map(|r| &r.id)
            .collect::<Vec<_>>(),
        vec![&ok.id]
    );
}

#[test]
fn list_is_newest_first() {
    let (_t, s) = store();
    let l1 = layer(&s, &[("one", "1")]);
    let l2 = layer(&s, &[("two", "2")]);
    let first = s
        .commit_image(
            vec![l1],
            RunConfig::default(),
            ImageSource::Build,
            None,
            &[],
        )
        .expect("first");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let second = s
        .commit_image(
            vec![l2],
            RunConfig::default(),
            ImageSource::Build,
            None,
            &[],
        )
        .expect("second");
    let ids: Vec<_> = s.list().expect("list").into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![second.id, first.id]);
}

fn fake_builtin(dir: &Path, recipe: &str) {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    fs::create_dir_all(rootfs.join("usr/bin")).expect("mkdir");
    fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    fs::write(rootfs.join("bin/sh"), b"#!shell").expect("write");
    fs::set_permissions(rootfs.join("bin/sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(rootfs.join("usr/bin/passwd"), b"setuid").expect("write");
    fs::set_permissions(
        rootfs.join("usr/bin/passwd"),
        fs::Permissions::from_mode(0o4755),
    )
    .expect("chmod");
    fs::write(rootfs.join("etc/shadow"), b"root:*:").expect("write");
    fs::set_permissions(rootfs.join("etc/shadow"), fs::Permissions::from_mode(0o000))
        .expect("chmod");
    std::os::unix::fs::symlink("usr/bin", rootfs.join("sbin")).expect("symlink");
    // Fixed mtimes: two builds of the same recipe give the same tree.
    let t = nix::sys::time::TimeSpec::new(1_700_000_000, 0);
    for p in [
        "sbin",
        "etc/shadow",
        "etc",
        "usr/bin/passwd",
        "usr/bin",
        "usr",
        "bin/sh",
        "bin",
    ] {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &rootfs.join(p),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .expect("utimensat");
    }
    let manifest = serde_json::json!({
        "name": "alcove/debian",
        "aliases": ["default", "debian"],
        "env": {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        "services": [{"name": "sshd", "command": ["/usr/sbin/sshd", "-D"]}],
        "recipe_sha256": recipe,
    });
    fs::write(dir.join("manifest.json"), manifest.to_string()).expect("manifest");
}

#[test]
fn adopts_a_builtin_rootfs_once_and_leaves_a_symlink() {
    let (t, s) = store();
    let dir = t.path().join("debian");
    fake_builtin(&dir, "r1");
    let shell_ino = fs::metadata(dir.join("rootfs/bin/sh")).expect("sh").ino();

    let rec = s.adopt_builtin(&dir).expect("adopt").expect("a new image");
    assert_eq!(
        rec.names,
        names(&["alcove/debian:latest", "debian:latest", "default:latest"])
    );
    assert_eq!(
        rec.config.env,
        names(&["LANG=C.UTF-8", "PATH=/usr/bin:/bin"])
    );
    assert_eq!(rec.config.services[0].name, "sshd");
    assert_eq!(
        rec.source,
        ImageSource::Builtin {
            recipe_sha256: "r1".into()
        }
    );
    let l = &rec.layers[0];
    assert_eq!((l.blob.as_ref(), l.size), (None, 0));
    assert_eq!(l.unpacked_size, 7 + 6 + 7);
    let fs_dir = s.layer_dir(&l.diff_id);
    // Renamed, not copied: the same inode, modes kept.
    assert_eq!(
        fs::metadata(fs_dir.join("bin/sh")).expect("sh").ino(),
        shell_ino
    );
    assert_eq!(
        fs::metadata(fs_dir.join("usr/bin/passwd"))
            .expect("passwd")
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
    let link = dir.join("rootfs");
    assert!(
        fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_link(&link).expect("link"), fs_dir);
    assert!(
        link.join("bin/sh").is_file(),
        "setup's check still sees the tree"
    );
    assert_eq!(s.resolve("default").expect("default").id, rec.id);

    // Again: nothing to do, names made sure of.
    s.remove("debian", true).expect("untag");
    assert!(s.adopt_builtin(&dir).expect("adopt again").is_none());
    assert_eq!(s.resolve("debian").expect("debian").id, rec.id);

    // The diff id is the one packing and hashing the tree gives.
    let (h, _) = crate::pack::pack_dir(
        &fs_dir,
        crate::pack::HashingWriter::new(std::io::sink()),
        &UnpackLimits::default(),
    )
    .expect("pack");
    assert_eq!(h.finish().1, l.diff_id);

    // A symlink in place but no record of the recipe: corrupt state.
    let mut m: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).expect("read")).expect("json");
    m["recipe_sha256"] = "r2".into();
    fs::write(dir.join("manifest.json"), m.to_string()).expect("write");
    let r = s.adopt_builtin(&dir);
    assert!(
        matches!(&r, Err(ImageStoreError::BadImage { what, .. }) if what.contains("rootfs")),
        "{r:?}"
    );

    // A rebuilt identical tree under a new recipe reuses the layer and gets
    // its own image.
    let dir2 = t.path().join("debian2");
    fake_builtin(&dir2, "r3");
    let rec2 = s.adopt_builtin(&dir2).expect("adopt").expect("new image");
    assert_ne!(rec2.id, rec.id);
    assert_eq!(rec2.layers[0].diff_id, l.diff_id);
    assert_eq!(
        fs::metadata(fs_dir.join("bin/sh")).expect("sh").ino(),
        shell_ino,
        "the stored layer is kept"
    );
    assert_eq!(fs::read_link(dir2.join("rootfs")).expect("link"), fs_dir);
    assert_eq!(s.resolve("alcove/debian").expect("resolve").id, rec2.id);
    assert!(
        fs::read_dir(s.root().join("tmp"))
            .expect("tmp")
            .next()
            .is_none()
    );
}

#[test]
fn a_builtin_images_names_move_only_to_another_builtin() {
    let (t, s) = store();
    let dir = t.path().join("debian");
    fake_builtin(&dir, "r1");
    let builtin = s.adopt_builtin(&dir).expect("adopt").expect("a new image");
    let mine = s
        .commit_image(
            vec![layer(&s, &[("f", "mine")])],
            RunConfig::default(),
            ImageSource::Snapshot {
                snapshot_id: "s".into(),
            },
            None,
            &names(&["mine"]),
        )
        .expect("commit");

    // Each built-in name, as written or in full, refused to a commit and to a tag, and
    // nothing written: the names stay where they were, the refused image gets none.
    for taken in ["default", "debian:latest", "alcove/debian"] {
        let refused = s.commit_image(
            vec![layer(&s, &[("f", "other")])],
            RunConfig::default(),
            ImageSource::Build,
            None,
            &names(&["fresh", taken]),
        );
        assert!(
            matches!(&refused, Err(ImageStoreError::BadReference { reason, .. }) if reason.contains("built-in")),
            "{taken}: {refused:?}"
        );
        assert!(
            matches!(
                s.tag(&mine.id, taken),
                Err(ImageStoreError::BadReference { .. })
            ),
            "{taken}"
        );
        assert!(
            s.check_name_assignable(taken, &ImageSource::Import)
                .is_err()
        );
        assert_eq!(s.resolve(taken).expect("kept").id, builtin.id, "{taken}");
    }
    assert!(matches!(
        s.resolve("fresh"),
        Err(ImageStoreError::NotFound(_))
    ));

    // Other names are free or move as before; the built-in image itself may take its names
    // again, and a new recipe takes them over.
    s.tag(&mine.id, "debian:12")
        .expect("another tag of the same repository");
    s.check_name_assignable("mine", &ImageSource::Import)
        .expect("a name held by an image that is not built in");
    s.tag(&builtin.id, "default").expect("its own name");
    let dir2 = t.path().join("debian2");
    fake_builtin(&dir2, "r2");
    let rebuilt = s.adopt_builtin(&dir2).expect("adopt").expect("new image");
    assert_eq!(s.resolve("default").expect("default").id, rebuilt.id);
}

#[test]
fn only_usable_env_entries_become_variables() {
    let config = RunConfig {
        env: vec![
            "PATH=/bin".into(),
            "EMPTY=".into(),
            "A=b=c".into(),
            "1BAD=x".into(),
            "NO_EQUALS".into(),
            "NUL=a\0b".into(),
        ],
        ..RunConfig::default()
    };
    let vars: Vec<_> = config.env_vars().collect();
    assert_eq!(vars, [("PATH", "/bin"), ("EMPTY", ""), ("A", "b=c")]);
}
