//! Sealing secret values: ChaCha20-Poly1305 with a key kept in
//! `<data-dir>/secrets.key` (created on first start, mode 0600). The namespace
//! and name are associated data, so a sealed value cannot be moved to another
//! secret. Values are never logged.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Errors of the secret box.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or written.
    #[error("secrets key {path}: {source}")]
    Key {
        /// Key file path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file has the wrong size.
    #[error("secrets key {0} is not 32 bytes")]
    BadKey(String),
    /// Sealing failed or a sealed value does not open (wrong key or tampered).
    #[error("a sealed secret could not be opened (wrong secrets.key?)")]
    Crypto,
}

/// Seals and opens secret values.
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// Loads the key at `path`, creating a random one (mode 0600) if missing.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let err = |source| SecretError::Key {
            path: path.display().to_string(),
            source,
        };
        let key = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(err)?;
                file.write_all(&key).map_err(err)?;
                file.sync_all().map_err(err)?;
                key.to_vec()
            }
            Err(e) => return Err(err(e)),
        };
        if key.len() != 32 {
            return Err(SecretError::BadKey(path.display().to_string()));
        }
        Ok(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    fn aad(namespace: &str, name: &str) -> Vec<u8> {
        format!("alcove-secret\0{namespace}\0{name}").into_bytes()
    }

    /// Seals `value`; returns (nonce, ciphertext).
    pub fn seal(
        &self,
        namespace: &str,
        name: &str,
        value: &str,
    ) -> Result<(Vec<u8>, Vec<u8>), SecretError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = Self::aad(namespace, name);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Crypto)?;
        Ok((nonce.to_vec(), ciphertext))
    }

    /// Opens a value sealed by [`SecretBox::seal`] for the same namespace and name.
    pub fn open(
        &self,
        namespace: &str,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<String, SecretError> {
        if nonce.len() != 12 {
            return Err(SecretError::Crypto);
        }
        let aad = Self::aad(namespace, name);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Crypto)?;
        String::from_utf8(plain).map_err(|_| SecretError::Crypto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_binds_to_the_name() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("secrets.key");
        let sb = SecretBox::load_or_create(&path).expect("create");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let (nonce, ct) = sb.seal("default", "API_KEY", "s3cret").expect("seal");
        assert!(
            !ct.windows(6).any(|w| w == b"s3cret"),
            "ciphertext must not contain the value"
        );
        assert_eq!(
            sb.open("default", "API_KEY", &nonce, &ct).expect("open"),
            "s3cret"
        );
        assert!(
            sb.open("default", "OTHER", &nonce, &ct).is_err(),
            "bound to its name"
        );
        assert!(
            sb.open("other", "API_KEY", &nonce, &ct).is_err(),
            "bound to its namespace"
        );
        let again = SecretBox::load_or_create(&path).expect("reload");
        assert_eq!(
            again.open("default", "API_KEY", &nonce, &ct).expect("open"),
            "s3cret"
        );
        std::fs::write(&path, b"short").expect("write");
        assert!(matches!(
            SecretBox::load_or_create(&path),
            Err(SecretError::BadKey(_))
        ));
    }
}
