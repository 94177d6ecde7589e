//! The HTTP listener of `alcove serve`: accepts TCP connections and drives
//! hyper's HTTP/1 server over them with limits an abusive client cannot get
//! around.
//!
//! * **Header-read timeout**: once a client starts a request it has
//!   `header_read_timeout` to finish its headers (slowloris), else the
//!   connection is closed.
//! * **Idle timeout**: a connection with no request in flight (a fresh one that
//!   sends nothing, or a keep-alive one between requests) is closed after
//!   `idle_timeout`. A request in flight is never timed out here, so a streamed
//!   answer (SSE of `run`, a file download) may last as long as it lasts, and an
//!   upgraded connection (PTY and tunnel WebSockets) leaves these timers behind.
//! * **Connection cap with eviction**: at most `max_connections` connections
//!   (upgraded ones included) are open. Every accepted connection is in a
//!   registry with what it is doing. When a new one arrives at the cap, the
//!   connection that has been idle or sending its headers the longest is closed
//!   to make room, so a flood of idle or slowloris connections cannot lock
//!   real clients out. A connection with a request in flight (a streamed answer
//!   included) or upgraded (PTY and tunnel WebSockets) is never evicted. Only
//!   when none can be evicted, or [`MAX_OVERSHOOT`] evicted connections are
//!   still closing, is a new connection answered `503 SERVER_BUSY` with
//!   `Connection: close` and closed.
//! * **Per-client bound**: at most `max_requests_per_client` requests in flight
//!   from one IP address (a streamed answer counts until its body ends); past
//!   it, `429 TOO_MANY_REQUESTS`.
//!
//! hyper's own `header_read_timeout` is not used: its clock also runs while a
//! keep-alive connection waits for its next request, so it cannot bound the
//! headers at 10 s while letting idle connections live for 60 s. A small
//! per-connection watchdog tracks both instead.
//!
//! A new connection gets no HTTP buffers until its first byte arrives, so
//! thousands of silent connections cost little; when many connections have
//! closed, freed heap is handed back to the OS (`malloc_trim`).
//!
//! The registry costs one mutex lock on accept and one on close; it is scanned
//! (linearly) only at the cap.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use alcove_wire::error::{ApiErrorBody, ErrorCode};
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::shutdown::Shutdown;

/// Connection cap when none is configured and the open-files limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Descriptors kept free of client connections for the store, sandboxes'
/// runc/CRIU/ip calls, agent connections and refusals.
pub const SPARE_FDS: u64 = 512;

/// The smallest cap ever used, so a tiny open-files limit still serves.
const MIN_MAX_CONNECTIONS: usize = 16;

/// Connections admitted above the cap while the connections evicted for them
/// are still closing (their tasks have not yet dropped their streams). Keeps
/// the descriptors in use bounded: [`SPARE_FDS`] covers it and the refusals.
pub const MAX_OVERSHOOT: usize = 64;

/// Refusals (503 answers past the cap) being written at once; beyond, a
/// connection past the cap is closed without an answer.
const MAX_REFUSING: usize = 256;

/// Shortest time between two warnings about refusals, or about evictions.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// How long writing a refusal and waiting for the client to close may take.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// Bytes read (and dropped) from a refused client so that closing sends a FIN
/// rather than a reset that could destroy the 503 before it is read.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;

/// Longest wait on shutdown for requests in flight to finish.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// The heap is trimmed when the open connections fall to half of a peak of at
/// least this many since the last trim.
const TRIM_MIN_PEAK: usize = 256;

/// Limits of the HTTP listener (`alcove serve` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to send a request's headers once started.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most requests in flight per client IP address.
    pub max_requests_per_client: usize,
}

/// The connection cap: the configured one, else [`DEFAULT_MAX_CONNECTIONS`];
/// either way at most the open-files limit minus [`SPARE_FDS`], so accepting
/// never runs the process out of descriptors.
pub fn connection_cap(configured: Option<usize>, fd_soft_limit: Option<u64>) -> usize {
    let wanted = configured.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let Some(limit) = fd_soft_limit else {
        return wanted;
    };
    let room = usize::try_from(limit.saturating_sub(SPARE_FDS))
        .unwrap_or(usize::MAX)
        .max(MIN_MAX_CONNECTIONS);
    let cap = wanted.min(room);
    if configured.is_some() && cap < wanted {
        tracing::warn!(
            configured = wanted,
            used = cap,
            open_files_limit = limit,
            "--max-connections lowered to fit the open-files limit (raise it with ulimit -n)"
        );
    }
    cap
}

/// The soft `RLIMIT_NOFILE` of this process (`None` when unlimited or unknown).
pub fn fd_soft_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct we pass, which we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (at most
/// 1048576, what sandboxes get too), so that the default connection cap can
/// use the descriptors the host grants: systemd, for one, starts services with
/// a soft limit of 1024 (a cap of 512) and a hard one of 524288. Children
/// (runc, CRIU, ip) inherit it; sandboxes get their own limit from their spec.
pub fn raise_fd_soft_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct we pass, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    // An unlimited hard limit cannot be the soft one (the kernel caps open
    // files at fs.nr_open), and a million is far more than the cap uses.
    let want = limit.rlim_max.min(1_048_576);
    let before = limit.rlim_cur;
    if before == libc::RLIM_INFINITY || before >= want {
        return;
    }
    limit.rlim_cur = want;
    // SAFETY: setrlimit only reads the rlimit struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::info!(from = before, to = want, "raised the open-files soft limit");
    } else {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            soft = before,
            hard = limit.rlim_max,
            "raising the open-files soft limit failed"
        );
    }
}

/// Hands freed heap back to the OS. glibc keeps freed memory in its arenas, so
/// after a flood of connections closes the resident size would stay at its peak.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn_blocking(|| {
            // SAFETY: malloc_trim takes no pointers; it only walks glibc's own arenas.
            unsafe { libc::malloc_trim(0) };
        });
    }
}

// ---------------------------------------------------------------------------
// Connection cap and eviction

/// A warning logged at most every [`WARNING_INTERVAL`], with how many times its
/// event happened since the last one: a flood must not flood the log too.
#[derive(Debug, Default)]
struct RateLimitedWarning {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl RateLimitedWarning {
    /// Counts one event; returns how many there were since the last warning
    /// when a warning is due now.
    fn note(&self) -> Option<u64> {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < WARNING_INTERVAL) {
            return None;
        }
        *last = Some(now);
        self.count.store(0, Ordering::Relaxed);
        Some(count)
    }
}

/// The open connections, by id.
#[derive(Debug, Default)]
struct Registry {
    open: HashMap<u64, Arc<ConnState>>,
    next_id: u64,
    /// Most connections open at once since the heap was last trimmed.
    peak: usize,
}

impl Registry {
    /// The connection idle, or sending its headers, for the longest time (ties
    /// go to the one accepted first), with since when and which of the two.
    fn oldest_evictable(&self) -> Option<(&Arc<ConnState>, Instant, &'static str)> {
        self.open
            .iter()
            .filter_map(|(&id, state)| {
                let phase = state.phase();
                let what = match phase {
                    Phase::Head(_) => "sending headers",
                    _ => "idle",
                };
                phase
                    .evictable_since()
                    .map(|since| (since, id, state, what))
            })
            .min_by_key(|&(since, id, _, _)| (since, id))
            .map(|(since, _, state, what)| (state, since, what))
    }
}

/// The open connections against the cap; evicts at the cap.
#[derive(Debug)]
struct Connections {
    max: usize,
    registry: Mutex<Registry>,
    /// Refusals being written now.
    refusing: AtomicUsize,
    refusals: RateLimitedWarning,
    evictions: RateLimitedWarning,
}

/// A connection admitted under the cap: its place there, and its state.
#[derive(Debug)]
struct Admitted {
    permit: ConnPermit,
    state: Arc<ConnState>,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self {
            max,
            registry: Mutex::new(Registry::default()),
            refusing: AtomicUsize::new(0),
            refusals: RateLimitedWarning::default(),
            evictions: RateLimitedWarning::default(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `peer`, idle from now on. At the cap, the
    /// longest idle or header-reading connection is evicted for it; `None` when
    /// none can be (all busy or upgraded) or too many evicted ones are still
    /// closing: the new connection is to be refused.
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Admitted> {
        let mut registry = self.registry();
        let open = registry.open.len();
        if open >= self.max {
            // Evicted connections stay registered until closed; they make the overshoot.
            if open >= self.max.saturating_add(MAX_OVERSHOOT) {
                return None;
            }
            self.evict_one(&registry)?;
        }
        let id = registry.next_id;
        registry.next_id += 1;
        let state = Arc::new(ConnState::new(peer, Phase::Idle(Instant::now())));
        registry.open.insert(id, Arc::clone(&state));
        registry.peak = registry.peak.max(registry.open.len());
        Some(Admitted {
            permit: ConnPermit {
                connections: Arc::clone(self),
                id,
            },
            state,
        })
    }

    /// Marks the longest idle or header-reading connection evicted (its task
    /// closes it); `None` if there is none.
    fn evict_one(&self, registry: &Registry) -> Option<()> {
        // A connection may start a request between the scan and the eviction,
        // which then leaves it alone: look again, a few times at most.
        for _ in 0..3 {
            let (victim, since, what) = registry.oldest_evictable()?;
            if victim.evict() {
                tracing::debug!(
                    peer = %victim.peer,
                    state = what,
                    for_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "connection limit reached; evicting the longest-idle connection"
                );
                if let Some(evicted) = self.evictions.note() {
                    tracing::warn!(
                        max_connections = self.max,
                        evicted,
                        "connection limit reached; closing the longest-idle connections to admit new ones"
                    );
                }
                return Some(());
            }
        }
        None
    }

    fn release(&self, id: u64) {
        let trim = {
            let mut registry = self.registry();
            registry.open.remove(&id);
            let open = registry.open.len();
            let peak = registry.peak;
            if peak >= TRIM_MIN_PEAK && open <= peak / 2 {
                registry.peak = open;
                true
            } else {
                false
            }
        };
        if trim {
            trim_heap();
        }
    }

    /// Logs refusals at most every 10 s, with how many there were.
    fn note_refusal(&self) {
        if let Some(refused) = self.refusals.note() {
            tracing::warn!(
                max_connections = self.max,
                refused,
                "connection limit reached and no connection could be evicted; refusing new connections with 503"
            );
        }
    }
}

/// One open connection counted against the cap; released (and unregistered)
/// when dropped, for an upgraded connection when the upgraded stream is.
#[derive(Debug)]
struct ConnPermit {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.connections.release(self.id);
    }
}

// ---------------------------------------------------------------------------
// Per-client bound

/// Requests in flight per client IP address.
#[derive(Debug)]
struct Clients {
    max: usize,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

impl Clients {
    fn try_enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: Arc::clone(self),
            ip,
        })
    }
}

/// One request in flight from a client; freed when its answer is done.
#[derive(Debug)]
struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self
            .clients
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Per-connection timers

/// What a connection is doing, for its timeouts and for eviction at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in flight and none started, since then (accepted then, or
    /// its last answer finished then).
    Idle(Instant),
    /// The first bytes of a request arrived then; its headers are not complete.
    Head(Instant),
    /// This many requests are in flight (their answers not yet done).
    Busy(usize),
    /// Switched protocols (a WebSocket): its handler owns the stream now.
    Upgraded,
    /// Chosen for eviction at the cap: to be closed at once.
    Evicted,
}

impl Phase {
    /// Since when the connection has been evictable: idle or sending headers.
    fn evictable_since(self) -> Option<Instant> {
        match self {
            Phase::Idle(since) | Phase::Head(since) => Some(since),
            Phase::Busy(_) | Phase::Upgraded | Phase::Evicted => None,
        }
    }
}

/// Shared between the connection's I/O, its requests, its watchdog and the
/// registry of connections.
#[derive(Debug)]
struct ConnState {
    peer: SocketAddr,
    phase: Mutex<Phase>,
    changed: Notify,
}

impl ConnState {
    fn new(peer: SocketAddr, phase: Phase) -> Self {
        Self {
            peer,
            phase: Mutex::new(phase),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves to the phase `f` gives; `Upgraded` and `Evicted` are final.
    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*phase, Phase::Upgraded | Phase::Evicted) {
            return;
        }
        let next = f(*phase);
        if next != *phase {
            *phase = next;
            // notify_one keeps a permit when the watchdog is not waiting, so no change is lost.
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: on an idle connection they start a request's headers.
    fn on_read(&self) {
        self.update(|p| match p {
            Phase::Idle(_) => Phase::Head(Instant::now()),
            other => other,
        });
    }

    fn request_started(&self) {
        self.update(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
    }

    fn request_finished(&self) {
        self.update(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }

    /// The answer switched protocols: the connection is never evicted now.
    fn upgraded(&self) {
        self.update(|_| Phase::Upgraded);
    }

    /// Evicts the connection if it is idle or sending headers; whether it did.
    fn evict(&self) -> bool {
        let mut evicted = false;
        self.update(|p| {
            if p.evictable_since().is_some() {
                evicted = true;
                Phase::Evicted
            } else {
                p
            }
        });
        evicted
    }

    /// When the connection must be closed, and why; `None` while busy or upgraded.
    fn deadline(&self, limits: &HttpLimits) -> Option<(Instant, &'static str)> {
        match self.phase() {
            Phase::Idle(since) => Some((since + limits.idle_timeout, "idle timeout")),
            Phase::Head(since) => Some((since + limits.header_read_timeout, "header read timeout")),
            Phase::Evicted => Some((Instant::now(), "evicted at the connection limit")),
            Phase::Busy(_) | Phase::Upgraded => None,
        }
    }
}

/// Resolves when the connection has been idle, or sending headers, too long,
/// or has been evicted.
async fn watchdog(state: &ConnState, limits: &HttpLimits) -> &'static str {
    loop {
        match state.deadline(limits) {
            None => state.changed.notified().await,
            Some((at, why)) => {
                if Instant::now() >= at {
                    return why;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = state.changed.notified() => {}
                }
            }
        }
    }
}

/// The TCP stream of one connection: reports reads to the watchdog and holds the
/// connection's place under the cap for as long as it lives (upgrades included).
#[derive(Debug)]
struct TrackedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    _permit: ConnPermit,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Marks a request finished on its connection when dropped.
#[derive(Debug)]
struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// An answer's body that keeps its request counted (on its connection and
/// against its client's bound) until the body is done or dropped.
struct TrackedBody {
    inner: Body,
    _request: RequestGuard,
    _client: Option<ClientSlot>,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------
// Answers of the listener itself

fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn error_json(message: String, code: ErrorCode, request_id: Option<String>) -> Vec<u8> {
    let body = ApiErrorBody {
        message,
        code,
        request_id,
    };
    // Serializing a struct of strings cannot fail; fall back to a fixed body anyway.
    serde_json::to_vec(&body)
        .unwrap_or_else(|_| br#"{"message":"error","code":"INTERNAL"}"#.to_vec())
}

/// 429 for a client past its bound of requests in flight.
fn too_many_requests(ip: IpAddr, max: usize) -> Response<Body> {
    let id = new_request_id();
    let body = error_json(
        format!(
            "too many requests in flight from {ip} (at most {max}); retry when some have finished"
        ),
        ErrorCode::TooManyRequests,
        None,
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", v);
    }
    resp
}

/// The raw 503 written to a connection past the cap, before closing it.
fn refusal_bytes(max: usize) -> Vec<u8> {
    let id = new_request_id();
    let body = error_json(
        format!("the server is at its limit of {max} open connections; retry later"),
        ErrorCode::ServerBusy,
        Some(id.clone()),
    );
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\nx-request-id: {id}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

async fn write_refusal(mut stream: TcpStream, max: usize) {
    if stream.write_all(&refusal_bytes(max)).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN_BYTES {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

// ---------------------------------------------------------------------------
// Serving

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    app: Router,
    limits: HttpLimits,
    connections: Arc<Connections>,
    clients: Arc<Clients>,
    /// Connection tasks still running (for the shutdown drain).
    tasks: AtomicUsize,
    shutdown: Shutdown,
    /// Set when the listener serves HTTPS.
    tls: Option<Arc<crate::tls::ServerCerts>>,
}

impl Shared {
    fn refuse(self: &Arc<Self>, stream: TcpStream) {
        self.connections.note_refusal();
        if self.tls.is_some() {
            // A plain 503 means nothing to a client starting a TLS handshake, and
            // answering it over TLS would spend a handshake on a connection
            // refused for lack of room: it is closed.
            return;
        }
        let refusing = &self.connections.refusing;
        if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
            refusing.fetch_sub(1, Ordering::AcqRel);
            return; // dropping the stream closes it
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let max = this.limits.max_connections;
            let _ = tokio::time::timeout(REFUSAL_TIME, write_refusal(stream, max)).await;
            this.connections.refusing.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Counts a connection task for the shutdown drain.
struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.tasks.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` fires, then lets
/// requests in flight finish (for at most 10 s). With `tls`, every connection
/// is HTTPS: the handshake is bounded like a request's headers.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: Shutdown,
    tls: Option<Arc<crate::tls::ServerCerts>>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        app,
        limits,
        connections: Arc::new(Connections::new(limits.max_connections)),
        clients: Arc::new(Clients {
            max: limits.max_requests_per_client,
            in_flight: Mutex::new(HashMap::new()),
        }),
        tasks: AtomicUsize::new(0),
        shutdown: shutdown.clone(),
        tls,
    });
    tracing::info!(
        max_connections = limits.max_connections,
        max_requests_per_client = limits.max_requests_per_client,
        header_read_timeout_secs = limits.header_read_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        tls = shared.tls.is_some(),
        "http limits"
    );
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        match shared.connections.admit(peer) {
            Some(admitted) => {
                shared.tasks.fetch_add(1, Ordering::AcqRel);
                let task = TaskGuard(Arc::clone(&shared));
                tokio::spawn(serve_connection(stream, peer, admitted, task));
            }
            None => shared.refuse(stream),
        }
    }
    drop(listener);
    let deadline = Instant::now() + SHUTDOWN_DRAIN;
    while shared.tasks.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// An accept error: per-connection ones are ignored; others (out of file
/// descriptors) get a pause so the loop does not spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Waits (cheaply) for the client's first byte, then serves HTTP on it.
async fn serve_connection(stream: TcpStream, peer: SocketAddr, conn: Admitted, task: TaskGuard) {
    let shared = Arc::clone(&task.0);
    let _ = stream.set_nodelay(true);
    // `peek` waits for real data (readiness alone may be reported early).
    let mut first = [0u8; 1];
    tokio::select! {
        peeked = stream.peek(&mut first) => match peeked {
            Ok(n) if n > 0 => {}
            _ => return, // closed by the client, or failed
        },
        // The idle timeout, or eviction at the cap.
        why = watchdog(&conn.state, &shared.limits) => {
            tracing::debug!(%peer, reason = why, "closing connection before any request");
            return;
        }
        () = shared.shutdown.wait() => return,
    }
    // Bytes are waiting: a request is starting.
    conn.state.on_read();
    // The HTTP state is boxed only now: a silent connection never allocates it.
    Box::pin(serve_http(stream, peer, conn, shared)).await;
    drop(task);
}

async fn serve_http(stream: TcpStream, peer: SocketAddr, conn: Admitted, shared: Arc<Shared>) {
    let Admitted { permit, state } = conn;
    let io = TrackedIo {
        inner: stream,
        state: Arc::clone(&state),
        _permit: permit,
    };
    let Some(acceptor) = shared
        .tls
        .as_ref()
        .map(|certs| tokio_rustls::TlsAcceptor::from(certs.current()))
    else {
        return drive_http(io, peer, state, shared).await;
    };
    // The first byte moved the connection to its header phase: the watchdog
    // bounds the handshake like headers, so a slow handshake cannot hold a slot.
    let tls = tokio::select! {
        accepted = acceptor.accept(io) => match accepted {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        },
        why = watchdog(&state, &shared.limits) => {
            tracing::debug!(%peer, reason = why, "closing connection during the TLS handshake");
            return;
        }
        () = shared.shutdown.wait() => return,
    };
    drive_http(tls, peer, state, shared).await;
}

/// Serves HTTP/1 (with upgrades) on one connection's stream, plain or TLS.
async fn drive_http<I>(io: I, peer: SocketAddr, state: Arc<ConnState>, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let state = Arc::clone(&state);
        let shared = Arc::clone(&shared);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let state = Arc::clone(&state);
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(handle(req, peer, state, &shared).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // See the module docs: the watchdog bounds headers and idleness instead.
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            why = watchdog(&state, &shared.limits) => {
                tracing::debug!(%peer, reason = why, "closing connection");
                return;
            }
            () = shared.shutdown.wait(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request: counted on its connection and against its client, then routed.
async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<ConnState>,
    shared: &Shared,
) -> Response<TrackedBody> {
    state.request_started();
    let request = RequestGuard(state);
    let ip = peer.ip().to_canonical();
    let Some(client) = shared.clients.try_enter(ip) else {
        tracing::warn!(client = %ip, "too many requests in flight from one client");
        return too_many_requests(ip, shared.clients.max).map(|inner| TrackedBody {
            inner,
            _request: request,
            _client: None,
        });
    };
    let mut req = req.map(Body::new);
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let resp = match shared.app.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A WebSocket (PTY, tunnel) lives on this stream now: never evict it.
        request.0.upgraded();
    }
    resp.map(|inner| TrackedBody {
        inner,
        _request: request,
        _client: Some(client),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_defaults_to_4096_and_keeps_spare_descriptors() {
        assert_eq!(connection_cap(None, None), 4096);
        assert_eq!(connection_cap(None, Some(20_000)), 4096);
        assert_eq!(connection_cap(None, Some(1024)), 512);
        assert_eq!(connection_cap(Some(12_000), Some(20_000)), 12_000);
        // A configured cap above what the descriptors allow is lowered.
        assert_eq!(connection_cap(Some(30_000), Some(20_000)), 19_488);
        assert_eq!(connection_cap(None, Some(100)), MIN_MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(5), Some(100)), 5);
    }

    fn peer(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    fn open_count(conns: &Connections) -> usize {
        conns.registry().open.len()
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_or_header_reading_connection_is_evicted() {
        let conns = Arc::new(Connections::new(3));
        let busy = conns.admit(peer(1)).expect("below the cap");
        busy.state.request_started();
        tokio::time::advance(Duration::from_secs(1)).await;
        let slow = conns.admit(peer(2)).expect("below the cap");
        tokio::time::advance(Duration::from_secs(1)).await;
        let idle = conns.admit(peer(3)).expect("below the cap");
        tokio::time::advance(Duration::from_secs(1)).await;
        // Accepted before `idle`, started its headers after it was accepted:
        // sending headers since t=3 is younger than idle since t=2.
        slow.state.on_read();
        tokio::time::advance(Duration::from_secs(1)).await;

        let first = conns.admit(peer(4)).expect("admitted by evicting");
        assert_eq!(idle.state.phase(), Phase::Evicted);
        assert!(matches!(slow.state.phase(), Phase::Head(_)));
        assert_eq!(busy.state.phase(), Phase::Busy(1));

        let second = conns.admit(peer(5)).expect("admitted by evicting");
        assert_eq!(slow.state.phase(), Phase::Evicted);
        assert_eq!(busy.state.phase(), Phase::Busy(1), "busy is never evicted");
        // The evicted connections count until their tasks drop them.
        assert_eq!(open_count(&conns), 5);
        drop((idle, slow));
        assert_eq!(open_count(&conns), 3);

        // Everyone busy (a request in flight, or upgraded): refused.
        first.state.request_started();
        second.state.request_started();
        second.state.upgraded();
        second.state.request_finished();
        assert_eq!(second.state.phase(), Phase::Upgraded);
        assert!(conns.admit(peer(6)).is_none());
        // A finished request leaves its connection idle, and evictable again.
        first.state.request_finished();
        let _third = conns.admit(peer(7)).expect("admitted by evicting");
        assert_eq!(first.state.phase(), Phase::Evicted);
        assert_eq!(busy.state.phase(), Phase::Busy(1));
        assert_eq!(second.state.phase(), Phase::Upgraded);
    }

    #[tokio::test(start_paused = true)]
    async fn ties_go_to_the_connection_accepted_first() {
        let conns = Arc::new(Connections::new(3));
        let all: Vec<_> = (1..=3)
            .map(|n| conns.admit(peer(n)).expect("below the cap"))
            .collect();
        let _new = conns.admit(peer(4)).expect("admitted by evicting");
        let phases: Vec<_> = all.iter().map(|c| c.state.phase()).collect();
        assert_eq!(phases[0], Phase::Evicted);
        assert!(matches!(phases[1..], [Phase::Idle(_), Phase::Idle(_)]));
    }

    #[tokio::test(start_paused = true)]
    async fn overshoot_is_bounded_while_evicted_connections_close() {
        let conns = Arc::new(Connections::new(2));
        let mut held = Vec::new();
        while let Some(conn) = conns.admit(peer(1)) {
            held.push(conn);
            assert!(
                held.len() <= 2 + MAX_OVERSHOOT,
                "admitted past the overshoot"
            );
        }
        assert_eq!(held.len(), 2 + MAX_OVERSHOOT);
        // Once evicted connections close, there is room again.
        let evicted = held
            .iter()
            .position(|c| c.state.phase() == Phase::Evicted)
            .expect("an evicted connection");
        held.remove(evicted);
        assert!(conns.admit(peer(1)).is_some());
    }

    #[test]
    fn evicted_and_upgraded_are_final() {
        let state = ConnState::new(peer(1), Phase::Idle(Instant::now()));
        assert!(state.evict());
        assert!(!state.evict(), "evicted twice");
        state.request_started();
        state.on_read();
        assert_eq!(state.phase(), Phase::Evicted);

        let state = ConnState::new(peer(1), Phase::Busy(1));
        assert!(!state.evict());
        state.upgraded();
        state.request_finished();
        state.on_read();
        assert!(!state.evict());
        assert_eq!(state.phase(), Phase::Upgraded);
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_is_closed_at_once() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
            max_requests_per_client: 1,
        };
        let state = Arc::new(ConnState::new(peer(1), Phase::Idle(Instant::now())));
        let dog = {
            let state = Arc::clone(&state);
            tokio::spawn(async move { watchdog(&state, &limits).await })
        };
        tokio::task::yield_now().await;
        let start = Instant::now();
        assert!(state.evict());
        assert_eq!(
            dog.await.expect("watchdog"),
            "evicted at the connection limit"
        );
        // (Paused clock: no time passes unless a timer had to fire.)
        assert_eq!(Instant::now(), start, "waited for the idle timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn registry_is_emptied_as_connections_close() {
        let conns = Arc::new(Connections::new(2));
        let a = conns.admit(peer(1)).expect("first");
        let b = conns.admit(peer(2)).expect("second");
        assert_eq!(open_count(&conns), 2);
        drop(a);
        drop(b);
        assert_eq!(open_count(&conns), 0);
    }

    #[test]
    fn client_bound_is_per_address() {
        let clients = Arc::new(Clients {
            max: 1,
            in_flight: Mutex::new(HashMap::new()),
        });
        let one: IpAddr = "10.0.0.1".parse().expect("ip");
        let two: IpAddr = "10.0.0.2".parse().expect("ip");
        let slot = clients.try_enter(one).expect("first request");
        assert!(clients.try_enter(one).is_none());
        assert!(clients.try_enter(two).is_some());
        drop(slot);
        assert!(clients.try_enter(one).is_some());
        // Entries of clients with nothing in flight are removed.
        assert!(clients.in_flight.lock().expect("lock").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_times_headers_and_idleness_but_not_requests() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
            max_requests_per_client: 1,
        };
        let state = ConnState::new(peer(1), Phase::Head(Instant::now()));
        assert_eq!(watchdog(&state, &limits).await, "header read timeout");

        let state = Arc::new(ConnState::new(peer(1), Phase::Idle(Instant::now())));
        state.request_started();
        let dog = {
            let state = Arc::clone(&state);
            tokio::spawn(async move { watchdog(&state, &limits).await })
        };
        // A request in flight for far longer than both timeouts is not cut.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!dog.is_finished());
        state.request_finished();
        assert_eq!(dog.await.expect("watchdog"), "idle timeout");
    }

    #[test]
    fn refusal_is_a_complete_503_with_the_wire_body() {
        let bytes = refusal_bytes(7);
        let text = String::from_utf8(bytes).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let parsed: ApiErrorBody = serde_json::from_str(body).expect("wire error body");
        assert_eq!(parsed.code, ErrorCode::ServerBusy);
        assert!(parsed.message.contains("limit of 7"));
        assert!(parsed.request_id.is_some());
    }
}

#[cfg(test)]
#[path = "listener_tls_tests.rs"]
mod tls_tests;
