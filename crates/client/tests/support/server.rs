//! A real `alcove serve` on a free port with its own data directory, as
//! `tests/framework/server.py` starts one: the release binary (`ALCOVE_BIN`), the static agent
//! (`ALCOVE_AGENT_PATH`), the installed images (`ALCOVE_IMAGES_DIR`, default
//! `/var/lib/alcove/images`) and a random /18 of 10.0.0.0/8 that no other server of this
//! process uses. Dropping it stops the server (SIGTERM, then SIGKILL after 30 s) and removes
//! the data directory, unless something is still mounted under it.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alcove_client::SandboxClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Subnets handed out in this process (servers must never share addresses).
static SUBNETS: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn path_from_env(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default)
}

fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// `10.<100-199>.<0|64|128|192>.0/18`, unique in this process.
fn unique_subnet() -> String {
    let mut taken = SUBNETS.lock().unwrap_or_else(|e| e.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    loop {
        let r = random();
        let subnet = format!("10.{}.{}.0/18", 100 + r % 100, ((r >> 8) % 4) * 64);
        if taken.insert(subnet.clone()) {
            return subnet;
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("a bound address").port()
}

/// One running `alcove serve`.
pub struct AlcoveServer {
    child: Option<Child>,
    /// `http://localhost:<port>`.
    pub url: String,
    /// Removed on drop unless something is still mounted under it.
    data_dir: Option<tempfile::TempDir>,
    data_path: PathBuf,
}

impl AlcoveServer {
    /// Starts the server and waits until `/healthz` answers; panics with the log otherwise.
    pub async fn start() -> Self {
        let binary = path_from_env("ALCOVE_BIN", repo_root().join("target/release/alcove"));
        let agent = path_from_env(
            "ALCOVE_AGENT_PATH",
            repo_root().join("target/x86_64-unknown-linux-gnu/release/alcove-agent"),
        );
        let images = path_from_env("ALCOVE_IMAGES_DIR", PathBuf::from("/var/lib/alcove/images"));
        for (path, what) in [(&binary, "ALCOVE_BIN"), (&agent, "ALCOVE_AGENT_PATH")] {
            assert!(
                path.is_file(),
                "{} not found (set {what}, or build it with `bash scripts/setup.sh build`)",
                path.display()
            );
        }
        let data_dir = tempfile::Builder::new()
            .prefix("alcove-e2e-")
            .tempdir()
            .expect("creating the data directory");
        let port = free_port();
        let log_path = data_dir.path().join("server.log");
        let log = File::create(&log_path).expect("creating the server log");
        let log_err = log.try_clone().expect("sharing the server log");
        let child = Command::new(&binary)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--images-dir")
            .arg(&images)
            .arg("--agent-path")
            .arg(&agent)
            .arg("--subnet")
            .arg(unique_subnet())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut server = Self {
            child: Some(child),
            url: format!("http://localhost:{port}"),
            data_path: data_dir.path().to_path_buf(),
            data_dir: Some(data_dir),
        };
        server.wait_healthy(Duration::from_secs(30)).await;
        server
    }

    async fn wait_healthy(&mut self, limit: Duration) {
        let http = reqwest::Client::new();
        let health = format!("{}/healthz", self.url);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("alcove serve exited early ({status}):\n{}", self.log_tail());
            }
            let answer = http
                .get(&health)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("alcove serve did not become healthy:\n{}", self.log_tail());
    }

    /// A client of this server that ignores the environment.
    pub fn client(&self) -> SandboxClient {
        SandboxClient::builder()
            .read_env(false)
            .api_url(&self.url)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("a client of the test server")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.data_path.join("server.log"))
            .unwrap_or_else(|_| "(no log)".into());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops the server: SIGTERM, and SIGKILL if it is still there after 30 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Mount points still under the data directory (a stopped server must leave none).
    pub fn leftover_mounts(&self) -> Vec<String> {
        let prefix = format!("{}/", self.data_path.display());
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for AlcoveServer {
    fn drop(&mut self) {
        self.stop();
        // Deleting a tree with a sandbox still mounted in it would reach into that sandbox.
        if !self.leftover_mounts().is_empty()
            && let Some(dir) = self.data_dir.take()
        {
            eprintln!("keeping {} (still mounted)", dir.keep().display());
        }
    }
}
