//! Keeps web pages of other sites out of the API (docs/security.md, Browsers).
//!
//! A server without API keys trusts whoever can reach its port, and a browser on the
//! same machine can reach it for any page it shows. Two ways would let such a page act:
//!
//! * **A cross-site request.** A page can send a "simple" `POST` (no JSON content
//!   type, no preflight) to `http://127.0.0.1:8900/sandboxes/my-env/suspend` or into a
//!   sandbox's API, and open WebSockets to it. Browsers mark such requests with `Origin`
//!   (and `Sec-Fetch-Site`); one whose origin is not the server's own is refused, unless
//!   it carries a valid API key (which a browser sends cross-site only after a CORS
//!   preflight this server never grants).
//! * **DNS rebinding.** A page of `evil.example` whose name then resolves to 127.0.0.1
//!   talks to the server as its own origin. Without API keys, a request must name the
//!   server by a loopback name or address (or one given with `--allowed-host`); with
//!   keys, the key the page does not have is the guard.
//!
//! Ingress traffic (`<port>-<sandbox>.<domain>`) goes to the user's own server in the
//! sandbox, which answers to pages of any site as it sees fit, and requests relayed by
//! another node were checked there: neither is looked at here.

use alcove_wire::error::ErrorCode;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

/// The host names a server without API keys answers to besides loopback names and
/// addresses, and its ingress domain.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    /// Lower-case host names without a port (`--allowed-host`, and the hosts of the
    /// server's own public and advertised URLs).
    names: Vec<String>,
    /// `--allowed-host '*'`: any name (the server sits behind a proxy that checks it).
    any: bool,
    /// The port the server listens on: `http://localhost:<port>` is the server itself
    /// (websocket-client, which the official SDK's terminals use, sends that `Origin`
    /// beside `Host: <sandbox>.local`).
    port: Option<u16>,
}

impl AllowedHosts {
    /// The names given with `--allowed-host` (`*` for any), the hosts of `urls` (the
    /// server's own `--public-url` and `--advertise-url`, if set), and the port it
    /// listens on.
    pub fn new<'a>(
        given: &[String],
        urls: impl IntoIterator<Item = &'a str>,
        port: Option<u16>,
    ) -> Self {
        let mut hosts = Self {
            port,
            ..Self::default()
        };
        for name in given.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if name == "*" {
                hosts.any = true;
            } else {
                hosts.names.push(normalize(split_port(name).0));
            }
        }
        for url in urls {
            if let Some(host) = url.parse::<http::Uri>().ok().and_then(|u| {
                u.host()
                    .map(|h| normalize(h.trim_start_matches('[').trim_end_matches(']')))
            }) {
                hosts.names.push(host);
            }
        }
        hosts
    }

    fn contains(&self, host: &str) -> bool {
        self.any || self.names.iter().any(|n| n == host)
    }
}

/// Middleware: refuses requests from another site's pages, and (without API keys)
/// requests that name the server by a host it does not answer to.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if crate::proxy::parse_ingress_host(headers, &state.ingress_domain).is_some()
        || state.control.is_relayed_by_a_node(headers)
    {
        return next.run(req).await;
    }
    let host = request_host(&req);
    let keyed = !state.keys.is_empty() && state.keys.check(headers).is_ok();
    let verdict = admit(
        req.method(),
        headers,
        host.as_deref(),
        &Policy {
            check_host: state.keys.is_empty(),
            keyed,
            allowed: &state.allowed_hosts,
            ingress_domain: &state.ingress_domain,
        },
    );
    match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => {
            tracing::warn!(reason = %refusal.message(), "refused a request from a browser page");
            refusal.into_response()
        }
    }
}

/// What a request is checked against.
struct Policy<'a> {
    /// Whether the Host must be one this server answers to (no API keys).
    check_host: bool,
    /// Whether the request carries a valid API key: no page of another site could
    /// have sent it.
    keyed: bool,
    allowed: &'a AllowedHosts,
    ingress_domain: &'a str,
}

/// The request's `Host` header, or the authority of its URI (HTTP/2).
fn request_host(req: &Request) -> Option<String> {
    match req.headers().get(header::HOST) {
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        None => req.uri().authority().map(|a| a.as_str().to_string()),
    }
}

fn admit(
    method: &Method,
    headers: &HeaderMap,
    host: Option<&str>,
    policy: &Policy<'_>,
) -> Result<(), ApiError> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase());
    let origin = headers
        .get(header::ORIGIN)
        .map(|o| String::from_utf8_lossy(o.as_bytes()));
    // A browser marks its requests with `Sec-Fetch-Site`, and a page served under the
    // name the request is for sends that name's own origin; websocket-client (no
    // browser) sends the address it dialed beside the `Host` it was given.
    let from_browser = fetch_site.is_some()
        || origin
            .as_deref()
            .zip(host)
            .is_some_and(|(o, h)| origin_of_host(o, h));
    if let Some(origin) = origin {
        if !policy.keyed && !origin_admitted(&origin, host, policy.allowed) {
            return Err(forbidden(format!(
                "refused a request from a page of another site (Origin `{}`): only this \
                 server's own pages may call its API",
                printable(&origin)
            )));
        }
    } else if !policy.keyed
        && matches!(fetch_site.as_deref(), Some("cross-site" | "same-site"))
        && !is_navigation(method, headers)
    {
        // A request without `Origin` (a cross-site `GET` of an image or script, say) is
        // still marked by the browser.
        return Err(forbidden(
            "refused a request from a page of another site (Sec-Fetch-Site): only this \
             server's own pages may call its API"
                .into(),
        ));
    }
    if policy.check_host
        && let Some(host) = host
        && !host_admitted(host, from_browser, policy)
    {
        return Err(forbidden(format!(
            "this server has no API key and answers only to loopback names and addresses, \
             not to `{}` (a guard against DNS rebinding); start it with --allowed-host \
             for another name, or with --api-key",
            printable(split_port(host).0)
        )));
    }
    Ok(())
}

/// A top-level or frame navigation (a link followed, a URL typed): its answer goes to
/// the user's window, not to the page that linked, and a `GET` changes nothing.
fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && headers
            .get("sec-fetch-mode")
            .is_some_and(|m| m.as_bytes().eq_ignore_ascii_case(b"navigate"))
}

/// Whether `origin` (`scheme://host[:port]`) is the server's own: the origin the
/// request's Host names, a loopback name or address at the server's port (no page of
/// another site has such an origin), or a host given with `--allowed-host` (any port).
fn origin_admitted(origin: &str, host: Option<&str>, allowed: &AllowedHosts) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null` (a sandboxed frame, a file), or garbage
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (origin_host, origin_port) = split_port(authority);
    let origin_host = normalize(origin_host);
    if allowed.names.contains(&origin_host) {
        return true;
    }
    let loopback = origin_host == "localhost"
        || origin_host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback && allowed.port == Some(origin_port.unwrap_or(default_port)) {
        return true;
    }
    host.is_some_and(|h| origin_of_host(origin, h))
}

/// Whether `origin` is the origin `host` (a `Host` header) names, scheme aside (the
/// server's own scheme is the only one that reaches it on its port).
fn origin_of_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let (origin_host, origin_port) = split_port(authority);
    let (request_host, request_port) = split_port(host);
    normalize(request_host) == normalize(origin_host)
        && request_port.unwrap_or(default_port) == origin_port.unwrap_or(default_port)
}

/// Whether a server without API keys answers to `host` (a `Host` header).
fn host_admitted(host: &str, from_browser: bool, policy: &Policy<'_>) -> bool {
    let name = normalize(split_port(host).0);
    if name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || policy.allowed.contains(&name)
    {
        return true;
    }
    let domain = policy.ingress_domain.to_ascii_lowercase();
    if name == domain || name.strip_suffix(&domain).is_some_and(|s| s.ends_with('.')) {
        return true;
    }
    // `<sandbox>.local` names a sandbox's API to the official SDKs (which send no
    // `Origin`); a browser has no business there, and a name under `.local` can be
    // answered by any machine on the LAN.
    !from_browser
        && name
            .strip_suffix(".local")
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

/// `host[:port]` split; an IPv6 literal keeps no brackets.
fn split_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, p.parse().ok())
        }
        _ => (authority, None),
    }
}

/// Lower case, without the root's final dot (`localhost.` is `localhost`).
fn normalize(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// At most 100 characters of what a client sent, control characters shown escaped.
fn printable(s: &str) -> String {
    s.chars().take(100).flat_map(char::escape_debug).collect()
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
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

    fn check(method: Method, pairs: &[(&'static str, &str)], host: &str, keys: bool) -> bool {
        let allowed = AllowedHosts::new(
            &["alcove.example.com".into()],
            ["https://public.example.org:8443/"],
            Some(8900),
        );
        let policy = Policy {
            check_host: !keys,
            keyed: false,
            allowed: &allowed,
            ingress_domain: "sandbox.localhost",
        };
        admit(&method, &headers(pairs), Some(host), &policy).is_ok()
    }

    #[test]
    fn clients_that_are_not_browsers_pass() {
        for host in [
            "127.0.0.1:8900",
            "localhost:8900",
            "[::1]:8900",
            "10.1.2.3",
            "my-env.local:8900",
            "6f1c2a43-0000.local",
            "LOCALHOST.",
            "x.sandbox.localhost:8900",
            "alcove.example.com",
            "public.example.org:8443",
        ] {
            assert!(check(Method::POST, &[], host, false), "{host}");
        }
    }

    #[test]
    fn a_rebound_name_is_refused_without_keys_only() {
        for host in [
            "evil.example:8900",
            "evil.example",
            "a.b.local",
            "localhost.evil.example",
            "sandbox.localhost.evil",
        ] {
            assert!(!check(Method::GET, &[], host, false), "{host}");
            assert!(check(Method::GET, &[], host, true), "{host} with keys");
        }
    }

    #[test]
    fn a_page_of_another_site_is_refused() {
        for origin in [
            "https://evil.example",
            "null",
            "http://localhost:3000",
            "http://127.0.0.1:8901",
            "file://",
            "http://8080-x.sandbox.localhost:8900",
        ] {
            for keys in [false, true] {
                assert!(
                    !check(Method::POST, &[("origin", origin)], "127.0.0.1:8900", keys),
                    "{origin}"
                );
            }
        }
        assert!(!check(
            Method::GET,
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors")
            ],
            "127.0.0.1:8900",
            true
        ));
        assert!(!check(
            Method::POST,
            &[
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "navigate")
            ],
            "127.0.0.1:8900",
            true
        ));
    }

    #[test]
    fn the_servers_own_pages_and_followed_links_pass() {
        let same = [
            ("http://127.0.0.1:8900", "127.0.0.1:8900"),
            ("http://LOCALHOST:8900", "localhost:8900"),
            ("http://localhost", "localhost:80"),
            ("https://localhost", "localhost"),
            ("http://[::1]:8900", "[::1]:8900"),
            ("https://alcove.example.com", "127.0.0.1:8900"),
        ];
        for (origin, host) in same {
            assert!(
                check(
                    Method::POST,
                    &[("origin", origin), ("sec-fetch-site", "same-origin")],
                    host,
                    false
                ),
                "{origin} {host}"
            );
        }
        // websocket-client's Origin beside the official SDK's `Host: <sandbox>.local`.
        for (origin, host) in [
            ("http://localhost:8900", "6f1c2a43-0000.local"),
            ("http://127.0.0.1:8900", "my-env.local:8900"),
            ("http://[::1]:8900", "my-env.local"),
        ] {
            assert!(
                check(Method::GET, &[("origin", origin)], host, false),
                "{origin} {host}"
            );
        }
        for origin in ["http://localhost:8901", "http://evil.example:8900"] {
            assert!(!check(
                Method::GET,
                &[("origin", origin)],
                "my-env.local",
                false
            ));
        }
        assert!(check(
            Method::GET,
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate")
            ],
            "localhost:8900",
            false
        ));
        assert!(check(
            Method::GET,
            &[("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")],
            "localhost:8900",
            false
        ));
    }

    #[test]
    fn a_valid_key_is_no_page_of_another_site() {
        let allowed = AllowedHosts::new(&[], [], Some(8900));
        let mut policy = Policy {
            check_host: false,
            keyed: true,
            ingress_domain: "sandbox.localhost",
            allowed: &allowed,
        };
        let foreign = headers(&[("origin", "http://10.0.0.5:8900")]);
        assert!(admit(&Method::GET, &foreign, Some("my-env.local"), &policy).is_ok());
        policy.keyed = false;
        assert!(admit(&Method::GET, &foreign, Some("my-env.local"), &policy).is_err());
    }

    #[test]
    fn a_browser_never_reaches_a_sandbox_by_a_local_name() {
        assert!(!check(
            Method::GET,
            &[("sec-fetch-site", "same-origin")],
            "my-env.local:8900",
            false
        ));
        assert!(!check(
            Method::POST,
            &[("origin", "http://my-env.local:8900")],
            "my-env.local:8900",
            false
        ));
    }

    #[test]
    fn any_host_may_be_allowed_but_not_any_origin() {
        let allowed = AllowedHosts::new(&["*".into()], [], None);
        let policy = Policy {
            check_host: true,
            keyed: false,
            allowed: &allowed,
            ingress_domain: "sandbox.localhost",
        };
        assert!(
            admit(
                &Method::GET,
                &HeaderMap::new(),
                Some("evil.example"),
                &policy
            )
            .is_ok()
        );
        let foreign = headers(&[("origin", "https://evil.example")]);
        assert!(admit(&Method::POST, &foreign, Some("alcove.internal"), &policy).is_err());
    }

    #[test]
    fn hosts_split_and_print_safely() {
        assert_eq!(split_port("[::1]:8900"), ("::1", Some(8900)));
        assert_eq!(split_port("[::1]"), ("::1", None));
        assert_eq!(split_port("a.b:"), ("a.b:", None));
        assert_eq!(split_port("a.b:99999"), ("a.b", None));
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(500)).len(), 100);
    }
}
