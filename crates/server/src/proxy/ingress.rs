//! User-port ingress (docs/protocol/proxy.md, User ports): `Host: <port>-<id or
//! name>.<ingress domain>` reaches `<port>` inside the sandbox, if that port is
//! exposed. Runs before API-key checks because `allow_unauthenticated_access` may
//! waive them.

use alcove_wire::error::ErrorCode;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::sandbox_api::{Port, forward_to};
use super::sibling::{Initiator, initiator_to_check};
use crate::api::AppState;
use crate::api::error::ApiError;

/// Splits an ingress host into (port, sandbox id or name).
pub fn parse_ingress_host(headers: &HeaderMap, domain: &str) -> Option<(u16, String)> {
    parse_ingress_name(headers.get(http::header::HOST)?.to_str().ok()?, domain)
}

/// Splits an ingress host name (`host[:port]`) into (port, sandbox id or name).
pub(super) fn parse_ingress_name(host: &str, domain: &str) -> Option<(u16, String)> {
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    // `x.sandbox.localhost.` and `X.SANDBOX.LOCALHOST` are the same name to a resolver:
    // they must be ingress here too, or they reach the control plane under a host the
    // browser counts as another origin.
    let host = host.strip_suffix('.').unwrap_or(host);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let split = host.len().checked_sub(domain.len())?;
    if !host.is_char_boundary(split) || !host[split..].eq_ignore_ascii_case(domain) {
        return None;
    }
    let label = host[..split].strip_suffix('.')?;
    let (port, ident) = label.split_once('-')?;
    // Digits only: `u16::from_str` also takes a leading `+`.
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    (!ident.is_empty() && !ident.contains('.')).then(|| (port, ident.to_string()))
}

/// Whether the browser is fetching a service worker's script (`Service-Worker:
/// script`) under a sandbox's name. A worker answers its origin's requests from then
/// on, in the browser, whatever serves the origin: a sandbox that registered one under
/// its name would go on answering for the next sandbox given that name. Ids are never
/// reused, so an app that needs a worker has it under the sandbox's id.
fn registers_worker_by_name(headers: &HeaderMap, ident: &str) -> bool {
    headers.contains_key("service-worker") && uuid::Uuid::parse_str(ident).is_err()
}

/// Middleware: sends ingress traffic to the sandbox, everything else on.
pub async fn route_ingress(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some((port, ident)) = parse_ingress_host(req.headers(), &state.ingress_domain) else {
        return next.run(req).await;
    };
    if registers_worker_by_name(req.headers(), &ident) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "a service worker may be registered only under the sandbox's id \
                 ({port}-<sandbox id>.<ingress domain>), not under the name {ident}: a later \
                 sandbox may get the name, and a worker outlives its sandbox in the browser"
            ),
        )
        .into_response();
    }
    if let Some(initiator) =
        initiator_to_check(req.method(), req.headers(), &state.ingress_domain, &ident)
        && let Some(refusal) = refuse_sibling(&state, &ident, initiator).await
    {
        return refusal.into_response();
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    forward_to(state, ident, path, req, Port::User(port))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The refusal of a credentialed request that another sandbox's page started (see
/// `sibling`), or None when the initiator turns out to be `ident` itself under its other
/// name, or `ident` is no sandbox (the forward answers that).
async fn refuse_sibling(state: &AppState, ident: &str, initiator: Initiator) -> Option<ApiError> {
    let message = match initiator {
        Initiator::Sandbox(other) => {
            let target = state.control.sandboxes.target(ident).await.ok()?;
            let same = state
                .control
                .sandboxes
                .target(&other)
                .await
                .is_ok_and(|o| o.record.id == target.record.id);
            if same {
                return None;
            }
            format!(
                "a page of sandbox {other} may not send cookies or credentials to sandbox \
                 {ident}: a browser counts every sandbox's ports as one site and would send one \
                 sandbox's cookies with requests any other sandbox's page makes. Links between \
                 sandboxes still open (top-level navigations)"
            )
        }
        Initiator::Hidden => format!(
            "a same-site request with cookies or credentials but neither Origin nor Referer may \
             come from another sandbox's page, which may not send them to sandbox {ident}; a \
             page of the sandbox itself must not set a no-referrer policy for it"
        ),
    };
    Some(ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        message,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(http::header::HOST, h.parse().expect("hv"));
        m
    }

    #[test]
    fn service_workers_only_under_ids() {
        let mut h = host("8080-my-env.sandbox.localhost");
        assert!(!registers_worker_by_name(&h, "my-env"));
        h.insert("service-worker", "script".parse().expect("hv"));
        assert!(registers_worker_by_name(&h, "my-env"));
        assert!(!registers_worker_by_name(
            &h,
            "6f1c2a43-9d0b-4f4e-9a65-3c1d2e0f4b5a"
        ));
    }

    #[test]
    fn parses_port_and_sandbox() {
        let d = "sandbox.localhost";
        assert_eq!(
            parse_ingress_host(&host("8080-my-env.sandbox.localhost:8900"), d),
            Some((8080, "my-env".to_string()))
        );
        assert_eq!(
            parse_ingress_host(
                &host("80-6f1c2a43-9d0b-4f4e-9a65-3c1d2e0f4b5a.sandbox.localhost"),
                d
            ),
            Some((80, "6f1c2a43-9d0b-4f4e-9a65-3c1d2e0f4b5a".to_string()))
        );
        // Another spelling of the same name is the same ingress host.
        for spelling in [
            "8080-my-env.sandbox.localhost.:8900",
            "8080-my-env.SANDBOX.LocalHost",
            "8080-my-env.sandbox.localhost.",
        ] {
            assert_eq!(
                parse_ingress_host(&host(spelling), d),
                Some((8080, "my-env".to_string())),
                "{spelling}"
            );
        }
        for other in [
            "localhost:8900",
            "8080-my-env.sandbox.localhost..",
            "8080-my-envsandbox.localhost",
            "é-sandbox.localhost",
            "sandbox.localhost",
            "x-y.sandbox.localhost",
            "0-a.sandbox.localhost",
            "80-.sandbox.localhost",
            "80-a.b.sandbox.localhost",
            "80-a.evil.example",
            "+1-a.sandbox.localhost",
        ] {
            assert_eq!(parse_ingress_host(&host(other), d), None, "{other}");
        }
    }
}
