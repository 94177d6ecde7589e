//! TLS of `alcove serve`: the certificate its listener presents
//! (`--tls-cert`, `--tls-key`) and the roots it trusts when it relays a request
//! to another node over `https://` (the system's, plus `--tls-ca`).
//!
//! The crypto provider is named explicitly (aws-lc-rs) rather than taken from
//! rustls's process default: other crates in the build enable a second
//! provider, and with two rustls refuses to pick one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up; each names the file and the flag it came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the kind needed.
    #[error("{flag} {path}: {reason}")]
    File {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the certificate and key (e.g. a key of another certificate).
    #[error("--tls-cert {cert} with --tls-key {key}: {reason}")]
    Pair {
        /// The certificate chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

/// The crypto provider every config here uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn file_error(flag: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        flag,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The PEM certificates of `path` (at least one).
fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(flag, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(flag, path, e))?;
    if certs.is_empty() {
        return Err(file_error(flag, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// What the listener presents: the chain of `cert` (leaf first) and its `key`
/// (PKCS#8, PKCS#1 or SEC1 PEM). HTTP/1.1 only, as the listener serves.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates("--tls-cert", cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("--tls-key", key, e))?;
    let pair_error = |reason: String| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| pair_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| pair_error(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The listener's certificate, read again from its files on [`ServerCerts::reload`]
/// (`alcove serve` does on SIGHUP), so that a renewed certificate is served without a
/// restart. Connections take the current one when they start.
#[derive(Debug)]
pub struct ServerCerts {
    cert: PathBuf,
    key: PathBuf,
    current: std::sync::RwLock<Arc<ServerConfig>>,
}

impl ServerCerts {
    /// Reads `cert` and `key` (see [`server_config`]).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: std::sync::RwLock::new(server_config(cert, key)?),
        }))
    }

    /// The config new connections use.
    pub fn current(&self) -> Arc<ServerConfig> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&current)
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

/// What relays to `https://` nodes trust: the system's roots (which honour
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`) and, if given, the certificates of `ca`.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(error = %error, "a system trust root could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = ca {
        for cert in certificates("--tls-ca", ca)? {
            roots.add(cert).map_err(|e| file_error("--tls-ca", ca, e))?;
        }
    }
    trusting(roots).map_err(|e| file_error("--tls-ca", ca.unwrap_or(Path::new("")), e))
}

/// A client config that trusts no one: every TLS handshake with it fails.
pub fn no_roots() -> Arc<ClientConfig> {
    match trusting(RootCertStore::empty()) {
        Ok(config) => config,
        // The provider is aws-lc-rs, which supports the default versions.
        Err(_) => unreachable!("aws-lc-rs supports TLS 1.2 and 1.3"),
    }
}

/// A client config over `roots`. No ALPN: hyper-rustls sets it from the
/// protocols it is built for.
fn trusting(roots: RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn a_certificate_and_its_key_make_a_server_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("cert");
        let cert = write(dir.path(), "cert.pem", &made.cert.pem());
        let key = write(dir.path(), "key.pem", &made.signing_key.serialize_pem());
        let config = server_config(&cert, &key).expect("server config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let roots = client_config(Some(&cert)).expect("client config");
        // hyper-rustls refuses a config that already names protocols.
        let _ = crate::proxy::NodeLink::new(roots, true);
    }

    #[test]
    fn a_reload_takes_new_files_and_keeps_the_old_certificate_on_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let cert = write(dir.path(), "cert.pem", &first.cert.pem());
        let key = write(dir.path(), "key.pem", &first.signing_key.serialize_pem());
        let certs = ServerCerts::load(&cert, &key).expect("load");
        let before = certs.current();

        let second = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        write(dir.path(), "cert.pem", &second.cert.pem());
        write(dir.path(), "key.pem", &second.signing_key.serialize_pem());
        certs.reload().expect("reload");
        let after = certs.current();
        assert!(!Arc::ptr_eq(&before, &after));

        // A half-written renewal (the new certificate, the old key) is refused; the
        // certificate in use stays.
        write(dir.path(), "cert.pem", &first.cert.pem());
        let e = certs.reload().expect_err("mismatched pair").to_string();
        assert!(e.contains("--tls-key"), "{e}");
        assert!(Arc::ptr_eq(&after, &certs.current()));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let cert = write(dir.path(), "cert.pem", &made.cert.pem());
        let key = write(dir.path(), "key.pem", &made.signing_key.serialize_pem());
        let other_key = write(dir.path(), "other.pem", &other.signing_key.serialize_pem());
        let empty = write(dir.path(), "empty.pem", "not pem\n");
        let missing = dir.path().join("missing.pem");

        let e = server_config(&missing, &key)
            .expect_err("missing cert")
            .to_string();
        assert!(e.contains("--tls-cert") && e.contains("missing.pem"), "{e}");
        let e = server_config(&empty, &key)
            .expect_err("no cert")
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = server_config(&cert, &cert)
            .expect_err("cert as key")
            .to_string();
        assert!(e.contains("--tls-key"), "{e}");
        let e = server_config(&cert, &other_key)
            .expect_err("wrong key")
            .to_string();
        assert!(e.contains("--tls-cert") && e.contains("--tls-key"), "{e}");
        let e = client_config(Some(&empty)).expect_err("no ca").to_string();
        assert!(e.contains("--tls-ca"), "{e}");
    }
}
