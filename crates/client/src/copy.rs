//! Copying a running sandbox N ways (docs/protocol/control-plane.md, Copy).

use alcove_wire::copy::CopySandboxResponse;
use http::{Method, StatusCode};

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};

/// Most copies one request may ask for (the server refuses more).
pub const MAX_COPIES: u32 = 16;

/// Answers whose body lists the copies: some failed (422), or, from the official service, its
/// wait ran out (504).
const PARTIAL: &[StatusCode] = &[
    StatusCode::UNPROCESSABLE_ENTITY,
    StatusCode::GATEWAY_TIMEOUT,
];

impl SandboxClient {
    /// Copies a running sandbox `times` ways (1 to [`MAX_COPIES`]) and waits until every copy
    /// runs or failed. Failed copies are in the answer (`status` `failed` with a `reason`), not
    /// an error; a sandbox that is not running is a 409.
    pub async fn copy(
        &self,
        identifier: &str,
        times: u32,
    ) -> Result<CopySandboxResponse, ClientError> {
        let id = identifier_arg(identifier, "identifier")?;
        if !(1..=MAX_COPIES).contains(&times) {
            return Err(ClientError::invalid(format!(
                "times must be between 1 and {MAX_COPIES}, got {times}"
            )));
        }
        let call = self
            .call(
                Method::POST,
                &["sandboxes", id, "copy"],
                Scope::Sandbox(id.into()),
            )?
            .query("times", times.to_string())
            // Never sent twice: a second copy would make more sandboxes.
            .policy(false, false)
            .also_ok(PARTIAL);
        self.transport.json(call, "copy answer").await
    }
}
