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
/// addresses, and its ingress domain; and the origins, besides its own, whose pages
/// may call it.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    /// Lower-case host names without a port (`--allowed-host`, and the hosts of the
    /// server's own public and advertised URLs).
    names: Vec<String>,
    /// Origins as (scheme, lower-case host, port): `--allowed-host host[:port]` at
    /// that port (else 80 and 443), the public and advertised URLs exactly.
    origins: Vec<(String, String, u16)>,
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
                continue;
            }
            let (host, port) = split_port(name);
            let host = host.to_ascii_lowercase();
            hosts.names.push(normalize(&host));
            for (scheme, default) in [("http", 80), ("https", 443)] {
                let origin = (scheme.to_string(), host.clone(), port.unwrap_or(default));
                hosts.origins.push(origin);
            }
        }
        for url in urls {
            if let Some((scheme, host, port)) = parse_origin(url.trim_end_matches('/')) {
                hosts.names.push(normalize(&host));
                hosts.origins.push((scheme, host, port));
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
    // Only a request a browser marked needs the key's pass; the key check proper
    // comes later, in `authenticate`.
    let marked = headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site");
    let keyed = marked && !state.keys.is_empty() && state.keys.check(headers).is_ok();
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
    let parsed = origin.as_deref().and_then(parse_origin);
    // A browser marks its requests with `Sec-Fetch-Site` (towards secure contexts
    // only: `http://x.local` gets none), a `Referer` or its `User-Agent`, and a page
    // served under the name the request is for sends that name's own origin;
    // websocket-client (no browser) sends the address it dialed beside the `Host` it
    // was given.
    let browser_signs = fetch_site.is_some()
        || headers.contains_key(header::REFERER)
        || headers
            .get(header::USER_AGENT)
            .is_some_and(|ua| ua.as_bytes().starts_with(b"Mozilla/"));
    let from_browser = browser_signs
        || parsed
            .as_ref()
            .zip(host)
            .is_some_and(|(o, h)| origin_of_host(o, h));
    // The official SDK's terminals through a forwarded port (`ssh -L`, `docker -p`):
    // websocket-client's Origin is the forwarded loopback address, beside a port-less
    // `Host: <sandbox>.local` that no browser sends but to port 80, with its user agent.
    let sdk_by_local_name = !browser_signs && host.is_some_and(is_local_sandbox_name);
    if let Some(origin) = origin {
        let admitted = parsed.as_ref().is_some_and(|o| {
            origin_admitted(o, host, policy.allowed) || (sdk_by_local_name && is_loopback(&o.1))
        });
        if !policy.keyed && !admitted {
            return Err(forbidden(format!(
                "refused a request from a page of another site (Origin `{}`): only this \
                 server's own pages may call its API (behind a proxy that changes the Host, \
                 name the public address with --public-url or --allowed-host)",
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

/// A top-level navigation (a link followed, a URL typed): its answer goes to the
/// user's window, not to the page that linked, and a `GET` changes nothing. A frame's
/// navigation is not one: the framing page could lay itself over a live desktop.
fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    let is = |name: &str, value: &[u8]| {
        headers
            .get(name)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(value))
    };
    (method == Method::GET || method == Method::HEAD)
        && is("sec-fetch-mode", b"navigate")
        && is("sec-fetch-dest", b"document")
}

/// An origin as (lower-case scheme, lower-case host, port).
type Origin = (String, String, u16);

/// `scheme://host[:port]` as an [`Origin`], the port the scheme's default when not
/// given; `None` for `null` (a sandboxed frame, a file), a scheme other than http(s),
/// or garbage. The host keeps a final dot: `x.` is another origin than `x` to a browser.
fn parse_origin(origin: &str) -> Option<Origin> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = split_port(authority);
    if host.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    Some((
        scheme,
        host.to_ascii_lowercase(),
        port.unwrap_or(default_port),
    ))
}

/// Whether `origin` is the server's own: the origin the request's Host names,
/// `localhost` or a loopback address at the server's port (no page of another site
/// has such an origin), or one of the allowed origins.
fn origin_admitted(origin: &Origin, host: Option<&str>, allowed: &AllowedHosts) -> bool {
    let (_, origin_host, origin_port) = origin;
    allowed.origins.contains(origin)
        || (is_loopback(origin_host) && allowed.port == Some(*origin_port))
        || host.is_some_and(|h| origin_of_host(origin, h))
}

/// Whether `origin` is the origin `host` (a `Host` header) names, scheme aside (the
/// server's own scheme is the only one that reaches it on its port). Names are
/// compared as a browser does: case aside, a final dot counting.
fn origin_of_host((scheme, origin_host, origin_port): &Origin, host: &str) -> bool {
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (request_host, request_port) = split_port(host);
    request_host.eq_ignore_ascii_case(origin_host)
        && request_port.unwrap_or(default_port) == *origin_port
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
    // `<sandbox>.local` names a sandbox's API to the SDKs, which send it without a
    // port; a browser has no business there (it names a port but for 80 and 443),
    // and a name under `.local` can be answered by any machine on the LAN.
    !from_browser && is_local_sandbox_name(host)
}

/// `Host: <sandbox>.local` without a port, as the SDKs name a sandbox's API.
fn is_local_sandbox_name(host: &str) -> bool {
    !host.contains(':')
        && normalize(host)
            .strip_suffix(".local")
            .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

/// `localhost` or a loopback address (a lower-case origin host: no brackets, no final
/// dot), which only this machine serves.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
            "my-env.local",
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
            "my-env.local:8900",
            "my-env.local:",
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
            ("http://127.0.0.1:8900", "my-env.local"),
            ("http://[::1]:8900", "my-env.local"),
        ] {
            assert!(
                check(Method::GET, &[("origin", origin)], host, false),
                "{origin} {host}"
            );
        }
        // ... through a forwarded port (ssh -L, docker -p): any loopback origin.
        for origin in ["http://localhost:18600", "http://127.0.0.1:1"] {
            assert!(check(
                Method::GET,
                &[("origin", origin)],
                "my-env.local",
                false
            ));
        }
        for (origin, host) in [
            ("http://evil.example:8900", "my-env.local"),
            ("http://localhost:18600", "my-env.local:8900"),
            ("http://localhost:18600", "127.0.0.1:8900"),
        ] {
            assert!(
                !check(Method::GET, &[("origin", origin)], host, false),
                "{origin} {host}"
            );
        }
        let page = [
            ("origin", "http://localhost:3000"),
            ("user-agent", "Mozilla/5.0"),
        ];
        assert!(!check(Method::POST, &page, "my-env.local", false));
        assert!(check(
            Method::GET,
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document")
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
    fn another_spelling_of_the_host_is_another_origin() {
        // A page of a sandbox's port, calling its own name with a final dot (which the
        // browser resolves alike but counts as another origin).
        let page = "http://8080-x.sandbox.localhost:8900";
        for host in ["8080-x.sandbox.localhost.:8900", "localhost.:8900"] {
            assert!(
                !check(Method::POST, &[("origin", page)], host, false),
                "{host}"
            );
        }
        assert!(!check(
            Method::POST,
            &[("origin", "http://localhost.:8900")],
            "localhost:8900",
            false
        ));
        assert!(check(
            Method::POST,
            &[("origin", "http://LocalHost.:8900")],
            "localhost.:8900",
            false
        ));
    }

    #[test]
    fn a_frame_of_another_site_is_no_navigation() {
        let framed = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "iframe"),
        ];
        assert!(!check(Method::GET, &framed, "localhost:8900", false));
        let followed = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ];
        assert!(check(Method::GET, &followed, "localhost:8900", false));
        assert!(!check(Method::POST, &followed, "localhost:8900", false));
    }

    #[test]
    fn allowed_origins_keep_their_port_and_scheme() {
        let allowed = AllowedHosts::new(
            &["127.0.0.1".into(), "proxy.example:8443".into()],
            ["http://localhost:8900/", "https://alcove.example.com"],
            Some(9000),
        );
        let admitted = |origin: &str| {
            parse_origin(origin)
                .is_some_and(|o| origin_admitted(&o, Some("10.0.0.1:9000"), &allowed))
        };
        for origin in [
            "http://127.0.0.1",
            "https://127.0.0.1",
            "https://proxy.example:8443",
            "http://localhost:8900",
            "https://alcove.example.com",
            "https://alcove.example.com:443",
            "http://localhost:9000",
        ] {
            assert!(admitted(origin), "{origin}");
        }
        for origin in [
            "http://127.0.0.1:3000",
            "https://proxy.example",
            "http://localhost:3000",
            "https://localhost:8900",
            "http://alcove.example.com",
            "https://alcove.example.com:8443",
            "https://alcove.example.com.",
            "https://user@alcove.example.com",
        ] {
            assert!(!admitted(origin), "{origin}");
        }
    }

    #[test]
    fn browser_signs_keep_a_local_name_from_pages() {
        for sign in [
            ("referer", "http://victim.local/"),
            ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ] {
            assert!(
                !check(Method::GET, &[sign], "victim.local", false),
                "{sign:?}"
            );
        }
        assert!(check(
            Method::GET,
            &[("user-agent", "python-httpx/0.28.1")],
            "victim.local",
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
