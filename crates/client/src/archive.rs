//! The archive of ended sandboxes (`{B}/archived-sandboxes`, docs/protocol/control-plane.md,
//! Archived sandboxes): read newest first, a page at a time, until the server's
//! `--archive-ttl` purges them.

use alcove_wire::sandbox::{ArchivedSandboxInfo, ListArchivedSandboxesResponse};
use http::Method;

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};

/// Which way a page of the archive goes from its cursor (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveDirection {
    /// Sandboxes older than the cursor's: the next page (`next_cursor`).
    Forward,
    /// Sandboxes newer than the cursor's: the previous page (`prev_cursor`).
    Backward,
}

impl ArchiveDirection {
    fn as_str(self) -> &'static str {
        match self {
            Self::Forward => "forward",
            Self::Backward => "backward",
        }
    }
}

/// What [`SandboxClient::list_archived`] asks for; each field left out is the server's
/// default (100 sandboxes from the newest).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivedPageRequest {
    /// At most this many (the server takes 1 to 1000).
    pub limit: Option<u32>,
    /// A `prev_cursor` or `next_cursor` of an earlier page.
    pub cursor: Option<String>,
    /// Which way from the cursor.
    pub direction: Option<ArchiveDirection>,
}

impl ArchivedPageRequest {
    /// The newest page of at most `limit` sandboxes.
    pub fn first(limit: u32) -> Self {
        Self {
            limit: Some(limit),
            ..Self::default()
        }
    }

    /// The page of at most `limit` sandboxes going `direction` from `cursor`.
    pub fn from_cursor(limit: u32, cursor: &str, direction: ArchiveDirection) -> Self {
        Self {
            limit: Some(limit),
            cursor: Some(cursor.to_string()),
            direction: Some(direction),
        }
    }
}

impl SandboxClient {
    /// One page of the namespace's ended sandboxes, newest first, with the cursors of the
    /// pages around it.
    pub async fn list_archived(
        &self,
        request: &ArchivedPageRequest,
    ) -> Result<ListArchivedSandboxesResponse, ClientError> {
        let mut call = self.call(Method::GET, &["archived-sandboxes"], Scope::Plain)?;
        if let Some(limit) = request.limit {
            if limit == 0 {
                return Err(ClientError::invalid("limit must be at least 1"));
            }
            call = call.query("limit", limit.to_string());
        }
        if let Some(cursor) = &request.cursor {
            call = call.query("cursor", identifier_arg(cursor, "cursor")?);
        }
        if let Some(direction) = request.direction {
            call = call.query("direction", direction.as_str());
        }
        self.transport.json(call, "archived sandbox list").await
    }

    /// One archived sandbox, by id: [`ClientError::SandboxNotFound`] if it is unknown, still
    /// live, or past the archive's retention.
    pub async fn get_archived(&self, sandbox_id: &str) -> Result<ArchivedSandboxInfo, ClientError> {
        let id = identifier_arg(sandbox_id, "sandbox id")?;
        let call = self.call(
            Method::GET,
            &["archived-sandboxes", id],
            Scope::Sandbox(id.into()),
        )?;
        self.transport.json(call, "archived sandbox").await
    }
}
