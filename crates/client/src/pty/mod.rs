//! Terminal (PTY) sessions (docs/protocol/sandbox-api.md, PTY sessions): create one over
//! HTTP, drive it over a WebSocket (docs/protocol/streaming.md, PTY WebSocket).
//!
//! The session lives in the sandbox until its command exits or [`PtySession::kill`]; the socket
//! that carries its I/O can come and go ([`PtySession::close`], then [`PtySession::connect`] or
//! [`Sandbox::connect_pty`]). Frames are the binary ones of `alcove_wire::pty`; what has been
//! received is kept in [`state::PtyState`].

mod state;

use std::time::Duration;

use alcove_wire::pty::{ClientFrame, CreatePtyResponse, TOKEN_HEADER};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::command::Command;
use crate::error::{ClientError, TimeoutSetting};
use crate::sandbox::Sandbox;
use crate::ws::{self, CLOSE_TIMEOUT, Socket};
use state::PtyState;

/// A terminal session running a command in the sandbox, from [`Sandbox::create_pty`].
///
/// ```no_run
/// # async fn demo(sandbox: alcove_client::Sandbox) -> Result<(), alcove_client::ClientError> {
/// use std::time::Duration;
/// use alcove_client::Command;
///
/// let mut pty = sandbox.create_pty(Command::new("bash"), 80, 24).await?;
/// pty.connect().await?;
/// pty.send(b"echo hi; exit 3\n").await?;
/// let seen = pty.read_until("hi\r\n", Some(Duration::from_secs(10))).await?;
/// assert_eq!(pty.wait(Some(Duration::from_secs(10))).await?, 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PtySession {
    sandbox: Sandbox,
    token: String,
    socket: Option<Socket>,
    state: PtyState,
}

impl Sandbox {
    /// Starts `command` on a new terminal of `cols` x `rows` and returns its session, not yet
    /// connected: call [`PtySession::connect`], or hand [`PtySession::websocket_url`] to
    /// another client.
    pub async fn create_pty(
        &self,
        command: Command,
        cols: u16,
        rows: u16,
    ) -> Result<PtySession, ClientError> {
        let body = command.pty_request(cols, rows)?;
        let call = self.call(Method::POST, &["pty"])?.json(&body)?;
        let created: CreatePtyResponse = self.transport().json(call, "PTY session").await?;
        Ok(PtySession::new(
            self.clone(),
            created.session_id,
            created.token,
        ))
    }

    /// Reattaches to an existing PTY session; returns it connected.
    pub async fn connect_pty(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<PtySession, ClientError> {
        if session_id.is_empty() || token.is_empty() {
            return Err(ClientError::invalid(
                "session_id and token must be non-empty",
            ));
        }
        let mut session = PtySession::new(self.clone(), session_id.into(), token.into());
        session.connect().await?;
        Ok(session)
    }
}

impl PtySession {
    fn new(sandbox: Sandbox, session_id: String, token: String) -> Self {
        Self {
            sandbox,
            token,
            socket: None,
            state: PtyState::new(&session_id),
        }
    }

    /// The session's id (keep it, with the token, to reconnect).
    pub fn session_id(&self) -> &str {
        &self.state.session_id
    }

    /// The secret that opens the session's socket.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `ws(s)://…/sandboxes/<id>/api/v1/pty/<session>/ws?token=…`: routes by its path, so any
    /// WebSocket client can use it as is.
    pub fn websocket_url(&self) -> Result<String, ClientError> {
        let info = self.sandbox.info();
        let url = crate::routing::pty_websocket_url(
            info.sandbox_url.as_deref().unwrap_or_default(),
            &info.id,
            self.session_id(),
            &self.token,
        )?;
        Ok(url.to_string())
    }

    /// The command's exit code, once this handle saw it exit.
    pub fn exit_code(&self) -> Option<i32> {
        self.state.exit_code
    }

    /// Whether the socket is open.
    pub fn is_connected(&self) -> bool {
        self.socket.is_some()
    }

    /// Opens the socket and sends READY (the agent holds output back until then). Does
    /// nothing when connected already or when the command has exited.
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        if self.socket.is_some() || self.state.exit_code.is_some() {
            return Ok(());
        }
        let url = reqwest::Url::parse(&self.websocket_url()?)
            .map_err(|e| ClientError::invalid(format!("PTY URL: {e}")))?;
        let mut headers = HeaderMap::new();
        let token = HeaderValue::try_from(self.token.as_str())
            .map_err(|_| ClientError::invalid("the PTY token is not a valid header value"))?;
        headers.insert(HeaderName::from_static(TOKEN_HEADER), token);
        let what = format!("PTY session {}", self.session_id());
        let mut socket = ws::connect(
            self.sandbox.transport(),
            &url,
            &headers,
            self.sandbox.id(),
            &what,
        )
        .await?;
        let ready = Message::Binary(ClientFrame::Ready.encode().into());
        if let Err(err) = socket.send(ready).await {
            return Err(ClientError::Connection {
                what,
                detail: crate::transport::chain(&err),
            });
        }
        self.socket = Some(socket);
        Ok(())
    }

    /// Types `data` into the terminal.
    pub async fn send(&mut self, data: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let data = data.as_ref();
        if data.is_empty() {
            return Ok(());
        }
        self.send_frame(ClientFrame::Input(data).encode()).await
    }

    /// Changes the terminal size.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), ClientError> {
        for value in [cols, rows] {
            if !alcove_wire::pty::valid_dimension(value) {
                return Err(ClientError::invalid(format!(
                    "cols and rows must be between 1 and {}",
                    alcove_wire::pty::MAX_DIMENSION
                )));
            }
        }
        self.send_frame(ClientFrame::Resize { cols, rows }.encode())
            .await
    }

    /// The output not read yet, waiting for some when there is none; empty once the command
    /// exited. [`ClientError::Timeout`] when nothing arrives within `timeout`.
    pub async fn read(&mut self, timeout: Option<Duration>) -> Result<Vec<u8>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        while self.state.buffer.is_empty() && self.state.exit_code.is_none() {
            if !self.receive(deadline).await? {
                return Err(self.timed_out(timeout, "no output"));
            }
        }
        Ok(self.state.take())
    }

    /// Output up to and including the first `pattern`; the rest stays for the next read.
    /// [`ClientError::Timeout`] when it does not appear within `timeout`, [`ClientError::Pty`]
    /// when the command exits first; the output stays readable in both cases.
    pub async fn read_until(
        &mut self,
        pattern: impl AsRef<[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, ClientError> {
        let needle = pattern.as_ref();
        if needle.is_empty() {
            return Err(ClientError::invalid("pattern must not be empty"));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(found) = self.state.take_until(needle) {
                return Ok(found);
            }
            let shown = String::from_utf8_lossy(needle);
            if let Some(code) = self.state.exit_code {
                return Err(self.state.error(format!(
                    "exited with code {code} before {shown:?} appeared{}",
                    self.state.tail()
                )));
            }
            if !self.receive(deadline).await? {
                let what = format!("{shown:?} did not appear{}", self.state.tail());
                return Err(self.timed_out(timeout, &what));
            }
        }
    }

    /// Waits for the command to exit and returns its exit code (output arriving meanwhile
    /// stays readable).
    pub async fn wait(&mut self, timeout: Option<Duration>) -> Result<i32, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(code) = self.state.exit_code {
                return Ok(code);
            }
            if !self.receive(deadline).await? {
                return Err(self.timed_out(timeout, "the command did not exit"));
            }
        }
    }

    /// Closes the socket; the command keeps running (reconnect with [`Self::connect`]).
    pub async fn close(&mut self) {
        let Some(mut socket) = self.socket.take() else {
            return;
        };
        let _ = socket.close(None).await;
        // Output that arrives while closing stays readable, and an exit reported meanwhile
        // counts: read until the peer's close frame (bounded, the peer may be gone).
        let state = &mut self.state;
        let drain = async {
            while let Some(Ok(message)) = socket.next().await {
                match message {
                    Message::Binary(bytes) => state.feed(&bytes),
                    Message::Close(_) => {
                        if let Some((code, reason)) = ws::close_details(&message) {
                            let _ = state.closed(code, &reason);
                        }
                        break;
                    }
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
    }

    /// Ends the session: kills its command (a session already gone counts as killed).
    pub async fn kill(&self) -> Result<(), ClientError> {
        let call = self
            .sandbox
            .call(Method::DELETE, &["pty", self.session_id()])?;
        match self.sandbox.transport().body(call).await {
            Err(err)
                if err.status() == Some(StatusCode::NOT_FOUND)
                    && !matches!(err, ClientError::SandboxNotFound { .. }) =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    fn detached(&self) -> ClientError {
        match self.state.exit_code {
            Some(code) => self.state.error(format!("has exited with code {code}")),
            None => self.state.error("is not connected: call connect() first"),
        }
    }

    async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), ClientError> {
        let Some(socket) = self.socket.as_mut() else {
            return Err(self.detached());
        };
        if socket.send(Message::Binary(frame.into())).await.is_err() {
            self.socket = None;
            return Err(self.detached());
        }
        Ok(())
    }

    /// Takes one message (or the close) from the socket; `false` when `deadline` passed first.
    async fn receive(&mut self, deadline: Option<Instant>) -> Result<bool, ClientError> {
        let Some(socket) = self.socket.as_mut() else {
            return Err(self.detached());
        };
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(next) => next,
                Err(_) => return Ok(false),
            },
            None => socket.next().await,
        };
        let (code, reason) = match next {
            Some(Ok(Message::Binary(bytes))) => {
                self.state.feed(&bytes);
                if self.state.exit_code.is_some() {
                    self.close().await;
                }
                return Ok(true);
            }
            Some(Ok(message @ Message::Close(_))) => {
                ws::close_details(&message).unwrap_or((None, String::new()))
            }
            Some(Ok(_)) => return Ok(true),
            Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed))
            | None => (None, String::new()),
            Some(Err(err)) => {
                self.socket = None;
                if let Some(error) = self.state.closed(None, "") {
                    return Err(ClientError::Connection {
                        what: format!("PTY session {}", self.session_id()),
                        detail: format!("{error}: {}", crate::transport::chain(&err)),
                    });
                }
                return Ok(true);
            }
        };
        self.socket = None;
        match self.state.closed(code, &reason) {
            Some(error) => Err(error),
            None => Ok(true),
        }
    }

    fn timed_out(&self, timeout: Option<Duration>, what: &str) -> ClientError {
        let after = timeout.unwrap_or_default();
        ClientError::Timeout {
            what: format!("PTY session {}", self.session_id()),
            detail: format!(
                "{what} within {}s (the output stays readable with read())",
                after.as_secs_f64()
            ),
            setting: TimeoutSetting::Call,
            after,
        }
    }
}
