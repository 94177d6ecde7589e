//! The built `alcove-agent` binary: listen address from the environment, the `listening on`
//! line, and SIGTERM stopping the agent together with its children.
//!
//! No in-process agent runs in this test binary, so std's own child waiting is safe here.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

#[tokio::test]
async fn sigterm_stops_agent_and_children() {
    let mut agent = Command::new(env!("CARGO_BIN_EXE_alcove-agent"))
        .env("ALCOVE_AGENT_LISTEN", "127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agent");
    let stderr = agent.stderr.take().expect("stderr");
    let mut first = String::new();
    BufReader::new(stderr)
        .read_line(&mut first)
        .expect("read stderr");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let base = format!("http://{addr}/api/v1");
    let http = reqwest::Client::new();

    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health, json!({"healthy": true}));

    let info: Value = http
        .post(format!("{base}/processes"))
        .json(&json!({"command": "sleep", "args": ["1000"]}))
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let child = info["pid"].as_u64().expect("pid") as i32;

    // SAFETY: signalling the agent we started.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || agent.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "agent exit status {status:?}");
    // The agent reaped its child before exiting, so the pid is gone (or reused by a
    // process that is not our sleep).
    let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("sleep"),
        "child survived the agent"
    );
}
