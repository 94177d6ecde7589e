use super::*;

fn local(dir: &std::path::Path) -> BlobStore {
    let url = format!("file://{}", dir.display());
    BlobStore::open(&url, &S3Settings::default()).expect("open")
}

#[tokio::test]
async fn round_trip_small_and_multipart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = local(&dir.path().join("blobs"));
    store.check().await.expect("check");
    for size in [0usize, 10, (16 << 20) + 12345] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let key = format!("snapshots/s{size}/disk.tar.zst");
        let digest = store
            .upload(&key, &mut std::io::Cursor::new(data.clone()))
            .await
            .expect("upload");
        assert_eq!(digest.size, size as u64);
        let dest = dir.path().join(format!("out{size}.tar.zst"));
        store
            .download_file(&key, &dest, &digest)
            .await
            .expect("download");
        assert_eq!(std::fs::read(&dest).expect("read"), data);
    }
}

#[tokio::test]
async fn corrupt_object_is_refused_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("blobs");
    let store = local(&root);
    let key = "sandboxes/a/checkpoint.tar.zst";
    let digest = store
        .upload(key, &mut std::io::Cursor::new(b"the dump".to_vec()))
        .await
        .expect("upload");
    std::fs::write(root.join(key), b"the dumq").expect("corrupt");
    let dest = dir.path().join("got.tar.zst");
    let err = store
        .download_file(key, &dest, &digest)
        .await
        .expect_err("corrupt");
    assert!(matches!(err, BlobError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&digest.sha256), "{err}");
    assert!(!dest.exists());
    assert!(!dir.path().join("got.tar.zst.partial").exists());
    assert!(root.join(key).exists(), "the object stays for a retry");
    // Put right again, the same download succeeds.
    std::fs::write(root.join(key), b"the dump").expect("repair");
    store
        .download_file(key, &dest, &digest)
        .await
        .expect("retry");
}

#[tokio::test]
async fn missing_object_and_bad_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = local(&dir.path().join("blobs"));
    let digest = BlobDigest {
        sha256: "0".repeat(64),
        size: 0,
    };
    let err = store
        .download_file("snapshots/x/disk.tar.zst", &dir.path().join("o"), &digest)
        .await
        .expect_err("missing");
    assert!(matches!(err, BlobError::NotFound(_)), "{err}");
    for key in [
        "",
        "../etc/passwd",
        "a//b",
        "a/./b",
        "/abs",
        "a/b c",
        "a/\u{e9}",
    ] {
        let err = store
            .upload(key, &mut std::io::Cursor::new(Vec::new()))
            .await
            .expect_err(key);
        assert!(matches!(err, BlobError::BadKey(_)), "{key}: {err}");
    }
}

#[tokio::test]
async fn delete_prefix_removes_only_its_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("blobs");
    let store = local(&root);
    for key in ["snapshots/a/x", "snapshots/a/y", "snapshots/ab/x"] {
        store
            .upload(key, &mut std::io::Cursor::new(b"1".to_vec()))
            .await
            .expect("upload");
    }
    store.delete_prefix("snapshots/a").await.expect("delete");
    assert!(!root.join("snapshots/a/x").exists());
    assert!(!root.join("snapshots/a/y").exists());
    assert!(root.join("snapshots/ab/x").exists());
    store.delete("snapshots/ab/x").await.expect("delete");
    store
        .delete("snapshots/ab/x")
        .await
        .expect("deleting twice is fine");
}

#[test]
fn locations_parse_and_refuse() {
    assert_eq!(
        BlobLocation::parse("s3://alcove-blobs/prod/eu").expect("s3"),
        BlobLocation::S3 {
            bucket: "alcove-blobs".into(),
            prefix: "prod/eu".into()
        }
    );
    assert_eq!(
        BlobLocation::parse("s3://bkt").expect("s3").to_string(),
        "s3://bkt"
    );
    for bad in [
        "s3://",
        "s3://UPPER",
        "s3://ab",
        "s3://bkt/../x",
        "file://relative",
        "gs://bucket",
        "/plain/path",
    ] {
        assert!(BlobLocation::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn s3_needs_credentials_and_hides_the_secret() {
    let err = BlobStore::open("s3://bkt", &S3Settings::default()).expect_err("no creds");
    assert!(err.to_string().contains("access key"), "{err}");
    let settings = S3Settings {
        endpoint: Some("http://127.0.0.1:1".into()),
        region: None,
        access_key_id: Some("id".into()),
        secret_access_key: Some("hunter2-secret".into()),
    };
    assert!(!format!("{settings:?}").contains("hunter2"));
    let store = BlobStore::open("s3://bkt/p", &settings).expect("open");
    assert!(!format!("{store:?}").contains("hunter2"));
    let bad = S3Settings {
        endpoint: Some("127.0.0.1:9000".into()),
        ..settings
    };
    assert!(BlobStore::open("s3://bkt", &bad).is_err());
}

/// The s3s-fs binary `scripts/setup.sh tools` caches, if it is there.
fn s3s_fs() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("ALCOVE_TEST_S3S_FS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/alcove/s3s-fs-0.14.1/bin/s3s-fs".into());
    path.is_file().then_some(path)
}

/// A real S3 server (s3s-fs) on a free loopback port, killed on drop.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
    _root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_s3(bin: &std::path::Path) -> S3Server {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("alcove")).expect("bucket");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = std::process::Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "AKTEST", "--secret-key", "SECRETTEST"])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        _root: root,
    }
}

/// Against a real S3 server: multipart upload, checked download, prefix
/// delete, and wrong credentials told apart from other failures.
#[tokio::test]
async fn s3_round_trip_against_a_real_server() {
    let Some(bin) = s3s_fs() else {
        eprintln!("skipped: no s3s-fs (scripts/setup.sh tools installs it)");
        return;
    };
    let server = start_s3(&bin).await;
    let settings = S3Settings {
        endpoint: Some(server.endpoint.clone()),
        region: None,
        access_key_id: Some("AKTEST".into()),
        secret_access_key: Some("SECRETTEST".into()),
    };
    let store = BlobStore::open("s3://alcove/unit", &settings).expect("open");
    store.check().await.expect("check");
    let data: Vec<u8> = (0..(40usize << 20)).map(|i| (i % 253) as u8).collect();
    let digest = store
        .upload("t/big", &mut std::io::Cursor::new(data.clone()))
        .await
        .expect("upload");
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("big");
    store
        .download_file("t/big", &dest, &digest)
        .await
        .expect("download");
    assert_eq!(std::fs::read(&dest).expect("read"), data);
    // The object on the server's disk, changed by one byte: refused.
    let on_disk = server._root.path().join("alcove/unit/t/big");
    let mut bytes = std::fs::read(&on_disk).expect("object file");
    bytes[12345] ^= 1;
    std::fs::write(&on_disk, &bytes).expect("corrupt");
    let err = store
        .download_file("t/big", &dir.path().join("again"), &digest)
        .await
        .expect_err("corrupt");
    assert!(matches!(err, BlobError::Corrupt { .. }), "{err}");
    store.delete_prefix("t").await.expect("delete");
    assert!(!on_disk.exists());
    let wrong = S3Settings {
        secret_access_key: Some("not-the-secret".into()),
        ..settings.clone()
    };
    let err = BlobStore::open("s3://alcove/unit", &wrong)
        .expect("open")
        .check()
        .await
        .expect_err("wrong secret");
    assert!(matches!(err, BlobError::Credentials(_)), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
}
