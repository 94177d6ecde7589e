//! Health probes of managed processes: a TCP connect, or an HTTP `GET` whose status must be
//! 2xx or 3xx, to a port of the sandbox's own loopback.
//!
//! The HTTP probe is a few lines of HTTP/1.1 by hand: it needs only the status line, and the
//! agent carries no HTTP client for one request per interval.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use alcove_wire::process::{HealthCheck, HealthCheckKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head read while looking for the status line.
const MAX_HEAD_BYTES: usize = 4096;

/// Runs one probe; `Err` says why it failed.
pub async fn probe(check: &HealthCheck) -> Result<(), String> {
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    match tokio::time::timeout(timeout, probe_once(check)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", check.timeout_ms)),
    }
}

async fn probe_once(check: &HealthCheck) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, check.port));
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|err| format!("connecting to port {}: {err}", check.port))?;
    if check.kind == HealthCheckKind::Tcp {
        return Ok(());
    }
    let path = check.path.as_deref().unwrap_or("/");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nUser-Agent: alcove-agent-health\r\nConnection: close\r\n\r\n",
        check.port
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("sending the request: {err}"))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < MAX_HEAD_BYTES {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|err| format!("reading the answer: {err}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status = parse_status(&head).ok_or("the answer is not HTTP")?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

/// The status code of an HTTP/1 status line at the start of `head`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Why a health check in a start request is unusable; `None` when it is fine.
pub fn invalid_reason(check: &HealthCheck) -> Option<String> {
    if check.port == 0 {
        return Some("health_check.port must be between 1 and 65535".into());
    }
    if check.interval_ms == 0 {
        return Some("health_check.interval_ms must be at least 1".into());
    }
    if check.timeout_ms == 0 {
        return Some("health_check.timeout_ms must be at least 1".into());
    }
    if check.failure_threshold == 0 {
        return Some("health_check.failure_threshold must be at least 1".into());
    }
    if let Some(path) = &check.path
        && (!path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' '))
    {
        return Some(format!(
            "health_check.path {path:?} must start with '/' and hold no spaces or control characters"
        ));
    }
    if check.kind == HealthCheckKind::Tcp && check.path.is_some() {
        return Some("health_check.path applies to type \"http\" only".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: HealthCheckKind, port: u16) -> HealthCheck {
        HealthCheck {
            kind,
            port,
            path: None,
            initial_delay_ms: 0,
            interval_ms: 10,
            timeout_ms: 500,
            failure_threshold: 1,
        }
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
    }

    #[test]
    fn bad_checks_are_named() {
        let mut c = check(HealthCheckKind::Http, 0);
        assert!(invalid_reason(&c).is_some_and(|r| r.contains("port")));
        c.port = 80;
        assert_eq!(invalid_reason(&c), None);
        c.path = Some("no-slash".into());
        assert!(invalid_reason(&c).is_some_and(|r| r.contains("path")));
    }

    #[tokio::test]
    async fn probes_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Busy\r\n\r\n"] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let http = check(HealthCheckKind::Http, port);
        assert_eq!(probe(&http).await, Ok(()));
        assert!(probe(&http).await.is_err_and(|e| e.contains("503")));
        server.await.expect("server");
        // Nothing listens any more.
        assert!(probe(&check(HealthCheckKind::Tcp, port)).await.is_err());
    }
}
