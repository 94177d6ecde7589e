//! Children are the OOM killer's first choice, never the agent. This file holds one test
//! because it changes the test process's own `oom_score_adj`.

mod common;

use common::Agent;
use serde_json::json;

#[tokio::test]
async fn children_get_a_higher_oom_score_adj_than_the_agent() {
    std::fs::write("/proc/self/oom_score_adj", "0").expect("set own oom_score_adj");
    let agent = Agent::start().await;
    let out = agent
        .run(json!({"command": "cat", "args": ["/proc/self/oom_score_adj"]}))
        .await;
    assert_eq!(out.stdout, ["500"]);
}
