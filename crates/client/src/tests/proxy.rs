//! Calls through the proxy against the fake: routing headers, run's SSE, the idle bound of
//! follow streams, replays while the sandbox is not ready, streamed files.

use std::convert::Infallible;
use std::time::Duration;

use alcove_wire::sandbox::SandboxStatus;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use serde_json::json;

use super::fake::{self, Hits};
use crate::{ClientError, Command, TimeoutSetting};

fn sse(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

#[tokio::test]
async fn run_goes_through_the_proxy_and_collects_its_events() {
    let routes = axum::Router::new().route(
        "/api/v1/processes/run",
        post(|headers: HeaderMap, Json(body): Json<serde_json::Value>| async move {
            // A local proxy routes by Host, and the key travels along.
            assert_eq!(headers[header::HOST], "sb.local");
            assert_eq!(headers[header::AUTHORIZATION], "Bearer test-key");
            assert_eq!(headers[header::ACCEPT], "text/event-stream");
            assert_eq!(body["command"], "echo");
            assert_eq!(body["timeout"], 2.5);
            sse(concat!(
                "data: {\"pid\":12,\"started_at\":1}\n\n",
                ": keep-alive\n\n",
                "data: {\"line\":\"hello\",\"timestamp\":1,\"stream\":\"stdout\"}\n\n",
                "data: {\"line\":\"oops\",\"timestamp\":2,\"stream\":\"stderr\"}\n\n",
                "data: {\"exit_code\":1,\"signal\":null,\"oom_killed\":false,\"reason\":\"exited\"}\n\n",
            ))
        }),
    );
    let sandbox = fake::sandbox_with(routes, |b| b).await;
    let result = sandbox
        .run(
            Command::new("echo")
                .arg("hello")
                .timeout(Duration::from_millis(2500)),
        )
        .await
        .expect("ran");
    assert_eq!(
        (result.stdout.as_str(), result.stderr.as_str()),
        ("hello", "oops")
    );
    assert_eq!((result.exit_code, result.pid), (1, Some(12)));
}

#[tokio::test]
async fn a_silent_follow_stream_trips_the_idle_timeout() {
    let routes = axum::Router::new().route(
        "/api/v1/processes/7/output/follow",
        get(|| async {
            let first = futures::stream::once(async {
                Ok::<_, Infallible>(Bytes::from_static(
                    b"data: {\"line\":\"one\",\"timestamp\":1,\"stream\":\"stdout\"}\n\n",
                ))
            });
            let body = Body::from_stream(first.chain(futures::stream::pending()));
            ([(header::CONTENT_TYPE, "text/event-stream")], body)
        }),
    );
    let sandbox = fake::sandbox_with(routes, |b| {
        b.stream_idle_timeout(Some(Duration::from_millis(300)))
    })
    .await;
    let mut events = sandbox.follow_output(7).await.expect("opens");
    let first = events.next().await.expect("an item").expect("a line");
    assert_eq!(first.line, "one");
    let err = events.next().await.expect("an item").expect_err("silence");
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                setting: TimeoutSetting::StreamIdleTimeout,
                ..
            }
        ),
        "{err}"
    );
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn requests_are_replayed_while_the_sandbox_is_not_ready() {
    let hits = Hits::default();
    let routes = axum::Router::new()
        .route(
            "/api/v1/processes/5/stdin",
            post(|State(hits): State<Hits>, body: Bytes| async move {
                if hits.hit() == 0 {
                    let not_ready = json!({"message": "waking", "code": "SANDBOX_NOT_READY"});
                    return (StatusCode::SERVICE_UNAVAILABLE, Json(not_ready)).into_response();
                }
                assert_eq!(&body[..], b"input");
                StatusCode::NO_CONTENT.into_response()
            }),
        )
        .route(
            "/api/v1/processes/6",
            get(|| async {
                let body = json!({"error": "no such process", "code": "NOT_FOUND"});
                (StatusCode::NOT_FOUND, Json(body))
            }),
        )
        .with_state(hits.clone());
    let sandbox = fake::sandbox_with(routes, |b| b).await;
    sandbox
        .write_stdin(5, &b"input"[..])
        .await
        .expect("written on replay");
    assert_eq!(hits.count(), 2);
    // The agent's 404 is a missing process, not a missing sandbox.
    let err = sandbox.get_process(6).await.expect_err("404");
    assert!(matches!(err, ClientError::Api { .. }), "{err}");
    assert_eq!(err.code(), Some("NOT_FOUND"));
}

#[derive(serde::Deserialize)]
struct PathQuery {
    path: String,
}

#[tokio::test]
async fn files_stream_both_ways() {
    let routes = axum::Router::new().route(
        "/api/v1/files",
        put(
            |Query(q): Query<PathQuery>, headers: HeaderMap, body: Body| async move {
                assert_eq!(q.path, "/work/a b.bin");
                assert_eq!(headers[header::CONTENT_LENGTH], "300000");
                let mut total = 0usize;
                let mut stream = body.into_data_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.expect("chunk");
                    assert!(chunk.iter().all(|b| *b == 7));
                    total += chunk.len();
                }
                assert_eq!(total, 300_000);
                StatusCode::NO_CONTENT
            },
        )
        .get(|Query(q): Query<PathQuery>| async move {
            assert_eq!(q.path, "/work/a b.bin");
            let chunks = futures::stream::iter(
                (0..3).map(|_| Ok::<_, Infallible>(Bytes::from(vec![7u8; 100_000]))),
            );
            Body::from_stream(chunks)
        }),
    );
    let sandbox = fake::sandbox_with(routes, |b| b).await;
    let chunks = futures::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 100_000]))),
    );
    sandbox
        .write_file_stream("/work/a b.bin", chunks, Some(300_000))
        .await
        .expect("uploaded");
    sandbox
        .write_file("/work/a b.bin", vec![7u8; 300_000])
        .await
        .expect("uploaded from memory, in chunks");
    let mut stream = sandbox
        .read_file_stream("/work/a b.bin")
        .await
        .expect("opens");
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("chunk").len();
    }
    assert_eq!(total, 300_000);
    let whole = sandbox.read_file("/work/a b.bin").await.expect("reads");
    assert_eq!(whole.len(), 300_000);
}

#[tokio::test]
async fn a_sandbox_without_a_url_cannot_be_connected() {
    let router = axum::Router::new().route(
        "/v1/namespaces/default/sandboxes/sb",
        get(|| async {
            let mut info = fake::info("sb", SandboxStatus::Terminated, "http://x");
            info.sandbox_url = None;
            Json(info)
        }),
    );
    let client = fake::client(&fake::serve(router).await);
    let err = client.connect("sb").await.expect_err("ended");
    assert!(matches!(err, ClientError::NotRoutable(_)), "{err}");
}

/// What the fake agent saw: method, raw path (still percent-encoded) and JSON body.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, serde_json::Value)>>>;

fn managed_info(pid: u32, name: &str) -> serde_json::Value {
    json!({
        "pid": pid, "status": "running", "exit_code": null, "signal": null,
        "stdin_writable": false, "command": "sh", "args": ["-c", "serve"],
        "started_at": 1_767_225_612_345_u64, "ended_at": null, "oom_killed": false,
        "managed": {
            "id": name, "name": name, "status": "running", "restart_count": 1,
            "restart": {"policy": "on_failure", "max_restarts": 1,
                        "initial_backoff_ms": 50, "max_backoff_ms": 30000},
            "health_check": {"type": "tcp", "port": 8080, "initial_delay_ms": 0,
                             "interval_ms": 100, "timeout_ms": 100, "failure_threshold": 1},
            "health_status": "healthy", "consecutive_health_failures": 0,
            "last_exit": {"exit_code": 3, "signal": null, "oom_killed": false, "ended_at": 2},
            "last_error": null, "next_restart_at": null
        }
    })
}

#[tokio::test]
async fn managed_processes_are_started_and_addressed_by_name() {
    use alcove_wire::process::{
        HealthCheck, HealthCheckKind, ManagedStatus, RestartConfig, RestartPolicy,
    };
    use axum::http::{Method, Uri};

    let seen: Seen = Seen::default();
    let record = seen.clone();
    let routes = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
        let record = record.clone();
        async move {
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let path = uri.path().to_string();
            record
                .lock()
                .expect("lock")
                .push((method.to_string(), path.clone(), json));
            match (method, path.as_str()) {
                (Method::POST, "/api/v1/processes") => {
                    (StatusCode::CREATED, Json(managed_info(317, "web 1?#%"))).into_response()
                }
                (Method::POST, "/api/v1/processes/plain/restart") => (
                    StatusCode::CONFLICT,
                    Json(json!({"error": "not managed", "code": "NOT_MANAGED"})),
                )
                    .into_response(),
                (Method::POST, _) if path.ends_with("/restart") => {
                    Json(managed_info(318, "web 1?#%")).into_response()
                }
                (Method::GET, _) if path.ends_with("/stdout") => {
                    Json(json!({"pid": 318, "lines": ["hi"], "line_count": 1})).into_response()
                }
                (Method::GET, _) => Json(managed_info(318, "web 1?#%")).into_response(),
                _ => StatusCode::NO_CONTENT.into_response(),
            }
        }
    });
    let sandbox = fake::sandbox_with(routes, |b| b).await;
    let name = "web 1?#%";
    let started = sandbox
        .start_process(
            Command::new("sh")
                .args(["-c", "serve"])
                .name(name)
                .restart(RestartConfig {
                    policy: RestartPolicy::OnFailure,
                    max_restarts: Some(1),
                    initial_backoff_ms: 50,
                    ..RestartConfig::default()
                })
                .health_check(HealthCheck {
                    kind: HealthCheckKind::Tcp,
                    port: 8080,
                    path: None,
                    initial_delay_ms: 0,
                    interval_ms: 100,
                    timeout_ms: 100,
                    failure_threshold: 1,
                }),
        )
        .await
        .expect("started");
    let managed = started.managed.expect("managed");
    assert_eq!(managed.name.as_deref(), Some(name));
    assert_eq!(managed.last_exit.and_then(|e| e.exit_code), Some(3));

    let info = sandbox.get_process(name).await.expect("by name");
    assert_eq!(info.pid, 318);
    assert_eq!(
        info.managed.as_ref().map(|m| (m.status, m.restart_count)),
        Some((ManagedStatus::Running, 1))
    );
    let restarted = sandbox
        .restart_process(name.to_string())
        .await
        .expect("restarted");
    assert_eq!(restarted.pid, 318);
    sandbox.send_signal("web", 15).await.expect("signalled");
    sandbox.kill_process(318).await.expect("killed by pid");
    let stdout = sandbox
        .get_stdout(&String::from("web"))
        .await
        .expect("stdout by name");
    assert_eq!(stdout.lines, ["hi"]);
    let err = sandbox.restart_process("plain").await.expect_err("409");
    assert_eq!(
        (err.status(), err.code()),
        (Some(StatusCode::CONFLICT), Some("NOT_MANAGED"))
    );

    let sent = seen.lock().expect("lock").clone();
    let (_, _, start_body) = &sent[0];
    assert_eq!(start_body["name"], name);
    assert_eq!(
        start_body["restart"],
        json!({"policy": "on_failure", "max_restarts": 1,
               "initial_backoff_ms": 50, "max_backoff_ms": 30000})
    );
    assert_eq!(
        start_body["health_check"],
        json!({"type": "tcp", "port": 8080, "initial_delay_ms": 0, "interval_ms": 100,
               "timeout_ms": 100, "failure_threshold": 1})
    );
    let calls: Vec<(&str, &str)> = sent[1..]
        .iter()
        .map(|(m, p, _)| (m.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET", "/api/v1/processes/web%201%3F%23%25"),
            ("POST", "/api/v1/processes/web%201%3F%23%25/restart"),
            ("POST", "/api/v1/processes/web/signal"),
            ("DELETE", "/api/v1/processes/318"),
            ("GET", "/api/v1/processes/web/stdout"),
            ("POST", "/api/v1/processes/plain/restart"),
        ]
    );

    // Names the agent would refuse (or that no path can carry) send nothing.
    for bad in ["", "123", "a/b", "run", ".."] {
        let err = sandbox.get_process(bad).await.expect_err(bad);
        assert!(
            matches!(err, ClientError::InvalidArgument(_)),
            "{bad}: {err}"
        );
        let err = sandbox.restart_process(bad).await.expect_err(bad);
        assert!(
            matches!(err, ClientError::InvalidArgument(_)),
            "{bad}: {err}"
        );
    }
    let err = sandbox
        .start_process(Command::new("sh").name("run"))
        .await
        .expect_err("refused");
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    assert_eq!(seen.lock().expect("lock").len(), sent.len());
}

#[tokio::test]
async fn a_sandbox_reads_its_logs_from_the_control_plane() {
    use axum::extract::RawQuery;

    let routes = axum::Router::new()
        .route(
            "/v1/namespaces/default/sandboxes/sb/logs",
            get(|headers: HeaderMap, RawQuery(query): RawQuery| async move {
                // Not routed to the sandbox: no Host rewrite to `sb.local`.
                assert_ne!(headers[header::HOST], "sb.local");
                assert_eq!(query.as_deref(), Some("processId=web&tail=5"));
                Json(json!({"logs": [], "nextToken": null}))
            }),
        )
        .route(
            "/v1/namespaces/default/sandboxes/sb/processes",
            get(|| async { Json(json!({"processes": []})) }),
        );
    let sandbox = fake::sandbox_with(routes, |b| b).await;
    let page = sandbox
        .get_logs(&crate::LogsRequest::new().process("web").tail(5))
        .await
        .expect("logs");
    assert!(page.logs.is_empty() && page.next_token.is_none());
    assert!(
        sandbox
            .list_log_processes()
            .await
            .expect("processes")
            .is_empty()
    );
}
