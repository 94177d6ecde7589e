//! Control-plane calls against the fake: retries, error mapping, create's wait, deadlines,
//! secrets.

use std::time::Duration;

use alcove_wire::sandbox::SandboxStatus;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;

use super::fake::{self, Hits};
use crate::{ClientError, CreateOptions, TimeoutSetting};

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"message": "busy", "code": "SERVER_BUSY"})),
    )
        .into_response()
}

#[tokio::test]
async fn a_get_is_retried_through_busy_answers() {
    let hits = Hits::default();
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/default/sandboxes/sb",
            get(|State(hits): State<Hits>| async move {
                if hits.hit() < 2 {
                    return busy();
                }
                Json(fake::info("sb", SandboxStatus::Running, "http://unused")).into_response()
            })
            .patch(|State(hits): State<Hits>| async move {
                hits.hit();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"message": "store down", "code": "STORE_UNAVAILABLE"})),
                )
                    .into_response()
            }),
        )
        .with_state(hits.clone());
    let url = fake::serve(router).await;
    let client = fake::client(&url);
    let info = client.get("sb").await.expect("third attempt answers");
    assert_eq!(info.id, "sb");
    assert_eq!(hits.count(), 3);
    // A PATCH is not idempotent: one attempt, and the 503 is reported as it came.
    let err = client.rename("sb", "new").await.expect_err("store down");
    assert_eq!(hits.count(), 4);
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(err.code(), Some("STORE_UNAVAILABLE"));
}

#[tokio::test]
async fn a_create_refused_unread_by_a_busy_server_is_sent_again() {
    let hits = Hits::default();
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/default/sandboxes",
            post(|State(hits): State<Hits>| async move {
                match hits.hit() {
                    0 => busy(),
                    1 => (
                        StatusCode::TOO_MANY_REQUESTS,
                        Json(json!({"message": "slow down", "code": "TOO_MANY_REQUESTS"})),
                    )
                        .into_response(),
                    _ => Json(json!({"sandbox_id": "sb", "status": "running",
                        "sandbox": fake::info("sb", SandboxStatus::Running, "http://unused")}))
                    .into_response(),
                }
            }),
        )
        .with_state(hits.clone());
    let client = fake::client(&fake::serve(router).await);
    let info = client
        .create(CreateOptions::new())
        .await
        .expect("third attempt");
    assert_eq!((info.id.as_str(), hits.count()), ("sb", 3));
}

#[tokio::test]
async fn errors_map_to_typed_variants() {
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/default/sandboxes/{id}",
            get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({"message": "no sandbox", "code": "NOT_FOUND"})),
                )
            }),
        )
        .route(
            "/v1/namespaces/default/sandboxes",
            post(|| async {
                (
                    StatusCode::CONFLICT,
                    Json(json!({"message": "name taken", "code": "NAME_TAKEN"})),
                )
            }),
        )
        .route(
            "/v1/namespaces/default/snapshots/{id}",
            get(|| async { (StatusCode::NOT_FOUND, "gone") }),
        );
    let client = fake::client(&fake::serve(router).await);
    let err = client.get("nope").await.expect_err("404");
    assert!(matches!(err, ClientError::SandboxNotFound { ref sandbox, .. } if sandbox == "nope"));
    let err = client
        .create(CreateOptions::new().name("taken"))
        .await
        .expect_err("409");
    assert!(matches!(err, ClientError::NameConflict { .. }), "{err}");
    let err = client.get_snapshot("s1").await.expect_err("404");
    assert!(matches!(err, ClientError::SnapshotNotFound { .. }), "{err}");
    let err = client.get("").await.expect_err("refused locally");
    assert!(matches!(err, ClientError::InvalidArgument(_)));
}

#[tokio::test]
async fn create_sends_its_budget_and_polls_until_running() {
    let polls = Hits::default();
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/default/sandboxes",
            post(
                |headers: HeaderMap, Json(body): Json<serde_json::Value>| async move {
                    assert_eq!(headers["x-tensorlake-request-timeout-ms"], "5000");
                    assert_eq!(headers["x-tensorlake-request-timeout-grace-ms"], "1250");
                    assert_eq!(headers["authorization"], "Bearer test-key");
                    assert_eq!(body["name"], "env");
                    assert_eq!(body["resources"]["cpus"], 2.0);
                    Json(json!({"sandbox_id": "sb", "status": "pending", "name": "env"}))
                },
            ),
        )
        .route(
            "/v1/namespaces/default/sandboxes/sb",
            get(|State(polls): State<Hits>| async move {
                let status = if polls.hit() < 1 {
                    SandboxStatus::Pending
                } else {
                    SandboxStatus::Running
                };
                Json(fake::info("sb", status, "http://unused"))
            }),
        )
        .with_state(polls.clone());
    let client = fake::client(&fake::serve(router).await);
    let info = client
        .create(CreateOptions::new().name("env").cpus(2.0))
        .await
        .expect("runs");
    assert_eq!(info.status, SandboxStatus::Running);
    assert_eq!(polls.count(), 2);
}

#[tokio::test]
async fn create_takes_a_running_sandbox_from_the_answer_without_a_get() {
    let gets = Hits::default();
    let embedded = std::sync::Arc::new(std::sync::Mutex::new(SandboxStatus::Running));
    let answer_status = embedded.clone();
    let router =
        axum::Router::new()
            .route(
                "/v1/namespaces/default/sandboxes",
                post(move || {
                    let status = *answer_status.lock().expect("lock");
                    let mut sandbox = fake::info("sb", status, "http://unused");
                    sandbox.name = Some("from-answer".into());
                    async move {
                        Json(json!({"sandbox_id": "sb", "status": "running", "sandbox": sandbox}))
                    }
                }),
            )
            .route(
                "/v1/namespaces/default/sandboxes/sb",
                get(|State(gets): State<Hits>| async move {
                    gets.hit();
                    Json(fake::info("sb", SandboxStatus::Running, "http://unused"))
                }),
            )
            .with_state(gets.clone());
    let client = fake::client(&fake::serve(router).await);
    let info = client.create(CreateOptions::new()).await.expect("runs");
    assert_eq!(info.name.as_deref(), Some("from-answer"));
    assert_eq!(gets.count(), 0);
    // An embedded sandbox that does not run is not trusted: the client asks again.
    *embedded.lock().expect("lock") = SandboxStatus::Pending;
    let info = client.create(CreateOptions::new()).await.expect("runs");
    assert_ne!(info.name.as_deref(), Some("from-answer"));
    assert_eq!(gets.count(), 1);
}

#[tokio::test]
async fn a_sandbox_that_fails_while_starting_is_reported() {
    let router = axum::Router::new().route(
        "/v1/namespaces/default/sandboxes",
        post(|| async {
            Json(json!({
                "sandbox_id": "sb", "status": "failed",
                "termination_reason": "startup_failed", "error_details": "no image"
            }))
        }),
    );
    let client = fake::client(&fake::serve(router).await);
    let err = client
        .create(CreateOptions::new())
        .await
        .expect_err("failed");
    match err {
        ClientError::SandboxFailed {
            sandbox_id, reason, ..
        } => {
            assert_eq!(sandbox_id, "sb");
            assert_eq!(reason.as_deref(), Some("startup_failed"));
        }
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test]
async fn a_request_that_gets_no_answer_times_out() {
    let router = axum::Router::new().route(
        "/v1/namespaces/default/sandboxes",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        }),
    );
    let url = fake::serve(router).await;
    let client = fake::builder(&url)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("builds");
    let started = std::time::Instant::now();
    let err = client.list().await.expect_err("times out");
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                setting: TimeoutSetting::Timeout,
                ..
            }
        ),
        "{err}"
    );
    // Timeouts are not retried: one deadline, not three.
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_server_that_is_not_there_is_a_connection_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let err = fake::client(&url).list().await.expect_err("refused");
    assert!(matches!(err, ClientError::Connection { .. }), "{err}");
}

#[tokio::test]
async fn secrets_are_set_listed_and_deleted() {
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/team/secrets/TOKEN",
            put(|Json(body): Json<serde_json::Value>| async move {
                assert_eq!(body, json!({"value": "s3cret"}));
                Json(json!({"name": "TOKEN", "created_at": 1, "updated_at": 2}))
            })
            .delete(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/v1/namespaces/team/secrets",
            get(|| async {
                Json(json!({"secrets": [{"name": "TOKEN", "created_at": 1, "updated_at": 2}]}))
            }),
        );
    let url = fake::serve(router).await;
    let client = fake::builder(&url)
        .namespace("team")
        .build()
        .expect("builds");
    let set = client.set_secret("TOKEN", "s3cret").await.expect("set");
    assert_eq!(set.updated_at, 2);
    let names: Vec<_> = client
        .list_secrets()
        .await
        .expect("listed")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["TOKEN"]);
    client.delete_secret("TOKEN").await.expect("deleted");
    let err = client.delete_secret("OTHER").await.expect_err("404");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
}

#[tokio::test]
async fn the_archive_is_read_a_page_at_a_time_and_one_by_id() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use alcove_wire::sandbox::{ArchivedSandboxInfo, ListArchivedSandboxesResponse};
    use axum::extract::{Path, Query};

    use crate::{ArchiveDirection, ArchivedPageRequest};

    let archived = |id: &str| ArchivedSandboxInfo {
        sandbox: fake::info(id, SandboxStatus::Terminated, "http://unused"),
        archived_at: 1_767_225_660_000,
    };
    let queries: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
    let seen = Arc::clone(&queries);
    let page = ListArchivedSandboxesResponse {
        sandboxes: vec![archived("a"), archived("b")],
        prev_cursor: None,
        next_cursor: Some("bmV4dA".into()),
    };
    let one = archived("a");
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/default/archived-sandboxes",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let page = page.clone();
                seen.lock().expect("lock").push(q);
                async move { Json(page) }
            }),
        )
        .route(
            "/v1/namespaces/default/archived-sandboxes/{id}",
            get(move |Path(id): Path<String>| {
                let one = one.clone();
                async move {
                    if id == "a" {
                        Json(one).into_response()
                    } else {
                        (
                            StatusCode::NOT_FOUND,
                            Json(json!({"message": "archived sandbox not found", "code": "NOT_FOUND"})),
                        )
                            .into_response()
                    }
                }
            }),
        );
    let url = fake::serve(router).await;
    let client = fake::client(&url);

    let got = client
        .list_archived(&ArchivedPageRequest::from_cursor(
            2,
            "Y3Vy",
            ArchiveDirection::Backward,
        ))
        .await
        .expect("page");
    let ids: Vec<_> = got
        .sandboxes
        .iter()
        .map(|s| s.sandbox.id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(got.next_cursor.as_deref(), Some("bmV4dA"));
    client
        .list_archived(&ArchivedPageRequest::default())
        .await
        .expect("defaults");
    let sent = queries.lock().expect("lock").clone();
    let expected: HashMap<String, String> = [
        ("limit", "2"),
        ("cursor", "Y3Vy"),
        ("direction", "backward"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(sent, vec![expected, HashMap::new()]);

    let info = client.get_archived("a").await.expect("get");
    assert_eq!(
        (info.sandbox.id.as_str(), info.archived_at),
        ("a", 1_767_225_660_000)
    );
    let err = client.get_archived("gone").await.expect_err("404");
    assert!(matches!(err, ClientError::SandboxNotFound { .. }), "{err}");
    for bad in [
        ArchivedPageRequest::first(0),
        ArchivedPageRequest::from_cursor(1, " ", ArchiveDirection::Forward),
    ] {
        assert!(matches!(
            client.list_archived(&bad).await,
            Err(ClientError::InvalidArgument(_))
        ));
    }
    assert_eq!(
        queries.lock().expect("lock").len(),
        2,
        "bad arguments send nothing"
    );
}

fn log_record(body: &str, timestamp: u64, level: u8) -> serde_json::Value {
    json!({
        "timestamp": timestamp, "uuid": format!("0b6f2c6e-58b0-4a57-0000-{timestamp:012}"),
        "namespace": "team", "application": "", "sandboxId": "sb",
        "resourceAttributes": [["sandbox_id", "sb"], ["source", "process"]],
        "body": body, "level": level, "retention": 7, "allocations": [], "functionRuns": [],
        "logAttributes": "{\"source\":\"process\",\"pid\":317,\"stream\":\"stdout\",\"managed_name\":\"web\"}"
    })
}

#[tokio::test]
async fn logs_are_read_under_the_namespace_with_repeated_query_parameters() {
    use std::sync::{Arc, Mutex};

    use alcove_wire::journal::LogLevel;
    use axum::extract::RawQuery;

    use crate::LogsRequest;

    let queries: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&queries);
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/team/sandboxes/sb/logs",
            get(move |RawQuery(query): RawQuery| {
                let query = query.unwrap_or_default();
                seen.lock().expect("lock").push(query.clone());
                async move {
                    // Three head pages (t1, t2, end), or two tail pages going backwards.
                    let (logs, next) = if query.contains("tail=") {
                        if query.contains("nextToken=b1") {
                            (vec![log_record("one", 1, 3), log_record("two", 2, 3)], None)
                        } else {
                            (vec![log_record("three", 3, 4)], Some("b1"))
                        }
                    } else if query.contains("nextToken=t2") {
                        (vec![log_record("three", 3, 4)], None)
                    } else if query.contains("nextToken=t1") {
                        (vec![log_record("two", 2, 3)], Some("t2"))
                    } else {
                        (vec![log_record("one", 1, 3)], Some("t1"))
                    };
                    Json(json!({"logs": logs, "nextToken": next}))
                }
            }),
        )
        .route(
            "/v1/namespaces/team/sandboxes/sb/processes",
            get(|| async {
                Json(json!({"processes": [{
                    "processId": "317", "processPid": "317", "processCommand": "sh",
                    "processManagedId": "web", "processManagedName": "web",
                    "firstSeen": 1, "lastSeen": 3, "logCount": 3
                }]}))
            }),
        )
        .route(
            "/v1/namespaces/team/sandboxes/{id}/logs",
            get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({"message": "sandbox not found", "code": "NOT_FOUND"})),
                )
            }),
        );
    let url = fake::serve(router).await;
    let client = fake::builder(&url)
        .namespace("team")
        .build()
        .expect("builds");

    let request = LogsRequest::new()
        .level(LogLevel::Warn)
        .level(LogLevel::Error)
        .process("web 1&x")
        .process(317)
        .body("a b")
        .head(50)
        .next_token("t1");
    let page = client.get_logs("sb", &request).await.expect("a page");
    assert_eq!(page.logs.len(), 1);
    assert_eq!(page.logs[0].body, "two");
    assert_eq!(page.logs[0].level, 3);
    assert_eq!(page.logs[0].sandbox_id, "sb");
    assert_eq!(page.next_token.as_deref(), Some("t2"));
    assert_eq!(
        queries.lock().expect("lock").clone(),
        ["level=4&level=5&processId=web+1%26x&processId=317&body=a+b&head=50&nextToken=t1"]
    );

    let all = client
        .get_all_logs("sb", &LogsRequest::new().head(1))
        .await
        .expect("every page");
    let bodies: Vec<_> = all.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, ["one", "two", "three"]);
    let all = client
        .get_all_logs("sb", &LogsRequest::new().tail(2))
        .await
        .expect("every page, backwards");
    let bodies: Vec<_> = all.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, ["one", "two", "three"], "oldest first");
    assert_eq!(
        queries.lock().expect("lock")[1..],
        [
            "head=1",
            "head=1&nextToken=t1",
            "head=1&nextToken=t2",
            "tail=2",
            "tail=2&nextToken=b1"
        ]
    );

    let processes = client.list_log_processes("sb").await.expect("processes");
    assert_eq!(processes.len(), 1);
    assert_eq!(
        (
            processes[0].process_managed_name.as_str(),
            processes[0].log_count
        ),
        ("web", 3)
    );

    let err = client
        .get_logs("gone", &LogsRequest::new())
        .await
        .expect_err("404");
    assert!(
        matches!(err, ClientError::SandboxNotFound { ref sandbox, .. } if sandbox == "gone"),
        "{err}"
    );

    let sent = queries.lock().expect("lock").len();
    for bad in [
        LogsRequest::new().head(10).tail(10),
        LogsRequest::new().head(0),
        LogsRequest::new().process(""),
        LogsRequest::new().next_token(" "),
    ] {
        let err = client.get_logs("sb", &bad).await.expect_err("refused");
        assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    }
    let err = client
        .get_logs("", &LogsRequest::new())
        .await
        .expect_err("refused");
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    assert_eq!(
        queries.lock().expect("lock").len(),
        sent,
        "bad requests send nothing"
    );
}

#[tokio::test]
async fn a_copy_sends_times_once_and_reads_partial_answers() {
    let hits = Hits::default();
    let router = axum::Router::new()
        .route(
            "/v1/namespaces/default/sandboxes/{id}/copy",
            post(
                |State(hits): State<Hits>, uri: axum::http::Uri| async move {
                    let n = hits.hit();
                    let query = uri.query().unwrap_or_default().to_string();
                    let body = json!({"source_sandbox_id": "sb", "sandboxes": [
                        {"sandbox_id": "c1", "status": "running", "sandbox_url": query},
                        {"sandbox_id": "c2", "status": "failed", "reason": "no room"},
                    ]});
                    if n == 0 {
                        (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
                    } else {
                        (
                            StatusCode::CONFLICT,
                            Json(
                                json!({"message": "sandbox is suspended", "code": "INVALID_STATE"}),
                            ),
                        )
                            .into_response()
                    }
                },
            ),
        )
        .with_state(hits.clone());
    let client = fake::client(&fake::serve(router).await);
    let answer = client
        .copy("sb", 2)
        .await
        .expect("a 422 is a partial answer");
    assert_eq!(answer.source_sandbox_id, "sb");
    assert_eq!(answer.sandboxes.len(), 2);
    assert_eq!(answer.sandboxes[0].sandbox_url.as_deref(), Some("times=2"));
    assert_eq!(answer.sandboxes[1].status, SandboxStatus::Failed);
    assert_eq!(answer.sandboxes[1].reason.as_deref(), Some("no room"));
    let err = client.copy("sb", 1).await.expect_err("409");
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    assert_eq!(hits.count(), 2, "a refused copy is not sent again");
    for times in [0, crate::MAX_COPIES + 1] {
        let err = client.copy("sb", times).await.expect_err("refused locally");
        assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    }
    assert_eq!(hits.count(), 2);
}
