//! Managed processes (docs/protocol/sandbox-api.md, Processes and Process I/O) against the
//! real router and real processes.

mod common;

use common::{Agent, marker, sse_data};
use serde_json::{Value, json};

async fn start(agent: &Agent, body: Value) -> Value {
    let (status, info) = agent.post_json("/processes", body).await;
    assert_eq!(status, 201, "start failed: {info}");
    info
}

fn lines(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["line"].as_str()).collect()
}

#[tokio::test]
async fn stdin_pipe_round_trip_and_follow_closes_after_exit() {
    let agent = Agent::start().await;
    let info = start(&agent, json!({"command": "cat", "stdin_mode": "pipe"})).await;
    assert_eq!(info["status"], "running");
    assert_eq!(info["stdin_writable"], true);
    assert_eq!(info["command"], "cat");
    assert!(info["started_at"].as_i64().is_some());
    let pid = info["pid"].as_u64().expect("pid");

    let resp = agent
        .http
        .post(agent.url(&format!("/processes/{pid}/stdin")))
        .body("hello\nwörld\n")
        .send()
        .await
        .expect("stdin");
    assert_eq!(resp.status().as_u16(), 204);
    let resp = agent
        .http
        .post(agent.url(&format!("/processes/{pid}/stdin/close")))
        .send()
        .await
        .expect("close");
    assert_eq!(resp.status().as_u16(), 204);

    // The follow stream replays, follows and then ends on its own once cat exits.
    let events = agent
        .follow(&format!("/processes/{pid}/output/follow"))
        .await;
    assert_eq!(lines(&events), ["hello", "wörld"]);
    assert!(events.iter().all(|e| e["timestamp"].as_i64().is_some()));

    let info = agent.wait_exited(pid).await;
    assert_eq!(info["status"], "exited");
    assert_eq!(info["exit_code"], 0);
    assert_eq!(info["stdin_writable"], false);
    assert!(info["ended_at"].as_i64().is_some());

    let (status, out) = agent.get_json(&format!("/processes/{pid}/stdout")).await;
    assert_eq!(status, 200);
    assert_eq!(
        out,
        json!({"pid": pid, "lines": ["hello", "wörld"], "line_count": 2})
    );

    // Writing after close is refused with a clear code.
    let resp = agent
        .http
        .post(agent.url(&format!("/processes/{pid}/stdin")))
        .body("late")
        .send()
        .await
        .expect("stdin");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "STDIN_NOT_WRITABLE");
}

#[tokio::test]
async fn a_close_of_stdin_ends_writes_blocked_on_a_process_that_does_not_read() {
    let agent = Agent::start().await;
    let info = start(
        &agent,
        json!({"command": "sleep", "args": ["300"], "stdin_mode": "pipe"}),
    )
    .await;
    let pid = info["pid"].as_u64().expect("pid");
    let write = |body: Vec<u8>| {
        let request = agent
            .http
            .post(agent.url(&format!("/processes/{pid}/stdin")))
            .body(body);
        tokio::spawn(async move { request.send().await.expect("stdin") })
    };
    // A MiB fills the pipe (64 KiB) and blocks; the second write waits behind the first.
    let blocked = write(vec![b'x'; 1 << 20]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let waiting = write(b"y".to_vec());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!blocked.is_finished() && !waiting.is_finished());

    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        agent
            .http
            .post(agent.url(&format!("/processes/{pid}/stdin/close")))
            .send(),
    )
    .await
    .expect("a close does not wait behind a blocked write")
    .expect("close");
    assert_eq!(closed.status().as_u16(), 204);
    for write in [blocked, waiting] {
        let resp = tokio::time::timeout(std::time::Duration::from_secs(5), write)
            .await
            .expect("the close ends the write")
            .expect("task");
        assert_eq!(resp.status().as_u16(), 400);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["code"], "STDIN_NOT_WRITABLE", "{body}");
    }
    let (status, info) = agent.get_json(&format!("/processes/{pid}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (info["status"].as_str(), info["stdin_writable"].as_bool()),
        (Some("running"), Some(false))
    );
}

#[tokio::test]
async fn streams_are_captured_separately_and_together() {
    let agent = Agent::start().await;
    let info = start(
        &agent,
        json!({"command": "sh", "args": ["-c", "echo out1; echo err1 >&2; echo out2"]}),
    )
    .await;
    let pid = info["pid"].as_u64().expect("pid");
    assert_eq!(info["stdin_writable"], false);
    agent.wait_exited(pid).await;

    let stdout = agent
        .follow(&format!("/processes/{pid}/stdout/follow"))
        .await;
    assert_eq!(lines(&stdout), ["out1", "out2"]);
    let stderr = agent
        .follow(&format!("/processes/{pid}/stderr/follow"))
        .await;
    assert_eq!(lines(&stderr), ["err1"]);
    assert!(stderr.iter().all(|e| e["stream"] == "stderr"));
    let (_, both) = agent.get_json(&format!("/processes/{pid}/output")).await;
    assert_eq!(both["line_count"], 3);
    let (_, err) = agent.get_json(&format!("/processes/{pid}/stderr")).await;
    assert_eq!(err["lines"], json!(["err1"]));
}

#[tokio::test]
async fn follow_streams_live_output_of_a_running_process() {
    let agent = Agent::start().await;
    let info = start(
        &agent,
        json!({"command": "sh", "args": ["-c", "for i in 1 2 3; do echo $i; sleep 0.05; done"]}),
    )
    .await;
    let pid = info["pid"].as_u64().expect("pid");
    let events = agent
        .follow(&format!("/processes/{pid}/stdout/follow"))
        .await;
    assert_eq!(lines(&events), ["1", "2", "3"]);
    let info = agent.wait_exited(pid).await;
    assert_eq!(info["exit_code"], 0);
}

#[tokio::test]
async fn a_follower_of_pouring_output_gets_every_line_once_in_order() {
    // A follower attached before a flood reads the buffer chunk by chunk while it fills (and
    // past a short pause): no line lost, none sent twice, none out of order.
    let agent = Agent::start().await;
    let info = start(
        &agent,
        json!({"command": "sh", "args": ["-c", "sleep 0.2; seq 1 200000; sleep 0.05; seq 200001 200100"]}),
    )
    .await;
    let pid = info["pid"].as_u64().expect("pid");
    let events = agent
        .follow(&format!("/processes/{pid}/stdout/follow"))
        .await;
    let got: Vec<u64> = lines(&events)
        .iter()
        .map(|l| l.parse().expect("a number"))
        .collect();
    assert_eq!(got.len(), 200_100);
    assert!(
        got.iter().zip(1..).all(|(n, want)| *n == want),
        "out of order or repeated"
    );
}

#[tokio::test]
async fn a_batched_follow_opened_again_with_its_last_event_id_goes_on_after_it() {
    let agent = Agent::start().await;
    let info = start(
        &agent,
        json!({"command": "sh", "args": ["-c", "echo a; echo skip >&2; echo b; sleep 0.1; echo c"]}),
    )
    .await;
    let pid = info["pid"].as_u64().expect("pid");
    agent.wait_exited(pid).await;
    let path = agent.url(&format!("/processes/{pid}/stdout/follow?batch=true"));
    let text = |resp: reqwest::Response| async move {
        assert_eq!(resp.status().as_u16(), 200);
        resp.text().await.expect("body")
    };
    let whole = text(agent.http.get(&path).send().await.expect("GET")).await;
    let ids: Vec<&str> = whole
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .collect();
    assert!(ids.len() >= 2, "every batch has an id: {whole}");
    // Opened again after the first batch: only the lines after it come.
    let first_lines = sse_data(&whole)[0]["lines"]
        .as_array()
        .expect("lines")
        .len();
    let again = agent.http.get(&path).header("Last-Event-ID", ids[0]);
    let rest = text(again.send().await.expect("GET")).await;
    let batch_lines = |body: &str| -> Vec<Value> {
        sse_data(body)
            .iter()
            .filter_map(|event| event["lines"].as_array().cloned())
            .flatten()
            .collect()
    };
    let all = batch_lines(&whole);
    assert_eq!(all, [json!("a"), json!("b"), json!("c")]);
    assert_eq!(batch_lines(&rest), all[first_lines..]);
    // Past the end: only the end.
    let last = ids.last().expect("an id");
    let none = text(
        agent
            .http
            .get(&path)
            .header("Last-Event-ID", *last)
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert!(
        sse_data(&none)
            .iter()
            .all(|event| event.get("lines").is_none()),
        "{none}"
    );
    // Not a line number: a 400 that says what it wants.
    let bad = agent
        .http
        .get(&path)
        .header("Last-Event-ID", "soon")
        .send()
        .await
        .expect("GET");
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await.expect("body").contains("Last-Event-ID"));
}

#[tokio::test]
async fn a_batched_follow_is_told_how_many_lines_the_buffer_let_go_before_it() {
    // 200,000 numbered lines of 100 digits, 20 MB: the 16 MiB buffer holds only the newest.
    let total: u64 = 200_000;
    let agent = Agent::start().await;
    let info = start(
        &agent,
        json!({"command": "seq", "args": ["-f", "%0100g", "1", total.to_string()]}),
    )
    .await;
    let pid = info["pid"].as_u64().expect("pid");
    agent.wait_exited(pid).await;
    let path = agent.url(&format!("/processes/{pid}/output/follow?batch=true"));
    let get = |last_event_id: Option<u64>| {
        let mut request = agent.http.get(&path);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        async move {
            request
                .send()
                .await
                .expect("GET")
                .text()
                .await
                .expect("body")
        }
    };
    let batches = |body: &str| -> Vec<Value> {
        sse_data(body)
            .into_iter()
            .filter(|event| event.get("lines").is_some())
            .collect()
    };
    let dropped = |batch: &Value| batch.get("dropped").map_or(0, |n| n.as_u64().expect("n"));

    let from_start = batches(&get(None).await);
    let told = dropped(&from_start[0]);
    let kept: u64 = from_start
        .iter()
        .map(|b| b["lines"].as_array().expect("lines").len() as u64)
        .sum();
    assert!(told > 0, "the oldest lines are gone");
    assert_eq!(
        told + kept,
        total,
        "every line is either received or counted as dropped"
    );
    let first_kept: u64 = from_start[0]["lines"][0]
        .as_str()
        .expect("line")
        .parse()
        .expect("a number");
    assert_eq!(first_kept, told + 1);
    assert!(from_start[1..].iter().all(|b| dropped(b) == 0), "told once");

    // A follower that stood at line 1 (its Last-Event-ID) lost all but that one.
    let behind = batches(&get(Some(1)).await);
    assert_eq!(dropped(&behind[0]), told - 1);
    // Standing at the oldest kept loses nothing, and the per-line protocol never says it.
    assert_eq!(dropped(&batches(&get(Some(told)).await)[0]), 0);
    let plain = agent
        .http
        .get(agent.url(&format!("/processes/{pid}/output/follow")))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body");
    assert!(
        !plain.contains("dropped"),
        "per-line events have no such field"
    );
}

#[tokio::test]
async fn signal_goes_to_the_process_and_is_validated() {
    let agent = Agent::start().await;
    let info = start(&agent, json!({"command": "sleep", "args": [marker(10)]})).await;
    let pid = info["pid"].as_u64().expect("pid");

    let (status, body) = agent
        .post_json(&format!("/processes/{pid}/signal"), json!({"signal": 999}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "INVALID_ARGUMENT");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("999")));

    let (status, body) = agent
        .post_json(&format!("/processes/{pid}/signal"), json!({"signal": 15}))
        .await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let info = agent.wait_exited(pid).await;
    assert_eq!(info["status"], "signaled");
    assert_eq!(info["signal"], 15);
    assert_eq!(info["exit_code"], json!(null));

    let (status, body) = agent
        .post_json(&format!("/processes/{pid}/signal"), json!({"signal": 15}))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "PROCESS_EXITED");
}

#[tokio::test]
async fn delete_kills_then_removes() {
    let agent = Agent::start().await;
    let info = start(&agent, json!({"command": "sleep", "args": [marker(11)]})).await;
    let pid = info["pid"].as_u64().expect("pid");
    let (_, list) = agent.get_json("/processes").await;
    assert!(
        list["processes"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["pid"] == pid))
    );

    let delete = |agent: &Agent| {
        agent
            .http
            .delete(agent.url(&format!("/processes/{pid}")))
            .send()
    };
    assert_eq!(delete(&agent).await.expect("delete").status().as_u16(), 204);
    let info = agent.wait_exited(pid).await;
    assert_eq!(info["status"], "signaled");
    assert_eq!(info["signal"], 9);
    // Deleting an exited process removes it.
    assert_eq!(delete(&agent).await.expect("delete").status().as_u16(), 204);
    let (status, _) = agent.get_json(&format!("/processes/{pid}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn unknown_processes_are_404_with_code() {
    let agent = Agent::start().await;
    for path in [
        "/processes/999999999",
        "/processes/no-such-name",
        "/processes/999999999/stdout",
        "/processes/999999999/output/follow",
    ] {
        let (status, body) = agent.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["code"], "NOT_FOUND", "{path}");
        assert!(body["error"].is_string());
    }
    let (status, body) = agent
        .post_json("/processes/999999999/signal", json!({"signal": 15}))
        .await;
    assert_eq!((status, &body["code"]), (404, &json!("NOT_FOUND")));
}

#[tokio::test]
async fn named_processes_are_addressable_by_name() {
    let agent = Agent::start().await;
    let name = format!("web-{}", std::process::id());
    let info = start(
        &agent,
        json!({"command": "sleep", "args": [marker(12)], "name": name, "restart": {"policy": "never"}}),
    )
    .await;
    let pid = info["pid"].as_u64().expect("pid");
    assert_eq!(info["managed"]["id"], name.as_str());
    assert_eq!(info["managed"]["status"], "running");
    assert_eq!(info["managed"]["health_status"], "disabled");

    let (status, by_name) = agent.get_json(&format!("/processes/{name}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_name["pid"], pid);

    let (status, body) = agent
        .post_json("/processes", json!({"command": "true", "name": name}))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "NAME_TAKEN");

    let resp = agent
        .http
        .delete(agent.url(&format!("/processes/{name}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 204);
    let info = agent.wait_exited(pid).await;
    assert_eq!(info["managed"]["status"], "stopped");
    // A managed process is stopped with SIGTERM first.
    assert_eq!(info["managed"]["last_exit"]["signal"], 15);
}

#[tokio::test]
async fn discarded_output_is_not_captured_and_follow_still_closes() {
    let agent = Agent::start().await;
    let info = start(
        &agent,
        json!({"command": "sh", "args": ["-c", "echo hidden; echo shown >&2"], "stdout_mode": "discard"}),
    )
    .await;
    let pid = info["pid"].as_u64().expect("pid");
    let events = agent
        .follow(&format!("/processes/{pid}/output/follow"))
        .await;
    assert_eq!(lines(&events), ["shown"]);
}

#[tokio::test]
async fn info_counts_running_processes() {
    let agent = Agent::start().await;
    let info = start(&agent, json!({"command": "sleep", "args": [marker(13)]})).await;
    let pid = info["pid"].as_u64().expect("pid");
    let (status, daemon) = agent.get_json("/info").await;
    assert_eq!(status, 200);
    assert_eq!(daemon["running_processes"], 1);
    assert_eq!(daemon["total_processes"], 1);
    assert!(daemon["version"].is_string());
    assert!(daemon["uptime_secs"].is_u64());
    let (status, health) = agent.get_json("/health").await;
    assert_eq!((status, health), (200, json!({"healthy": true})));

    agent
        .http
        .delete(agent.url(&format!("/processes/{pid}")))
        .send()
        .await
        .expect("delete");
    agent.wait_exited(pid).await;
    let (_, daemon) = agent.get_json("/info").await;
    assert_eq!(daemon["running_processes"], 0);
}
