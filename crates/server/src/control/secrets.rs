//! Secrets: set, list and delete sealed values; resolve the ones a sandbox asks
//! for into environment variables. Values never appear in logs or answers.

use std::sync::Arc;

use alcove_wire::time::now_millis;

use super::ControlError;
use super::context::Context;
use super::validate::AGENT_ENV_PREFIX;
use crate::store::SealedSecret;

/// Longest secret value accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// A secret as listed: its name and times, never its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretMeta {
    /// Name (the environment variable it becomes).
    pub name: String,
    /// First set (epoch ms).
    pub created_at: i64,
    /// Last set (epoch ms).
    pub updated_at: i64,
}

/// Checks a secret name: it becomes an environment variable name.
pub fn validate_name(name: &str) -> Result<(), ControlError> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok || name.len() > 128 || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ControlError::InvalidArgument {
            field: "name",
            reason: format!(
                "{name:?} is not a valid secret name: use letters, digits and '_', not starting \
                 with a digit, at most 128 characters (it becomes an environment variable)"
            ),
        });
    }
    // The agent of every sandbox is configured through these; a secret of that name would
    // reach the agent's own environment and reconfigure it (a claim's `env` refuses them too).
    if name.starts_with(AGENT_ENV_PREFIX) {
        return Err(ControlError::InvalidArgument {
            field: "name",
            reason: format!(
                "{name}: names starting with {AGENT_ENV_PREFIX} are reserved for the agent"
            ),
        });
    }
    Ok(())
}

fn sealing_failed(e: crate::secrets::SecretError) -> ControlError {
    tracing::error!(error = %e, "sealing or opening a secret");
    ControlError::OperationFailed {
        id: String::new(),
        op: "secret sealing",
        reason: "the secrets key could not seal or open a value".into(),
    }
}

/// Sets, lists and deletes sealed secrets, and opens the ones a sandbox boots with.
#[derive(Debug, Clone)]
pub struct Secrets {
    ctx: Arc<Context>,
}

impl Secrets {
    /// The service over the shared context.
    pub(super) fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }
    /// Sets (creates or replaces) a secret.
    pub async fn set(
        &self,
        namespace: &str,
        name: &str,
        value: &str,
    ) -> Result<SecretMeta, ControlError> {
        validate_name(name)?;
        if value.len() > MAX_SECRET_BYTES || value.contains('\0') {
            return Err(ControlError::InvalidArgument {
                field: "value",
                reason: format!(
                    "a secret value must be at most {MAX_SECRET_BYTES} bytes without NUL"
                ),
            });
        }
        let (nonce, ciphertext) = self
            .ctx
            .secret_box
            .seal(namespace, name, value)
            .map_err(sealing_failed)?;
        let now = now_millis();
        let created_at = self
            .ctx
            .store
            .put_secret(&SealedSecret {
                namespace: namespace.to_string(),
                name: name.to_string(),
                nonce,
                ciphertext,
                created_at: now,
                updated_at: now,
            })
            .await?;
        tracing::info!(namespace, name, "secret set");
        Ok(SecretMeta {
            name: name.to_string(),
            created_at,
            updated_at: now,
        })
    }

    /// Names and times of a namespace's secrets.
    pub async fn list(&self, namespace: &str) -> Result<Vec<SecretMeta>, ControlError> {
        Ok(self
            .ctx
            .store
            .list_secrets(namespace)
            .await?
            .into_iter()
            .map(|s| SecretMeta {
                name: s.name,
                created_at: s.created_at,
                updated_at: s.updated_at,
            })
            .collect())
    }

    /// Deletes a secret (sandboxes already running keep their copy).
    pub async fn delete(&self, namespace: &str, name: &str) -> Result<(), ControlError> {
        if self.ctx.store.delete_secret(namespace, name).await? {
            tracing::info!(namespace, name, "secret deleted");
            Ok(())
        } else {
            Err(ControlError::NotFound {
                kind: "secret",
                id: name.to_string(),
            })
        }
    }

    /// The stored secrets for `names`, or which of them are not set.
    pub(super) async fn sealed(
        &self,
        namespace: &str,
        names: &[String],
    ) -> Result<Vec<SealedSecret>, ControlError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.ctx.store.list_secrets(namespace).await?;
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !stored.iter().any(|s| &s.name == *n))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(ControlError::InvalidArgument {
                field: "secret_names",
                reason: format!(
                    "no secret named {} in namespace {namespace:?}; set it with `alcove secrets set`",
                    missing.join(", ")
                ),
            });
        }
        Ok(names
            .iter()
            .filter_map(|n| stored.iter().find(|s| &s.name == n).cloned())
            .collect())
    }

    /// The environment variables for `names`, or which of them are not set.
    pub(super) async fn env(
        &self,
        namespace: &str,
        names: &[String],
    ) -> Result<Vec<(String, String)>, ControlError> {
        self.sealed(namespace, names)
            .await?
            .into_iter()
            .map(|s| {
                self.ctx
                    .secret_box
                    .open(&s.namespace, &s.name, &s.nonce, &s.ciphertext)
                    .map(|v| (s.name, v))
                    .map_err(sealing_failed)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_env_var_names() {
        for good in ["A", "_x", "OPENAI_API_KEY", "k1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1A",
            "A-B",
            "A B",
            "a.b",
            &"A".repeat(129),
            "ALCOVE_AGENT_LISTEN",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
