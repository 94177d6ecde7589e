//! Requests that one sandbox's web page makes, in the user's browser, to another sandbox's
//! exposed ports.
//!
//! Every ingress host (`<port>-<sandbox>.<ingress domain>`) lies under the same registrable
//! domain, which no public-suffix list names, so a browser counts all sandboxes as one site.
//! It then sends one sandbox's `SameSite` cookies with the requests any other sandbox's page
//! makes to it. A hostile sandbox could forge requests to the app of another (a form post, a
//! fetch, a WebSocket with that app's session). Between sites, `SameSite` would stop them; here
//! the proxy does, for the requests that carry credentials.

use axum::http::{HeaderMap, Method, header};

use super::ingress::parse_ingress_name;

/// Who started a credentialed request to a sandbox's port, when it must be checked.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Initiator {
    /// The page of this sandbox (id or name; the caller resolves whether it is the target).
    Sandbox(String),
    /// A page of the same site that hid its address (no `Origin`, no `Referer`): it may be
    /// another sandbox's, so it is refused as one.
    Hidden,
}

/// The initiator to check before `target` (the ingress host's id or name) is sent this
/// request, or None when nothing needs checking: the request carries no credentials, it is a
/// top-level navigation (a link followed, which cross-site requests may do too), or it comes
/// from anywhere but another sandbox's page.
pub(super) fn initiator_to_check(
    method: &Method,
    headers: &HeaderMap,
    domain: &str,
    target: &str,
) -> Option<Initiator> {
    if !carries_credentials(headers) || is_top_level_navigation(method, headers) {
        return None;
    }
    let origin = header_str(headers, header::ORIGIN).filter(|o| *o != "null");
    let Some(address) = origin.or_else(|| header_str(headers, header::REFERER)) else {
        // Browsers send `Origin` or `Referer` unless the page asked them not to (a
        // `no-referrer` policy): a same-site request without either hides where it came from.
        return (header_str(headers, "sec-fetch-site") == Some("same-site"))
            .then_some(Initiator::Hidden);
    };
    let uri: http::Uri = address.parse().ok()?;
    let authority = uri.authority()?.as_str();
    let (_, ident) = parse_ingress_name(authority, domain)?;
    (!ident.eq_ignore_ascii_case(target)).then_some(Initiator::Sandbox(ident))
}

fn carries_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(header::COOKIE) || headers.contains_key(header::AUTHORIZATION)
}

/// A link followed or an address typed: a GET that loads a whole tab (not a frame, not a
/// fetch). Browsers send `SameSite=Lax` cookies with these across sites as well.
fn is_top_level_navigation(method: &Method, headers: &HeaderMap) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && header_str(headers, "sec-fetch-mode") == Some("navigate")
        && header_str(headers, "sec-fetch-dest") == Some("document")
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "sandbox.localhost";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    fn check(method: Method, pairs: &[(&'static str, &str)]) -> Option<Initiator> {
        initiator_to_check(&method, &headers(pairs), DOMAIN, "victim")
    }

    #[test]
    fn another_sandboxs_page_is_checked_when_it_sends_credentials() {
        let from_a = ("origin", "http://3000-attacker.sandbox.localhost:8900");
        assert_eq!(
            check(Method::POST, &[from_a, ("cookie", "s=1")]),
            Some(Initiator::Sandbox("attacker".into()))
        );
        assert_eq!(
            check(Method::GET, &[from_a, ("authorization", "Basic eDp5")]),
            Some(Initiator::Sandbox("attacker".into()))
        );
        // Without Origin, the Referer names the page; any spelling of the ingress domain.
        assert_eq!(
            check(
                Method::GET,
                &[
                    (
                        "referer",
                        "http://3000-Attacker.SANDBOX.localhost.:8900/x?y"
                    ),
                    ("cookie", "s=1"),
                    ("sec-fetch-dest", "image"),
                ]
            ),
            Some(Initiator::Sandbox("Attacker".into()))
        );
        // Without credentials there is nothing to forge.
        assert_eq!(check(Method::POST, &[from_a]), None);
    }

    #[test]
    fn the_sandboxs_own_pages_links_and_other_sites_pass() {
        let cookie = ("cookie", "s=1");
        // Another port of the same sandbox (the caller also resolves id against name).
        assert_eq!(
            check(
                Method::POST,
                &[
                    ("origin", "http://8000-VICTIM.sandbox.localhost:8900"),
                    cookie
                ]
            ),
            None
        );
        // Pages that are not a sandbox's: cross-site cookies are the browser's to decide.
        for origin in ["http://localhost:8900", "https://example.com", "null"] {
            assert_eq!(
                check(Method::POST, &[("origin", origin), cookie]),
                None,
                "{origin}"
            );
        }
        // A link from a sandbox's page to another sandbox opens normally.
        assert_eq!(
            check(
                Method::GET,
                &[
                    ("referer", "http://3000-attacker.sandbox.localhost:8900/"),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                    cookie,
                ]
            ),
            None
        );
        // But not in a frame, and not as a form post.
        for (method, dest) in [(Method::GET, "iframe"), (Method::POST, "document")] {
            assert!(
                check(
                    method,
                    &[
                        ("origin", "http://3000-attacker.sandbox.localhost:8900"),
                        ("sec-fetch-mode", "navigate"),
                        ("sec-fetch-dest", dest),
                        cookie,
                    ]
                )
                .is_some()
            );
        }
    }

    #[test]
    fn a_same_site_request_that_hides_its_page_is_checked() {
        let hidden = [("cookie", "s=1"), ("sec-fetch-site", "same-site")];
        assert_eq!(check(Method::GET, &hidden), Some(Initiator::Hidden));
        // Clients that are not browsers send neither Origin nor Fetch Metadata.
        assert_eq!(check(Method::GET, &[("cookie", "s=1")]), None);
        assert_eq!(
            check(
                Method::GET,
                &[("cookie", "s=1"), ("sec-fetch-site", "same-origin")]
            ),
            None
        );
    }
}
