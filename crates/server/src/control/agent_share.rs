//! Agent builds through the blob store, so that a dump made on one node can be
//! restored on another that runs another build (a cluster being upgraded).
//!
//! A dump's processes run the code of the agent build that made it, and a
//! restore needs that very file (`alcove_runtime::agent_builds`). So when a
//! dump goes to the blob store, the build it names goes too, once, as
//! `agents/<sha256>` (owner `agent-builds`); and a node that fetches a dump
//! from the blob store first fetches the builds it lacks, each checked
//! against its digest. Builds are small and few, and are never deleted from
//! the blob store: any dump there may still name one.

use std::path::Path;

use alcove_blobs::{BlobDigest, BlobStore};
use alcove_runtime::agent_builds;
use alcove_wire::time::now_millis;

use super::context::Context;
use crate::store::BlobRecord;

/// The owner of the agent builds' objects.
const OWNER: &str = "agent-builds";

/// The object key of build `digest`.
fn key_of(digest: &str) -> String {
    format!("agents/{digest}")
}

impl Context {
    /// Uploads the agent build that the dump in `dump_dir` names (its
    /// `alcove-agent.sha256`), unless the blob store has it. A dump that names
    /// none (made before builds were kept) needs nothing.
    pub(super) async fn share_agent_build_of(
        &self,
        blobs: &BlobStore,
        dump_dir: &Path,
    ) -> Result<(), String> {
        let (Some(builds), Some(digest)) = (
            self.node.agent_builds(),
            agent_builds::read_marker(dump_dir),
        ) else {
            return Ok(());
        };
        let key = key_of(&digest);
        let shared = self
            .store
            .blobs_of(OWNER)
            .await
            .map_err(|e| e.to_string())?;
        if shared.iter().any(|r| r.key == key) {
            return Ok(());
        }
        let Some(path) = builds.stored(&digest) else {
            return Err(format!("agent build {digest} is not in this node's store"));
        };
        let uploaded = blobs
            .upload_file(&key, &path)
            .await
            .map_err(|e| format!("uploading agent build {digest}: {e}"))?;
        self.store
            .put_blobs(&[BlobRecord {
                key,
                owner: OWNER.to_string(),
                sha256: uploaded.sha256,
                size: i64::try_from(uploaded.size).unwrap_or(i64::MAX),
                created_at: now_millis(),
            }])
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(agent_build = %digest, "agent build shared through the blob store");
        Ok(())
    }

    /// Downloads the agent builds in the blob store that this node lacks, so
    /// that it can restore dumps other nodes made.
    pub(super) async fn fetch_agent_builds(&self, blobs: &BlobStore) -> Result<(), String> {
        let Some(builds) = self.node.agent_builds() else {
            return Ok(());
        };
        for rec in self
            .store
            .blobs_of(OWNER)
            .await
            .map_err(|e| e.to_string())?
        {
            let Some(digest) = rec.key.strip_prefix("agents/") else {
                continue;
            };
            if builds.stored(digest).is_some() {
                continue;
            }
            let Some(incoming) = builds.incoming(digest) else {
                continue;
            };
            let expected = BlobDigest {
                sha256: rec.sha256.clone(),
                size: u64::try_from(rec.size).unwrap_or(0),
            };
            blobs
                .download_file(&rec.key, &incoming, &expected)
                .await
                .map_err(|e| format!("fetching agent build {digest}: {e}"))?;
            builds.adopt(digest, &incoming).map_err(|e| e.to_string())?;
            tracing::info!(agent_build = %digest, "agent build fetched from the blob store");
        }
        Ok(())
    }
}
