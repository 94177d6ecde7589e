//! File routes (docs/protocol/sandbox-api.md, Files) against the real router and the real
//! filesystem.

mod common;

use bytes::Bytes;
use common::Agent;
use futures::StreamExt;
use serde_json::Value;

async fn put(agent: &Agent, path: &str, body: impl Into<reqwest::Body>) -> u16 {
    put_error(agent, path, body).await.0
}

async fn get(agent: &Agent, route: &str, path: &str) -> reqwest::Response {
    agent
        .http
        .get(agent.url(route))
        .query(&[("path", path)])
        .send()
        .await
        .expect("GET")
}

#[tokio::test]
async fn round_trip_with_spaces_and_non_ascii() {
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("new dir/ünï cødé 文件.txt");
    let path = path.to_str().expect("utf-8");
    let content = "hello wörld\n\0binary\u{ff}".as_bytes().to_vec();

    // reqwest form-encodes the query, so the spaces travel as '+', as the SDKs send them.
    let url = agent
        .http
        .put(agent.url("/files"))
        .query(&[("path", path)])
        .build()
        .expect("request");
    assert!(url.url().query().is_some_and(|q| q.contains('+')));

    assert_eq!(put(&agent, path, content.clone()).await, 204);
    let resp = get(&agent, "/files", path).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/octet-stream")
    );
    assert_eq!(resp.bytes().await.expect("body").to_vec(), content);

    // Overwrite with shorter content truncates.
    assert_eq!(put(&agent, path, "short").await, 204);
    let resp = get(&agent, "/files", path).await;
    assert_eq!(resp.text().await.expect("body"), "short");

    let parent = dir.path().join("new dir");
    let resp = get(&agent, "/files/list", parent.to_str().expect("utf-8")).await;
    let listing: Value = resp.json().await.expect("json");
    assert_eq!(listing["entries"][0]["name"], "ünï cødé 文件.txt");
    assert_eq!(listing["entries"][0]["size"], 5);

    let resp = agent
        .http
        .delete(agent.url("/files"))
        .query(&[("path", path)])
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(get(&agent, "/files", path).await.status().as_u16(), 404);
}

#[tokio::test]
async fn errors_carry_indexify_codes() {
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_path = dir.path().to_str().expect("utf-8");
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "x").expect("write");
    let file_path = file.to_str().expect("utf-8");
    let missing = dir.path().join("missing");

    let cases = [
        ("/files", missing.to_str().expect("utf-8"), 404, "NOT_FOUND"),
        ("/files", dir_path, 400, "IS_DIRECTORY"),
        ("/files", "relative/path", 400, "INVALID_ARGUMENT"),
        ("/files", "/tmp/../etc/passwd", 403, "PATH_TRAVERSAL"),
        // A kernel file that serves no bytes to a plain read: an error, not a cut-off body.
        ("/files", "/proc/self/mem", 400, "INVALID_ARGUMENT"),
        ("/files/list", file_path, 400, "NOT_A_DIRECTORY"),
        (
            "/files/list",
            missing.to_str().expect("utf-8"),
            404,
            "NOT_FOUND",
        ),
    ];
    for (route, path, status, code) in cases {
        let resp = get(&agent, route, path).await;
        assert_eq!(resp.status().as_u16(), status, "{route} {path}");
        let body: Value = resp.json().await.expect("json error");
        assert_eq!(body["code"], code, "{route} {path}");
        assert!(body["error"].is_string());
    }

    let resp = agent
        .http
        .delete(agent.url("/files"))
        .query(&[("path", missing.to_str().expect("utf-8"))])
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(put(&agent, dir_path, "x").await, 400);
    let resp = agent
        .http
        .get(agent.url("/files"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400, "missing path parameter");
}

#[tokio::test]
async fn listing_puts_directories_first_then_sorts_by_name() {
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["b_dir", "a_dir"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
    }
    std::fs::write(dir.path().join("c.txt"), "ccc").expect("write");
    std::fs::write(dir.path().join("a.txt"), "a").expect("write");

    let dir_path = dir.path().to_str().expect("utf-8");
    let resp = get(&agent, "/files/list", dir_path).await;
    assert_eq!(resp.status().as_u16(), 200);
    let listing: Value = resp.json().await.expect("json");
    assert_eq!(listing["path"], dir_path);
    let entries = listing["entries"].as_array().expect("entries");
    let names: Vec<_> = entries.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["a_dir", "b_dir", "a.txt", "c.txt"]);
    assert_eq!(entries[0]["is_dir"], true);
    assert_eq!(entries[0]["size"], Value::Null);
    assert_eq!(entries[3]["is_dir"], false);
    assert_eq!(entries[3]["size"], 3);
    assert!(entries.iter().all(|e| e["modified_at"].as_i64().is_some()));
}

#[tokio::test]
async fn listing_follows_links_and_describes_a_dangling_one_by_itself() {
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("real_dir")).expect("mkdir");
    std::fs::write(dir.path().join("real.txt"), "12345").expect("write");
    std::os::unix::fs::symlink(dir.path().join("real_dir"), dir.path().join("to_dir"))
        .expect("link");
    std::os::unix::fs::symlink(dir.path().join("real.txt"), dir.path().join("to_file"))
        .expect("link");
    std::os::unix::fs::symlink("/nowhere/at/all", dir.path().join("dangling")).expect("link");

    let resp = get(&agent, "/files/list", dir.path().to_str().expect("utf-8")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let listing: Value = resp.json().await.expect("json");
    let entry = |name: &str| {
        listing["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed"))
    };
    assert_eq!(entry("to_dir")["is_dir"], true);
    assert_eq!(
        (
            entry("to_file")["is_dir"].clone(),
            entry("to_file")["size"].clone()
        ),
        (Value::Bool(false), 5.into())
    );
    // The link itself: its size is its target's length.
    let dangling = entry("dangling");
    assert_eq!(dangling["is_dir"], false);
    assert_eq!(dangling["size"], "/nowhere/at/all".len());
}

/// 256 MiB through both directions, generated and checked chunk by chunk on the client side
/// (the agent streams; nothing holds the whole file).
#[tokio::test]
async fn large_files_stream_both_ways() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 256;
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.bin");
    let path = path.to_str().expect("utf-8");
    let chunk = |i: usize| Bytes::from(vec![(i % 251) as u8; CHUNK]);
    let upload = futures::stream::iter((0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(chunk(i))));
    assert_eq!(
        put(&agent, path, reqwest::Body::wrap_stream(upload)).await,
        204
    );
    assert_eq!(
        std::fs::metadata(path).expect("stat").len(),
        (CHUNK * CHUNKS) as u64
    );

    let resp = get(&agent, "/files", path).await;
    assert_eq!(resp.content_length(), Some((CHUNK * CHUNKS) as u64));
    let mut offset = 0usize;
    let mut body = resp.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.expect("chunk");
        for (k, byte) in piece.iter().enumerate() {
            let expected = (((offset + k) / CHUNK) % 251) as u8;
            assert_eq!(*byte, expected, "byte {} differs", offset + k);
        }
        offset += piece.len();
    }
    assert_eq!(offset, CHUNK * CHUNKS);
}

async fn put_error(agent: &Agent, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = agent
        .http
        .put(agent.url("/files"))
        .query(&[("path", path)])
        .body(body)
        .send()
        .await
        .expect("PUT");
    let status = resp.status().as_u16();
    let body = if status == 204 {
        Value::Null
    } else {
        resp.json().await.expect("JSON error body")
    };
    (status, body)
}

/// A tmpfs mounted with `options` on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts with the system call itself: a `mount` child process would race
    /// the agent's reaper (in this same test process) for its exit status.
    fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let (flags, data): (Vec<&str>, Vec<&str>) = options.split(',').partition(|o| *o == "ro");
        let flags = if flags.is_empty() {
            nix::mount::MsFlags::empty()
        } else {
            nix::mount::MsFlags::MS_RDONLY
        };
        nix::mount::mount(
            Some("alcove-test"),
            dir.path(),
            Some("tmpfs"),
            flags,
            Some(data.join(",").as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -o {options}: {e}"));
        Tmpfs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("utf-8")
            .to_string()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn file_system_refusals_are_client_errors() {
    let agent = Agent::start().await;
    // A kernel file that takes no writes (the write fails with EIO), and a sysfs
    // directory where nothing may be created: 403, never 500.
    for path in ["/proc/version", "/sys/kernel/alcove-test-file"] {
        let (status, body) = put_error(&agent, path, "x").await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["code"], "PERMISSION_DENIED", "{path}");
        assert!(body["error"].as_str().is_some_and(|m| m.contains(path)));
    }
    // A component of the path is a file.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "x").expect("write");
    let below = file.join("inner");
    let resp = get(&agent, "/files", below.to_str().expect("utf-8")).await;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "NOT_A_DIRECTORY");
    // A device takes the write, and has nothing to sync.
    assert_eq!(put(&agent, "/dev/null", "gone").await, 204);
}

#[tokio::test]
#[ignore = "needs root (mounts tmpfs)"]
async fn read_only_and_full_file_systems_are_client_errors() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let agent = Agent::start().await;
    let read_only = Tmpfs::mount("ro,size=1m");
    let (status, body) = put_error(&agent, &read_only.path("a.txt"), "x").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "PERMISSION_DENIED");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("read-only"))
    );

    let tiny = Tmpfs::mount("size=64k");
    let (status, body) = put_error(&agent, &tiny.path("big.bin"), vec![7u8; 1 << 20]).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "NO_SPACE");
    // The partial file is gone, so the space is free again.
    assert!(!std::path::Path::new(&tiny.path("big.bin")).exists());
    assert_eq!(put(&agent, &tiny.path("small.txt"), "fits").await, 204);
    // Replacing a file with more than fits keeps the old content, and leaves nothing.
    let (status, body) = put_error(&agent, &tiny.path("small.txt"), vec![7u8; 1 << 20]).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(
        std::fs::read(tiny.path("small.txt")).expect("kept"),
        b"fits"
    );
    let names: Vec<_> = std::fs::read_dir(tiny.dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("small.txt")]);
}

#[tokio::test]
#[ignore = "needs root (mounts tmpfs)"]
async fn a_file_that_fits_only_in_place_is_still_written_when_its_length_is_known() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let agent = Agent::start().await;
    let disk = Tmpfs::mount("size=8m");
    let path = disk.path("data.bin");
    std::fs::write(&path, vec![1u8; 5 << 20]).expect("old content");
    // Streamed without a length: no room for a second copy, so the old file stays.
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter([Ok::<_, std::io::Error>(
        Bytes::from(vec![2u8; 5 << 20]),
    )]));
    let (status, body) = put_error(&agent, &path, chunked).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "NO_SPACE");
    let message = body["error"].as_str().expect("message");
    assert!(message.contains("the old file is unchanged"), "{message}");
    assert_eq!(std::fs::read(&path).expect("kept"), vec![1u8; 5 << 20]);
    // With its length said, it is written in place, as it fits once the old one is gone.
    assert_eq!(put(&agent, &path, vec![3u8; 5 << 20]).await, 204);
    assert_eq!(std::fs::read(&path).expect("new"), vec![3u8; 5 << 20]);
    let names: Vec<_> = std::fs::read_dir(disk.dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("data.bin")]);
}
