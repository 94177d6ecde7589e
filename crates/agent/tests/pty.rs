//! PTY sessions (docs/protocol/sandbox-api.md, PTY sessions) against the real router, real
//! terminals and a real WebSocket client.

mod common;

use std::path::Path;
use std::time::Duration;

use alcove_agent::AgentConfig;
use alcove_wire::pty::{self, ClientFrame, ServerFrame};
use common::{Agent, live_processes_with, marker};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Deadline for anything the agent should do promptly; only there to turn a hang into a
/// failure.
const DEADLINE: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn create(agent: &Agent, body: Value) -> (String, String) {
    let (status, created) = agent.post_json("/pty", body).await;
    assert_eq!(status, 201, "create failed: {created}");
    let id = created["session_id"].as_str().expect("session_id");
    let token = created["token"].as_str().expect("token");
    (id.to_string(), token.to_string())
}

/// How the token travels on the upgrade.
#[derive(Clone, Copy)]
enum TokenIn {
    Both,
    Query,
    Header,
}

async fn try_connect(
    agent: &Agent,
    id: &str,
    token: &str,
    place: TokenIn,
) -> Result<Ws, tungstenite::Error> {
    let mut url = agent.ws_url(&format!("/pty/{id}/ws"));
    if matches!(place, TokenIn::Both | TokenIn::Query) {
        url.push_str(&format!("?token={token}"));
    }
    let mut request = url.into_client_request().expect("request");
    if matches!(place, TokenIn::Both | TokenIn::Header) {
        let value = HeaderValue::from_str(token).expect("header value");
        request.headers_mut().insert("X-PTY-Token", value);
    }
    tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
        .await
        .expect("upgrade timed out")
        .map(|(ws, _)| ws)
}

async fn connect(agent: &Agent, id: &str, token: &str) -> Term {
    let ws = try_connect(agent, id, token, TokenIn::Both)
        .await
        .expect("connect");
    Term {
        ws,
        output: Vec::new(),
        exit: None,
        close: None,
    }
}

/// Status (and JSON body) of a refused upgrade.
async fn refused(agent: &Agent, id: &str, token: &str, place: TokenIn) -> (u16, Value) {
    match try_connect(agent, id, token, place).await {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body).expect("JSON error body");
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("upgrade was accepted"),
    }
}

/// A client end of a session: everything received so far.
struct Term {
    ws: Ws,
    output: Vec<u8>,
    exit: Option<i32>,
    close: Option<CloseFrame>,
}

impl Term {
    async fn send(&mut self, frame: ClientFrame<'_>) {
        self.ws
            .send(Message::Binary(frame.encode().into()))
            .await
            .expect("send frame");
    }

    async fn ready(&mut self) {
        self.send(ClientFrame::Ready).await;
    }

    async fn type_line(&mut self, line: &str) {
        self.send(ClientFrame::Input(format!("{line}\n").as_bytes()))
            .await;
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// Handles one message; false once the socket is closed.
    async fn receive(&mut self) -> bool {
        let message = tokio::time::timeout(DEADLINE, self.ws.next())
            .await
            .unwrap_or_else(|_| panic!("no message in time; output so far {:?}", self.text()));
        match message {
            Some(Ok(Message::Binary(bytes))) => {
                match ServerFrame::parse(&bytes).expect("known server frame") {
                    ServerFrame::Output(data) => {
                        assert!(self.exit.is_none(), "output after the exit frame");
                        self.output.extend_from_slice(data);
                    }
                    ServerFrame::Exit(code) => {
                        assert!(self.exit.is_none(), "two exit frames");
                        self.exit = Some(code);
                    }
                }
                true
            }
            Some(Ok(Message::Close(frame))) => {
                self.close = frame;
                true
            }
            Some(Ok(Message::Text(text))) => panic!("agent sent a text frame {text:?}"),
            Some(Ok(_)) => true,
            Some(Err(_)) | None => false,
        }
    }

    /// Reads until the output contains `needle`.
    async fn read_until(&mut self, needle: &str) {
        while !self.text().contains(needle) {
            assert!(
                self.receive().await,
                "socket closed before {needle:?}; got {:?}",
                self.text()
            );
        }
    }

    /// Reads until the agent closes the socket; returns (code, reason) of its close frame.
    async fn read_to_close(&mut self) -> (u16, String) {
        while self.receive().await {}
        let frame = self.close.as_ref().expect("agent sent a close frame");
        (u16::from(frame.code), frame.reason.to_string())
    }

    /// Whether any message arrives within `wait` (used only where none may arrive; a pass
    /// cannot depend on timing).
    async fn silent_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.ws.next()).await.is_err()
    }
}

async fn wait_for_file(path: &Path) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path:?} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `GET /pty/{id}` until `done` holds for the session (or it is gone, if `None`).
async fn wait_for_session(agent: &Agent, id: &str, done: impl Fn(Option<&Value>) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, info) = agent.get_json(&format!("/pty/{id}")).await;
        let info = (status == 200).then_some(&info);
        if done(info) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "session {id} never reached the expected state: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shell_round_trip_and_exit_code() {
    let agent = Agent::start().await;
    let (id, token) = create(
        &agent,
        json!({"command": "bash", "args": ["--norc", "--noprofile"], "rows": 24, "cols": 80}),
    )
    .await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    // Only the shell can compute 2; the terminal's echo of the typed line shows `$((1+1))`.
    term.type_line("echo hi-$((1+1))").await;
    term.read_until("hi-2").await;

    // Text frames carry nothing: this line must never be typed.
    term.ws
        .send(Message::Text("echo text-$((2+3))\n".into()))
        .await
        .expect("send text");
    // Pings are answered.
    term.ws
        .send(Message::Ping(b"are-you-there".to_vec().into()))
        .await
        .expect("ping");
    term.type_line("echo bin-$((3+4))").await;
    term.read_until("bin-7").await;
    assert!(!term.text().contains("text-5"), "a text frame was typed");

    term.type_line("exit 3").await;
    let (code, reason) = term.read_to_close().await;
    assert_eq!(term.exit, Some(3));
    assert_eq!((code, reason.as_str()), (1000, "exit:3"));

    let (status, info) = agent.get_json(&format!("/pty/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(info["is_alive"], false);
    assert_eq!(info["exit_code"], 3);
}

#[tokio::test]
async fn terminal_is_the_controlling_tty_with_term_set() {
    let agent = Agent::start().await;
    let script = "exec 3</dev/tty && echo has-ctty; echo term=$TERM; [ -t 1 ] && echo out-is-tty";
    let (id, token) = create(
        &agent,
        json!({"command": "sh", "args": ["-c", script], "rows": 24, "cols": 80}),
    )
    .await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    term.read_to_close().await;
    let text = term.text();
    assert!(
        text.contains("has-ctty"),
        "no controlling terminal: {text:?}"
    );
    assert!(text.contains("term=xterm-256color"), "{text:?}");
    assert!(text.contains("out-is-tty"), "{text:?}");
    assert_eq!(term.exit, Some(0));

    // The request's TERM wins.
    let (id, token) = create(
        &agent,
        json!({"command": "sh", "args": ["-c", "echo term=$TERM"], "env": {"TERM": "vt100"},
               "rows": 24, "cols": 80}),
    )
    .await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    term.read_to_close().await;
    assert!(term.text().contains("term=vt100"), "{:?}", term.text());
}

#[tokio::test]
async fn switched_user_owns_its_terminal() {
    let agent = Agent::start().await;
    let script =
        "echo uid=$(id -u); echo owner=$(stat -c %u $(tty)); exec 3</dev/tty && echo has-ctty";
    let body = json!({"command": "sh", "args": ["-c", script], "user": {"uid": 4321, "gid": 4321},
                      "rows": 24, "cols": 80});
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let (status, err) = agent.post_json("/pty", body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (403, Some("PERMISSION_DENIED"))
        );
        return;
    }
    let (id, token) = create(&agent, body).await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    term.read_to_close().await;
    let text = term.text();
    assert!(text.contains("uid=4321"), "{text:?}");
    assert!(text.contains("owner=4321"), "{text:?}");
    assert!(text.contains("has-ctty"), "{text:?}");
    assert_eq!(term.exit, Some(0));
}

#[tokio::test]
async fn output_is_held_until_ready() {
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let typed = dir.path().join("typed");
    let (id, token) = create(
        &agent,
        json!({"command": "sh", "args": ["-c", "echo early-$((20+1)); exec sh"],
               "rows": 24, "cols": 80}),
    )
    .await;
    let mut term = connect(&agent, &id, &token).await;
    // Input flows before READY; once the file exists the shell has produced output (the
    // early line and the echo of what was typed).
    term.type_line(&format!("echo late-$((40+2)); touch {}", typed.display()))
        .await;
    wait_for_file(&typed).await;
    assert!(
        term.silent_for(Duration::from_millis(300)).await,
        "output was sent before READY"
    );
    assert!(term.output.is_empty());
    term.ready().await;
    term.read_until("late-42").await;
    assert!(term.text().contains("early-21"), "{:?}", term.text());
    // Order is kept: the command's own output came first.
    let text = term.text();
    assert!(text.find("early-21") < text.find("late-42"));
}

#[tokio::test]
async fn quick_exit_loses_no_output() {
    let agent = Agent::start().await;
    // ~100 KB written at once, then an exit: everything must arrive before the exit frame.
    let (id, token) = create(
        &agent,
        json!({"command": "sh", "args": ["-c", "seq 1 20000; exit 5"], "rows": 24, "cols": 80}),
    )
    .await;
    // Attach only after the process is gone, so the output sat in the agent's buffer.
    wait_for_session(&agent, &id, |info| {
        info.is_some_and(|i| i["is_alive"] == false)
    })
    .await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    let (code, reason) = term.read_to_close().await;
    assert_eq!((code, reason.as_str()), (1000, "exit:5"));
    assert_eq!(term.exit, Some(5));
    let lines: Vec<String> = term.text().lines().map(|l| l.trim().to_string()).collect();
    let expected: Vec<String> = (1..=20000).map(|n| n.to_string()).collect();
    assert_eq!(lines, expected);

    // The same with the client attached while the process writes and exits.
    let (id, token) = create(
        &agent,
        json!({"command": "sh",
               "args": ["-c", "stty -echo; echo armed; read go; seq 1 20000; exit 6"],
               "rows": 24, "cols": 80}),
    )
    .await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    // Typed only once echo is off, so the output is exactly the script's.
    term.read_until("armed").await;
    term.type_line("go").await;
    let (code, reason) = term.read_to_close().await;
    assert_eq!((code, reason.as_str()), (1000, "exit:6"));
    assert_eq!(term.exit, Some(6));
    let lines: Vec<String> = term.text().lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(lines[0], "armed");
    assert_eq!(lines[1..], expected);
}

#[tokio::test]
async fn output_without_a_client_is_bounded_keeping_the_newest() {
    let mut config = AgentConfig::with_env(std::env::vars_os().collect());
    config.pty_buffer_bytes = 4096;
    let agent = Agent::start_with(config).await;
    // ~24 KB of output while nobody is attached.
    let (id, token) = create(
        &agent,
        json!({"command": "sh", "args": ["-c", "seq 1 5000"], "rows": 24, "cols": 80}),
    )
    .await;
    wait_for_session(&agent, &id, |info| {
        info.is_some_and(|i| i["is_alive"] == false)
    })
    .await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    term.read_to_close().await;
    assert_eq!(term.exit, Some(0));
    // Exactly the bound: the oldest bytes were cut, the newest kept.
    assert_eq!(term.output.len(), 4096);
    let text = term.text();
    assert!(
        text.ends_with("4999\r\n5000\r\n"),
        "newest output lost: {text:?}"
    );
    assert!(
        !text.starts_with("1\r\n2\r\n"),
        "oldest output was not dropped"
    );
}

#[tokio::test]
async fn signal_death_reports_128_plus_signal() {
    let agent = Agent::start().await;
    let (id, token) = create(
        &agent,
        json!({"command": "sh", "args": ["-c", "kill -9 $$"], "rows": 24, "cols": 80}),
    )
    .await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    let (code, reason) = term.read_to_close().await;
    assert_eq!(term.exit, Some(137));
    assert_eq!((code, reason.as_str()), (1000, "exit:137"));
}

#[tokio::test]
async fn resize_changes_the_terminal_size() {
    let agent = Agent::start().await;
    let (id, token) = create(&agent, json!({"command": "sh", "rows": 24, "cols": 80})).await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    term.type_line("stty size").await;
    term.read_until("24 80").await;

    term.send(ClientFrame::Resize {
        cols: 100,
        rows: 30,
    })
    .await;
    term.type_line("stty size").await;
    term.read_until("30 100").await;

    // A 0x0 resize (minimised window) is ignored, not applied.
    term.send(ClientFrame::Resize { cols: 0, rows: 0 }).await;
    let (status, _) = agent
        .post_json(
            &format!("/pty/{id}/resize"),
            json!({"cols": 132, "rows": 43}),
        )
        .await;
    assert_eq!(status, 200);
    term.type_line("stty size").await;
    term.read_until("43 132").await;
    let (_, info) = agent.get_json(&format!("/pty/{id}")).await;
    assert_eq!(
        (info["rows"].as_u64(), info["cols"].as_u64()),
        (Some(43), Some(132))
    );

    let (status, body) = agent
        .post_json(&format!("/pty/{id}/resize"), json!({"cols": 0, "rows": 43}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn reconnect_gets_output_produced_while_detached() {
    let agent = Agent::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (go, done) = (dir.path().join("go"), dir.path().join("done"));
    let (id, token) = create(&agent, json!({"command": "sh", "rows": 24, "cols": 80})).await;

    let mut first = connect(&agent, &id, &token).await;
    first.ready().await;
    first.type_line("echo first-$((1+1))").await;
    first.read_until("first-2").await;
    // Runs on after the client leaves: waits for `go`, prints, then marks `done`.
    first
        .type_line(&format!(
            "until [ -e {go} ]; do sleep 0.01; done; echo after-$((40+2)); touch {done}",
            go = go.display(),
            done = done.display()
        ))
        .await;
    first.ws.close(None).await.expect("close");
    drop(first);
    wait_for_session(&agent, &id, |info| {
        info.is_some_and(|i| i["attached"] == false)
    })
    .await;

    std::fs::write(&go, b"").expect("touch go");
    wait_for_file(&done).await;

    let mut second = connect(&agent, &id, &token).await;
    second.ready().await;
    second.read_until("after-42").await;
    // What the first client already received is not replayed.
    assert!(!second.text().contains("first-2"), "{:?}", second.text());
    let (_, info) = agent.get_json(&format!("/pty/{id}")).await;
    assert_eq!(info["attached"], true);
    assert_eq!(info["is_alive"], true);
}

#[tokio::test]
async fn a_new_client_replaces_the_old_one() {
    let agent = Agent::start().await;
    let (id, token) = create(&agent, json!({"command": "sh", "rows": 24, "cols": 80})).await;
    let mut old = connect(&agent, &id, &token).await;
    old.ready().await;
    let mut new = connect(&agent, &id, &token).await;
    let (code, reason) = old.read_to_close().await;
    assert_eq!(code, pty::CLOSE_REPLACED);
    assert_eq!(reason, pty::REPLACED_REASON);
    new.ready().await;
    new.type_line("echo new-$((5*5))").await;
    new.read_until("new-25").await;
}

#[tokio::test]
async fn tokens_and_unknown_sessions_are_refused() {
    let agent = Agent::start().await;
    let (id, token) = create(&agent, json!({"command": "sh", "rows": 24, "cols": 80})).await;

    let (status, body) = refused(&agent, &id, "wrong", TokenIn::Both).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "INVALID_TOKEN");
    let (status, _) = refused(&agent, &id, &format!("{token}0"), TokenIn::Query).await;
    assert_eq!(status, 403);
    // No token at all.
    let mut request = agent
        .ws_url(&format!("/pty/{id}/ws"))
        .into_client_request()
        .expect("request");
    request.headers_mut().remove("X-PTY-Token");
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let (status, body) = refused(&agent, "no-such-session", &token, TokenIn::Both).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "NOT_FOUND");

    // Either place alone is enough.
    for place in [TokenIn::Query, TokenIn::Header] {
        let mut term = Term {
            ws: try_connect(&agent, &id, &token, place)
                .await
                .expect("connect"),
            output: Vec::new(),
            exit: None,
            close: None,
        };
        term.ready().await;
        term.type_line("echo ok-$((6*7))").await;
        term.read_until("ok-42").await;
    }

    // Plain HTTP on the socket path is not an upgrade.
    let resp = agent
        .http
        .get(agent.url(&format!("/pty/{id}/ws?token={token}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 400);

    for (method, path) in [
        (reqwest::Method::GET, "/pty/no-such-session"),
        (reqwest::Method::DELETE, "/pty/no-such-session"),
    ] {
        let resp = agent
            .http
            .request(method, agent.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 404);
    }
}

#[tokio::test]
async fn create_validates_the_request() {
    let agent = Agent::start().await;
    for (body, code) in [
        (
            json!({"command": "sh", "rows": 0, "cols": 80}),
            "INVALID_ARGUMENT",
        ),
        (
            json!({"command": "sh", "rows": 24, "cols": 1001}),
            "INVALID_ARGUMENT",
        ),
        (
            json!({"command": "no-such-program-xyz", "rows": 24, "cols": 80}),
            "COMMAND_NOT_FOUND",
        ),
        (
            json!({"command": "sh", "working_dir": "/no/such/dir"}),
            "INVALID_WORKING_DIR",
        ),
        (json!({"rows": 24}), "INVALID_ARGUMENT"),
    ] {
        let (status, err) = agent.post_json("/pty", body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["code"], code, "{body}: {err}");
    }
    let (_, list) = agent.get_json("/pty").await;
    assert_eq!(list, json!({"sessions": []}));
}

#[tokio::test]
async fn list_get_and_delete_kill_the_tree() {
    let agent = Agent::start().await;
    let mark = marker(40);
    let script = format!("sleep {mark} & sleep {mark}");
    let (id, token) = create(
        &agent,
        json!({"command": "sh", "args": ["-c", script], "rows": 30, "cols": 90}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while live_processes_with(&mark).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sleeps never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (status, list) = agent.get_json("/pty").await;
    assert_eq!(status, 200);
    let sessions = list["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1);
    let info = &sessions[0];
    assert_eq!(info["session_id"], id.as_str());
    assert_eq!(info["command"], "sh");
    assert_eq!(
        (info["rows"].as_u64(), info["cols"].as_u64()),
        (Some(30), Some(90))
    );
    assert_eq!(info["is_alive"], true);
    assert_eq!(info["attached"], false);
    assert!(info["pid"].as_u64().is_some() && info["created_at"].as_i64().is_some());
    assert!(info.get("token").is_none(), "the token must not be listed");

    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    wait_for_session(&agent, &id, |info| {
        info.is_some_and(|i| i["attached"] == true)
    })
    .await;

    let resp = agent
        .http
        .delete(agent.url(&format!("/pty/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status().as_u16(), 204);
    let (code, reason) = term.read_to_close().await;
    assert_eq!((code, reason.as_str()), (1000, pty::TERMINATED_REASON));
    assert_eq!(term.exit, None);

    // Both sleeps die: the session leader and the background one.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !live_processes_with(&mark).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process tree survived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = agent.get_json(&format!("/pty/{id}")).await;
    assert_eq!(status, 404);
    let (_, list) = agent.get_json("/pty").await;
    assert_eq!(list, json!({"sessions": []}));
}

#[tokio::test]
async fn sessions_without_clients_are_reaped() {
    let mut config = AgentConfig::with_env(std::env::vars_os().collect());
    config.pty_idle_timeout = Some(Duration::from_millis(200));
    config.pty_exited_linger = Duration::from_millis(200);
    let agent = Agent::start_with(config).await;

    // A live process nobody attaches to is killed, and its session removed.
    let mark = marker(41);
    let (live, _) = create(
        &agent,
        json!({"command": "sleep", "args": [mark.clone()], "rows": 24, "cols": 80}),
    )
    .await;
    // An exited one is removed too.
    let (exited, _) = create(&agent, json!({"command": "true", "rows": 24, "cols": 80})).await;
    wait_for_session(&agent, &live, |info| info.is_none()).await;
    wait_for_session(&agent, &exited, |info| info.is_none()).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !live_processes_with(&mark).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle process survived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn attached_sessions_are_not_reaped() {
    let mut config = AgentConfig::with_env(std::env::vars_os().collect());
    // Long enough to attach in; the client then stays well past it.
    config.pty_idle_timeout = Some(Duration::from_secs(1));
    let agent = Agent::start_with(config).await;
    let (id, token) = create(&agent, json!({"command": "sh", "rows": 24, "cols": 80})).await;
    let mut term = connect(&agent, &id, &token).await;
    term.ready().await;
    // Attached: the idle timeout does not apply however long the client stays. Each round
    // trip proves the session (and its shell) is still there.
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        term.type_line(&format!("echo round-$(({round}+100))"))
            .await;
        term.read_until(&format!("round-{}", round + 100)).await;
    }
}
