//! PID 1 duties observable from outside: orphans are reparented to the agent and reaped.

mod common;

use std::time::Duration;

use common::{Agent, marker, proc_stat};
use serde_json::json;

#[tokio::test]
async fn orphaned_grandchild_is_reaped() {
    let agent = Agent::start().await;
    let mark = marker(20);
    // `sh` prints its background child's pid and exits at once; the child is orphaned.
    let out = agent
        .run(json!({
            "command": "sh",
            "args": ["-c", format!("sleep {mark} >/dev/null 2>&1 & echo $!")]
        }))
        .await;
    assert_eq!(out.exit()["exit_code"], 0);
    let orphan: u32 = out.stdout[0].parse().expect("pid");
    let me = std::process::id();
    // The agent is a subreaper (PID 1 in production), so the orphan now belongs to it.
    let (state, ppid) = proc_stat(orphan).expect("orphan is alive");
    assert_ne!(state, 'Z');
    assert_eq!(ppid, me, "orphan was not reparented to the agent");

    // SAFETY: kill(2) on the orphan we just identified.
    unsafe { libc::kill(orphan as i32, libc::SIGKILL) };
    // Nobody but the agent's reaper can collect it: without the reaper it would stay a
    // zombie child of this process forever.
    let mut reaped = false;
    for _ in 0..1000 {
        match proc_stat(orphan) {
            None => {
                reaped = true;
                break;
            }
            // The pid was already reused by an unrelated process: ours is gone.
            Some((_, ppid)) if ppid != me => {
                reaped = true;
                break;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(reaped, "orphan {orphan} stayed a zombie");
}

#[tokio::test]
async fn many_concurrent_short_processes_are_all_reported() {
    let agent = Agent::start().await;
    let runs = (0..20).map(|i| {
        let agent = &agent;
        async move {
            agent
                .run(json!({"command": "sh", "args": ["-c", format!("exit {i}")]}))
                .await
        }
    });
    let outcomes = futures::future::join_all(runs).await;
    for (i, out) in outcomes.iter().enumerate() {
        assert_eq!(out.exit()["exit_code"], i as i64);
    }
}
