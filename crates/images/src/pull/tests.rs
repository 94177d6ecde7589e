//! Pulls from a real registry on loopback (Debian's `docker-registry`),
//! pushed to with `skopeo` from an image `umoci` makes of a static busybox.
//! Ignored by default: they need `apt-get install docker-registry skopeo
//! umoci busybox-static apache2-utils`. Run with
//! `cargo test -p alcove-images -- --ignored pull::`.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alcove_wire::image::ImageProgressEvent;

use super::*;

const USER: &str = "alcove";
const PASSWORD: &str = "s3cret-pw";

/// A registry process on a free loopback port, ended when dropped.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .expect("run a tool (are the packages installed?)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Registry {
    fn start(with_auth: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if with_auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .expect("htpasswd");
            assert!(out.status.success());
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: alcove-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// An OCI layout with one image `base` of three layers: busybox at
/// /bin/busybox, /etc/hello.txt, then a whiteout of /etc/hello.txt. Each
/// layer is an unpack-change-repack round: this Debian umoci's `insert`
/// writes tar streams without their final padding, which the unpacker
/// rightly refuses (GNU tar does too).
fn make_image(dir: &Path) -> PathBuf {
    let layout = dir.join("oci");
    let image = format!("{}:base", layout.display());
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    let repack = || {
        run(Command::new("umoci")
            .args(["repack", "--refresh-bundle", "--image", &image])
            .arg(&bundle));
    };
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    repack();
    std::fs::write(rootfs.join("etc/hello.txt"), "hello\n").expect("write");
    repack();
    std::fs::remove_file(rootfs.join("etc/hello.txt")).expect("remove");
    repack();
    layout
}

fn push(layout: &Path, registry: &Registry, tag: &str, format: &str, creds: bool) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--dest-tls-verify=false", "--format", format]);
    if creds {
        cmd.arg(format!("--dest-creds={USER}:{PASSWORD}"));
    }
    cmd.arg(format!("oci:{}:base", layout.display()))
        .arg(format!("docker://{}/busybox:{tag}", registry.host()));
    run(&mut cmd);
}

async fn pull(
    puller: &Puller,
    reference: &str,
    credentials: Option<RegistryCredentials>,
) -> (Result<ImageRecord>, Vec<ImageProgressEvent>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let result = puller
        .pull(PullRequest {
            reference: reference.to_string(),
            name: Some("local/busybox:pulled".to_string()),
            credentials,
            progress: Some(tx),
        })
        .await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events)
}

fn statuses(events: &[ImageProgressEvent], digest: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            ImageProgressEvent::Layer(l) if l.digest == digest => Some(l.status.clone()),
            _ => None,
        })
        .collect()
}

fn check_image(store: &ImageStore, record: &ImageRecord) {
    assert_eq!(record.layers.len(), 3);
    let busybox = store
        .layer_dir(&record.layers[0].diff_id)
        .join("bin/busybox");
    assert!(busybox.is_file(), "{}", busybox.display());
    let hello = store
        .layer_dir(&record.layers[1].diff_id)
        .join("etc/hello.txt");
    assert_eq!(std::fs::read(hello).expect("hello"), b"hello\n");
    let whiteout = store
        .layer_dir(&record.layers[2].diff_id)
        .join("etc/hello.txt");
    assert!(
        std::fs::symlink_metadata(whiteout)
            .expect("whiteout")
            .file_type()
            .is_char_device()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs docker-registry, skopeo, umoci and busybox-static"]
async fn pulls_docker_and_oci_manifests_from_a_local_registry() {
    let registry = Registry::start(false);
    let work = tempfile::tempdir().expect("tempdir");
    let layout = make_image(work.path());
    push(&layout, &registry, "v2s2", "v2s2", false);
    push(&layout, &registry, "oci", "oci", false);

    let store = ImageStore::open(work.path().join("store")).expect("store");
    let puller = Puller::new(store.clone(), PullConfig::default());
    for tag in ["v2s2", "oci"] {
        let store_dir = work.path().join(format!("store-{tag}"));
        let store = ImageStore::open(&store_dir).expect("store");
        let puller = Puller::new(store.clone(), PullConfig::default());
        let reference = format!("{}/busybox:{tag}", registry.host());
        let (record, events) = pull(&puller, &reference, None).await;
        let record = record.expect("pull");
        check_image(&store, &record);
        let mut names = record.names.clone();
        names.sort();
        assert_eq!(
            names,
            vec![reference.clone(), "local/busybox:pulled".to_string()]
        );
        let Some(ImageProgressEvent::Resolved {
            manifest_digest,
            layers,
        }) = events.first()
        else {
            panic!("first event is not Resolved: {events:?}")
        };
        assert_eq!(
            Some(manifest_digest),
            record
                .manifest_digest
                .as_ref()
                .map(|d| d.to_string())
                .as_ref()
        );
        assert_eq!(layers.len(), 3);
        for layer in layers {
            let s = statuses(&events, &layer.digest);
            assert!(s.contains(&"verifying".to_string()), "{s:?}");
            assert_eq!(s.last().map(String::as_str), Some("done"), "{s:?}");
        }
        // Pulled again: every blob is there already.
        let (again, events) = pull(&puller, &reference, None).await;
        assert_eq!(again.expect("pull again").id, record.id);
        for layer in &record.layers {
            let digest = layer.blob.as_ref().expect("blob").to_string();
            let s = statuses(&events, &digest);
            assert_eq!(s.first().map(String::as_str), Some("exists"), "{s:?}");
        }
        // By digest, as `name@sha256:…`.
        let pinned = format!(
            "{}/busybox@{}",
            registry.host(),
            record.manifest_digest.as_ref().expect("digest")
        );
        let (by_digest, _) = pull(&puller, &pinned, None).await;
        assert_eq!(by_digest.expect("pull by digest").id, record.id);
    }
    // An unknown tag is NotFound, with the registry's word.
    let (missing, _) = pull(&puller, &format!("{}/busybox:nope", registry.host()), None).await;
    assert!(
        matches!(&missing, Err(ImageStoreError::NotFound(m)) if m.contains("nope")),
        "{missing:?}"
    );
    assert!(store.list().expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs docker-registry, skopeo, umoci, busybox-static and htpasswd"]
async fn pulls_with_basic_credentials_and_reports_refusals() {
    let registry = Registry::start(true);
    let work = tempfile::tempdir().expect("tempdir");
    let layout = make_image(work.path());
    push(&layout, &registry, "v1", "oci", true);
    let store = ImageStore::open(work.path().join("store")).expect("store");
    let puller = Puller::new(store.clone(), PullConfig::default());
    let reference = format!("{}/busybox:v1", registry.host());

    for credentials in [None, Some(RegistryCredentials::new(USER, "wrong"))] {
        let (refused, _) = pull(&puller, &reference, credentials).await;
        if let Err(e) = &refused {
            eprintln!("refused: {e}");
        }
        match refused {
            Err(ImageStoreError::RegistryUnauthorized {
                registry: r,
                message,
            }) => {
                assert_eq!(r, registry.host());
                assert!(!message.contains("wrong"), "{message}");
            }
            other => panic!("expected RegistryUnauthorized, got {other:?}"),
        }
    }
    let good = || Some(RegistryCredentials::new(USER, PASSWORD));
    let (missing, _) = pull(
        &puller,
        &format!("{}/busybox:nope", registry.host()),
        good(),
    )
    .await;
    if let Err(e) = &missing {
        eprintln!("missing: {e}");
    }
    assert!(
        matches!(missing, Err(ImageStoreError::NotFound(_))),
        "{missing:?}"
    );
    assert!(store.list().expect("list").is_empty());
    let (record, _) = pull(&puller, &reference, good()).await;
    check_image(&store, &record.expect("pull with credentials"));
}
