//! Secrets (Alcove's own routes under `{B}/secrets`, see docs/api.md): values injected into
//! sandboxes as environment variables. Values go up, never come back: listing gives names and
//! times only.

use http::Method;
use serde::{Deserialize, Serialize};

use crate::client::{SandboxClient, identifier_arg};
use crate::error::{ClientError, Scope};

/// A secret as listed (never its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Name: the environment variable it becomes.
    pub name: String,
    /// First set, epoch milliseconds.
    pub created_at: i64,
    /// Last set, epoch milliseconds.
    pub updated_at: i64,
}

#[derive(Serialize)]
struct SetSecret<'a> {
    value: &'a str,
}

#[derive(Deserialize)]
struct SecretList {
    secrets: Vec<SecretInfo>,
}

impl SandboxClient {
    /// Creates or replaces a secret (the name must be an environment variable name, the value
    /// at most 64 KiB). Sandboxes created afterwards with `secret_names` see the new value.
    pub async fn set_secret(&self, name: &str, value: &str) -> Result<SecretInfo, ClientError> {
        let name = identifier_arg(name, "secret name")?;
        // Setting a value twice leaves the same state, so the PUT may be retried.
        let call = self
            .call(Method::PUT, &["secrets", name], Scope::Plain)?
            .json(&SetSecret { value })?
            .policy(true, true);
        self.transport.json(call, "secret").await
    }

    /// The namespace's secrets: names and times, never values.
    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, ClientError> {
        let call = self.call(Method::GET, &["secrets"], Scope::Plain)?;
        let list: SecretList = self.transport.json(call, "secret list").await?;
        Ok(list.secrets)
    }

    /// Deletes a secret; an unknown name is a 404 ([`ClientError::Api`]).
    pub async fn delete_secret(&self, name: &str) -> Result<(), ClientError> {
        let name = identifier_arg(name, "secret name")?;
        let call = self.call(Method::DELETE, &["secrets", name], Scope::Plain)?;
        self.transport.body(call).await.map(drop)
    }
}
