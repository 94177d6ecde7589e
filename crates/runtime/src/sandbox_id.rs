//! The id of a sandbox: a UUID in its one canonical spelling.
//!
//! The id names the sandbox's directory, cgroup, runc container, network
//! namespace and uid range on the host, so the node only acts on ids that went
//! through [`SandboxId::parse`] (or were made by [`SandboxId::random`]): no
//! string that could climb out of a directory or name someone else's cgroup
//! reaches it.

use std::fmt;
use std::ops::Deref;

/// A sandbox id: a lowercase, hyphenated UUID (`8-4-4-4-12` hex digits).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct SandboxId(String);

/// A string that is not a sandbox id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sandbox id (a lowercase hyphenated UUID)")]
pub struct InvalidSandboxId(pub String);

impl SandboxId {
    /// A new random (version 4) id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Parses `s`; only the canonical spelling is accepted, so one sandbox
    /// never has two ids (`ABC…` and `abc…`, with or without hyphens).
    pub fn parse(s: &str) -> Result<Self, InvalidSandboxId> {
        match uuid::Uuid::try_parse(s) {
            Ok(u) if u.hyphenated().to_string() == s => Ok(Self(s.to_string())),
            _ => Err(InvalidSandboxId(s.to_string())),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first eight hex digits, for hostnames and short log lines.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

impl Deref for SandboxId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SandboxId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for SandboxId {
    fn as_ref(&self) -> &std::path::Path {
        self.0.as_ref()
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SandboxId {
    type Err = InvalidSandboxId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for SandboxId {
    type Error = InvalidSandboxId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SandboxId> for String {
    fn from(id: SandboxId) -> String {
        id.0
    }
}

impl PartialEq<str> for SandboxId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SandboxId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_parse_back() {
        let id = SandboxId::random();
        assert_eq!(SandboxId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(id.short().len(), 8);
        assert!(id.as_str().starts_with(id.short()));
    }

    #[test]
    fn only_the_canonical_spelling_is_an_id() {
        let id = "0b7e3b8e-3c1a-4f0e-9d3b-2a1c5e6f7a8b";
        assert!(SandboxId::parse(id).is_ok());
        for bad in [
            "0B7E3B8E-3C1A-4F0E-9D3B-2A1C5E6F7A8B",
            "0b7e3b8e3c1a4f0e9d3b2a1c5e6f7a8b",
            "{0b7e3b8e-3c1a-4f0e-9d3b-2a1c5e6f7a8b}",
            "urn:uuid:0b7e3b8e-3c1a-4f0e-9d3b-2a1c5e6f7a8b",
            "../../etc",
            "",
            "my-sandbox",
        ] {
            assert_eq!(
                SandboxId::parse(bad),
                Err(InvalidSandboxId(bad.to_string())),
                "{bad}"
            );
        }
    }
}
