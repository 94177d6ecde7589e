//! `GET /nodes`, `POST /nodes/{node}/drain` and `POST /nodes/{node}/activate`:
//! the servers sharing this server's store, and taking one out of service for
//! maintenance (docs/operations.md, Nodes).

use std::collections::HashMap;

use alcove_wire::error::ApiErrorBody;
use alcove_wire::node::{NodeInfo, NodeList, NodeState};
use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::error::ApiError;
use super::openapi::{NodeParam, tags};

/// Sets the state of the node the path names.
async fn set_state(
    state: &AppState,
    params: &HashMap<String, String>,
    to: NodeState,
) -> Result<Json<NodeInfo>, ApiError> {
    let name = params
        .get("node")
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request("missing node name in path"))?;
    Ok(Json(state.control.set_node_state(name, to).await?))
}

/// `GET /nodes`.
#[utoipa::path(
    get,
    path = "/nodes",
    tag = tags::NODES,
    operation_id = "listNodes",
    description = "Every node (server) registered in this server's store, by name: its address, state (`active`, `draining`, or `offline` once its lease ran out), labels, subnet, capacity, what its running sandboxes reserve, and its lease. Each node renews its lease every third of `--node-lease-secs` and reports its use then.",
    responses((status = 200, description = "The nodes.", body = NodeList))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(state.control.nodes().await?))
}

/// `POST /nodes/{node}/drain`.
#[utoipa::path(
    post,
    path = "/nodes/{node}/drain",
    tag = tags::NODES,
    operation_id = "drainNode",
    description = "Takes a node out of service: it starts no new sandboxes and resumes none (`503 NODE_DRAINING`), its pools stop refilling, and it suspends its named running sandboxes one at a time. Ephemeral sandboxes run on until they end. The state is kept across restarts of the node until `activate`.",
    params(NodeParam),
    responses(
        (status = 200, description = "The node, now draining.", body = NodeInfo),
        (status = 404, description = "`NOT_FOUND`: no such node.", body = ApiErrorBody),
    )
)]
pub async fn drain(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<NodeInfo>, ApiError> {
    set_state(&state, &params, NodeState::Draining).await
}

/// `POST /nodes/{node}/activate`.
#[utoipa::path(
    post,
    path = "/nodes/{node}/activate",
    tag = tags::NODES,
    operation_id = "activateNode",
    description = "Puts a drained node back in service: it starts and resumes sandboxes again. Sandboxes the drain suspended stay suspended until resumed (or woken by traffic).",
    params(NodeParam),
    responses(
        (status = 200, description = "The node, active.", body = NodeInfo),
        (status = 404, description = "`NOT_FOUND`: no such node.", body = ApiErrorBody),
    )
)]
pub async fn activate(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<NodeInfo>, ApiError> {
    set_state(&state, &params, NodeState::Active).await
}
