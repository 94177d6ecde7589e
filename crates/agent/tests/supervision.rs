//! Supervised processes and the journal against the real router and real processes: restart
//! policies with back-off, `max_restarts`, restarts on request, health checks, stopping, and
//! the bad input each rejects.

mod common;

use std::time::Duration;

use common::{Agent, marker};
use serde_json::{Value, json};

async fn start(agent: &Agent, body: Value) -> Value {
    let (status, info) = agent.post_json("/processes", body).await;
    assert_eq!(status, 201, "start failed: {info}");
    info
}

/// Polls `GET /processes/{key}` until `done` holds for it.
async fn wait_for(agent: &Agent, key: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..1500 {
        let (status, info) = agent.get_json(&format!("/processes/{key}")).await;
        if status == 200 && done(&info) {
            return info;
        }
        last = info;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{key}: never {what}; last: {last}");
}

/// Journal records about any of `pids`, read from the start (the journal is shared by every
/// agent in this test binary, so records are picked by pid).
async fn journal_of(agent: &Agent, pids: &[u64]) -> Vec<Value> {
    let resp = agent
        .http
        .get(agent.url("/journal?after=0"))
        .send()
        .await
        .expect("GET journal");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp;
    let mut text = String::new();
    // The stream never ends: read what is there now.
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_millis(300), body.chunk()).await
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let mut records = Vec::new();
    for line in text.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            let batch: Value = serde_json::from_str(data).expect("journal batch is JSON");
            for record in batch["records"].as_array().into_iter().flatten() {
                if record["pid"].as_u64().is_some_and(|p| pids.contains(&p)) {
                    records.push(record.clone());
                }
            }
        }
    }
    records
}

#[tokio::test]
async fn a_failing_process_is_restarted_exactly_max_restarts_times() {
    let agent = Agent::start().await;
    let name = format!("fail-{}", std::process::id());
    let info = start(
        &agent,
        json!({
            "command": "sh", "args": ["-c", "echo run; exit 3"], "name": name,
            "restart": {"policy": "on_failure", "max_restarts": 2, "initial_backoff_ms": 10, "max_backoff_ms": 40},
        }),
    )
    .await;
    let first = info["pid"].as_u64().expect("pid");
    let done = wait_for(&agent, &name, "stopped", |i| {
        i["managed"]["status"] == "stopped" && i["status"] != "running"
    })
    .await;
    assert_eq!(done["managed"]["restart_count"], 2);
    assert_eq!(done["managed"]["last_exit"]["exit_code"], 3);
    assert!(
        done["managed"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("gave up after 2 restarts")),
        "{done}"
    );
    assert_ne!(done["pid"].as_u64(), Some(first));

    // Three runs, each listed with the same managed id.
    let (_, list) = agent.get_json("/processes").await;
    let runs: Vec<u64> = list["processes"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|p| p["managed"]["id"] == name.as_str())
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    assert_eq!(runs.len(), 3, "{list}");

    let journal = journal_of(&agent, &runs).await;
    let events: Vec<&str> = journal.iter().filter_map(|r| r["event"].as_str()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "process_restarted").count(),
        2
    );
    assert_eq!(events.iter().filter(|e| **e == "backing_off").count(), 2);
    assert!(events.contains(&"gave_up"), "{events:?}");
    let outputs = journal
        .iter()
        .filter(|r| r["body"] == "run" && r["stream"] == "stdout")
        .count();
    assert_eq!(outputs, 3);
    assert!(
        journal
            .iter()
            .all(|r| r["managed_name"] == name.as_str() && r["seq"].as_u64().is_some())
    );
}

#[tokio::test]
async fn policy_never_and_a_clean_exit_under_on_failure_do_not_restart() {
    let agent = Agent::start().await;
    for (policy, command) in [("never", "exit 1"), ("on_failure", "exit 0")] {
        let info = start(
            &agent,
            json!({"command": "sh", "args": ["-c", command], "restart": {"policy": policy, "initial_backoff_ms": 1}}),
        )
        .await;
        let pid = info["pid"].as_u64().expect("pid").to_string();
        assert_eq!(info["managed"]["id"], format!("process-{pid}"));
        let done = wait_for(&agent, &pid, "stopped", |i| {
            i["managed"]["status"] == "stopped"
        })
        .await;
        assert_eq!(done["managed"]["restart_count"], 0, "{policy}: {done}");
    }
}

#[tokio::test]
async fn restart_by_name_gives_a_new_run_and_delete_stops_supervision() {
    let agent = Agent::start().await;
    let name = format!("svc-{}", std::process::id());
    let info = start(
        &agent,
        json!({"command": "sleep", "args": [marker(30)], "name": name, "restart": {"policy": "always", "initial_backoff_ms": 10}}),
    )
    .await;
    let first = info["pid"].as_u64().expect("pid");

    let (status, restarted) = agent
        .post_json(&format!("/processes/{name}/restart"), json!({}))
        .await;
    assert_eq!(status, 200, "{restarted}");
    let second = restarted["pid"].as_u64().expect("pid");
    assert_ne!(second, first);
    assert_eq!(restarted["status"], "running");
    assert_eq!(restarted["managed"]["restart_count"], 1);
    let old = agent.wait_exited(first).await;
    assert_eq!(old["signal"], 15, "stopped with SIGTERM first: {old}");

    // A signal from the user is a failure: policy always restarts it.
    let (status, _) = agent
        .post_json(&format!("/processes/{name}/signal"), json!({"signal": 9}))
        .await;
    assert_eq!(status, 200);
    let third = wait_for(&agent, &name, "restarted after a kill", |i| {
        i["pid"].as_u64().is_some_and(|p| p != second) && i["status"] == "running"
    })
    .await;
    assert_eq!(third["managed"]["restart_count"], 2);
    let third = third["pid"].as_u64().expect("pid");

    // DELETE stops supervision: the status says so at once and nothing restarts it.
    assert_eq!(agent.delete(&format!("/processes/{name}")).await, 204);
    let (_, now) = agent.get_json(&format!("/processes/{name}")).await;
    assert_eq!(now["managed"]["status"], "stopped");
    let ended = agent.wait_exited(third).await;
    assert_eq!(ended["signal"], 15);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, still) = agent.get_json(&format!("/processes/{name}")).await;
    assert_eq!(still["pid"].as_u64(), Some(third), "restarted after delete");

    // The name is free again, and a stopped process can be restarted on request.
    let (status, again) = agent
        .post_json(&format!("/processes/{name}/restart"), json!({}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["managed"]["status"], "running");
    assert_eq!(agent.delete(&format!("/processes/{name}")).await, 204);
    agent.wait_exited(again["pid"].as_u64().expect("pid")).await;
}

#[tokio::test]
async fn a_signal_during_the_back_off_says_when_the_process_restarts_and_a_kill_stops_it() {
    let agent = Agent::start().await;
    let name = format!("flaky-{}", std::process::id());
    let info = start(
        &agent,
        json!({
            "command": "sh", "args": ["-c", "exit 1"], "name": name,
            "restart": {"policy": "on_failure", "initial_backoff_ms": 30000, "max_backoff_ms": 30000},
        }),
    )
    .await;
    let first = info["pid"].as_u64().expect("pid");
    wait_for(&agent, &name, "backing off", |i| {
        i["managed"]["status"] == "backing_off"
    })
    .await;
    let (status, body) = agent
        .post_json(&format!("/processes/{name}/signal"), json!({"signal": 15}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "PROCESS_EXITED");
    let message = body["error"].as_str().expect("message");
    assert!(
        message.contains(&format!("(run {first}) has exited and restarts in")),
        "{message}"
    );
    // A kill during the back-off ends the supervision: nothing restarts it.
    assert_eq!(agent.delete(&format!("/processes/{name}")).await, 204);
    let (_, now) = agent.get_json(&format!("/processes/{name}")).await;
    assert_eq!(now["managed"]["status"], "stopped");
    assert_eq!(now["pid"].as_u64(), Some(first));
    let (status, body) = agent
        .post_json(&format!("/processes/{name}/signal"), json!({"signal": 15}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], format!("process {first} has already exited"));
}

#[tokio::test]
async fn failing_health_checks_restart_the_process() {
    let agent = Agent::start().await;
    // Nothing listens on this port, so every probe fails.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let info = start(
        &agent,
        json!({
            "command": "sleep", "args": [marker(30)],
            "restart": {"policy": "on_failure", "max_restarts": 1, "initial_backoff_ms": 10},
            "health_check": {"type": "tcp", "port": port, "initial_delay_ms": 0, "interval_ms": 20, "timeout_ms": 100, "failure_threshold": 2},
        }),
    )
    .await;
    assert_eq!(info["managed"]["status"], "starting");
    assert_eq!(info["managed"]["health_status"], "starting");
    assert_eq!(info["managed"]["health_check"]["port"], port);
    let first = info["pid"].as_u64().expect("pid");
    let key = format!("process-{first}");
    let done = wait_for(&agent, &key, "given up", |i| {
        i["managed"]["status"] == "stopped" && i["status"] != "running"
    })
    .await;
    assert_eq!(done["managed"]["restart_count"], 1);
    assert_eq!(done["managed"]["health_status"], "unhealthy");
    let journal = journal_of(&agent, &[first]).await;
    assert!(
        journal
            .iter()
            .filter(|r| r["event"] == "health_check_failed")
            .count()
            >= 2,
        "{journal:?}"
    );
}

#[tokio::test]
async fn a_passing_health_check_makes_the_process_healthy() {
    let agent = Agent::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let info = start(
        &agent,
        json!({
            "command": "sleep", "args": [marker(30)], "name": format!("ok-{port}"),
            "health_check": {"type": "tcp", "port": port, "initial_delay_ms": 0, "interval_ms": 20},
        }),
    )
    .await;
    let key = format!("ok-{port}");
    let healthy = wait_for(&agent, &key, "healthy", |i| {
        i["managed"]["health_status"] == "healthy"
    })
    .await;
    assert_eq!(healthy["managed"]["status"], "running");
    assert_eq!(healthy["managed"]["consecutive_health_failures"], 0);
    // Without `restart` the policy is `never`: deleted, it stays down.
    assert_eq!(agent.delete(&format!("/processes/{key}")).await, 204);
    agent.wait_exited(info["pid"].as_u64().expect("pid")).await;
    drop(listener);
}

#[tokio::test]
async fn bad_supervision_settings_name_the_field_and_start_nothing() {
    let agent = Agent::start().await;
    let cases = [
        (
            json!({"type": "tcp", "port": 0}),
            "health_check",
            "health_check.port",
        ),
        (
            json!({"type": "tcp", "port": 70000}),
            "health_check",
            "health_check.port",
        ),
        (
            json!({"type": "http", "port": 80, "path": "x y"}),
            "health_check",
            "health_check.path",
        ),
        (
            json!({"initial_backoff_ms": -5}),
            "restart",
            "restart.initial_backoff_ms",
        ),
        (
            json!({"max_restarts": -1}),
            "restart",
            "restart.max_restarts",
        ),
        (
            json!({"initial_backoff_ms": 900, "max_backoff_ms": 10}),
            "restart",
            "max_backoff_ms",
        ),
        (json!({"policy": "sometimes"}), "restart", "restart.policy"),
    ];
    let (_, before) = agent.get_json("/processes").await;
    for (value, field, named) in cases {
        let mut body = json!({"command": "sleep", "args": [marker(5)]});
        body[field] = value.clone();
        let (status, answer) = agent.post_json("/processes", body).await;
        assert_eq!(status, 400, "{value}: {answer}");
        assert_eq!(answer["code"], "INVALID_ARGUMENT");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{value}: {message}");
    }
    let (_, after) = agent.get_json("/processes").await;
    assert_eq!(
        before["processes"], after["processes"],
        "a bad start left a process"
    );

    // Restarting a process that is not managed, or does not exist.
    let plain = start(&agent, json!({"command": "sleep", "args": [marker(5)]})).await;
    let pid = plain["pid"].as_u64().expect("pid");
    let (status, answer) = agent
        .post_json(&format!("/processes/{pid}/restart"), json!({}))
        .await;
    assert_eq!((status, &answer["code"]), (409, &json!("NOT_MANAGED")));
    let (status, answer) = agent
        .post_json("/processes/no-such-name/restart", json!({}))
        .await;
    assert_eq!((status, &answer["code"]), (404, &json!("NOT_FOUND")));
    assert_eq!(agent.delete(&format!("/processes/{pid}")).await, 204);
}

#[tokio::test]
async fn stopped_managed_processes_are_evicted_like_other_exited_ones() {
    let agent = Agent::start().await;
    let mut ids = Vec::new();
    for _ in 0..(alcove_agent::process::MAX_EXITED_RETAINED + 20) {
        let info = start(
            &agent,
            json!({"command": "true", "restart": {"policy": "never"}}),
        )
        .await;
        ids.push(info["managed"]["id"].as_str().expect("id").to_string());
    }
    let last = ids.last().expect("some").clone();
    wait_for(&agent, &last, "stopped", |i| {
        i["managed"]["status"] == "stopped" && i["status"] != "running"
    })
    .await;
    // The oldest are gone by id as well as by pid; memory stays bounded.
    let mut gone = 0;
    for _ in 0..500 {
        let (status, _) = agent.get_json(&format!("/processes/{}", ids[0])).await;
        if status == 404 {
            gone += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        gone, 1,
        "the oldest stopped managed process was never evicted"
    );
    let (status, _) = agent.get_json(&format!("/processes/{last}")).await;
    assert_eq!(status, 200);
}
