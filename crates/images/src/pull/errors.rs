//! oci-client's errors, in the store's terms: a refusal stays a refusal, an
//! unknown manifest or repository is `NotFound`, a digest mismatch stays one,
//! and everything else is the registry failing.

use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope, OciErrorCode};

use crate::error::ImageStoreError;

/// Registry messages are shown to people; a registry that answers a novel
/// is cut short.
const MAX_MESSAGE_CHARS: usize = 1000;

fn clip(message: &str) -> String {
    let message = message.trim();
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message.to_string();
    }
    let mut clipped: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    clipped.push('…');
    clipped
}

/// The messages of an error envelope, or its codes where a message is empty.
fn envelope_message(envelope: &OciEnvelope) -> String {
    let parts: Vec<String> = envelope
        .errors
        .iter()
        .map(|e| {
            if e.message.is_empty() {
                format!("{:?}", e.code)
            } else {
                e.message.clone()
            }
        })
        .collect();
    clip(&parts.join("; "))
}

/// An error and its sources, one line (reqwest's own text omits the cause,
/// such as "connection refused").
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    clip(&text)
}

/// Maps an error of a request about `reference` to `registry`.
pub(crate) fn map_error(
    err: OciDistributionError,
    registry: &str,
    reference: &str,
) -> ImageStoreError {
    let unauthorized = |message: String| ImageStoreError::RegistryUnauthorized {
        registry: registry.to_string(),
        message,
    };
    let not_found = |message: String| {
        ImageStoreError::NotFound(if message.is_empty() {
            reference.to_string()
        } else {
            format!("{reference} ({message})")
        })
    };
    let other = |message: String| ImageStoreError::Registry {
        registry: registry.to_string(),
        message,
    };
    match err {
        // oci-client drops the body of a 401 (it keeps only the URL), so the
        // registry's own words are not available here.
        OciDistributionError::UnauthorizedError { url } => {
            unauthorized(format!("401 Unauthorized for {url}"))
        }
        // The token service's answer to a refused login, verbatim.
        OciDistributionError::AuthenticationFailure(reason) => unauthorized(clip(&reason)),
        OciDistributionError::RegistryError { envelope, url } => {
            let message = envelope_message(&envelope);
            let has =
                |codes: &[OciErrorCode]| envelope.errors.iter().any(|e| codes.contains(&e.code));
            if has(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]) {
                unauthorized(message)
            } else if has(&[
                OciErrorCode::ManifestUnknown,
                OciErrorCode::NameUnknown,
                OciErrorCode::NotFound,
                OciErrorCode::BlobUnknown,
            ]) {
                not_found(message)
            } else {
                other(format!("{message} ({url})"))
            }
        }
        OciDistributionError::ServerError { code, url, message } => match code {
            401 | 403 => unauthorized(clip(&format!("HTTP {code}: {message}"))),
            404 => not_found(clip(&message)),
            _ => other(clip(&format!("HTTP {code} for {url}: {message}"))),
        },
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            ImageStoreError::DigestMismatch {
                what: format!("manifest of {reference}"),
                expected,
                actual,
            }
        }
        OciDistributionError::ImageManifestNotFoundError(message) => not_found(clip(&message)),
        OciDistributionError::UnsupportedMediaTypeError(media_type)
        | OciDistributionError::IncompatibleLayerMediaTypeError(media_type) => {
            ImageStoreError::UnsupportedMediaType(media_type)
        }
        OciDistributionError::RequestError(e) => other(chain(&e)),
        OciDistributionError::IoError(e) => other(chain(&e)),
        e => other(chain(&e)),
    }
}

/// Maps an error a blob stream yields while being read: a digest mismatch
/// found by oci-client's verifying stream, or a transport failure.
pub(crate) fn map_stream_error(err: std::io::Error, registry: &str, blob: &str) -> ImageStoreError {
    if let Some(DigestError::VerificationError { expected, actual }) =
        err.get_ref().and_then(|e| e.downcast_ref::<DigestError>())
    {
        return ImageStoreError::DigestMismatch {
            what: format!("blob {blob}"),
            expected: expected.clone(),
            actual: actual.clone(),
        };
    }
    ImageStoreError::Registry {
        registry: registry.to_string(),
        message: format!("reading blob {blob}: {}", chain(&err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(code: &str, message: &str) -> OciEnvelope {
        serde_json::from_value(serde_json::json!({"errors": [{"code": code, "message": message}]}))
            .expect("envelope")
    }

    #[test]
    fn registry_errors_keep_their_meaning() {
        let r = "localhost:5000/busybox:x";
        let e = map_error(
            OciDistributionError::RegistryError {
                envelope: envelope("MANIFEST_UNKNOWN", "manifest unknown"),
                url: "u".into(),
            },
            "localhost:5000",
            r,
        );
        assert!(
            matches!(&e, ImageStoreError::NotFound(m) if m.contains(r) && m.contains("manifest unknown")),
            "{e}"
        );
        let e = map_error(
            OciDistributionError::RegistryError {
                envelope: envelope("DENIED", "requested access to the resource is denied"),
                url: "u".into(),
            },
            "localhost:5000",
            r,
        );
        assert!(
            matches!(&e, ImageStoreError::RegistryUnauthorized { message, .. } if message.contains("is denied")),
            "{e}"
        );
        let e = map_error(
            OciDistributionError::AuthenticationFailure("bad password".into()),
            "localhost:5000",
            r,
        );
        assert!(
            matches!(&e, ImageStoreError::RegistryUnauthorized { message, .. } if message == "bad password"),
            "{e}"
        );
        let e = map_error(
            OciDistributionError::ServerError {
                code: 503,
                url: "u".into(),
                message: "down".into(),
            },
            "localhost:5000",
            r,
        );
        assert!(matches!(&e, ImageStoreError::Registry { .. }), "{e}");
    }
}
