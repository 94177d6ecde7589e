//! Images (server-wide, docs/images.md): list, get, delete, pull, import, build from a
//! Dockerfile, and snapshots saved as images; as the Python SDK's `_protocol/_images.py`.
//!
//! Pulls and builds either block until the image is stored (the answer within the client's
//! `timeout`) or, given an `on_progress` callback, follow the server's event stream
//! (`Accept: text/event-stream`): every [`ImageProgressEvent`] is handed to the callback as it
//! comes, and only silence longer than `stream_idle_timeout` fails the wait. Archives (imports,
//! build contexts) are streamed, never held in memory.

use std::fmt;
use std::path::Path;

use alcove_wire::image::{
    DeleteImageResponse, ImageInfo, ImageListResponse, ImageProgressEvent, PullImageRequest,
    SaveSnapshotImageRequest,
};
use futures::StreamExt;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::Value;

use crate::body::{ChunkSource, Lines, Reader};
use crate::client::{SandboxClient, identifier_arg};
use crate::context::{DEFAULT_DOCKERFILE, dockerfile_path, write_context};
use crate::error::{ClientError, ErrorBody, Scope, TimeoutSetting, error_from_body};
use crate::sandbox::file_chunks;
use crate::sse::SseDecoder;
use crate::transport::{Call, Kind};

/// Content type of image archives and build contexts.
pub const TAR_CONTENT_TYPE: &str = "application/x-tar";

/// What a pull or build hands each progress event to (see [`SandboxClient::pull_image`]).
pub type ProgressCallback<'a> = &'a mut (dyn FnMut(&ImageProgressEvent) + Send);

/// Options of [`SandboxClient::pull_image`]: a name to store the image under too, and the
/// registry's credentials (a user name with a password or token, or a stored secret holding
/// `username:password`). The password is never shown by `Debug`.
///
/// ```
/// use alcove_client::PullOptions;
/// let options = PullOptions::new().name("tools:1").credentials("ci", "s3cret");
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// Store the image under this reference (`name:tag`) too.
    pub name: Option<String>,
    /// Registry user name (with `password`).
    pub username: Option<String>,
    /// Registry password or token (with `username`).
    pub password: Option<String>,
    /// A stored secret whose value is `username:password` (instead of both).
    pub auth_secret: Option<String>,
}

impl fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullOptions")
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth_secret", &self.auth_secret)
            .finish()
    }
}

impl PullOptions {
    /// No name, no credentials.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores the image under `name` (`name:tag`) too.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Logs in to the registry as `username` with `password` (a password or token).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// Logs in with the stored secret `secret` (its value is `username:password`).
    pub fn auth_secret(mut self, secret: impl Into<String>) -> Self {
        self.auth_secret = Some(secret.into());
        self
    }

    /// The body of `POST {B}/images/pull`, after the client-side checks (whose messages never
    /// show the password).
    fn to_request(&self, reference: &str) -> Result<PullImageRequest, ClientError> {
        let reference = image_name(reference, "reference")?;
        let name = self
            .name
            .as_deref()
            .map(|n| image_name(n, "name"))
            .transpose()?;
        let text = |value: &Option<String>, what: &str| match value.as_deref() {
            Some("") => Err(ClientError::invalid(format!(
                "{what} must be a non-empty string"
            ))),
            other => Ok(other.map(str::to_string)),
        };
        let username = text(&self.username, "username")?;
        let password = text(&self.password, "password")?;
        let auth_secret = text(&self.auth_secret, "auth_secret")?;
        if username.is_some() != password.is_some() {
            return Err(ClientError::invalid(
                "username and password go together: pass both, or neither",
            ));
        }
        if auth_secret.is_some() && username.is_some() {
            return Err(ClientError::invalid(
                "pass username and password, or auth_secret, not both",
            ));
        }
        Ok(PullImageRequest {
            reference: reference.to_string(),
            name: name.map(str::to_string),
            username,
            password,
            auth_secret,
        })
    }
}

/// Options of [`SandboxClient::build_image_from_dockerfile`].
///
/// ```
/// use alcove_client::BuildOptions;
/// let options = BuildOptions::new().build_arg("VERSION", "1.2").no_cache(true);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The Dockerfile's path relative to the context directory (default `Dockerfile`).
    pub dockerfile: String,
    /// The Dockerfile's `ARG` values, in order.
    pub build_args: Vec<(String, String)>,
    /// Ignore the step cache.
    pub no_cache: bool,
    /// Whether `RUN` steps reach the internet (default true).
    pub allow_internet: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            dockerfile: DEFAULT_DOCKERFILE.to_string(),
            build_args: Vec::new(),
            no_cache: false,
            allow_internet: true,
        }
    }
}

impl BuildOptions {
    /// The server's defaults: `Dockerfile`, no arguments, cached, with internet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the Dockerfile's path relative to the context.
    pub fn dockerfile(mut self, path: impl Into<String>) -> Self {
        self.dockerfile = path.into();
        self
    }

    /// Adds a build argument.
    pub fn build_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.push((key.into(), value.into()));
        self
    }

    /// Ignores (true) the step cache.
    pub fn no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// Lets `RUN` steps reach the internet (true) or not.
    pub fn allow_internet(mut self, allow: bool) -> Self {
        self.allow_internet = allow;
        self
    }

    /// The query of `POST {B}/images/build`: only what differs from the server's defaults.
    fn query(&self, name: &str) -> Result<Vec<(&'static str, String)>, ClientError> {
        let mut query = vec![("name", image_name(name, "name")?.to_string())];
        let dockerfile = dockerfile_path(&self.dockerfile)?;
        if dockerfile != DEFAULT_DOCKERFILE {
            query.push(("dockerfile", dockerfile));
        }
        for (key, value) in &self.build_args {
            if key.is_empty() || key.contains('=') || key.chars().any(char::is_whitespace) {
                return Err(ClientError::invalid(format!(
                    "build argument names are non-empty, without '=' or whitespace, got {key:?}"
                )));
            }
            query.push(("build_arg", format!("{key}={value}")));
        }
        if self.no_cache {
            query.push(("no_cache", "true".into()));
        }
        if !self.allow_internet {
            query.push(("allow_internet", "false".into()));
        }
        Ok(query)
    }
}

/// Checks a reference or id used as a path segment: not empty, no whitespace, no `.` or `..`
/// segment.
fn image_reference<'a>(value: &'a str, what: &str) -> Result<&'a str, ClientError> {
    let value = image_name(value, what)?;
    if value.split('/').any(|part| part == "." || part == "..") {
        return Err(ClientError::invalid(format!(
            "{what} must not contain '.' or '..' path segments, got {value:?}"
        )));
    }
    Ok(value)
}

/// Checks an image reference (`name:tag`): not empty, no whitespace.
fn image_name<'a>(value: &'a str, what: &str) -> Result<&'a str, ClientError> {
    if value.trim().is_empty() {
        return Err(ClientError::invalid(format!(
            "{what} must be a non-empty image reference, got {value:?}"
        )));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(ClientError::invalid(format!(
            "{what} must not contain whitespace, got {value:?}"
        )));
    }
    Ok(value)
}

impl SandboxClient {
    /// Every image of the server's store (images are server-wide), newest first.
    pub async fn list_images(&self) -> Result<Vec<ImageInfo>, ClientError> {
        let call = self.call(Method::GET, &["images"], Scope::Image(None))?;
        let list: ImageListResponse = self.transport.json(call, "image list").await?;
        Ok(list.images)
    }

    /// Describes one image by reference (`alcove/debian`, `localhost:5000/tools/jq:1`) or id;
    /// its `used_by` lists the sandboxes and snapshots using it.
    /// [`ClientError::ImageNotFound`] if it is unknown.
    pub async fn get_image(&self, reference: &str) -> Result<ImageInfo, ClientError> {
        let reference = image_reference(reference, "reference")?;
        // The reference is one path segment: its `/` travel as `%2F`.
        let call = self.call(
            Method::GET,
            &["images", reference],
            Scope::Image(Some(reference.into())),
        )?;
        self.transport.json(call, "image").await
    }

    /// Deletes an image by reference or id: a reference that is one of several names of its
    /// image is only untagged. A `409` `IMAGE_IN_USE` ([`ClientError::Api`]) while a sandbox
    /// or snapshot uses it (the message names them), [`ClientError::ImageNotFound`] if unknown.
    pub async fn delete_image(&self, reference: &str) -> Result<DeleteImageResponse, ClientError> {
        let reference = image_reference(reference, "reference")?;
        let call = self.call(
            Method::DELETE,
            &["images", reference],
            Scope::Image(Some(reference.into())),
        )?;
        self.transport.json(call, "image deletion").await
    }

    /// Pulls an image from a registry into the server's store (`registry/repository:tag` or
    /// `…@sha256:…`).
    ///
    /// Without `on_progress` the call returns when the image is stored, waiting at most the
    /// client's `timeout` for the answer; with it, the server streams its progress and each
    /// event (`resolved`, `layer`, then `done` or `error`) is handed to the callback as it
    /// comes. Fails with [`ClientError::ImageNotFound`] (unknown reference), or
    /// [`ClientError::Api`] with the code `REGISTRY_UNAUTHORIZED` (credentials refused) or
    /// `REGISTRY_ERROR` (registry unreachable or failing), also when they arrive as an `error`
    /// event.
    ///
    /// ```no_run
    /// # async fn demo(client: alcove_client::SandboxClient) -> alcove_client::Result<()> {
    /// use alcove_client::PullOptions;
    /// use alcove_client::wire::image::ImageProgressEvent;
    ///
    /// let image = client
    ///     .pull_image("localhost:5000/tools/jq:1", &PullOptions::new(), None)
    ///     .await?;
    /// let mut show = |event: &ImageProgressEvent| println!("{event:?}");
    /// let image = client
    ///     .pull_image("localhost:5000/tools/jq:1", &PullOptions::new(), Some(&mut show))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn pull_image(
        &self,
        reference: &str,
        options: &PullOptions,
        on_progress: Option<ProgressCallback<'_>>,
    ) -> Result<ImageInfo, ClientError> {
        let body = options.to_request(reference)?;
        let scope = Scope::Image(Some(body.reference.clone()));
        let call = self
            .call(Method::POST, &["images", "pull"], scope.clone())?
            .json(&body)?
            .policy(false, false);
        self.image_answer(call, scope, "pull", on_progress).await
    }

    /// Imports an image archive from a local file: a `docker save` archive or an OCI layout
    /// tarball, optionally gzipped, streamed (never read into memory). `name` (`name:tag`)
    /// names the image when the archive names none (or names it once more).
    pub async fn import_image(
        &self,
        path: impl AsRef<Path>,
        name: Option<&str>,
    ) -> Result<ImageInfo, ClientError> {
        let path = path.as_ref();
        let what = || format!("opening {}", path.display());
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::io(what(), e))?;
        let length = file
            .metadata()
            .await
            .map_err(|e| ClientError::io(what(), e))?
            .len();
        self.import_image_from_reader(file, Some(length), name)
            .await
    }

    /// Imports an image archive read from `reader` (as [`Self::import_image`]), streamed;
    /// `length` (when known) is sent as `Content-Length`. Wrap the reader to follow the upload.
    pub async fn import_image_from_reader<R>(
        &self,
        reader: R,
        length: Option<u64>,
        name: Option<&str>,
    ) -> Result<ImageInfo, ClientError>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        let mut call = self
            .call(Method::POST, &["images", "import"], Scope::Image(None))?
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static(TAR_CONTENT_TYPE),
            );
        if let Some(name) = name {
            call = call.query("name", image_name(name, "name")?);
        }
        let call = call.stream(file_chunks(reader).boxed(), length);
        self.transport.json(call, "imported image").await
    }

    /// Builds the image `name` (`name:tag`) from the local directory `context_dir` and the
    /// Dockerfile in it ([`BuildOptions::dockerfile`], relative to the directory).
    ///
    /// The directory is sent as a tar written to a temporary file and streamed: what its
    /// `.dockerignore` leaves out is not sent (one pattern per line: `*`, `?`, `[...]`, `**`,
    /// `!` re-includes; the Dockerfile always goes), and symbolic links are stored as links,
    /// never followed. `on_progress` follows the build as in [`Self::pull_image`] (events
    /// `step`, `output`, then `done` or `error`). A failing `RUN` step is [`ClientError::Api`]
    /// with the code `BUILD_FAILED` (422), its message holding the step's exit code and output;
    /// a `FROM` image neither stored nor pullable is [`ClientError::ImageNotFound`].
    pub async fn build_image_from_dockerfile(
        &self,
        context_dir: impl AsRef<Path>,
        name: &str,
        options: &BuildOptions,
        on_progress: Option<ProgressCallback<'_>>,
    ) -> Result<ImageInfo, ClientError> {
        let dir = context_dir.as_ref().to_path_buf();
        let query = options.query(name)?;
        let dockerfile = dockerfile_path(&options.dockerfile)?;
        if !dir.is_dir() {
            return Err(ClientError::invalid(format!(
                "the build context {} is not a directory",
                dir.display()
            )));
        }
        let local = dockerfile.split('/').fold(dir.clone(), |p, s| p.join(s));
        if !local.is_file() {
            return Err(ClientError::invalid(format!(
                "the build context {} has no Dockerfile {dockerfile:?}",
                dir.display()
            )));
        }
        let (file, length) = tokio::task::spawn_blocking(move || write_context(&dir, &dockerfile))
            .await
            .map_err(|e| {
                ClientError::io("writing the build context", std::io::Error::other(e))
            })??;
        let mut call = self
            .call(Method::POST, &["images", "build"], Scope::Image(None))?
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static(TAR_CONTENT_TYPE),
            );
        for (key, value) in query {
            call = call.query(key, value);
        }
        let chunks = file_chunks(tokio::fs::File::from_std(file)).boxed();
        let call = call.stream(chunks, Some(length));
        self.image_answer(call, Scope::Image(None), "build", on_progress)
            .await
    }

    /// Stores a completed snapshot's filesystem as the image `name` (`name:tag`), to create
    /// sandboxes from ([`crate::CreateOptions::image`]). [`ClientError::SnapshotNotFound`] if
    /// the snapshot is unknown.
    pub async fn save_snapshot_as_image(
        &self,
        snapshot_id: &str,
        name: &str,
    ) -> Result<ImageInfo, ClientError> {
        let id = identifier_arg(snapshot_id, "snapshot_id")?;
        let body = SaveSnapshotImageRequest {
            name: image_name(name, "name")?.to_string(),
        };
        let call = self
            .call(
                Method::POST,
                &["snapshots", id, "image"],
                Scope::Snapshot(id.into()),
            )?
            .json(&body)?
            .policy(false, false);
        self.transport.json(call, "snapshot image").await
    }

    /// Sends a pull or build: blocking without `on_progress`, else as an event stream whose
    /// events go to the callback.
    async fn image_answer(
        &self,
        call: Call,
        scope: Scope,
        what: &'static str,
        on_progress: Option<ProgressCallback<'_>>,
    ) -> Result<ImageInfo, ClientError> {
        let Some(on_progress) = on_progress else {
            return self
                .transport
                .json(call, &format!("the image of the {what}"))
                .await;
        };
        let call = call.kind(Kind::Events).header(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let response = self.transport.send(call).await?;
        crate::body::expect_event_stream(&response)?;
        let reader = Reader::new(
            response,
            self.config().stream_idle_timeout,
            TimeoutSetting::StreamIdleTimeout,
        );
        follow_image(&mut Lines::new(reader), &scope, what, on_progress).await
    }
}

/// Names of the events an [`ImageProgressEvent`] can be.
const PROGRESS_EVENTS: &[&str] = &["resolved", "layer", "step", "output", "done", "error"];

/// Reads the event stream of a pull or build to its `done` event (the image) or `error` event
/// (the mapped error), handing each event to `on_progress`. Unknown events are skipped.
pub(crate) async fn follow_image<S: ChunkSource>(
    lines: &mut Lines<S>,
    scope: &Scope,
    what: &str,
    on_progress: ProgressCallback<'_>,
) -> Result<ImageInfo, ClientError> {
    let mut decoder = SseDecoder::default();
    loop {
        let (events, ended) = match lines.next_line().await? {
            Some(line) => (decoder.feed(&line), false),
            None => (decoder.flush(), true),
        };
        for raw in events {
            let known = raw
                .get("event")
                .and_then(Value::as_str)
                .is_some_and(|name| PROGRESS_EVENTS.contains(&name));
            if !known {
                continue;
            }
            let event: ImageProgressEvent = serde_json::from_value(Value::Object(raw))
                .map_err(|e| ClientError::decode(format!("a {what} progress event"), e))?;
            on_progress(&event);
            match event {
                ImageProgressEvent::Done { image } => return Ok(*image),
                ImageProgressEvent::Error {
                    code,
                    message,
                    status,
                } => {
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let message = if message.is_empty() {
                        format!("the {what} failed")
                    } else {
                        message
                    };
                    let body = ErrorBody {
                        message,
                        code: (!code.is_empty()).then_some(code),
                        request_id: None,
                    };
                    return Err(error_from_body(status, body, scope));
                }
                _ => {}
            }
        }
        if ended {
            return Err(ClientError::Connection {
                what: format!("following the {what}"),
                detail: "the event stream ended before its done event".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::tests::Chunks;

    async fn follow(parts: &[&str]) -> (Result<ImageInfo, ClientError>, Vec<ImageProgressEvent>) {
        let mut seen = Vec::new();
        let mut push = |e: &ImageProgressEvent| seen.push(e.clone());
        let result = follow_image(
            &mut Lines::new(Chunks::of(parts)),
            &Scope::Image(Some("x:1".into())),
            "pull",
            &mut push,
        )
        .await;
        (result, seen)
    }

    const IMAGE: &str = r#"{"id":"sha256:ab","names":["x:1"],"source":"pull","created_at":"2026-01-01T00:00:00Z","size_bytes":10,"layers":[],"config":{"env":[],"entrypoint":[],"cmd":[],"exposed_ports":[]}}"#;

    #[tokio::test]
    async fn a_stream_is_followed_to_its_done_event() {
        let done = format!("event: done\ndata: {{\"event\":\"done\",\"image\":{IMAGE}}}\n\n");
        let (result, seen) = follow(&[
            "event: resolved\ndata: {\"event\":\"resolved\",\"manifest_digest\":\"sha256:m\",\"layers\":[]}\n\n",
            ": keep-alive\n\nevent: layer\ndata: {\"event\":\"layer\",\"digest\":\"sha256:l\",",
            "\"status\":\"downloading\",\"current_bytes\":5,\"total_bytes\":9}\n\n",
            "data: {\"event\":\"something_new\"}\n\n",
            &done,
            "data: {\"event\":\"error\",\"code\":\"X\",\"message\":\"after\",\"status\":500}\n\n",
        ])
        .await;
        let image = result.expect("done");
        assert_eq!(image.id, "sha256:ab");
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(matches!(
            &seen[1],
            ImageProgressEvent::Layer(l) if l.current_bytes == 5 && l.total_bytes == 9
        ));
    }

    #[tokio::test]
    async fn an_error_event_is_the_error_of_the_call() {
        let (result, seen) = follow(&[
            "data: {\"event\":\"error\",\"code\":\"REGISTRY_UNAUTHORIZED\",\"message\":\"refused\",\"status\":401}\n\n",
        ])
        .await;
        let err = result.expect_err("error event");
        assert!(matches!(err, ClientError::Api { .. }), "{err}");
        assert_eq!(err.code(), Some("REGISTRY_UNAUTHORIZED"));
        assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(seen.len(), 1);
        let (result, _) = follow(&[
            "data: {\"event\":\"error\",\"code\":\"NOT_FOUND\",\"message\":\"no x:1\",\"status\":404}",
        ])
        .await;
        assert!(matches!(
            result,
            Err(ClientError::ImageNotFound { reference: Some(ref r), .. }) if r == "x:1"
        ));
        let (result, _) = follow(&["data: {\"event\":\"step\",\"number\":1}\n\n"]).await;
        assert!(matches!(result, Err(ClientError::Decode { .. })));
        let (result, _) = follow(&[]).await;
        assert!(matches!(result, Err(ClientError::Connection { .. })));
    }

    #[test]
    fn pull_options_are_checked_and_never_show_the_password() {
        let body = PullOptions::new()
            .name("mine:1")
            .credentials("u", "hunter2")
            .to_request("localhost:5000/x:1")
            .expect("valid");
        assert_eq!(body.reference, "localhost:5000/x:1");
        assert_eq!(body.password.as_deref(), Some("hunter2"));
        let shown = format!("{:?}", PullOptions::new().credentials("u", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        for (options, reference) in [
            (PullOptions::new(), ""),
            (PullOptions::new(), "a b"),
            (PullOptions::new().name(" "), "x"),
            (
                PullOptions {
                    password: Some("hunter2".into()),
                    ..PullOptions::default()
                },
                "x",
            ),
            (
                PullOptions::new()
                    .credentials("u", "hunter2")
                    .auth_secret("s"),
                "x",
            ),
            (PullOptions::new().credentials("u", ""), "x"),
        ] {
            let err = options.to_request(reference).expect_err("refused");
            assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn build_queries_send_only_what_differs_from_the_defaults() {
        let q = BuildOptions::new().query("a:1").expect("valid");
        assert_eq!(q, [("name", "a:1".to_string())]);
        let q = BuildOptions::new()
            .dockerfile("./sub/Dockerfile.dev")
            .build_arg("A", "1=2")
            .build_arg("B", "")
            .no_cache(true)
            .allow_internet(false)
            .query("a:1")
            .expect("valid");
        let q: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            q,
            [
                "name=a:1",
                "dockerfile=sub/Dockerfile.dev",
                "build_arg=A=1=2",
                "build_arg=B=",
                "no_cache=true",
                "allow_internet=false"
            ]
        );
        for bad in [
            BuildOptions::new().build_arg("A=B", "x"),
            BuildOptions::new().build_arg("", "x"),
            BuildOptions::new().dockerfile("../Dockerfile"),
        ] {
            assert!(bad.query("a:1").is_err());
        }
        assert!(BuildOptions::new().query("").is_err());
        assert!(image_reference("a/../b", "ref").is_err());
    }
}
