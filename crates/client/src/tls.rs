//! What the client trusts on `https://` and `wss://`: the system's roots, which
//! honour `SSL_CERT_FILE` and `SSL_CERT_DIR` (how a private CA is added, as for
//! the Python and TypeScript SDKs' `SSL_CERT_FILE` and `NODE_EXTRA_CA_CERTS`).
//!
//! The crypto provider is named explicitly: with two providers in one build,
//! rustls refuses to choose a default.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

/// A TLS client config over the system's roots, for HTTP and WebSockets alike.
pub(crate) fn client_config() -> Result<ClientConfig, rustls::Error> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(error = %error, "a system trust root could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    Ok(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}
