//! Which sandbox a proxied request is for (docs/protocol/proxy.md, Addressing a
//! sandbox): the `X-Tensorlake-Sandbox-Id` header first, then
//! `Host: <id>.local[:port]`.

use axum::http::HeaderMap;

/// The sandbox id or name a proxied request addresses, if any.
pub fn sandbox_ident(headers: &HeaderMap) -> Option<String> {
    if let Some(id) = headers
        .get("x-tensorlake-sandbox-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        return Some(id.to_string());
    }
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let host = strip_port(host);
    let ident = host.strip_suffix(".local")?;
    (!ident.is_empty() && !ident.contains('.')).then(|| ident.to_string())
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn header_wins_over_host() {
        let h = headers(&[("x-tensorlake-sandbox-id", "abc"), ("host", "def.local")]);
        assert_eq!(sandbox_ident(&h).as_deref(), Some("abc"));
    }

    #[test]
    fn host_with_and_without_port() {
        assert_eq!(
            sandbox_ident(&headers(&[("host", "my-env.local")])).as_deref(),
            Some("my-env")
        );
        assert_eq!(
            sandbox_ident(&headers(&[("host", "abc.local:8900")])).as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn plain_hosts_are_not_sandboxes() {
        for host in ["localhost:8900", "127.0.0.1", ".local", "a.b.local"] {
            assert_eq!(sandbox_ident(&headers(&[("host", host)])), None, "{host}");
        }
        assert_eq!(sandbox_ident(&HeaderMap::new()), None);
    }
}
