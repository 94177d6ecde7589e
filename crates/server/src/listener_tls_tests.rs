//! The listener over TLS, with real handshakes on loopback.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{HttpLimits, serve};

const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// A listener serving `/hello` over TLS with a fresh self-signed certificate
/// for `localhost` and `127.0.0.1`; its address, the certificate's PEM and
/// the trigger that stops it.
async fn tls_listener(
    header_read_timeout: Duration,
) -> (
    std::net::SocketAddr,
    String,
    crate::shutdown::ShutdownTrigger,
) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    let config = crate::tls::ServerCerts::load(&cert, &key).expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (trigger, shutdown) = crate::shutdown::channel();
    let app = Router::new().route("/hello", get(|| async { "hi" }));
    let limits = HttpLimits {
        header_read_timeout,
        idle_timeout: Duration::from_secs(60),
        max_connections: 16,
        max_requests_per_client: 16,
    };
    tokio::spawn(serve(listener, app, limits, shutdown, Some(config)));
    (addr, made.cert.pem(), trigger)
}

fn trusting(pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
    roots.add(cert).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn https_is_served_and_checked_by_name_and_root() {
    let (addr, pem, _stop) = tls_listener(Duration::from_secs(10)).await;
    for name in ["localhost", "127.0.0.1"] {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let server = ServerName::try_from(name).expect("name");
        let mut tls = trusting(&pem)
            .connect(server, tcp)
            .await
            .expect("handshake");
        tls.write_all(REQUEST).await.expect("request");
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hi"), "{answer}");
    }

    // A client that does not trust the certificate's root, or asks for
    // another name, gets no session.
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    assert!(
        trusting(&stranger.cert.pem())
            .connect(name, tcp)
            .await
            .is_err()
    );
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("node-b.internal").expect("name");
    assert!(trusting(&pem).connect(name, tcp).await.is_err());
}

#[tokio::test]
async fn plain_http_gets_no_answer_from_a_tls_listener() {
    let (addr, _pem, _stop) = tls_listener(Duration::from_secs(10)).await;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(REQUEST).await.expect("request");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut answer))
        .await
        .expect("the connection is closed");
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_at_the_header_read_timeout() {
    let (addr, _pem, _stop) = tls_listener(Duration::from_secs(1)).await;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    // The first byte of a TLS record (a handshake), then nothing.
    tcp.write_all(&[0x16]).await.expect("one byte");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server kept a stalled handshake open");
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn a_relay_to_an_untrusted_node_names_the_tls_failure() {
    let (addr, _pem, _stop) = tls_listener(Duration::from_secs(10)).await;
    let link = crate::proxy::NodeLink::plain();
    let req = http::Request::builder()
        .uri(format!("https://127.0.0.1:{}/hello", addr.port()))
        .body(axum::body::Body::empty())
        .expect("request");
    let err = link.send(req).await.expect_err("untrusted");
    let mut chain = vec![format!("{err:?}")];
    let mut next = std::error::Error::source(&err);
    while let Some(e) = next {
        chain.push(format!("{e:?}"));
        next = e.source();
    }
    let why = crate::proxy::tls_failure(&err);
    assert!(
        why.as_deref().is_some_and(|w| w.contains("certificate")),
        "{why:?} in {chain:#?}"
    );
}
