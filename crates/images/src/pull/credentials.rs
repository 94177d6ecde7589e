//! Registry credentials that cannot end up in a log.

use std::fmt;

use oci_client::secrets::RegistryAuth;

/// A registry user name and password (or token). Its `Debug` prints `***`
/// for both, so a credential never reaches a log through `{:?}` of a request
/// or an options struct; it has no `Display` and no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    username: String,
    password: String,
}

impl RegistryCredentials {
    /// Credentials for HTTP basic authentication (which oci-client also
    /// presents to a token service when the registry asks for a bearer
    /// token).
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    pub(crate) fn to_auth(&self) -> RegistryAuth {
        RegistryAuth::Basic(self.username.clone(), self.password.clone())
    }
}

impl From<(String, String)> for RegistryCredentials {
    fn from((username, password): (String, String)) -> Self {
        Self::new(username, password)
    }
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The user name is left out too: on some registries it is itself a
        // token id, and nothing needs it in a log.
        f.write_str("RegistryCredentials(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_credentials() {
        let c = RegistryCredentials::new("alice-user", "hunter2-secret");
        for text in [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{:?}", Some(&c)),
        ] {
            assert!(text.contains("***"), "{text}");
            assert!(!text.contains("alice-user"), "{text}");
            assert!(!text.contains("hunter2-secret"), "{text}");
        }
    }
}
