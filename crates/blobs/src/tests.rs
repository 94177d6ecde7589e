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
        store.download_file(&key, &dest, &digest).await.expect("download");
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
    store.download_file(key, &dest, &digest).await.expect("retry");
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
    for key in ["", "../etc/passwd", "a//b", "a/./b", "/abs", "a/b c", "a/\u{e9}"] {
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
    store.delete("snapshots/ab/x").await.expect("deleting twice is fine");
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

/// Against a real S3 server when `ALCOVE_TEST_S3_ENDPOINT` names one (with
/// bucket `alcove`, key `AKTEST`, secret `SECRETTEST`).
#[tokio::test]
async fn s3_round_trip_when_a_server_is_given() {
    let Ok(endpoint) = std::env::var("ALCOVE_TEST_S3_ENDPOINT") else {
        return;
    };
    let settings = S3Settings {
        endpoint: Some(endpoint),
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
    store.download_file("t/big", &dest, &digest).await.expect("download");
    assert_eq!(std::fs::read(&dest).expect("read"), data);
    store.delete_prefix("t").await.expect("delete");
    let wrong = S3Settings {
        secret_access_key: Some("wrong".into()),
        ..settings
    };
    let err = BlobStore::open("s3://alcove/unit", &wrong)
        .expect("open")
        .check()
        .await
        .expect_err("wrong secret");
    assert!(matches!(err, BlobError::Credentials(_)), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");
}
