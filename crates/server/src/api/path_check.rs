//! Checks of the request path made before routing, so that what axum's path extractors would
//! refuse in plain text is refused in the error shape, and namespaces are identifiers.

use alcove_wire::limits::{NAMESPACE_MAX_LEN, valid_namespace};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use super::error::ApiError;

/// Refuses (400 `INVALID_ARGUMENT`) a path that is not UTF-8 once percent-decoded, and a
/// namespace (`/v1/namespaces/{ns}/…`) that [`valid_namespace`] refuses.
pub(crate) async fn check_path(req: Request, next: Next) -> Response {
    match problem(req.uri().path()) {
        Some(message) => ApiError::bad_request(message).into_response(),
        None => next.run(req).await,
    }
}

fn problem(path: &str) -> Option<String> {
    if percent_decode_str(path).decode_utf8().is_err() {
        return Some("invalid path: not UTF-8 once percent-decoded".into());
    }
    // The segment is cut from the path as sent, then decoded: an encoded `/` is part of it
    // (and refused), as the router, which splits before decoding, will take it.
    let raw = path.strip_prefix("/v1/namespaces/")?.split('/').next()?;
    let ns = percent_decode_str(raw).decode_utf8_lossy();
    (!valid_namespace(&ns)).then(|| {
        format!(
            "invalid namespace {ns:?}: use 1-{NAMESPACE_MAX_LEN} letters, digits, '-', '_' and \
             '.', not starting with '.'"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn paths_must_decode_and_namespaces_be_identifiers() {
        for ok in [
            "/sandboxes",
            "/sandboxes/%E2%82%AC",
            "/v1/namespaces/default/sandboxes",
            "/v1/namespaces/team_a.1/sandboxes/x",
            "/v1/namespaces/default",
        ] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        assert!(problem("/snapshots/%ff").is_some_and(|m| m.contains("UTF-8")));
        for bad in [
            "/v1/namespaces/..%2F..%2Fx/sandboxes",
            "/v1/namespaces/%2E%2E/sandboxes",
            "/v1/namespaces/a%20b/sandboxes",
            "/v1/namespaces//sandboxes",
            "/v1/namespaces/a%2f%0a%00%2f..%2fx/secrets/FOO",
            "/v1/namespaces/a%2Fb/sandboxes",
        ] {
            assert!(
                problem(bad).is_some_and(|m| m.contains("invalid namespace")),
                "{bad}"
            );
        }
    }
}
