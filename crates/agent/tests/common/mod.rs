//! Shared harness: the real agent router on 127.0.0.1:0 inside the test process, driven over
//! HTTP with reqwest.

#![allow(dead_code)] // Each test file uses a different subset of the helpers.

use std::time::Duration;

use alcove_agent::{AgentConfig, AgentState};
use serde_json::Value;
use tokio::net::TcpListener;

/// A running in-process agent.
pub struct Agent {
    pub base: String,
    pub http: reqwest::Client,
}

impl Agent {
    pub async fn start() -> Agent {
        Self::start_with(AgentConfig::with_env(std::env::vars_os().collect())).await
    }

    pub async fn start_with(config: AgentConfig) -> Agent {
        let state = AgentState::new(&config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(alcove_agent::serve(listener, state, std::future::pending()));
        Agent {
            base: format!("http://{addr}/api/v1"),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The WebSocket URL of an API path.
    pub fn ws_url(&self, path: &str) -> String {
        self.url(path).replacen("http://", "ws://", 1)
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    /// `DELETE path`; returns the status.
    #[allow(dead_code)] // not every test binary deletes
    pub async fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
            .status()
            .as_u16()
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("status {status}: non-JSON body {text:?}: {e}"))
        };
        (status, value)
    }

    /// `POST /processes/run`, collecting the whole stream.
    pub async fn run(&self, body: Value) -> RunOutcome {
        let resp = self
            .http
            .post(self.url("/processes/run"))
            .json(&body)
            .send()
            .await
            .expect("POST run");
        assert_eq!(resp.status().as_u16(), 200, "run answered an error");
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.text().await.expect("stream body");
        let mut outcome = RunOutcome {
            content_type,
            ..RunOutcome::default()
        };
        for data in sse_data(&text) {
            if data.get("started_at").is_some() {
                outcome.started = Some(data);
            } else if let Some(line) = data.get("line").and_then(Value::as_str) {
                assert!(
                    data["timestamp"].as_i64().is_some(),
                    "line without timestamp"
                );
                match data["stream"].as_str() {
                    Some("stderr") => outcome.stderr.push(line.to_string()),
                    _ => outcome.stdout.push(line.to_string()),
                }
            } else if data.get("reason").is_some() {
                assert!(outcome.exit.is_none(), "two exit events");
                outcome.exit = Some(data);
            }
        }
        outcome
    }

    /// Polls `GET /processes/{pid}` until it is no longer running.
    pub async fn wait_exited(&self, pid: u64) -> Value {
        for _ in 0..1000 {
            let (status, info) = self.get_json(&format!("/processes/{pid}")).await;
            assert_eq!(status, 200);
            if info["status"] != "running" {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("process {pid} did not exit");
    }

    /// Reads a whole SSE follow stream (it must end by itself).
    pub async fn follow(&self, path: &str) -> Vec<Value> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("GET follow");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        let text = tokio::time::timeout(Duration::from_secs(30), resp.text())
            .await
            .expect("follow stream did not close")
            .expect("stream body");
        sse_data(&text)
            .into_iter()
            .filter(|d| d.get("line").is_some())
            .collect()
    }
}

/// Everything a run stream carried.
#[derive(Debug, Default)]
pub struct RunOutcome {
    pub content_type: String,
    pub started: Option<Value>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    pub exit: Option<Value>,
}

impl RunOutcome {
    pub fn exit(&self) -> &Value {
        self.exit.as_ref().expect("stream ended without exit event")
    }
}

/// The JSON `data:` payloads of an SSE body, skipping comments.
pub fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .flat_map(|event| event.lines())
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("data is JSON"))
        .collect()
}

/// Pids of live (non-zombie) processes whose command line contains `marker`.
pub fn live_processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && proc_state(pid).is_some_and(|s| s != 'Z') {
            found.push(pid);
        }
    }
    found
}

/// State letter and parent of a process, if it exists.
pub fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

pub fn proc_state(pid: u32) -> Option<char> {
    proc_stat(pid).map(|(state, _)| state)
}

/// A `sleep` duration unique to this test (`n`) and this test run (our pid), to find our own
/// processes in `/proc`.
pub fn marker(n: u32) -> String {
    format!("{}.{}", 1000 + n, std::process::id())
}
