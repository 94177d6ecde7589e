//! `follow_*` across broken connections: opened again, each line handed out once, in order.
//!
//! Each hit of the follow route is one scripted connection: its events, then a break (the body
//! fails mid-stream) or a clean end; or an error answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde_json::json;

use super::fake::{self, Hits};
use crate::{ClientError, FOLLOW_RECONNECTS, Sandbox};

const EOF: &str = "event: eof\ndata: {}\n\n";

/// One scripted answer of the follow route.
#[derive(Clone)]
enum Script {
    /// These events, then the body breaks.
    Breaks(Vec<String>),
    /// These events, then the body ends.
    Ends(Vec<String>),
    /// An error answer.
    Answer(StatusCode, serde_json::Value),
}

fn output(line: &str) -> String {
    format!(
        "event: output\ndata: {}\n\n",
        json!({"line": line, "timestamp": 1, "stream": "stdout"})
    )
}

fn batch(lines: &[String], id: u32) -> String {
    format!(
        "event: output_batch\nid: {id}\ndata: {}\n\n",
        json!({"stream": "stdout", "timestamp": 1, "lines": lines})
    )
}

fn lines(first: u32, last: u32) -> Vec<String> {
    (first..=last)
        .map(|i| output(&format!("line{i}")))
        .collect()
}

fn numbered(first: u32, last: u32) -> Vec<String> {
    (first..=last).map(|i| format!("line{i}")).collect()
}

fn with_eof(mut events: Vec<String>) -> Vec<String> {
    events.push(EOF.into());
    events
}

/// Each follow request's query and `Last-Event-ID`, in order.
type Asked = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone)]
struct Agent {
    hits: Hits,
    scripts: Arc<Vec<Script>>,
    asked: Asked,
}

async fn follow_route(State(agent): State<Agent>, uri: Uri, headers: HeaderMap) -> Response {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query = uri.query().unwrap_or_default().to_string();
    if let Ok(mut asked) = agent.asked.lock() {
        asked.push((query, last_event_id));
    }
    let hit = agent.hits.hit();
    let script = agent.scripts[hit.min(agent.scripts.len() - 1)].clone();
    let (events, breaks) = match script {
        Script::Answer(status, body) => return (status, Json(body)).into_response(),
        Script::Breaks(events) => (events, true),
        Script::Ends(events) => (events, false),
    };
    let chunks = futures::stream::iter(
        events
            .into_iter()
            .map(|event| Ok::<_, std::io::Error>(Bytes::from(event))),
    )
    .then(|chunk| async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        chunk
    });
    // The break comes once the events are on their way (an abort may drop what is unsent).
    let end = futures::stream::iter(breaks.then(|| Err(std::io::Error::other("cut")))).then(
        |cut| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            cut
        },
    );
    let body = Body::from_stream(chunks.chain(end));
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

/// A fake whose sandbox `sb` points back at it; its pid 7 follows answer `scripts` in order
/// (the last repeats).
async fn agent(scripts: Vec<Script>) -> (Sandbox, Hits) {
    let (sandbox, hits, _) = agent_asked(scripts).await;
    (sandbox, hits)
}

/// [`agent`], and what each follow request asked.
async fn agent_asked(scripts: Vec<Script>) -> (Sandbox, Hits, Asked) {
    let hits = Hits::default();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let agent = Agent {
        hits: hits.clone(),
        scripts: Arc::new(scripts),
        asked: asked.clone(),
    };
    let router = axum::Router::new()
        .route("/api/v1/processes/7/output/follow", get(follow_route))
        .route("/api/v1/processes/7/stdout/follow", get(follow_route))
        .with_state(agent);
    (fake::sandbox_with(router, |b| b).await, hits, asked)
}

/// The lines a follow of pid 7's output hands out, and its error.
async fn follow(sandbox: &Sandbox) -> (Vec<String>, Option<ClientError>) {
    let mut events = sandbox.follow_output(7).await.expect("opens");
    let mut got = Vec::new();
    while let Some(item) = events.next().await {
        match item {
            Ok(event) => got.push(event.line),
            Err(err) => {
                assert!(
                    events.next().await.is_none(),
                    "the stream ends after its error"
                );
                return (got, Some(err));
            }
        }
    }
    (got, None)
}

#[tokio::test]
async fn a_follow_broken_midway_goes_on_where_it_stopped() {
    let (sandbox, hits) = agent(vec![
        Script::Breaks(lines(1, 7)),
        Script::Ends(with_eof(lines(1, 10))),
    ])
    .await;
    let (got, err) = follow(&sandbox).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, numbered(1, 10));
    assert_eq!(hits.count(), 2);
}

#[tokio::test]
async fn a_follow_with_event_ids_goes_on_after_the_last_one_taken() {
    // The agent dropped lines 1-5 while the follower was away: counting would skip 7 lines
    // never seen; the id says where to go on, and the agent answers only what came after it.
    let (sandbox, hits, asked) = agent_asked(vec![
        Script::Breaks(vec![
            batch(&numbered(1, 3), 3),
            batch(&numbered(4, 7), 7),
            "event: output_batch\nid: 99".into(),
        ]),
        Script::Ends(with_eof(vec![batch(&numbered(8, 12), 12)])),
    ])
    .await;
    let (got, err) = follow(&sandbox).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, numbered(1, 12));
    assert_eq!(hits.count(), 2);
    let asked = asked.lock().expect("lock").clone();
    assert_eq!(
        asked,
        [
            ("batch=true".to_string(), None),
            ("batch=true".to_string(), Some("7".to_string())),
        ]
    );
}

#[tokio::test]
async fn a_sandbox_that_is_not_ready_is_waited_for() {
    let not_ready = Script::Answer(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"message": "sandbox sb is suspending, not running", "code": "SANDBOX_NOT_READY"}),
    );
    let (sandbox, hits) = agent(vec![
        Script::Breaks(lines(1, 4)),
        not_ready.clone(),
        not_ready,
        Script::Ends(with_eof(lines(1, 6))),
    ])
    .await;
    let (got, err) = follow(&sandbox).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, numbered(1, 6));
    assert_eq!(hits.count(), 4);
}

#[tokio::test]
async fn a_process_or_sandbox_gone_on_reconnect_is_the_error_at_once() {
    let (sandbox, hits) = agent(vec![
        Script::Breaks(lines(1, 3)),
        Script::Answer(
            StatusCode::NOT_FOUND,
            json!({"error": "process 7 not found", "code": "NOT_FOUND"}),
        ),
    ])
    .await;
    let (got, err) = follow(&sandbox).await;
    assert_eq!(got, numbered(1, 3));
    let err = err.expect("an error");
    assert!(matches!(err, ClientError::Api { .. }), "{err}");
    assert_eq!(err.code(), Some("NOT_FOUND"));
    assert_eq!(hits.count(), 2);
}

#[tokio::test]
async fn a_clean_cut_without_eof_is_opened_again_and_a_server_without_eof_ends() {
    let (sandbox, hits) = agent(vec![
        Script::Ends(lines(1, 2)),
        Script::Ends(with_eof(lines(1, 5))),
    ])
    .await;
    let (got, err) = follow(&sandbox).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, numbered(1, 5));
    assert_eq!(hits.count(), 2);
    // No eof ever: one more look that brings nothing new ends the follow.
    let (sandbox, hits) = agent(vec![Script::Ends(lines(1, 3))]).await;
    let (got, err) = follow(&sandbox).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, numbered(1, 3));
    assert_eq!(hits.count(), 2);
    // With eof: no other request.
    let (sandbox, hits) = agent(vec![Script::Ends(with_eof(lines(1, 1)))]).await;
    assert_eq!(follow(&sandbox).await.0, numbered(1, 1));
    assert_eq!(hits.count(), 1);
}

#[tokio::test]
async fn progress_renews_the_budget_and_stdout_resumes_too() {
    let total = 3 * FOLLOW_RECONNECTS;
    let mut scripts: Vec<Script> = (1..=total).map(|n| Script::Breaks(lines(1, n))).collect();
    scripts.push(Script::Ends(with_eof(lines(1, total))));
    let (sandbox, _) = agent(scripts).await;
    let (got, err) = follow(&sandbox).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, numbered(1, total));
    let (sandbox, hits) = agent(vec![
        Script::Breaks(lines(1, 2)),
        Script::Ends(with_eof(lines(1, 3))),
    ])
    .await;
    let events = sandbox.follow_stdout(7).await.expect("opens");
    let got: Vec<String> = events.map(|e| e.expect("a line").line).collect().await;
    assert_eq!(got, numbered(1, 3));
    assert_eq!(hits.count(), 2);
}

#[tokio::test]
async fn breaks_without_a_new_line_are_bounded() {
    // Real pauses: 0.25 + 0.5 + 1 + 2 + 4 s.
    let (sandbox, hits) = agent(vec![Script::Breaks(lines(1, 2))]).await;
    let (got, err) = follow(&sandbox).await;
    assert_eq!(got, numbered(1, 2));
    let err = err.expect("an error");
    assert!(matches!(err, ClientError::Connection { .. }), "{err}");
    assert_eq!(hits.count(), 1 + FOLLOW_RECONNECTS as usize);
}
