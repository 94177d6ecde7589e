//! Routes of `{B}/sandbox-pools` (docs/protocol/control-plane.md, Pools): pool
//! create, list, get, update and delete, and the claim.

use std::collections::HashMap;

use alcove_wire::error::ApiErrorBody;
use alcove_wire::pool::{
    ClaimSandboxRequest, CreateSandboxPoolResponse, ListSandboxPoolsResponse, PoolContainerInfo,
    PoolContainerState, SandboxPoolInfo, SandboxPoolRequest,
};
use alcove_wire::sandbox::CreateSandboxResponse;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::body::{WholeBody, json_object, optional_json_object};
use super::error::ApiError;
use super::openapi::{PoolParam, tags};
use super::sandboxes::{create_budget, create_response, namespace};
use crate::store::{PoolRecord, SandboxRecord};

fn pool_id(params: &HashMap<String, String>) -> Result<&str, ApiError> {
    params
        .get("pool")
        .map(String::as_str)
        .ok_or_else(|| ApiError::bad_request("missing pool id in path"))
}

/// The wire form of a pool; `members` (its live sandboxes) lists its containers.
fn pool_info(pool: &PoolRecord, members: Option<&[SandboxRecord]>) -> SandboxPoolInfo {
    SandboxPoolInfo {
        id: pool.id.clone(),
        namespace: pool.namespace.clone(),
        image: pool.image.clone(),
        resources: pool.resources(),
        timeout_secs: pool.timeout_secs,
        entrypoint: pool.entrypoint.clone(),
        max_containers: pool.max_containers,
        warm_containers: pool.warm_containers,
        network_policy: pool.network_policy.clone(),
        node_selector: pool.node_selector.clone(),
        containers: members.map(|members| {
            members
                .iter()
                .filter_map(|m| {
                    let state = match m.pool_state {
                        // Still starting: not a container a claim can take yet.
                        Some(crate::store::PoolState::Idle)
                            if m.status == alcove_wire::sandbox::SandboxStatus::Running =>
                        {
                            PoolContainerState::Idle
                        }
                        Some(crate::store::PoolState::Claimed) => PoolContainerState::Running,
                        _ => return None,
                    };
                    Some(PoolContainerInfo {
                        id: m.id.to_string(),
                        state,
                        sandbox_id: m.id.to_string(),
                        // One node per server (until clustering names them).
                        executor_id: "local".to_string(),
                    })
                })
                .collect()
        }),
        created_at: pool.created_at,
        updated_at: pool.updated_at,
    }
}

/// `POST {B}/sandbox-pools`.
#[utoipa::path(
    post,
    path = "/sandbox-pools",
    tag = tags::POOLS,
    operation_id = "createSandboxPool",
    description = "Creates a pool; the server starts `warm_containers` idle sandboxes of it in the background and keeps that many started as claims take them, within `max_containers`.",
    request_body(content = SandboxPoolRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new pool.", body = CreateSandboxPoolResponse),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body, a field out of range (`warm_containers` 1-64, `max_containers` 1-1000, `warm_containers` above `max_containers`), GPUs.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such image.", body = ApiErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<CreateSandboxPoolResponse>, ApiError> {
    let req: SandboxPoolRequest = json_object(&headers, &body)?;
    let pool = state.control.pools.create(namespace(&params), req).await?;
    Ok(Json(CreateSandboxPoolResponse {
        pool_id: pool.id,
        namespace: pool.namespace,
    }))
}

/// `GET {B}/sandbox-pools`.
#[utoipa::path(
    get,
    path = "/sandbox-pools",
    tag = tags::POOLS,
    operation_id = "listSandboxPools",
    responses((status = 200, description = "The namespace's pools, oldest first (without `containers`).", body = ListSandboxPoolsResponse))
)]
pub async fn list(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ListSandboxPoolsResponse>, ApiError> {
    let pools = state.control.pools.list(namespace(&params)).await?;
    Ok(Json(ListSandboxPoolsResponse {
        pools: pools.iter().map(|p| pool_info(p, None)).collect(),
    }))
}

/// `GET {B}/sandbox-pools/{pool}`.
#[utoipa::path(
    get,
    path = "/sandbox-pools/{pool}",
    tag = tags::POOLS,
    operation_id = "getSandboxPool",
    params(PoolParam),
    responses(
        (status = 200, description = "The pool, with its containers: running idle sandboxes (`Idle`) and claimed ones that have not ended (`Running`).", body = SandboxPoolInfo),
        (status = 404, description = "`NOT_FOUND`: no such pool.", body = ApiErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<SandboxPoolInfo>, ApiError> {
    let pools = &state.control.pools;
    let pool = pools.get(namespace(&params), pool_id(&params)?).await?;
    let members = pools.members(&pool).await?;
    Ok(Json(pool_info(&pool, Some(&members))))
}

/// `PUT {B}/sandbox-pools/{pool}`.
#[utoipa::path(
    put,
    path = "/sandbox-pools/{pool}",
    tag = tags::POOLS,
    operation_id = "updateSandboxPool",
    description = "Replaces the pool's configuration (`network` absent keeps the current policy, `null` clears it). Idle sandboxes made from the old configuration are ended and replaced; claimed ones are not touched.",
    params(PoolParam),
    request_body(content = SandboxPoolRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The pool as changed.", body = SandboxPoolInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: as for create.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such pool or image.", body = ApiErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<SandboxPoolInfo>, ApiError> {
    let req: SandboxPoolRequest = json_object(&headers, &body)?;
    let pool = state
        .control
        .pools
        .update(namespace(&params), pool_id(&params)?, req)
        .await?;
    Ok(Json(pool_info(&pool, None)))
}

/// `DELETE {B}/sandbox-pools/{pool}`.
#[utoipa::path(
    delete,
    path = "/sandbox-pools/{pool}",
    tag = tags::POOLS,
    operation_id = "deleteSandboxPool",
    description = "Deletes the pool and ends its idle sandboxes. Refused while sandboxes claimed from it have not ended (delete them first).",
    params(PoolParam),
    responses(
        (status = 204, description = "Deleted; its idle sandboxes are ended."),
        (status = 404, description = "`NOT_FOUND`: no such pool.", body = ApiErrorBody),
        (status = 409, description = "`POOL_IN_USE`: sandboxes claimed from the pool still run (the message names them); nothing was changed.", body = ApiErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    state
        .control
        .pools
        .delete(namespace(&params), pool_id(&params)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST {B}/sandbox-pools/{pool}/sandboxes`: a claim.
#[utoipa::path(
    post,
    path = "/sandbox-pools/{pool}/sandboxes",
    tag = tags::POOLS,
    operation_id = "claimPoolSandbox",
    description = "Hands out one of the pool's sandboxes, running, with the claim's `name`, `env`, `secret_names`, `network` and `file_systems` bound to it first (late binding; `env` and secrets reach every process started after the claim). Takes an idle sandbox when one runs; otherwise starts one (waiting as a blocking create does) within `max_containers`. The pool's `timeout_secs` counts from the claim.",
    params(
        PoolParam,
        ("X-Tensorlake-Request-Timeout-Ms" = Option<u64>, Header, description = "The client's timeout, for a claim that has to start a sandbox."),
        ("X-Tensorlake-Request-Timeout-Grace-Ms" = Option<u64>, Header, description = "How much earlier than its timeout the client wants the answer."),
    ),
    request_body(content = Option<ClaimSandboxRequest>, description = "None, or a JSON object (any `Content-Type`)."),
    responses(
        (status = 200, description = "The claimed sandbox, running, with `claim_configuration_applied: true`; or, when it had to be started and that failed, `failed` with the reason.", body = CreateSandboxResponse),
        (status = 400, description = "`INVALID_ARGUMENT`: a malformed body, a bad name, variable or secret name, an unknown secret, a bad network policy.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such pool, or no such volume in `file_systems`.", body = ApiErrorBody),
        (status = 409, description = "`NAME_TAKEN`: a live sandbox holds the name; `FILE_SYSTEM_IN_USE`: a volume is mounted read-write elsewhere (or read-only elsewhere, for a read-write mount).", body = ApiErrorBody),
        (status = 429, description = "`POOL_AT_CAPACITY`: no idle sandbox, and the pool has `max_containers` sandboxes.", body = ApiErrorBody),
    )
)]
pub async fn claim(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<CreateSandboxResponse>, ApiError> {
    let req: ClaimSandboxRequest = optional_json_object(&body)?;
    let outcome = state
        .control
        .pools
        .claim(
            namespace(&params),
            pool_id(&params)?,
            req,
            create_budget(&headers),
        )
        .await?;
    let mut answer = create_response(&state, &outcome);
    answer.claim_configuration_applied =
        Some(outcome.record.status == alcove_wire::sandbox::SandboxStatus::Running);
    Ok(Json(answer))
}
