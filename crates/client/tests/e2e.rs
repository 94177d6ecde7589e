//! End-to-end tests of `alcove-client` against a real `alcove serve` (root, runc, CRIU and the
//! built release binaries needed; see `support/server.rs`). Each test starts its own server,
//! runs a scenario, then deletes whatever the scenario left, stops the server, and fails if a
//! sandbox was left running.

#[path = "support/server.rs"]
mod server;
#[path = "support/util.rs"]
mod util;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use alcove_client::wire::process::{
    ExitReason, ManagedStatus, ProcessStatus, RestartConfig, RestartPolicy,
};
use alcove_client::wire::sandbox::SandboxStatus;
use alcove_client::wire::snapshot::SnapshotStatus;
use alcove_client::{ClientError, Command, CreateOptions, LogsRequest, Sandbox, SandboxClient};
use futures::{FutureExt, StreamExt};
use server::AlcoveServer;
use util::{eventually, fetch, same_content, write_pattern};

/// Runs `scenario` against a fresh server, then cleans up and checks nothing was left.
async fn with_server<F, Fut>(scenario: F)
where
    F: FnOnce(SandboxClient) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut server = AlcoveServer::start().await;
    let client = server.client();
    let outcome = AssertUnwindSafe(scenario(client.clone()))
        .catch_unwind()
        .await;
    let leaked = live_sandboxes(&client).await;
    for id in &leaked {
        let _ = client.delete(id).await;
    }
    let log = server.log_tail();
    server.stop();
    if let Err(panic) = outcome {
        eprintln!("server log:\n{log}");
        std::panic::resume_unwind(panic);
    }
    assert!(
        leaked.is_empty(),
        "the scenario left sandboxes running: {leaked:?}"
    );
    let mounts = server.leftover_mounts();
    assert!(
        mounts.is_empty(),
        "mounts left after the server stopped: {mounts:?}"
    );
}

async fn live_sandboxes(client: &SandboxClient) -> Vec<String> {
    client
        .list()
        .await
        .expect("listing sandboxes")
        .into_iter()
        .filter(|s| s.status.is_live())
        .map(|s| s.id)
        .collect()
}

#[tokio::test]
#[ignore = "needs root, runc and a built alcove"]
async fn sandboxes_commands_processes_files_terminals_and_tunnels() {
    with_server(|client| async move {
        let sandbox = client
            .create_and_connect(CreateOptions::new())
            .await
            .expect("creating a sandbox");
        control_plane(&client, &sandbox).await;
        commands(&sandbox).await;
        processes(&sandbox).await;
        files(&sandbox).await;
        large_file_round_trip(&sandbox).await;
        terminal(&sandbox).await;
        tunnel(&sandbox).await;
        sandbox.terminate().await.expect("deleting the sandbox");
        let ended = client.get(sandbox.id()).await.expect("still listed");
        assert_eq!(ended.status, SandboxStatus::Terminated);
        // Ended: out of the live list, into the archive.
        assert!(
            !live_sandboxes(&client)
                .await
                .contains(&sandbox.id().to_string())
        );
        let archived = client.get_archived(sandbox.id()).await.expect("archived");
        assert_eq!(archived.sandbox, ended);
        assert_eq!(
            archived.sandbox.termination_reason.as_deref(),
            Some("deleted")
        );
        let page = client
            .list_archived(&alcove_client::ArchivedPageRequest::first(1000))
            .await
            .expect("archive page");
        assert!(page.sandboxes.iter().any(|s| s.sandbox.id == sandbox.id()));
        assert!(matches!(
            sandbox.run(Command::new("true")).await,
            Err(ClientError::SandboxNotFound { .. } | ClientError::Api { .. })
        ));
    })
    .await;
}

async fn control_plane(client: &SandboxClient, sandbox: &Sandbox) {
    let renamed = client
        .rename(sandbox.id(), "rust-e2e-basic")
        .await
        .expect("renaming");
    assert_eq!(renamed.name.as_deref(), Some("rust-e2e-basic"));
    let by_name = client.get("rust-e2e-basic").await.expect("get by name");
    assert_eq!(by_name.id, sandbox.id());
    let listed = client.list().await.expect("listing");
    assert!(listed.iter().any(|s| s.id == sandbox.id()));
    let err = client.get("rust-e2e-nobody").await.expect_err("404");
    assert!(matches!(err, ClientError::SandboxNotFound { .. }), "{err}");
    let err = client
        .create(CreateOptions::new().name("rust-e2e-basic"))
        .await
        .expect_err("the name is taken");
    assert!(matches!(err, ClientError::NameConflict { .. }), "{err}");
}

async fn commands(sandbox: &Sandbox) {
    let result = sandbox
        .run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
        .await
        .expect("running");
    assert_eq!(result.stdout, "out");
    assert_eq!(result.stderr, "err");
    assert_eq!(result.exit_code, 3);
    let result = sandbox
        .run(
            Command::new("printenv")
                .arg("GREETING")
                .env("GREETING", "hi"),
        )
        .await
        .expect("running with env");
    assert_eq!(result.stdout, "hi");
    let result = sandbox
        .run(
            Command::new("sleep")
                .arg("30")
                .timeout(Duration::from_secs(1)),
        )
        .await
        .expect("running with a timeout");
    assert!(result.exit_code < 0, "killed: {result:?}");
    assert_eq!(result.reason, Some(ExitReason::TimedOut));
    let err = sandbox
        .run(Command::new("/no/such/program"))
        .await
        .expect_err("missing program");
    assert!(err.code().is_some(), "{err}");
}

async fn processes(sandbox: &Sandbox) {
    let cat = sandbox
        .start_process(Command::new("cat").stdin_pipe())
        .await
        .expect("starting cat");
    sandbox
        .write_stdin(cat.pid, "hello\nworld\n")
        .await
        .expect("writing stdin");
    sandbox.close_stdin(cat.pid).await.expect("closing stdin");
    let lines: Vec<String> = sandbox
        .follow_output(cat.pid)
        .await
        .expect("following")
        .map(|event| event.expect("an output event").line)
        .collect()
        .await;
    assert_eq!(lines, ["hello", "world"]);
    let done = eventually("cat to exit", Duration::from_secs(10), || async {
        let info = sandbox.get_process(cat.pid).await.expect("get process");
        (info.status != ProcessStatus::Running).then_some(info)
    })
    .await;
    assert_eq!(
        (done.status, done.exit_code),
        (ProcessStatus::Exited, Some(0))
    );
    let stdout = sandbox.get_stdout(cat.pid).await.expect("stdout");
    assert_eq!(stdout.lines, ["hello", "world"]);
    assert!(
        sandbox
            .get_stderr(cat.pid)
            .await
            .expect("stderr")
            .lines
            .is_empty()
    );
    assert_eq!(
        sandbox
            .get_output(cat.pid)
            .await
            .expect("output")
            .line_count,
        2
    );
    let listed = sandbox.list_processes().await.expect("listing processes");
    assert!(listed.iter().any(|p| p.pid == cat.pid));

    let sleeper = sandbox
        .start_process(Command::new("sleep").arg("300"))
        .await
        .expect("starting sleep");
    sandbox.send_signal(sleeper.pid, 15).await.expect("SIGTERM");
    let ended = eventually("sleep to die", Duration::from_secs(10), || async {
        let info = sandbox.get_process(sleeper.pid).await.expect("get process");
        (info.status != ProcessStatus::Running).then_some(info)
    })
    .await;
    assert_eq!(
        (ended.status, ended.signal),
        (ProcessStatus::Signaled, Some(15))
    );
    let other = sandbox
        .start_process(Command::new("sleep").arg("300"))
        .await
        .expect("starting sleep");
    sandbox.kill_process(other.pid).await.expect("killing");
    eventually("the kill", Duration::from_secs(10), || async {
        let info = sandbox.get_process(other.pid).await.expect("get process");
        (info.status != ProcessStatus::Running).then_some(())
    })
    .await;
    let err = sandbox.get_process(999_999).await.expect_err("no such pid");
    assert_eq!(err.code(), Some("NOT_FOUND"));
}

async fn files(sandbox: &Sandbox) {
    sandbox
        .write_file("/tmp/rust-e2e/dir/hello.txt", "hello file")
        .await
        .expect("writing");
    let content = sandbox
        .read_file("/tmp/rust-e2e/dir/hello.txt")
        .await
        .expect("reading");
    assert_eq!(&content[..], b"hello file");
    let entries = sandbox
        .list_directory("/tmp/rust-e2e/dir")
        .await
        .expect("listing");
    let entry = entries
        .iter()
        .find(|e| e.name == "hello.txt")
        .expect("the file is listed");
    assert_eq!((entry.is_dir, entry.size), (false, Some(10)));
    sandbox
        .delete_file("/tmp/rust-e2e/dir/hello.txt")
        .await
        .expect("deleting");
    let err = sandbox
        .read_file("/tmp/rust-e2e/dir/hello.txt")
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Some("NOT_FOUND"));
}

/// 100 MiB up and down, streamed from and to local files (never whole in memory).
async fn large_file_round_trip(sandbox: &Sandbox) {
    const MIB: usize = 1 << 20;
    const SIZE: usize = 100 * MIB;
    let local = tempfile::tempdir().expect("a local temp dir");
    let source = local.path().join("source.bin");
    write_pattern(&source, SIZE).await;
    sandbox
        .upload_file(&source, "/tmp/rust-e2e/big.bin")
        .await
        .expect("uploading 100 MiB");
    let size = sandbox
        .run(Command::new("stat").args(["-c", "%s", "/tmp/rust-e2e/big.bin"]))
        .await
        .expect("stat");
    assert_eq!(size.stdout, SIZE.to_string());
    let copy = local.path().join("copy.bin");
    let written = sandbox
        .download_file("/tmp/rust-e2e/big.bin", &copy)
        .await
        .expect("downloading 100 MiB");
    assert_eq!(written, SIZE as u64);
    assert!(
        same_content(&source, &copy).await,
        "the round trip changed the file"
    );
    sandbox
        .delete_file("/tmp/rust-e2e/big.bin")
        .await
        .expect("deleting");
}

async fn terminal(sandbox: &Sandbox) {
    let wait = Some(Duration::from_secs(15));
    let bash = Command::new("bash")
        .args(["--norc", "--noprofile"])
        .env("PS1", "$ ");
    let mut pty = sandbox
        .create_pty(bash, 80, 24)
        .await
        .expect("creating a PTY");
    let url = pty.websocket_url().expect("a URL");
    assert!(
        url.starts_with("ws://") && url.contains("/sandboxes/"),
        "{url}"
    );
    pty.connect().await.expect("connecting");
    pty.read_until("$ ", wait).await.expect("the prompt");
    pty.send("echo $((6*7))\n").await.expect("typing");
    pty.read_until("42\r\n", wait).await.expect("the answer");
    pty.resize(100, 30).await.expect("resizing");
    pty.send("stty size\n").await.expect("typing");
    if let Err(err) = pty.read_until("30 100", wait).await {
        // Tells a resize applied late (after the typing behind it) from one lost.
        pty.send("stty size; echo asked-$((1+1))\n")
            .await
            .expect("typing");
        let again = pty.read_until("asked-2", wait).await.map(String::from_utf8);
        panic!("the new size: {err}; asked again: {again:?}");
    }
    // The socket may come and go; the session stays.
    pty.close().await;
    let mut again = sandbox
        .connect_pty(pty.session_id(), pty.token())
        .await
        .expect("reconnecting");
    again.send("exit 3\n").await.expect("typing");
    assert_eq!(again.wait(wait).await.expect("the exit"), 3);

    let doomed = sandbox
        .create_pty(Command::new("sleep").arg("300"), 80, 24)
        .await
        .expect("creating a PTY");
    doomed.kill().await.expect("killing the session");
    doomed.kill().await.expect("a second kill counts as done");
}

async fn tunnel(sandbox: &Sandbox) {
    sandbox
        .write_file("/tmp/rust-e2e-www/index.html", "tunnelled page")
        .await
        .expect("writing the page");
    let web = sandbox
        .start_process(Command::new("python3").args([
            "-m",
            "http.server",
            "8080",
            "--bind",
            "127.0.0.1",
            "--directory",
            "/tmp/rust-e2e-www",
        ]))
        .await
        .expect("starting a web server");
    let tunnel = sandbox.create_tunnel(8080, None).await.expect("tunnel");
    let addr = tunnel.local_addr();
    assert_eq!(tunnel.remote_port(), 8080);
    let page = eventually(
        "the page through the tunnel",
        Duration::from_secs(30),
        || fetch(addr),
    )
    .await;
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    assert!(page.ends_with("tunnelled page"), "{page}");
    tunnel.close().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening"
    );
    sandbox
        .kill_process(web.pid)
        .await
        .expect("stopping the web server");
}

#[tokio::test]
#[ignore = "needs root, runc and a built alcove"]
async fn secrets_suspend_resume_snapshot_and_restore() {
    with_server(|client| async move {
        client
            .set_secret("RUST_E2E_TOKEN", "first")
            .await
            .expect("setting a secret");
        let names: Vec<String> = client
            .list_secrets()
            .await
            .expect("listing secrets")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["RUST_E2E_TOKEN"]);

        let options = CreateOptions::new()
            .name("rust-e2e-life")
            .secret("RUST_E2E_TOKEN");
        client.create(options).await.expect("creating");
        let sandbox = client
            .connect("rust-e2e-life")
            .await
            .expect("connecting by name");
        let env = sandbox
            .run(Command::new("printenv").arg("RUST_E2E_TOKEN"))
            .await
            .expect("reading the secret");
        assert_eq!(env.stdout, "first");
        sandbox
            .write_file("/root/state.txt", "kept")
            .await
            .expect("writing state");
        let sleeper = sandbox
            .start_process(Command::new("sleep").arg("600"))
            .await
            .expect("starting a process");

        let suspended = client.suspend("rust-e2e-life").await.expect("suspending");
        assert_eq!(suspended.status, SandboxStatus::Suspended);
        let resumed = client.resume("rust-e2e-life").await.expect("resuming");
        assert_eq!(resumed.status, SandboxStatus::Running);
        let state = sandbox.read_file("/root/state.txt").await.expect("reading");
        assert_eq!(&state[..], b"kept");
        let process = sandbox.get_process(sleeper.pid).await.expect("the process");
        assert_eq!(
            process.status,
            ProcessStatus::Running,
            "it survived the suspend"
        );

        let snapshot = client
            .snapshot_and_wait("rust-e2e-life", None)
            .await
            .expect("snapshotting");
        assert_eq!(snapshot.status, SnapshotStatus::Completed);
        assert_eq!(snapshot.sandbox_id, sandbox.id());
        let all = client.list_snapshots().await.expect("listing snapshots");
        assert!(all.iter().any(|s| s.id == snapshot.id));
        let of_sandbox = client
            .list_sandbox_snapshots(sandbox.id())
            .await
            .expect("listing its snapshots");
        assert!(of_sandbox.iter().any(|s| s.id == snapshot.id));

        let restored = client.restore(&snapshot.id).await.expect("restoring");
        assert_ne!(restored.id, sandbox.id());
        let copy = client.connect(&restored.id).await.expect("connecting");
        let state = copy.read_file("/root/state.txt").await.expect("reading");
        assert_eq!(&state[..], b"kept");
        let process = copy.get_process(sleeper.pid).await.expect("the process");
        assert_eq!(
            process.status,
            ProcessStatus::Running,
            "memory was restored"
        );

        copy.terminate().await.expect("deleting the copy");

        // A copy of the running sandbox: its process, files and secret, under new ids.
        let copied = client.copy("rust-e2e-life", 2).await.expect("copying");
        assert_eq!(copied.source_sandbox_id, sandbox.id());
        assert_eq!(copied.sandboxes.len(), 2);
        for made in &copied.sandboxes {
            assert_eq!(made.status, SandboxStatus::Running, "{made:?}");
            assert_ne!(made.sandbox_id, sandbox.id());
            let copy = client.connect(&made.sandbox_id).await.expect("connecting");
            let state = copy.read_file("/root/state.txt").await.expect("reading");
            assert_eq!(&state[..], b"kept");
            let process = copy.get_process(sleeper.pid).await.expect("the process");
            assert_eq!(process.status, ProcessStatus::Running, "memory was copied");
            let env = copy
                .run(Command::new("printenv").arg("RUST_E2E_TOKEN"))
                .await
                .expect("reading the secret");
            assert_eq!(env.stdout, "first", "the copy has the source's secrets");
            copy.terminate().await.expect("deleting a copy");
        }
        let err = client.copy("rust-e2e-life", 0).await.expect_err("refused");
        assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
        sandbox.terminate().await.expect("deleting the source");
        client
            .delete_snapshot(&snapshot.id)
            .await
            .expect("deleting the snapshot");
        let err = client.get_snapshot(&snapshot.id).await.expect_err("gone");
        assert!(matches!(err, ClientError::SnapshotNotFound { .. }), "{err}");
        let err = client.restore(&snapshot.id).await.expect_err("gone");
        assert!(err.is_not_found(), "{err}");

        client
            .delete_secret("RUST_E2E_TOKEN")
            .await
            .expect("deleting the secret");
        assert!(client.list_secrets().await.expect("listing").is_empty());
    })
    .await;
}

#[tokio::test]
#[ignore = "needs root, runc and a built alcove"]
async fn managed_processes_by_name_and_sandbox_logs() {
    with_server(|client| async move {
        let sandbox = client
            .create_and_connect(CreateOptions::new())
            .await
            .expect("creating a sandbox");
        let name = "rust-e2e-flaky";
        let started = sandbox
            .start_process(
                Command::new("sh")
                    .args(["-c", "echo hi; exit 3"])
                    .name(name)
                    .restart(RestartConfig {
                        policy: RestartPolicy::OnFailure,
                        max_restarts: Some(1),
                        initial_backoff_ms: 50,
                        ..RestartConfig::default()
                    }),
            )
            .await
            .expect("starting a managed process");
        assert_eq!(
            started.managed.as_ref().and_then(|m| m.name.as_deref()),
            Some(name)
        );

        // It fails, is restarted once, fails again and is given up on.
        let stopped = eventually(
            "the process to be given up on",
            Duration::from_secs(30),
            || async {
                let info = sandbox
                    .get_process(name)
                    .await
                    .expect("get process by name");
                let managed = info.managed.clone().expect("managed");
                (managed.status == ManagedStatus::Stopped).then_some(managed)
            },
        )
        .await;
        assert_eq!(stopped.restart_count, 1);
        assert_eq!(stopped.last_exit.and_then(|e| e.exit_code), Some(3));

        // Both runs' output reached the sandbox's logs.
        let request = LogsRequest::new().process(name);
        let logs = eventually(
            "both runs' output in the logs",
            Duration::from_secs(30),
            || async {
                let page = sandbox.get_logs(&request).await.expect("reading logs");
                let his = page.logs.iter().filter(|r| r.body == "hi").count();
                (his >= 2).then_some(page.logs)
            },
        )
        .await;
        assert_eq!(logs.iter().filter(|r| r.body == "hi").count(), 2);
        let processes = client
            .list_log_processes(sandbox.id())
            .await
            .expect("listing the processes of the logs");
        assert!(processes.iter().any(|p| p.process_managed_name == name));

        // A stopped managed process can be started again by name.
        let again = sandbox
            .restart_process(name)
            .await
            .expect("restarting by name");
        assert_ne!(again.pid, started.pid);
        assert_eq!(
            again.managed.as_ref().and_then(|m| m.name.as_deref()),
            Some(name)
        );
        sandbox.kill_process(name).await.expect("stopping by name");

        sandbox.terminate().await.expect("deleting the sandbox");
    })
    .await;
}
