//! Import tests on archives built here, against the real store.

use std::io::Write as _;
use std::os::unix::fs::FileTypeExt as _;

use serde_json::json;

use super::*;

/// A tar stream of regular files.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, *data)
            .expect("append");
    }
    builder.into_inner().expect("finish")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// Two layers: the first has `a.txt` and `etc/hello.txt`, the second
/// whites out `a.txt` and adds `b.txt`.
fn two_layers() -> (Vec<u8>, Vec<u8>) {
    (
        tar_of(&[("a.txt", b"a"), ("etc/hello.txt", b"hello\n")]),
        tar_of(&[(".wh.a.txt", b""), ("b.txt", b"b")]),
    )
}

fn config_of(diff_ids: &[&Digest]) -> Vec<u8> {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    })
    .to_string()
    .into_bytes()
}

fn blob_entry(bytes: &[u8]) -> (String, Vec<u8>) {
    (
        format!("blobs/sha256/{}", Digest::of(bytes).hex()),
        bytes.to_vec(),
    )
}

/// An OCI layout of the two layers (gzip-compressed), named `ref_name`
/// when given; `corrupt` changes the second layer's bytes after its digest
/// was taken.
fn oci_layout(ref_name: Option<&str>, corrupt: bool) -> (Vec<u8>, Digest, [Digest; 2]) {
    let (l1, l2) = two_layers();
    let (d1, d2) = (Digest::of(&l1), Digest::of(&l2));
    let (g1, g2) = (gzip(&l1), gzip(&l2));
    let config = config_of(&[&d1, &d2]);
    let layer = |g: &[u8]| {
        json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
               "digest": Digest::of(g).to_string(), "size": g.len()})
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [layer(&g1), layer(&g2)],
    })
    .to_string()
    .into_bytes();
    let mut entry = json!({"mediaType": oci::OCI_MANIFEST,
                           "digest": Digest::of(&manifest).to_string(), "size": manifest.len()});
    if let Some(name) = ref_name {
        entry["annotations"] = json!({ REF_NAME: name });
    }
    let index = json!({"schemaVersion": 2, "manifests": [entry]}).to_string();
    let mut blobs = vec![
        blob_entry(&g1),
        blob_entry(&g2),
        blob_entry(&config),
        blob_entry(&manifest),
    ];
    if corrupt {
        let last = blobs[1].1.len() - 1;
        blobs[1].1[last] ^= 0xff;
    }
    let mut files: Vec<(&str, &[u8])> = vec![
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", index.as_bytes()),
    ];
    for (name, data) in &blobs {
        files.push((name, data));
    }
    (tar_of(&files), Digest::of(&manifest), [d1, d2])
}

fn open_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path().join("images")).expect("open store");
    (dir, store)
}

fn assert_two_layers_unpacked(store: &ImageStore, record: &ImageRecord, diff: &[Digest; 2]) {
    let ids: Vec<&Digest> = record.layers.iter().map(|l| &l.diff_id).collect();
    assert_eq!(ids, vec![&diff[0], &diff[1]]);
    let lower = store.layer_dir(&diff[0]);
    assert_eq!(
        std::fs::read(lower.join("etc/hello.txt")).expect("hello"),
        b"hello\n"
    );
    assert_eq!(std::fs::read(lower.join("a.txt")).expect("a"), b"a");
    let upper = store.layer_dir(&diff[1]);
    assert_eq!(std::fs::read(upper.join("b.txt")).expect("b"), b"b");
    let whiteout = std::fs::symlink_metadata(upper.join("a.txt")).expect("whiteout");
    assert!(
        whiteout.file_type().is_char_device(),
        "a.txt in the upper layer is a whiteout device"
    );
}

#[test]
fn imports_an_oci_layout_and_reimport_dedupes() {
    let (_dir, store) = open_store();
    let (archive, manifest_digest, diff) = oci_layout(Some("example/hello:1.0"), false);
    let record =
        import_archive(&store, archive.as_slice(), &[], &ImportLimits::default()).expect("import");
    assert_eq!(record.source, ImageSource::Import);
    assert_eq!(record.manifest_digest.as_ref(), Some(&manifest_digest));
    assert_two_layers_unpacked(&store, &record, &diff);
    assert_eq!(
        store.resolve("example/hello:1.0").expect("named").id,
        record.id
    );
    assert_eq!(record.config.cmd, vec!["/bin/sh".to_string()]);

    // The same archive again, gzip-compressed and under another name: one
    // image, one set of layers.
    let again = import_archive(
        &store,
        gzip(&archive).as_slice(),
        &["example/other".to_string()],
        &ImportLimits::default(),
    )
    .expect("re-import");
    assert_eq!(again.id, record.id);
    assert_eq!(store.list().expect("list").len(), 1);
    assert_eq!(
        store.resolve("example/other:latest").expect("named").id,
        record.id
    );
    let layer_dirs = std::fs::read_dir(store.root().join("layers/sha256"))
        .expect("layers")
        .count();
    assert_eq!(layer_dirs, 2);
}

#[test]
fn an_unnamed_archive_stores_an_unnamed_image() {
    let (_dir, store) = open_store();
    // A bare ref.name is a tag with no repository: it names nothing.
    let (archive, _, _) = oci_layout(Some("latest"), false);
    let record =
        import_archive(&store, archive.as_slice(), &[], &ImportLimits::default()).expect("import");
    assert!(store.refs().expect("refs").is_empty());
    assert_eq!(store.get(&record.id).expect("by id").id, record.id);
}

#[test]
fn imports_a_docker_save_archive() {
    let (_dir, store) = open_store();
    let (l1, l2) = two_layers();
    let (d1, d2) = (Digest::of(&l1), Digest::of(&l2));
    let config = config_of(&[&d1, &d2]);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": ["example/docker:latest"],
        "Layers": ["1111/layer.tar", "2222/layer.tar"],
    }])
    .to_string();
    let archive = tar_of(&[
        ("1111/VERSION", b"1.0"),
        ("1111/json", b"{}"),
        ("1111/layer.tar", &l1),
        ("2222/layer.tar", &l2),
        (&config_name, &config),
        ("manifest.json", manifest.as_bytes()),
        ("repositories", b"{}"),
    ]);
    let record =
        import_archive(&store, archive.as_slice(), &[], &ImportLimits::default()).expect("import");
    assert_eq!(record.manifest_digest, None);
    assert_eq!(record.id, Digest::of(&config));
    assert_two_layers_unpacked(&store, &record, &[d1, d2]);
    assert_eq!(
        store.resolve("example/docker:latest").expect("named").id,
        record.id
    );
    let again =
        import_archive(&store, archive.as_slice(), &[], &ImportLimits::default()).expect("again");
    assert_eq!(again.id, record.id);
    assert_eq!(store.list().expect("list").len(), 1);
}

#[test]
fn a_bad_blob_digest_fails_and_commits_nothing() {
    let (_dir, store) = open_store();
    let (archive, _, _) = oci_layout(Some("example/bad:1"), true);
    let err = import_archive(&store, archive.as_slice(), &[], &ImportLimits::default())
        .expect_err("corrupt blob");
    assert!(
        matches!(err, ImageStoreError::DigestMismatch { .. }),
        "{err}"
    );
    assert!(store.list().expect("list").is_empty());
    assert!(store.refs().expect("refs").is_empty());
}

#[test]
fn mismatched_diff_ids_and_missing_blobs_commit_nothing() {
    let (_dir, store) = open_store();
    let (l1, l2) = two_layers();
    // The config claims the layers the other way round.
    let config = config_of(&[&Digest::of(&l2), &Digest::of(&l1)]);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest = json!([{"Config": config_name, "RepoTags": ["example/x:1"],
                           "Layers": ["a/layer.tar", "b/layer.tar"]}])
    .to_string();
    let archive = tar_of(&[
        ("a/layer.tar", &l1),
        ("b/layer.tar", &l2),
        (&config_name, &config),
        ("manifest.json", manifest.as_bytes()),
    ]);
    assert!(import_archive(&store, archive.as_slice(), &[], &ImportLimits::default()).is_err());
    assert!(store.list().expect("list").is_empty());

    let missing =
        json!([{"Config": config_name, "Layers": ["a/layer.tar", "c/layer.tar"]}]).to_string();
    let archive = tar_of(&[
        ("a/layer.tar", &l1),
        (&config_name, &config),
        ("manifest.json", missing.as_bytes()),
    ]);
    let err = import_archive(&store, archive.as_slice(), &[], &ImportLimits::default())
        .expect_err("missing layer");
    assert!(err.to_string().contains("c/layer.tar"), "{err}");
    assert!(store.list().expect("list").is_empty());
}

#[test]
fn entries_escaping_the_archive_are_refused() {
    let (_dir, store) = open_store();
    // tar::Builder refuses to write such a name, so the header is made by
    // hand.
    let mut header = tar::Header::new_old();
    let name = b"../escape.json";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(2);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &b"{}"[..]).expect("append");
    let archive = builder.into_inner().expect("finish");
    let err = import_archive(&store, archive.as_slice(), &[], &ImportLimits::default())
        .expect_err("escaping entry");
    assert!(err.to_string().contains(".."), "{err}");
    assert!(store.list().expect("list").is_empty());

    // A link is refused too.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder
        .append_link(&mut header, "index.json", "/etc/passwd")
        .expect("link");
    let archive = builder.into_inner().expect("finish");
    assert!(import_archive(&store, archive.as_slice(), &[], &ImportLimits::default()).is_err());
}
