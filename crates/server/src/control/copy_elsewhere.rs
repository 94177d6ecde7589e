//! Copies that do not fit on the source's node. In a cluster with a blob
//! store, the source's node uploads the copy's dump once and asks the other
//! nodes with room, roomiest first, to restore the rest of the copies from it:
//! a copy request relayed to them, marked with the dump to use. Each of those
//! nodes stores as many copies as its own room allows (under the same
//! admission lock as creates), downloads the dump (checked against its
//! digests), restores them and answers them; the source's node gathers the
//! answers and deletes the dump from the blob store.

use std::path::Path;

use alcove_runtime::{SandboxId, blocking};
use alcove_wire::copy::CopySandboxResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::blobs::copy_owner;
use super::copy::{CopyOutcome, detached, validate_times};
use super::lifecycle::Sandboxes;
use super::{ControlError, Placement};
use crate::store::SandboxRecord;

/// Marks a request one node relayed to another (its value: the relaying node).
pub const FORWARDED_BY: &str = "x-alcove-forwarded-by";

/// Carries the cluster's relay token on a request one node relays to another;
/// the relay headers of a request without it are dropped (a client's forgery).
/// Removed before anything is forwarded into a sandbox.
pub const RELAY_TOKEN: &str = "x-alcove-relay-token";

/// On a copy request relayed by the source's node: the dump in the blob store
/// to restore the copies from (instead of dumping the source again).
pub const COPY_DUMP: &str = "x-alcove-copy-dump";

/// How long the source's node waits for another node's copies: a download of
/// the dump and a restore of each.
const PEER_COPY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether `dump` has the form of a dump name this server makes (a UUID), so
/// that nothing else reaches a blob key or a path.
fn is_dump_name(dump: &str) -> bool {
    uuid::Uuid::parse_str(dump).is_ok_and(|u| u.hyphenated().to_string() == dump)
}

/// A copy's dump in the blob store, and the other nodes to ask for copies.
pub(super) struct SharedDump {
    dump: String,
    owner: String,
    others: Vec<(String, String)>,
}

impl Sandboxes {
    /// Uploads the dump in `dir` for copies of `source` on other nodes, when
    /// there is a blob store and other active nodes; `Ok(None)` otherwise,
    /// `Err` with the reason when the upload failed.
    /// Done before the local restores begin: they add hard links to the
    /// dump's files, which tar reading them would see as a change.
    pub(super) async fn share_copy_dump(
        &self,
        source: &SandboxRecord,
        dir: &Path,
    ) -> Result<Option<SharedDump>, String> {
        if self.ctx.cfg.blobs.is_none() {
            return Ok(None);
        }
        let others: Vec<(String, String)> =
            match self.ctx.placement_order(&source.node_selector).await {
                Ok(order) => order
                    .into_iter()
                    .filter_map(|p| match p {
                        Placement::There { node, address } => Some((node, address)),
                        Placement::Here => None,
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "listing nodes to place copies");
                    return Err(format!("the other nodes could not be listed: {e}"));
                }
            };
        if others.is_empty() {
            return Ok(None);
        }
        let dump = uuid::Uuid::new_v4().hyphenated().to_string();
        let owner = copy_owner(&source.id, &dump);
        if let Err(e) = self.ctx.store_copy_blobs(&dump, &owner, dir).await {
            tracing::warn!(sandbox_id = %source.id, error = %e, "uploading a copy's dump");
            self.ctx.forget_blobs(owner);
            return Err("its dump could not be stored for the other nodes".into());
        }
        Ok(Some(SharedDump {
            dump,
            owner,
            others,
        }))
    }

    /// Places up to `count` copies of `source` on other nodes from `shared`
    /// (then deleted from the blob store); the ids of the copies they made,
    /// running or failed.
    pub(super) async fn copy_elsewhere(
        &self,
        source: &SandboxRecord,
        shared: Option<SharedDump>,
        count: u32,
        auth: Option<&str>,
    ) -> Vec<SandboxId> {
        let Some(shared) = shared else {
            return Vec::new();
        };
        let mut placed: Vec<SandboxId> = Vec::new();
        for (node, address) in &shared.others {
            let left = count.saturating_sub(u32::try_from(placed.len()).unwrap_or(count));
            if left == 0 {
                break;
            }
            match self
                .ask_peer_to_copy(address, source, &shared.dump, left, auth)
                .await
            {
                Ok(ids) => {
                    tracing::info!(node = %node, sandbox_id = %source.id, copies = ids.len(), "copies placed on another node");
                    placed.extend(ids.into_iter().take(usize::try_from(left).unwrap_or(0)));
                }
                Err(e) => {
                    tracing::warn!(node = %node, sandbox_id = %source.id, error = %e, "placing copies on another node");
                }
            }
        }
        // Every node asked has answered: its download is done.
        self.ctx.forget_blobs(shared.owner);
        placed
    }

    /// Relays a copy of `source` to the node at `address`, to be restored from
    /// `dump`; the ids of the copies it made (none when it has no room).
    async fn ask_peer_to_copy(
        &self,
        address: &str,
        source: &SandboxRecord,
        dump: &str,
        times: u32,
        auth: Option<&str>,
    ) -> Result<Vec<SandboxId>, String> {
        if !address.starts_with("http://") {
            return Err(format!("{address:?} is not an http:// URL"));
        }
        let uri = format!(
            "{}/v1/namespaces/{}/sandboxes/{}/copy?times={times}",
            address.trim_end_matches('/'),
            source.namespace,
            source.id
        );
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(FORWARDED_BY, self.ctx.local_node().unwrap_or_default())
            .header(COPY_DUMP, dump)
            .header(
                RELAY_TOKEN,
                self.ctx.relay_token.get().map_or("", String::as_str),
            );
        if let Some(auth) = auth {
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        let req = req
            .body(super::AgentBody::new(Full::new(Bytes::from_static(b"{}"))))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = self.agents.send(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(PEER_COPY_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {PEER_COPY_TIMEOUT:?}"))??;
        match status {
            http::StatusCode::OK | http::StatusCode::UNPROCESSABLE_ENTITY => {
                let answer: CopySandboxResponse =
                    serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))?;
                answer
                    .sandboxes
                    .iter()
                    .map(|c| SandboxId::parse(&c.sandbox_id).map_err(|e| e.to_string()))
                    .collect()
            }
            http::StatusCode::SERVICE_UNAVAILABLE => Ok(Vec::new()),
            other => Err(format!(
                "answered {other}: {}",
                String::from_utf8_lossy(&body[..body.len().min(512)])
            )),
        }
    }

    /// Restores up to `times` copies of sandbox `ident` here, from the dump
    /// its node stored in the blob store as `dump`: as many as this node has
    /// room for (`NoRoomHere` when none). Asked by the source's node.
    pub async fn copy_from_dump(
        &self,
        namespace: &str,
        ident: &str,
        dump: &str,
        times: u32,
    ) -> Result<CopyOutcome, ControlError> {
        validate_times(times)?;
        if !is_dump_name(dump) {
            return Err(ControlError::InvalidArgument {
                field: COPY_DUMP,
                reason: "not a dump this server made".into(),
            });
        }
        self.ctx.ensure_not_draining()?;
        let source = self.ctx.resolve(Some(namespace), ident).await?;
        let resolved = self.resolve_image(&source.image).await?;
        let this = self.clone();
        let dump = dump.to_string();
        // A relay that hangs up must not leave copies pending or the dump on
        // this disk.
        detached(ident, async move {
            this.restore_from_dump(source, resolved.image, &dump, times)
                .await
        })
        .await
    }

    async fn restore_from_dump(
        &self,
        source: SandboxRecord,
        image: alcove_runtime::image::Image,
        dump: &str,
        times: u32,
    ) -> Result<CopyOutcome, ControlError> {
        let ids = self.admit_copies(&source, times).await?;
        if ids.is_empty() {
            return Err(ControlError::NoRoomHere {
                node: self.ctx.local_node().unwrap_or_default().to_string(),
                cpus: source.cpus,
                memory_mb: source.memory_mb,
            });
        }
        // Under the snapshots directory with no snapshot record: a restart's
        // snapshot recovery removes it if this node dies meanwhile.
        let dir = self.ctx.cfg.snapshots_dir.join(format!("copy-{dump}-in"));
        let fetched = self
            .ctx
            .fetch_copy_blobs(&copy_owner(&source.id, dump), &dir)
            .await;
        let outcome = match fetched {
            Ok(true) => {
                self.restore_copies(&ids, image, &dir).await;
                Ok(())
            }
            Ok(false) => Err(ControlError::NotFound {
                kind: "copy dump",
                id: dump.to_string(),
            }),
            Err(reason) => Err(ControlError::OperationFailed {
                id: source.id.to_string(),
                op: "copy",
                reason,
            }),
        };
        if let Err(e) = blocking::remove_dir_all(dir.clone()).await {
            tracing::warn!(path = %dir.display(), error = %e, "removing a copy's dump");
        }
        if let Err(e) = outcome {
            self.cancel_copies(&ids).await;
            return Err(e);
        }
        let mut copies = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(record) = self.ctx.store.get(id).await? {
                copies.push(record);
            }
        }
        Ok(CopyOutcome {
            source_id: source.id,
            copies,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuids_name_a_dump() {
        assert!(is_dump_name("67e55044-10b1-426f-9247-bb680e5fe0c8"));
        assert!(!is_dump_name("67E55044-10B1-426F-9247-BB680E5FE0C8"));
        assert!(!is_dump_name("../../etc"));
        assert!(!is_dump_name("67e5504410b1426f9247bb680e5fe0c8"));
        assert!(!is_dump_name(""));
    }
}
