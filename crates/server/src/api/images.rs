//! Routes of images (docs/images.md): list, get, delete, pull, import, build,
//! and saving a snapshot as an image.

use std::collections::HashMap;
use std::convert::Infallible;

use alcove_wire::error::ApiErrorBody;
use alcove_wire::image::{
    DeleteImageResponse, ImageInfo, ImageListResponse, ImageProgressEvent, PullImageRequest,
};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::body::{WholeBody, json_object};
use super::error::ApiError;
use super::openapi::tags;
use super::sandboxes::namespace;
use crate::control::ControlError;

/// Whether the client asked to follow progress as server-sent events.
pub(super) fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"))
}

/// The reference of `/images/{*reference}` (a leading `/` of the wildcard
/// dropped).
fn reference(params: &HashMap<String, String>) -> Result<String, ApiError> {
    params
        .get("reference")
        .map(|r| r.trim_start_matches('/').to_string())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing image reference in path"))
}

/// An SSE answer of the events `work` sends; `work` ends with the image or
/// an error, sent as the last event (`done` or `error`).
pub(super) fn event_stream<F>(
    work: impl FnOnce(tokio::sync::mpsc::Sender<ImageProgressEvent>) -> F,
) -> Response
where
    F: std::future::Future<Output = Result<ImageInfo, ControlError>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<ImageProgressEvent>(256);
    let fut = work(tx.clone());
    // The work goes on if the client leaves: a pull or build is not lost
    // halfway because a connection dropped.
    tokio::spawn(async move {
        let last = match fut.await {
            Ok(image) => ImageProgressEvent::Done {
                image: Box::new(image),
            },
            Err(e) => {
                let api = ApiError::from(e);
                ImageProgressEvent::Error {
                    code: serde_json::to_value(api.code())
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    message: api.public_message(),
                    status: api.status().as_u16(),
                }
            }
        };
        let _ = tx.send(last).await;
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(|event| {
        let name = match &event {
            ImageProgressEvent::Resolved { .. } => "resolved",
            ImageProgressEvent::Layer(_) => "layer",
            ImageProgressEvent::Step { .. } => "step",
            ImageProgressEvent::Output { .. } => "output",
            ImageProgressEvent::Done { .. } => "done",
            ImageProgressEvent::Error { .. } => "error",
        };
        let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
        Ok::<_, Infallible>(Event::default().event(name).data(data))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `GET {B}/images`.
#[utoipa::path(
    get,
    path = "/images",
    tag = tags::IMAGES,
    operation_id = "listImages",
    description = "Every image in the store, newest first.",
    responses((status = 200, description = "The images.", body = ImageListResponse))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<ImageListResponse>, ApiError> {
    let images = state.control.list_images().await?;
    Ok(Json(ImageListResponse { images }))
}

/// `GET {B}/images/{*reference}`.
pub async fn get(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<ImageInfo>, ApiError> {
    let reference = reference(&params)?;
    Ok(Json(state.control.get_image(&reference).await?))
}

/// `DELETE {B}/images/{*reference}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<DeleteImageResponse>, ApiError> {
    let reference = reference(&params)?;
    Ok(Json(state.control.delete_image(&reference).await?))
}

/// `POST {B}/images/pull`.
#[utoipa::path(
    post,
    path = "/images/pull",
    tag = tags::IMAGES,
    operation_id = "pullImage",
    description = "Pulls an image from an OCI registry into the store. With `Accept: text/event-stream` the answer is a stream of progress events (`resolved`, `layer`, then `done` or `error`).",
    request_body = PullImageRequest,
    responses(
        (status = 200, description = "The image is stored.", body = ImageInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a bad reference, or content the store refuses.", body = ApiErrorBody),
        (status = 401, description = "`REGISTRY_UNAUTHORIZED`: the registry refused the credentials.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: the registry has no such image.", body = ApiErrorBody),
        (status = 502, description = "`REGISTRY_ERROR`: the registry could not be reached.", body = ApiErrorBody),
    )
)]
pub async fn pull(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Response, ApiError> {
    let req: PullImageRequest = json_object(&headers, &body)?;
    let ns = namespace(&params).to_string();
    if wants_events(&headers) {
        let control = state.control.clone();
        return Ok(event_stream(move |tx| async move {
            control.pull_image(&ns, req, Some(tx)).await
        }));
    }
    let image = state.control.pull_image(&ns, req, None).await?;
    Ok(Json(image).into_response())
}

/// Query of the import route.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Store the image under this reference (`name:tag`); absent = the names
    /// the archive carries.
    pub name: Option<String>,
}

/// `POST {B}/images/import?name=…` with a `docker save` archive or an OCI
/// layout tarball (optionally gzip-compressed) as the body.
#[utoipa::path(
    post,
    path = "/images/import",
    tag = tags::IMAGES,
    operation_id = "importImage",
    description = "Imports a `docker save` archive or an OCI image layout tarball (optionally gzip-compressed), streamed as the body.",
    params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses(
        (status = 200, description = "The image is stored.", body = ImageInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: not an image archive, or content the store refuses (nothing is stored).", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the archive is over 32 GiB (nothing is stored).", body = ApiErrorBody),
    )
)]
pub async fn import(
    State(state): State<AppState>,
    Query(query): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ImageInfo>, ApiError> {
    let upload = Upload::receive(state.control.images().store(), body, IMAGE_ARCHIVE).await?;
    let image = state
        .control
        .import_image(upload.path.clone(), query.name)
        .await;
    drop(upload);
    Ok(Json(image?))
}

/// The most a streamed upload may hold, and what it is (for the 413).
#[derive(Debug, Clone, Copy)]
pub(super) struct UploadLimit {
    /// Bytes, as sent (compressed or not).
    pub(super) bytes: u64,
    /// What the body is, as the message names it ("a build context").
    pub(super) what: &'static str,
}

/// The body of `POST /images/build`.
pub(super) const BUILD_CONTEXT: UploadLimit = UploadLimit {
    bytes: crate::images::context::MAX_CONTEXT_BYTES,
    what: "a build context",
};

/// The body of `POST /images/import`.
pub(super) const IMAGE_ARCHIVE: UploadLimit = UploadLimit {
    bytes: crate::images::MAX_IMPORT_BYTES,
    what: "an image archive",
};

impl UploadLimit {
    /// `413 PAYLOAD_TOO_LARGE`, naming the limit.
    fn exceeded(self) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            alcove_wire::error::ErrorCode::PayloadTooLarge,
            format!(
                "the request body is larger than {}, the most {} may be",
                size_text(self.bytes),
                self.what
            ),
        )
    }
}

/// `bytes` in the largest unit that shows it exactly ("8 GiB", "1000 bytes").
fn size_text(bytes: u64) -> String {
    match bytes {
        0 => "0 bytes".into(),
        b if b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}

/// A request body written to the store's work directory, removed on drop
/// (and by the store's sweep of `tmp/` after a crash: its name carries our
/// pid).
pub(super) struct Upload {
    /// Where it is.
    pub(super) path: std::path::PathBuf,
}

impl Upload {
    /// Streams `body` into a new file under `<store>/tmp/`: a 413 (and no
    /// file) once it holds more than `limit`, which is checked as the bytes
    /// arrive, since one upload could otherwise fill the store's disk.
    pub(super) async fn receive(
        store: &alcove_images::ImageStore,
        body: Body,
        limit: UploadLimit,
    ) -> Result<Self, ApiError> {
        // A Content-Length over the limit is refused before a byte is written.
        if axum::body::HttpBody::size_hint(&body).lower() > limit.bytes {
            return Err(limit.exceeded());
        }
        let upload = Self {
            path: store.tmp_path(),
        };
        let failed = |e: std::io::Error| {
            tracing::warn!(error = %e, "receiving an upload");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                alcove_wire::error::ErrorCode::Internal,
                "writing the upload failed",
            )
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&upload.path)
            .await
            .map_err(failed)?;
        let mut stream = body.into_data_stream();
        let mut received: u64 = 0;
        // On an early return `upload` is dropped, which removes the file.
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
            received = received.saturating_add(chunk.len() as u64);
            if received > limit.bytes {
                return Err(limit.exceeded());
            }
            file.write_all(&chunk).await.map_err(failed)?;
        }
        file.flush().await.map_err(failed)?;
        Ok(upload)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Query of the build route (`build_arg` may repeat; read by hand, as a
/// typed query has no repeated keys).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BuildQuery {
    /// The new image's reference (`name:tag`).
    pub name: String,
    /// The Dockerfile's path in the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    /// `KEY=VALUE`, repeatable.
    pub build_arg: Option<Vec<String>>,
    /// Ignore the step cache.
    pub no_cache: Option<bool>,
    /// Whether `RUN` steps reach the internet (default true).
    pub allow_internet: Option<bool>,
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{key}={value:?} is not true or false"
        ))),
    }
}

/// `POST {B}/images/build?name=…` with a build context (a tar archive,
/// optionally gzip-compressed, holding the Dockerfile) as the body.
#[utoipa::path(
    post,
    path = "/images/build",
    tag = tags::IMAGES,
    operation_id = "buildImage",
    description = "Builds an image from a Dockerfile in the uploaded build context. RUN steps run in builder sandboxes; every step is cached. With `Accept: text/event-stream` the answer is a stream of `step`, `output`, then `done` or `error` events.",
    params(BuildQuery),
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses(
        (status = 200, description = "The image is stored.", body = ImageInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a bad Dockerfile (the message names the line), context or option.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: a FROM image is neither stored nor pullable.", body = ApiErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the build context is over 8 GiB (nothing is kept).", body = ApiErrorBody),
        (status = 422, description = "`BUILD_FAILED`: a RUN step failed; the message has its exit code and last output.", body = ApiErrorBody),
    )
)]
pub async fn build(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let mut opts = crate::control::BuildOptions {
        dockerfile: "Dockerfile".into(),
        allow_internet: true,
        ..Default::default()
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "name" => opts.name = value.into_owned(),
            "dockerfile" => opts.dockerfile = value.into_owned(),
            "build_arg" => {
                let (k, v) = value.split_once('=').ok_or_else(|| {
                    ApiError::bad_request(format!("build_arg {value:?} is not KEY=VALUE"))
                })?;
                opts.build_args.push((k.to_string(), v.to_string()));
            }
            "no_cache" => opts.no_cache = parse_bool("no_cache", &value)?,
            "allow_internet" => opts.allow_internet = parse_bool("allow_internet", &value)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}"
                )));
            }
        }
    }
    if opts.name.is_empty() {
        return Err(ApiError::bad_request(
            "name (the new image's name:tag) is required",
        ));
    }
    let upload = Upload::receive(state.control.images().store(), body, BUILD_CONTEXT).await?;
    let ns = namespace(&params).to_string();
    let control = state.control.clone();
    let work = move |tx: Option<tokio::sync::mpsc::Sender<ImageProgressEvent>>| async move {
        let result = control
            .build_image(&ns, upload.path.clone(), opts, tx)
            .await;
        drop(upload);
        result
    };
    if wants_events(&headers) {
        return Ok(event_stream(move |tx| work(Some(tx))));
    }
    Ok(Json(work(None).await?).into_response())
}

/// `POST {B}/snapshots/{snapshot_id}/image`.
#[utoipa::path(
    post,
    path = "/snapshots/{snapshot_id}/image",
    tag = tags::IMAGES,
    operation_id = "saveSnapshotAsImage",
    description = "Saves a completed snapshot's filesystem as a named image: its sandbox's image with one more layer, what the sandbox wrote.",
    params(("snapshot_id" = String, Path, description = "Snapshot id.")),
    request_body = alcove_wire::image::SaveSnapshotImageRequest,
    responses(
        (status = 200, description = "The image is stored.", body = ImageInfo),
        (status = 400, description = "`INVALID_ARGUMENT`: a bad name.", body = ApiErrorBody),
        (status = 404, description = "`NOT_FOUND`: no such snapshot.", body = ApiErrorBody),
        (status = 409, description = "`INVALID_STATE`: the snapshot is not completed.", body = ApiErrorBody),
    )
)]
pub async fn save_snapshot(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
    WholeBody(body): WholeBody,
) -> Result<Json<ImageInfo>, ApiError> {
    let req: alcove_wire::image::SaveSnapshotImageRequest = json_object(&headers, &body)?;
    let id = params
        .get("snapshot_id")
        .ok_or_else(|| ApiError::bad_request("missing snapshot id in path"))?;
    Ok(Json(
        state
            .control
            .save_snapshot_as_image(Some(namespace(&params)), id, &req.name)
            .await?,
    ))
}

/// `GET` and `DELETE {B}/images/{*reference}`, with their OpenAPI description
/// written by hand: the route is a wildcard (a reference holds `/`), which the
/// document shows as one percent-encoded `{reference}` segment.
pub fn reference_routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};

    let json = |description: &str, schema: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema)))
                    .build(),
            )
            .build()
    };
    let reference = || {
        ParameterBuilder::new()
            .name("reference")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "An image reference (`name[:tag]`, `name@sha256:…`), an id (`sha256:…`) or an \
                 id prefix of 12+ hex digits, percent-encoded as one segment (`/` as `%2F`); \
                 the raw form with `/` is accepted too.",
            ))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
    };
    let mut router = utoipa_axum::router::OpenApiRouter::new().route(
        "/images/{*reference}",
        axum::routing::get(get).delete(delete),
    );
    let get_op = OperationBuilder::new()
        .operation_id(Some("getImage"))
        .tag(tags::IMAGES)
        .description(Some(
            "One image, with the sandboxes and snapshots that use it (`used_by`).",
        ))
        .parameter(reference())
        .response("200", json("The image.", "ImageInfo"))
        .response("404", json("`NOT_FOUND`: no such image.", "ApiErrorBody"))
        .build();
    let delete_op = OperationBuilder::new()
        .operation_id(Some("deleteImage"))
        .tag(tags::IMAGES)
        .description(Some(
            "Removes a name; the image goes with its last name, or at once when the reference is \
             its id, and what no image uses any more is collected.",
        ))
        .parameter(reference())
        .response(
            "200",
            json("What was removed and freed.", "DeleteImageResponse"),
        )
        .response(
            "400",
            json(
                "`INVALID_ARGUMENT`: a built-in image's name.",
                "ApiErrorBody",
            ),
        )
        .response("404", json("`NOT_FOUND`: no such image.", "ApiErrorBody"))
        .response(
            "409",
            json(
                "`IMAGE_IN_USE`: a sandbox or snapshot uses the image.",
                "ApiErrorBody",
            ),
        )
        .build();
    let paths = &mut router.get_openapi_mut().paths;
    paths.add_path_operation("/images/{reference}", vec![HttpMethod::Get], get_op);
    paths.add_path_operation("/images/{reference}", vec![HttpMethod::Delete], delete_op);
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: UploadLimit = UploadLimit {
        bytes: 1000,
        what: "a build context",
    };

    fn store() -> (tempfile::TempDir, alcove_images::ImageStore) {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = alcove_images::ImageStore::open(tmp.path().join("store")).expect("store");
        (tmp, store)
    }

    /// What the store's work directory holds.
    fn leftovers(store: &alcove_images::ImageStore) -> Vec<std::path::PathBuf> {
        let tmp = store.root().join("tmp");
        std::fs::read_dir(&tmp)
            .expect("tmp dir")
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    /// A body of `len` bytes in 100-byte chunks, with no Content-Length.
    fn streamed(len: usize) -> Body {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![b'x'; len]
            .chunks(100)
            .map(|c| Ok(c.to_vec()))
            .collect();
        Body::from_stream(futures::stream::iter(chunks))
    }

    async fn json_of(err: ApiError) -> (StatusCode, serde_json::Value) {
        let resp = err.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn an_upload_over_its_limit_is_a_413_and_leaves_no_file() {
        let (_tmp, store) = store();
        // Known length (Content-Length) and streamed (chunked) bodies alike.
        for body in [Body::from(vec![b'x'; 1001]), streamed(1001)] {
            let err = match Upload::receive(&store, body, SMALL).await {
                Ok(_) => panic!("over the limit"),
                Err(err) => err,
            };
            let (status, json) = json_of(err).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(json["code"], "PAYLOAD_TOO_LARGE");
            assert_eq!(
                json["message"],
                "the request body is larger than 1000 bytes, the most a build context may be"
            );
            assert_eq!(leftovers(&store), Vec::<std::path::PathBuf>::new());
        }
    }

    #[tokio::test]
    async fn an_upload_up_to_its_limit_is_kept_until_dropped() {
        let (_tmp, store) = store();
        for body in [Body::from(vec![b'x'; 1000]), streamed(1000)] {
            let upload = match Upload::receive(&store, body, SMALL).await {
                Ok(upload) => upload,
                Err(err) => panic!("within the limit: {}", err.message()),
            };
            assert_eq!(std::fs::read(&upload.path).expect("read"), vec![b'x'; 1000]);
            drop(upload);
            assert_eq!(leftovers(&store), Vec::<std::path::PathBuf>::new());
        }
    }

    #[test]
    fn the_routes_limits_are_named_in_round_units() {
        assert_eq!(
            BUILD_CONTEXT.exceeded().message(),
            "the request body is larger than 8 GiB, the most a build context may be"
        );
        assert_eq!(
            IMAGE_ARCHIVE.exceeded().message(),
            "the request body is larger than 32 GiB, the most an image archive may be"
        );
        assert_eq!(size_text(3 << 20), "3 MiB");
        assert_eq!(size_text(0), "0 bytes");
    }
}
