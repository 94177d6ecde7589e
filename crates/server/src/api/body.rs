//! Strict JSON request bodies of the control plane.
//!
//! A body must be one JSON object: an array or a scalar is a 400 (serde would
//! otherwise read an array as the fields of a struct in order, so `[]` made a
//! sandbox with every default). A field of the wrong type is a 400 naming the
//! field. Unknown fields are accepted and ignored: the official SDKs send fields
//! this server does not use.

use alcove_wire::error::ErrorCode;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The most a request body read whole may hold: axum's default limit, which its `Bytes`
/// extractor applies (streamed bodies, such as file writes and image archives, have none).
pub const BODY_LIMIT: usize = 2 << 20;

/// A request's whole body, at most [`BODY_LIMIT`] bytes. Where axum's own `Bytes` extractor
/// answers a plain-text 413, this answers in the error shape, with the limit.
pub struct WholeBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for WholeBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
                Err(too_large())
            }
            Err(other) => Err(ApiError::bad_request(format!(
                "reading the request body: {}",
                other.body_text()
            ))),
        }
    }
}

/// The answer to a body over [`BODY_LIMIT`]: `413 PAYLOAD_TOO_LARGE`, naming the limit.
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!(
            "the request body is larger than {} MiB, the most this route takes",
            BODY_LIMIT >> 20
        ),
    )
}

fn invalid(reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("invalid request body: {reason}"))
}

/// Whether the request says its body is JSON (`application/json` or `…+json`).
/// Required where a body is mandatory, so that a browser cannot send one as a
/// "simple" cross-site request (those cannot carry a JSON content type).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parses `bytes` as one JSON object into `T`, naming the field of a type error.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(invalid)?;
    if !value.is_object() {
        return Err(invalid(format_args!(
            "expected a JSON object, got {}",
            kind(&value)
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            invalid(e.inner())
        } else {
            invalid(format_args!("field `{path}`: {}", e.inner()))
        }
    })
}

/// A mandatory JSON-object body sent as `Content-Type: application/json`.
pub fn json_object<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    if !is_json(headers) {
        return Err(invalid("expected `Content-Type: application/json`"));
    }
    parse(body)
}

/// An optional body: empty (or blank) means `T::default()`, anything else must
/// be a JSON object. The content type is not checked: the official SDK sends
/// these bodies without one.
pub fn optional_json_object<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse(body)
}

#[cfg(test)]
mod tests {
    use alcove_wire::sandbox::{CreateSandboxRequest, UpdateSandboxRequest};
    use alcove_wire::snapshot::CreateSnapshotRequest;
    use axum::http::{HeaderValue, StatusCode};

    use super::*;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    fn message(err: ApiError) -> String {
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        err.message().to_string()
    }

    #[test]
    fn only_objects_are_bodies() {
        for (body, kind) in [
            ("[]", "an array"),
            ("[\"x\"]", "an array"),
            ("5", "a number"),
            ("\"s\"", "a string"),
            ("null", "null"),
            ("true", "a boolean"),
        ] {
            let err = json_object::<CreateSandboxRequest>(&json_headers(), &Bytes::from(body))
                .expect_err(body);
            let text = message(err);
            assert!(text.contains(&format!("got {kind}")), "{body}: {text}");
        }
        let err =
            optional_json_object::<CreateSnapshotRequest>(&Bytes::from("[]")).expect_err("array");
        assert!(message(err).contains("expected a JSON object"));
    }

    #[test]
    fn type_errors_name_the_field() {
        let cases = [
            (r#"{"timeout_secs": "abc"}"#, "timeout_secs"),
            (r#"{"resources": {"cpus": "two"}}"#, "resources.cpus"),
            (r#"{"entrypoint": "sh"}"#, "entrypoint"),
            (r#"{"exposed_ports": [80, "x"]}"#, "exposed_ports[1]"),
            (r#"{"wait": 1}"#, "wait"),
        ];
        for (body, field) in cases {
            let err = json_object::<CreateSandboxRequest>(&json_headers(), &Bytes::from(body))
                .expect_err(body);
            let text = message(err);
            assert!(text.contains(&format!("`{field}`")), "{body}: {text}");
        }
        let err = json_object::<UpdateSandboxRequest>(
            &json_headers(),
            &Bytes::from(r#"{"auto_resume": "yes"}"#),
        )
        .expect_err("bad flag");
        assert!(message(err).contains("`auto_resume`"));
        let err =
            optional_json_object::<CreateSnapshotRequest>(&Bytes::from(r#"{"snapshot_type": 3}"#))
                .expect_err("bad type");
        assert!(message(err).contains("`snapshot_type`"));
    }

    #[test]
    fn unknown_fields_are_accepted() {
        let req: CreateSandboxRequest = json_object(
            &json_headers(),
            &Bytes::from(r#"{"name": "a", "some_future_field": {"x": [1]}}"#),
        )
        .expect("unknown fields pass");
        assert_eq!(req.name.as_deref(), Some("a"));
    }

    #[test]
    fn mandatory_bodies_need_a_json_content_type() {
        let mut h = HeaderMap::new();
        assert!(json_object::<CreateSandboxRequest>(&h, &Bytes::from("{}")).is_err());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(json_object::<CreateSandboxRequest>(&h, &Bytes::from("{}")).is_err());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/merge-patch+json"),
        );
        assert!(json_object::<CreateSandboxRequest>(&h, &Bytes::from("{}")).is_ok());
    }

    #[test]
    fn optional_bodies_may_be_empty_and_syntax_errors_are_400() {
        let req: CreateSnapshotRequest =
            optional_json_object(&Bytes::from(" \n")).expect("empty body");
        assert_eq!(req, CreateSnapshotRequest::default());
        let err =
            optional_json_object::<CreateSnapshotRequest>(&Bytes::from("{")).expect_err("syntax");
        assert!(message(err).starts_with("invalid request body"));
    }
}
