//! Sending one logical request: headers, deadlines, retries and error answers.
//!
//! Every call of the crate describes itself as a [`Call`] and hands it to [`Transport::send`],
//! so deadlines and retries cannot drift between calls. Three kinds of deadline, as in the
//! Python SDK (`_config.py`):
//!
//! * [`Kind::Plain`]: the whole exchange, answer body included, within `timeout`;
//! * [`Kind::Transfer`] (file up- and downloads): the answer's head within `timeout`, then each
//!   read within `timeout` (see [`crate::body`]); an upload fails once no chunk was taken for
//!   `timeout`, so a transfer may last as long as bytes keep moving;
//! * [`Kind::Events`] (`run`, `follow_*`): the head within `timeout`, then each read within
//!   `stream_idle_timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use reqwest::Url;
use serde::de::DeserializeOwned;

use crate::config::ClientConfig;
use crate::error::{ClientError, Scope, TimeoutSetting, error_from_answer};
use crate::retry::{self, Outcome, Policy};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("alcove-rust-client/", env!("CARGO_PKG_VERSION"));
/// Most bytes of an error answer that are read (its message is all that is kept).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How a call's time is bounded (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    Transfer,
    Events,
}

/// A streamed request body, consumed by its one attempt.
pub(crate) type Upload = BoxStream<'static, std::io::Result<Bytes>>;

/// What a request carries.
pub(crate) enum Payload {
    Empty,
    Json(Vec<u8>),
    Bytes(Bytes),
    Stream(Upload, Option<u64>),
}

/// One logical request (sent once or more, see [`crate::retry`]).
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub query: Vec<(&'static str, String)>,
    pub payload: Payload,
    pub kind: Kind,
    pub scope: Scope,
    pub policy: Policy,
    /// Non-2xx statuses handed back as answers instead of errors.
    pub also_ok: &'static [StatusCode],
}

impl Call {
    /// A call with no body; idempotent (and so retried) when it is a GET.
    pub fn new(method: Method, url: Url, scope: Scope) -> Self {
        let idempotent = method == Method::GET;
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            query: Vec::new(),
            payload: Payload::Empty,
            kind: Kind::Plain,
            scope,
            policy: Policy {
                idempotent,
                replayable: true,
            },
            also_ok: &[],
        }
    }

    /// Sends `body` as JSON.
    pub fn json(mut self, body: &impl serde::Serialize) -> Result<Self, ClientError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ClientError::invalid(format!("encoding the request body: {e}")))?;
        self.payload = Payload::Json(bytes);
        Ok(self)
    }

    /// Sends raw bytes.
    pub fn bytes(mut self, body: Bytes) -> Self {
        self.payload = Payload::Bytes(body);
        self
    }

    /// Sends a stream (never replayed) of `length` bytes, when known.
    pub fn stream(mut self, body: Upload, length: Option<u64>) -> Self {
        self.payload = Payload::Stream(body, length);
        self.policy = Policy {
            idempotent: false,
            replayable: false,
        };
        self.kind = Kind::Transfer;
        self
    }

    /// Adds a query parameter (form-encoded).
    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// Adds the headers of `map` (routing headers of a proxy target).
    pub fn headers(mut self, map: &HeaderMap) -> Self {
        for (name, value) in map {
            self.headers.insert(name.clone(), value.clone());
        }
        self
    }

    /// Adds one header.
    pub fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets how time is bounded.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the retry rules.
    pub fn policy(mut self, idempotent: bool, replayable: bool) -> Self {
        self.policy = Policy {
            idempotent,
            replayable,
        };
        self
    }

    /// Hands these statuses back as answers.
    pub fn also_ok(mut self, statuses: &'static [StatusCode]) -> Self {
        self.also_ok = statuses;
        self
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

/// The HTTP client and settings shared by a [`crate::SandboxClient`] and its handles.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    pub config: ClientConfig,
    base_headers: HeaderMap,
    /// What `wss://` sockets trust (the same roots as `http`).
    pub tls: std::sync::Arc<rustls::ClientConfig>,
}

impl Transport {
    /// Builds the connection pool for `config`.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let tls = crate::tls::client_config().map_err(|e| ClientError::Connection {
            what: "setting up TLS".into(),
            detail: e.to_string(),
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            .user_agent(USER_AGENT)
            .use_preconfigured_tls(tls.clone())
            .build()
            .map_err(|e| ClientError::Connection {
                what: "building the HTTP client".into(),
                detail: chain(&e),
            })?;
        let mut base_headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let value = HeaderValue::try_from(format!("Bearer {key}"))
                .map_err(|_| ClientError::invalid("the API key is not a valid header value"))?;
            base_headers.insert(header::AUTHORIZATION, value);
        }
        Ok(Self {
            http,
            config,
            base_headers,
            tls: std::sync::Arc::new(tls),
        })
    }

    /// Headers every request carries (the API key).
    pub fn base_headers(&self) -> &HeaderMap {
        &self.base_headers
    }

    /// Sends `call`, retrying as its policy allows; a 2xx answer (or one of `also_ok`) comes
    /// back unread, anything else as the mapped [`ClientError`].
    pub async fn send(&self, mut call: Call) -> Result<reqwest::Response, ClientError> {
        let what = call.what();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(&mut call, &what).await;
            let response = match outcome {
                Ok(response) => response,
                Err(Failure::Connection(err)) => {
                    match retry::delay(call.policy, attempt, Outcome::ConnectionFailed) {
                        Some(pause) => {
                            tokio::time::sleep(pause).await;
                            continue;
                        }
                        None => return Err(err),
                    }
                }
                Err(Failure::Final(err)) => return Err(err),
            };
            let status = response.status();
            if status.is_success() || call.also_ok.contains(&status) {
                return Ok(response);
            }
            let retry_after = retry_after(response.headers());
            let body = self.read_error_body(response).await;
            let code = crate::error::ErrorBody::parse(status, &body).code;
            let outcome = Outcome::Answer {
                status,
                code: code.as_deref(),
                retry_after,
            };
            let can_resend = !matches!(call.payload, Payload::Stream(..));
            match retry::delay(call.policy, attempt, outcome) {
                Some(pause) if can_resend => tokio::time::sleep(pause).await,
                _ => return Err(error_from_answer(status, &body, &call.scope)),
            }
        }
    }

    /// Sends `call` and decodes its JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        call: Call,
        what: &str,
    ) -> Result<T, ClientError> {
        let bytes = self.body(call).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::decode(what, e))
    }

    /// Sends `call` and reads its whole answer (within `timeout`: a plain call's deadline
    /// covers its answer; a transfer's answer is read under a deadline of its own).
    pub async fn body(&self, call: Call) -> Result<Bytes, ClientError> {
        let what = call.what();
        let plain = call.kind == Kind::Plain;
        let response = self.send(call).await?;
        let reading = response.bytes();
        let read = if plain {
            reading.await
        } else {
            tokio::time::timeout(self.config.timeout, reading)
                .await
                .map_err(|_| self.timed_out(&what))?
        };
        read.map_err(|e| self.map_reqwest(&what, &e))
    }

    /// One attempt. Takes a streamed payload out of `call` (it cannot be sent twice).
    async fn attempt(&self, call: &mut Call, what: &str) -> Result<reqwest::Response, Failure> {
        // A call that names the content type of its raw body (an image archive's
        // `application/x-tar`) keeps it; the payload sets the header, once.
        let mut headers = call.headers.clone();
        let raw_type = headers
            .remove(header::CONTENT_TYPE)
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .headers(self.base_headers.clone())
            .headers(headers);
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        let timeout = self.config.timeout;
        let mut progress = None;
        request = match &mut call.payload {
            Payload::Empty => request,
            Payload::Json(bytes) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Payload::Bytes(bytes) if call.kind == Kind::Transfer => {
                // In chunks, so that each write (not the whole upload) is bounded.
                let watch = Progress::new();
                let touched = watch.clone();
                let chunks = chunked(bytes.clone()).inspect(move |_| touched.touch());
                progress = Some(watch);
                request
                    .header(header::CONTENT_TYPE, raw_type)
                    .header(header::CONTENT_LENGTH, bytes.len())
                    .body(reqwest::Body::wrap_stream(chunks))
            }
            Payload::Bytes(bytes) => request
                .header(header::CONTENT_TYPE, raw_type)
                .body(bytes.clone()),
            Payload::Stream(stream, length) => {
                let taken = std::mem::replace(stream, futures::stream::empty().boxed());
                let watch = Progress::new();
                let touched = watch.clone();
                let body = taken.inspect(move |_| touched.touch());
                progress = Some(watch);
                let request = request
                    .header(header::CONTENT_TYPE, raw_type)
                    .body(reqwest::Body::wrap_stream(body));
                match length {
                    Some(length) => request.header(header::CONTENT_LENGTH, *length),
                    None => request,
                }
            }
        };
        if call.kind == Kind::Plain {
            request = request.timeout(timeout);
        }
        let sending = request.send();
        let result = match progress {
            Some(progress) => progress.bound(sending, timeout).await,
            None if call.kind == Kind::Plain => Some(sending.await),
            None => tokio::time::timeout(timeout, sending).await.ok(),
        };
        match result {
            Some(Ok(response)) => Ok(response),
            Some(Err(e)) if e.is_timeout() => Err(Failure::Final(self.map_reqwest(what, &e))),
            Some(Err(e)) => Err(Failure::Connection(self.map_reqwest(what, &e))),
            None => Err(Failure::Final(self.timed_out(what))),
        }
    }

    async fn read_error_body(&self, mut response: reqwest::Response) -> Vec<u8> {
        let mut body = Vec::new();
        let read = async {
            while let Ok(Some(chunk)) = response.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() >= ERROR_BODY_LIMIT {
                    break;
                }
            }
        };
        // An error answer whose body never ends still reports its status.
        let _ = tokio::time::timeout(self.config.timeout, read).await;
        body.truncate(ERROR_BODY_LIMIT);
        body
    }

    /// A [`ClientError::Timeout`] of the per-request `timeout`.
    pub fn timed_out(&self, what: &str) -> ClientError {
        let after = self.config.timeout;
        ClientError::Timeout {
            what: what.to_string(),
            detail: format!(
                "timed out, no answer within {}s; raise the client's timeout to wait longer",
                after.as_secs_f64()
            ),
            setting: TimeoutSetting::Timeout,
            after,
        }
    }

    /// Maps a reqwest failure to a timeout or a connection error.
    pub fn map_reqwest(&self, what: &str, err: &reqwest::Error) -> ClientError {
        if err.is_timeout() {
            return self.timed_out(what);
        }
        ClientError::Connection {
            what: what.to_string(),
            detail: chain(err),
        }
    }
}

/// How an attempt failed: a connection failure may be retried, the rest is final.
enum Failure {
    Connection(ClientError),
    Final(ClientError),
}

/// An error and its causes on one line (reqwest's own text hides the cause).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Upload chunk of in-memory transfers.
const CHUNK_BYTES: usize = 64 * 1024;

/// `bytes` as a stream of [`CHUNK_BYTES`] slices (sharing the buffer, not copying it).
fn chunked(bytes: Bytes) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    let count = bytes.len().div_ceil(CHUNK_BYTES);
    futures::stream::iter((0..count).map(move |i| {
        let end = ((i + 1) * CHUNK_BYTES).min(bytes.len());
        Ok(bytes.slice(i * CHUNK_BYTES..end))
    }))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// When an upload last handed a chunk to the connection.
#[derive(Clone)]
struct Progress {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Drives `sending` until it ends, or until nothing moved for `idle` (`None`).
    async fn bound<F: Future>(&self, sending: F, idle: Duration) -> Option<F::Output> {
        let mut sending = std::pin::pin!(sending);
        loop {
            let due = self.last() + idle;
            tokio::select! {
                output = &mut sending => return Some(output),
                () = tokio::time::sleep_until(due.into()) => {
                    if self.last() + idle <= Instant::now() {
                        return None;
                    }
                }
            }
        }
    }
}
