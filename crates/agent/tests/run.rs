//! `POST /api/v1/processes/run` against the real router and real processes.

mod common;

use std::time::Duration;

use common::{Agent, live_processes_with, marker};
use serde_json::json;

#[tokio::test]
async fn run_passes_args_env_and_working_dir() {
    let agent = Agent::start().await;
    let out = agent
        .run(json!({
            "command": "sh",
            "args": ["-c", "echo \"$1 $FOO\"; pwd; echo oops >&2", "sh", "hello"],
            "env": {"FOO": "bar"},
            "working_dir": "/tmp",
            "timeout": 30
        }))
        .await;
    assert_eq!(out.content_type, "text/event-stream");
    let started = out.started.as_ref().expect("started event");
    assert!(started["pid"].as_u64().is_some_and(|pid| pid > 1));
    assert!(
        started["started_at"]
            .as_i64()
            .is_some_and(|t| t > 1_600_000_000_000)
    );
    assert_eq!(out.stdout, ["hello bar", "/tmp"]);
    assert_eq!(out.stderr, ["oops"]);
    assert_eq!(
        out.exit(),
        &json!({"exit_code": 0, "signal": null, "oom_killed": false, "reason": "exited"})
    );
}

#[tokio::test]
async fn run_reports_exit_codes_and_signals() {
    let agent = Agent::start().await;
    let out = agent
        .run(json!({"command": "sh", "args": ["-c", "exit 3"]}))
        .await;
    assert_eq!(out.exit()["exit_code"], 3);
    assert_eq!(out.exit()["reason"], "exited");

    let out = agent
        .run(json!({"command": "sh", "args": ["-c", "kill -TERM $$"]}))
        .await;
    assert_eq!(out.exit()["exit_code"], json!(null));
    assert_eq!(out.exit()["signal"], 15);
    assert_eq!(out.exit()["reason"], "signaled");
}

#[tokio::test]
async fn run_sets_default_environment_for_the_user() {
    let agent = Agent::start().await;
    let out = agent
        .run(json!({"command": "sh", "args": ["-c", "echo \"$HOME|$USER|$PATH\""], "user": "root"}))
        .await;
    let path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let expected_path = std::env::var("PATH").unwrap_or(path.to_string());
    assert_eq!(out.stdout, [format!("/root|root|{expected_path}")]);

    // The request's env wins over the defaults; ALCOVE_AGENT_* never reaches children.
    let out = agent
        .run(json!({
            "command": "sh",
            "args": ["-c", "echo \"$HOME|${ALCOVE_AGENT_LISTEN-unset}\""],
            "env": {"HOME": "/custom"}
        }))
        .await;
    assert_eq!(out.stdout, ["/custom|unset"]);
}

#[tokio::test]
async fn run_switches_user_when_root() {
    let agent = Agent::start().await;
    let body = json!({"command": "id", "args": ["-u"], "user": {"uid": 4321, "gid": 4321}});
    let resp = agent
        .http
        .post(agent.url("/processes/run"))
        .json(&body)
        .send()
        .await
        .expect("POST");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let out = agent.run(body).await;
        assert_eq!(out.stdout, ["4321"]);
        let out = agent
            .run(json!({"command": "id", "args": ["-g"], "user": "4321:77"}))
            .await;
        assert_eq!(out.stdout, ["77"]);
    } else {
        assert_eq!(resp.status().as_u16(), 403);
    }
}

#[tokio::test]
async fn unknown_command_is_a_json_error_before_streaming() {
    let agent = Agent::start().await;
    let (status, body) = agent
        .post_json(
            "/processes/run",
            json!({"command": "no-such-command-alcove"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "COMMAND_NOT_FOUND");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-command-alcove"))
    );

    let (status, body) = agent
        .post_json(
            "/processes/run",
            json!({"command": "ls", "working_dir": "/no/such/dir"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "INVALID_WORKING_DIR");

    let (status, body) = agent
        .post_json(
            "/processes/run",
            json!({"command": "ls", "user": "no-such-user-alcove"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "USER_NOT_FOUND");

    let (status, body) = agent.post_json("/processes/run", json!({"args": []})).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn what_the_kernel_refuses_to_exec_is_a_4xx_saying_why() {
    let agent = Agent::start().await;
    // 400,000 arguments fit the body, but with their pointers not the kernel's limit.
    let many = vec!["z"; 400_000];
    let (status, body) = agent
        .post_json("/processes/run", json!({"command": "true", "args": many}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "INVALID_ARGUMENT");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("E2BIG")),
        "{body}"
    );

    // A program whose file is still open for writing cannot be executed.
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("tool.sh");
    let writing = std::fs::File::create(&script).expect("create");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let (status, body) = agent
        .post_json(
            "/processes",
            json!({"command": script.to_str().expect("utf-8 path")}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "FILE_BUSY");
    drop(writing);
}

#[tokio::test]
async fn bodies_past_the_limit_are_413_in_the_error_shape() {
    let agent = Agent::start().await;
    let big = "y".repeat(alcove_agent::http::body::BODY_LIMIT);
    for path in ["/processes/run", "/processes"] {
        let (status, body) = agent
            .post_json(path, json!({"command": "echo", "args": [big]}))
            .await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(body["code"], "PAYLOAD_TOO_LARGE", "{path}");
    }
}

#[tokio::test]
async fn paths_that_do_not_decode_are_400_in_the_error_shape() {
    let agent = Agent::start().await;
    for path in ["/processes/%ff", "/pty/%C3%28"] {
        let (status, body) = agent.get_json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], "INVALID_ARGUMENT", "{path}");
    }
}

#[tokio::test]
async fn output_lines_handle_crlf_partial_lines_and_bad_utf8() {
    let agent = Agent::start().await;
    let out = agent
        .run(json!({"command": "printf", "args": ["a\\r\\nb\\n\\377x\\nlast"]}))
        .await;
    assert_eq!(out.stdout, ["a", "b", "\u{fffd}x", "last"]);
}

#[tokio::test]
async fn run_streams_200000_lines_in_order() {
    let agent = Agent::start().await;
    let out = agent
        .run(json!({"command": "seq", "args": ["1", "200000"], "timeout": 120}))
        .await;
    assert_eq!(out.exit()["exit_code"], 0);
    assert_eq!(out.stdout.len(), 200_000);
    assert!(
        out.stdout
            .iter()
            .enumerate()
            .all(|(i, line)| line == &(i + 1).to_string()),
        "lines out of order or altered"
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_tree() {
    let agent = Agent::start().await;
    let mark = marker(1);
    let script = format!("sleep {mark} & setsid sleep {mark} & sleep {mark}");
    let out = agent
        .run(json!({"command": "sh", "args": ["-c", script], "timeout": 0.5}))
        .await;
    assert_eq!(out.exit()["reason"], "timed_out");
    assert_eq!(out.exit()["signal"], 9);
    assert_eq!(out.exit()["exit_code"], json!(null));
    // SIGKILL is asynchronous: allow the kernel a moment to finish the kills.
    for _ in 0..500 {
        if live_processes_with(&mark).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        live_processes_with(&mark),
        Vec::<u32>::new(),
        "survivors of the timeout"
    );
}

#[tokio::test]
async fn timeout_secs_is_accepted_and_fast_commands_are_not_timed_out() {
    let agent = Agent::start().await;
    let out = agent
        .run(json!({"command": "true", "timeout_secs": 30}))
        .await;
    assert_eq!(out.exit()["reason"], "exited");
    let mark = marker(2);
    let out = agent
        .run(json!({"command": "sleep", "args": [mark], "timeout_secs": 0.2}))
        .await;
    assert_eq!(out.exit()["reason"], "timed_out");
}

#[tokio::test]
async fn run_finishes_while_a_background_child_holds_stdout() {
    let agent = Agent::start().await;
    let mark = marker(3);
    // The background sleep inherits stdout and keeps the pipe open long after `sh` exits.
    let out = agent
        .run(json!({"command": "sh", "args": ["-c", format!("sleep {mark} & echo started")]}))
        .await;
    assert_eq!(out.stdout, ["started"]);
    assert_eq!(out.exit()["exit_code"], 0);
    let survivors = live_processes_with(&mark);
    assert_eq!(survivors.len(), 1, "the background child keeps running");
    for pid in survivors {
        // SAFETY: kill(2) on a pid we just found; cleanup only.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

#[tokio::test]
async fn exec_failures_are_json_errors() {
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Passes our lookup (exists, executable) but exec fails: the interpreter is missing.
    // std reaps such a child itself inside spawn; the reaper must not steal it.
    let script = dir.path().join("bad-shebang");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    for _ in 0..3 {
        let (status, body) = agent
            .post_json("/processes/run", json!({"command": script}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["code"], "COMMAND_NOT_FOUND");
    }
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "echo hi\n").expect("write file");
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let (status, body) = agent
        .post_json("/processes/run", json!({"command": plain}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "NOT_EXECUTABLE");
    // A directory named by its path is there but cannot be executed, as a shell says.
    let (status, body) = agent
        .post_json("/processes/run", json!({"command": dir.path()}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "NOT_EXECUTABLE");
    // The agent still works afterwards.
    let out = agent.run(json!({"command": "true"})).await;
    assert_eq!(out.exit()["exit_code"], 0);
}

#[tokio::test]
async fn client_disconnect_kills_the_run() {
    let agent = Agent::start().await;
    let mark = marker(4);
    let mut resp = agent
        .http
        .post(agent.url("/processes/run"))
        .json(&json!({"command": "sh", "args": ["-c", format!("sleep {mark}; sleep {mark}")]}))
        .send()
        .await
        .expect("POST run");
    let first = resp.chunk().await.expect("chunk").expect("started event");
    assert!(String::from_utf8_lossy(&first).contains("started_at"));
    // `sh` (whose command line holds the marker too) and its first `sleep`.
    assert!(!live_processes_with(&mark).is_empty());
    drop(resp);
    for _ in 0..500 {
        if live_processes_with(&mark).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        live_processes_with(&mark),
        Vec::<u32>::new(),
        "run outlived its client"
    );
}

#[tokio::test]
async fn batched_runs_and_follows_carry_every_line_in_order() {
    let agent = Agent::start().await;
    let body =
        json!({"command": "sh", "args": ["-c", "seq 1 5000; echo err >&2"], "batch_output": true});
    let text = agent
        .http
        .post(agent.url("/processes/run"))
        .json(&body)
        .send()
        .await
        .expect("run")
        .text()
        .await
        .expect("body");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut names = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let name = event
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or("");
        names.push(name.to_string());
        let data = event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("data");
        let value: serde_json::Value = serde_json::from_str(data).expect("json");
        if name == "output_batch" {
            assert!(value["timestamp"].as_i64().is_some());
            let lines = value["lines"].as_array().expect("lines");
            let target = if value["stream"] == "stderr" {
                &mut stderr
            } else {
                &mut stdout
            };
            target.extend(lines.iter().map(|l| l.as_str().expect("str").to_string()));
        }
    }
    assert!(
        !names.iter().any(|n| n == "output"),
        "per-line events in a batched run"
    );
    assert_eq!(names.first().map(String::as_str), Some("started"));
    assert_eq!(names.last().map(String::as_str), Some("exit"));
    let want: Vec<String> = (1..=5000).map(|n| n.to_string()).collect();
    assert_eq!(stdout, want);
    assert_eq!(stderr, ["err"]);

    // The follow stream batches on request and not otherwise.
    let (status, info) = agent
        .post_json(
            "/processes",
            json!({"command": "seq", "args": ["1", "300"]}),
        )
        .await;
    assert_eq!(status, 201);
    let pid = info["pid"].as_u64().expect("pid");
    agent.wait_exited(pid).await;
    let batched = agent
        .http
        .get(agent.url(&format!("/processes/{pid}/output/follow?batch=true")))
        .send()
        .await
        .expect("follow")
        .text()
        .await
        .expect("body");
    let mut lines = Vec::new();
    for data in batched.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let value: serde_json::Value = serde_json::from_str(data).expect("json");
        for line in value["lines"].as_array().into_iter().flatten() {
            lines.push(line.as_str().expect("str").to_string());
        }
    }
    let want: Vec<String> = (1..=300).map(|n| n.to_string()).collect();
    assert_eq!(lines, want);
    assert!(batched.contains("event: eof"));
    let plain = agent
        .follow(&format!("/processes/{pid}/output/follow"))
        .await;
    assert_eq!(plain.iter().filter(|e| e["line"].is_string()).count(), 300);
    let (status, _) = agent
        .get_json(&format!("/processes/{pid}/output/follow?batch=maybe"))
        .await;
    assert_eq!(status, 400);
}
