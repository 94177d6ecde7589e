//! What a PTY session has received: output not read yet, and the exit code once known.
//!
//! No I/O here: the session feeds every message and the socket's close, and reads take from
//! it. The rules are the Python SDK's `PtyState`: an exit frame or an `exit:<code>` close
//! reason records the exit; `session terminated` and any other close before the exit are
//! errors.

use alcove_wire::pty::{EXIT_REASON_PREFIX, ServerFrame, TERMINATED_REASON};
use bytes::{Buf, BytesMut};

use crate::error::ClientError;

/// How much of the unread output an error message quotes.
const TAIL_BYTES: usize = 200;

/// Output received but not read yet, and the exit code.
#[derive(Debug)]
pub(crate) struct PtyState {
    pub session_id: String,
    pub buffer: BytesMut,
    pub exit_code: Option<i32>,
}

impl PtyState {
    pub fn new(session_id: &str) -> Self {
        Self {
            session_id: session_id.to_string(),
            buffer: BytesMut::new(),
            exit_code: None,
        }
    }

    /// Takes one binary message (unknown and empty frames are ignored).
    pub fn feed(&mut self, message: &[u8]) {
        match ServerFrame::parse(message) {
            Some(ServerFrame::Output(bytes)) => self.buffer.extend_from_slice(bytes),
            Some(ServerFrame::Exit(code)) => {
                self.exit_code.get_or_insert(code);
            }
            None => {}
        }
    }

    /// Takes the close of the socket; returns the error it means, if any.
    pub fn closed(&mut self, code: Option<u16>, reason: &str) -> Option<ClientError> {
        if self.exit_code.is_none() {
            // An unreadable code after the prefix still says the command exited.
            self.exit_code = reason
                .strip_prefix(EXIT_REASON_PREFIX)
                .map(|rest| rest.trim().parse().unwrap_or(-1));
        }
        if self.exit_code.is_some() {
            return None;
        }
        if reason == TERMINATED_REASON {
            return Some(self.error("terminated"));
        }
        let detail = match code {
            Some(code) => format!("{code} {reason}").trim().to_string(),
            None => "no close frame".to_string(),
        };
        Some(ClientError::Connection {
            what: format!("PTY session {}", self.session_id),
            detail: format!("socket closed unexpectedly ({detail})"),
        })
    }

    /// All unread output.
    pub fn take(&mut self) -> Vec<u8> {
        self.buffer.split().to_vec()
    }

    /// Unread output up to and including `needle`, or `None` while it has not arrived.
    pub fn take_until(&mut self, needle: &[u8]) -> Option<Vec<u8>> {
        let index = self
            .buffer
            .windows(needle.len())
            .position(|window| window == needle)?;
        let found = self.buffer.split_to(index + needle.len()).to_vec();
        Some(found)
    }

    /// Quotes the end of the unread output for an error message.
    pub fn tail(&self) -> String {
        let mut tail = &self.buffer[..];
        if tail.len() > TAIL_BYTES {
            tail.advance(tail.len() - TAIL_BYTES);
        }
        if tail.is_empty() {
            "; no unread output".to_string()
        } else {
            format!("; last output: {:?}", String::from_utf8_lossy(tail))
        }
    }

    /// A [`ClientError::Pty`] about this session.
    pub fn error(&self, message: impl Into<String>) -> ClientError {
        ClientError::Pty {
            session_id: self.session_id.clone(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_exit_frames_are_kept() {
        let mut state = PtyState::new("s");
        state.feed(&ServerFrame::Output(b"hello $ ").encode());
        state.feed(&[]);
        state.feed(&[0x07, 1]);
        assert_eq!(state.take_until(b"$ ").as_deref(), Some(&b"hello $ "[..]));
        assert_eq!(state.take_until(b"$ "), None);
        state.feed(&ServerFrame::Output(b"rest").encode());
        state.feed(&ServerFrame::Exit(3).encode());
        state.feed(&ServerFrame::Exit(4).encode());
        assert_eq!(state.exit_code, Some(3));
        assert_eq!(state.take(), b"rest");
        assert!(state.closed(Some(1000), "exit:3").is_none());
    }

    #[test]
    fn the_close_reason_tells_exit_from_termination() {
        let mut state = PtyState::new("s");
        assert!(state.closed(Some(1000), "exit:137").is_none());
        assert_eq!(state.exit_code, Some(137));
        let mut state = PtyState::new("s");
        assert!(state.closed(Some(1000), "exit:??").is_none());
        assert_eq!(state.exit_code, Some(-1));
        let mut state = PtyState::new("s");
        let err = state
            .closed(Some(1000), TERMINATED_REASON)
            .expect("an error");
        assert!(matches!(err, ClientError::Pty { .. }), "{err}");
        let err = PtyState::new("s").closed(None, "").expect("an error");
        assert!(matches!(err, ClientError::Connection { .. }), "{err}");
    }
}
