//! PTY sessions (docs/protocol/sandbox-api.md, PTY sessions): the JSON bodies of
//! `/api/v1/pty…` and the binary frame format of the session WebSocket
//! (`/api/v1/pty/{session_id}/ws`, docs/protocol/streaming.md, PTY WebSocket).
//!
//! Frames are binary WebSocket messages whose first byte is an opcode:
//!
//! | direction | opcode | payload |
//! |---|---|---|
//! | client → agent | `0x00` input | bytes written to the terminal |
//! | client → agent | `0x01` resize | cols (u16 BE), rows (u16 BE) |
//! | client → agent | `0x02` ready | none; output is held back until it arrives |
//! | agent → client | `0x00` output | bytes the terminal produced |
//! | agent → client | `0x03` exit | exit code (i32 BE; 128+signal after a signal death) |
//!
//! After the exit frame the agent closes the socket with code 1000 and reason `exit:<code>`.
//! Text frames carry nothing in either direction. Encoding and parsing of both directions live
//! here so that the agent and Rust clients share one definition.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

use crate::process::UserSpec;
use crate::time::{EpochMillis, EpochMillisSchema};

/// Header carrying the session token on the WebSocket upgrade (the SDKs also send `?token=`).
pub const TOKEN_HEADER: &str = "x-pty-token";

/// Rows of a session created without `rows`.
pub const DEFAULT_ROWS: u16 = 24;

/// Columns of a session created without `cols`.
pub const DEFAULT_COLS: u16 = 80;

/// Largest accepted number of rows or columns (the smallest is 1).
pub const MAX_DIMENSION: u16 = 1000;

/// Opcode of client input and agent output frames.
pub const OP_DATA: u8 = 0x00;
/// Opcode of a client resize frame.
pub const OP_RESIZE: u8 = 0x01;
/// Opcode of the client's READY frame.
pub const OP_READY: u8 = 0x02;
/// Opcode of the agent's exit frame.
pub const OP_EXIT: u8 = 0x03;

/// Close code of every close the agent initiates on purpose (exit, termination).
pub const CLOSE_NORMAL: u16 = 1000;

/// Close code used when a newer connection to the same session replaces this one.
pub const CLOSE_REPLACED: u16 = 4000;

/// Prefix of the close reason after the process exited: `exit:<code>`.
pub const EXIT_REASON_PREFIX: &str = "exit:";

/// Close reason when the session was deleted or reaped while a client was attached; the SDKs
/// turn exactly this text into "PTY session terminated".
pub const TERMINATED_REASON: &str = "session terminated";

/// Close reason when a newer connection to the same session took over.
pub const REPLACED_REASON: &str = "replaced by a newer connection to this session";

/// Whether `n` is an accepted number of rows or columns.
pub fn valid_dimension(n: u16) -> bool {
    (1..=MAX_DIMENSION).contains(&n)
}

/// The code of an exit frame: the exit code, or 128+signal for a signal death (as shells
/// report it); -1 when neither is known.
pub fn exit_code(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// The close reason sent after the exit frame.
pub fn exit_reason(code: i32) -> String {
    format!("{EXIT_REASON_PREFIX}{code}")
}

/// The exit code in an `exit:<code>` close reason.
pub fn parse_exit_reason(reason: &str) -> Option<i32> {
    reason.strip_prefix(EXIT_REASON_PREFIX)?.parse().ok()
}

/// Deserializes `null` as the type's default, so `"args": null` means "no args".
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn default_rows() -> u16 {
    DEFAULT_ROWS
}

fn default_cols() -> u16 {
    DEFAULT_COLS
}

/// A number of rows or columns, 1 to [`MAX_DIMENSION`] (built here because the derive's
/// `maximum` takes literals only).
fn dimension(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        .minimum(Some(1))
        .maximum(Some(MAX_DIMENSION))
        .description(Some(description))
}

fn rows_schema() -> Object {
    dimension("Terminal height.")
        .default(Some(DEFAULT_ROWS.into()))
        .build()
}

fn cols_schema() -> Object {
    dimension("Terminal width.")
        .default(Some(DEFAULT_COLS.into()))
        .build()
}

fn new_rows_schema() -> Object {
    dimension("New height.").build()
}

fn new_cols_schema() -> Object {
    dimension("New width.").build()
}

/// Body of `POST /api/v1/pty`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatePtyRequest {
    /// Program to execute: a path, or a name looked up in `PATH`.
    pub command: String,
    /// Arguments after the program name.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = json!([]))]
    pub args: Vec<String>,
    /// Variables added to (and overriding) the default environment; `TERM` defaults to
    /// `xterm-256color`.
    #[serde(default, deserialize_with = "null_as_default")]
    #[schema(nullable = true, default = json!({}))]
    pub env: BTreeMap<String, String>,
    /// Working directory; defaults to the user's home, else `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Terminal height, 1 to [`MAX_DIMENSION`].
    #[serde(default = "default_rows")]
    #[schema(schema_with = rows_schema)]
    pub rows: u16,
    /// Terminal width, 1 to [`MAX_DIMENSION`].
    #[serde(default = "default_cols")]
    #[schema(schema_with = cols_schema)]
    pub cols: u16,
    /// Who to run as; absent means the agent's own user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserSpec>,
}

/// Answer of `POST /api/v1/pty` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatePtyResponse {
    /// Id to use in `/api/v1/pty/{session_id}…`.
    pub session_id: String,
    /// Secret the WebSocket upgrade must present (`?token=` or `X-PTY-Token`).
    pub token: String,
}

/// A session as reported by `GET /api/v1/pty[/{session_id}]` (never includes the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PtySessionInfo {
    /// Session id.
    pub session_id: String,
    /// Process id of the command (session leader of the terminal).
    pub pid: u32,
    /// The command as requested.
    pub command: String,
    /// The arguments as requested.
    #[serde(default)]
    #[schema(required = true)]
    pub args: Vec<String>,
    /// Current terminal height.
    pub rows: u16,
    /// Current terminal width.
    pub cols: u16,
    /// Creation time, epoch milliseconds.
    #[schema(value_type = EpochMillisSchema)]
    pub created_at: EpochMillis,
    /// Exit time of the command, epoch milliseconds.
    #[serde(default)]
    #[schema(value_type = Option<EpochMillisSchema>, required = true)]
    pub ended_at: Option<EpochMillis>,
    /// Exit code of the command (128+signal after a signal death), once it exited.
    #[serde(default)]
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    /// Whether the command is still running.
    pub is_alive: bool,
    /// Whether a WebSocket client is attached.
    pub attached: bool,
}

/// Body of `GET /api/v1/pty`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PtySessionList {
    /// Every session the agent still keeps.
    pub sessions: Vec<PtySessionInfo>,
}

/// Body of `POST /api/v1/pty/{session_id}/resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResizeRequest {
    /// New width, 1 to [`MAX_DIMENSION`].
    #[schema(schema_with = new_cols_schema)]
    pub cols: u16,
    /// New height, 1 to [`MAX_DIMENSION`].
    #[schema(schema_with = new_rows_schema)]
    pub rows: u16,
}

/// A frame the client sends on the session WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// Bytes typed into the terminal.
    Input(&'a [u8]),
    /// New terminal size.
    Resize {
        /// Width.
        cols: u16,
        /// Height.
        rows: u16,
    },
    /// The client is ready for output.
    Ready,
}

impl<'a> ClientFrame<'a> {
    /// Parses a binary message; `None` for an empty message, an unknown opcode or a short
    /// resize (extra bytes after a resize or ready are ignored).
    pub fn parse(message: &'a [u8]) -> Option<Self> {
        let (&op, payload) = message.split_first()?;
        match op {
            OP_DATA => Some(Self::Input(payload)),
            OP_RESIZE => {
                let cols = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
                let rows = u16::from_be_bytes([*payload.get(2)?, *payload.get(3)?]);
                Some(Self::Resize { cols, rows })
            }
            OP_READY => Some(Self::Ready),
            _ => None,
        }
    }

    /// The binary message carrying this frame.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::Input(bytes) => data_frame(bytes),
            Self::Resize { cols, rows } => {
                let [c0, c1] = cols.to_be_bytes();
                let [r0, r1] = rows.to_be_bytes();
                vec![OP_RESIZE, c0, c1, r0, r1]
            }
            Self::Ready => vec![OP_READY],
        }
    }
}

/// A frame the agent sends on the session WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// Bytes the terminal produced.
    Output(&'a [u8]),
    /// The command exited with this code.
    Exit(i32),
}

impl<'a> ServerFrame<'a> {
    /// Parses a binary message; `None` for an empty message, an unknown opcode or a short
    /// exit frame.
    pub fn parse(message: &'a [u8]) -> Option<Self> {
        let (&op, payload) = message.split_first()?;
        match op {
            OP_DATA => Some(Self::Output(payload)),
            OP_EXIT => Some(Self::Exit(i32::from_be_bytes(
                payload.get(..4)?.try_into().ok()?,
            ))),
            _ => None,
        }
    }

    /// The binary message carrying this frame.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::Output(bytes) => data_frame(bytes),
            Self::Exit(code) => {
                let mut frame = vec![OP_EXIT];
                frame.extend_from_slice(&code.to_be_bytes());
                frame
            }
        }
    }
}

/// `0x00` followed by `bytes`.
fn data_frame(bytes: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(bytes.len() + 1);
    frame.push(OP_DATA);
    frame.extend_from_slice(bytes);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_round_trip() {
        for frame in [
            ClientFrame::Input(b"ls -l\n"),
            ClientFrame::Input(b""),
            ClientFrame::Resize {
                cols: 120,
                rows: 40,
            },
            ClientFrame::Ready,
        ] {
            assert_eq!(ClientFrame::parse(&frame.encode()), Some(frame));
        }
        // The captured SDK resize: cols 120 (0x0078), rows 40 (0x0028).
        assert_eq!(
            ClientFrame::parse(&[0x01, 0x00, 0x78, 0x00, 0x28]),
            Some(ClientFrame::Resize {
                cols: 120,
                rows: 40
            })
        );
        assert_eq!(ClientFrame::parse(&[]), None);
        assert_eq!(ClientFrame::parse(&[0x01, 0x00, 0x78]), None);
        assert_eq!(ClientFrame::parse(&[0x07, 1, 2]), None);
    }

    #[test]
    fn server_frames_round_trip() {
        assert_eq!(ServerFrame::Exit(-1).encode(), [3, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(ServerFrame::Exit(137).encode(), [3, 0, 0, 0, 137]);
        for frame in [ServerFrame::Output(b"$ "), ServerFrame::Exit(2)] {
            assert_eq!(ServerFrame::parse(&frame.encode()), Some(frame));
        }
        assert_eq!(ServerFrame::parse(&[3, 0, 0]), None);
    }

    #[test]
    fn exit_codes_and_reasons() {
        assert_eq!(exit_code(Some(3), None), 3);
        assert_eq!(exit_code(None, Some(9)), 137);
        assert_eq!(exit_reason(137), "exit:137");
        assert_eq!(parse_exit_reason("exit:-1"), Some(-1));
        assert_eq!(parse_exit_reason(TERMINATED_REASON), None);
    }

    #[test]
    fn create_request_defaults_and_nulls() {
        let req: CreatePtyRequest =
            serde_json::from_str(r#"{"command":"bash","args":null,"env":null}"#).expect("parses");
        assert_eq!((req.rows, req.cols), (DEFAULT_ROWS, DEFAULT_COLS));
        assert!(req.args.is_empty() && req.env.is_empty());
        assert!(valid_dimension(1) && valid_dimension(MAX_DIMENSION));
        assert!(!valid_dimension(0) && !valid_dimension(MAX_DIMENSION + 1));
    }
}
