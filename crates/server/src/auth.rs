//! API keys: `Authorization: Bearer <key>` on every route but `/healthz` once
//! any key is configured.

use alcove_wire::error::ErrorCode;
use axum::http::{HeaderMap, StatusCode, header};

use crate::api::error::ApiError;

/// The accepted keys.
#[derive(Debug, Default)]
pub struct ApiKeys {
    keys: Vec<String>,
}

impl ApiKeys {
    /// Accepts `keys` (empty = auth off).
    pub fn new(keys: Vec<String>) -> Self {
        Self {
            keys: keys.into_iter().filter(|k| !k.is_empty()).collect(),
        }
    }

    /// Whether auth is off.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks the bearer token of a request.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "missing API key: send `Authorization: Bearer <key>`",
            )),
            Some(t)
                if self
                    .keys
                    .iter()
                    .any(|k| constant_time_eq(k.as_bytes(), t.as_bytes())) =>
            {
                Ok(())
            }
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "invalid API key",
            )),
        }
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_bearer_tokens() {
        let keys = ApiKeys::new(vec!["k1".into()]);
        let mut h = HeaderMap::new();
        assert!(keys.check(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer k2".parse().expect("hv"));
        assert!(keys.check(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer k1".parse().expect("hv"));
        assert!(keys.check(&h).is_ok());
        assert!(ApiKeys::new(vec![String::new()]).is_empty());
    }
}
