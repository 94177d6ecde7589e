//! Reading a streamed answer: chunk by chunk, each read bounded, and split into lines.
//!
//! A file download bounds each read by the client's `timeout`; an event stream by
//! `stream_idle_timeout` (the agent's keep-alives arrive every 15 s, so a silent healthy stream
//! never trips it). Memory stays bounded: a chunk is handed on as it comes, and a line longer
//! than [`MAX_LINE_BYTES`] is an error instead of an ever-growing buffer.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ClientError, TimeoutSetting};

/// Longest line of an event stream (the agent's output lines are far shorter).
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// A streamed answer read with a bound on each read.
#[derive(Debug)]
pub(crate) struct Reader {
    response: reqwest::Response,
    idle: Option<Duration>,
    setting: TimeoutSetting,
    what: String,
}

impl Reader {
    /// Reads `response`, waiting at most `idle` (`None`: forever) for each chunk; a timeout is
    /// reported against `setting`.
    pub fn new(
        response: reqwest::Response,
        idle: Option<Duration>,
        setting: TimeoutSetting,
    ) -> Self {
        let what = format!("reading {}", response.url());
        Self {
            response,
            idle,
            setting,
            what,
        }
    }

    /// The next chunk, or `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        let read = self.response.chunk();
        let result = match self.idle {
            Some(idle) => tokio::time::timeout(idle, read)
                .await
                .map_err(|_| self.silence(idle))?,
            None => read.await,
        };
        result.map_err(|e| ClientError::Connection {
            what: self.what.clone(),
            detail: format!("the stream broke off: {}", crate::transport::chain(&e)),
        })
    }

    fn silence(&self, idle: Duration) -> ClientError {
        let secs = idle.as_secs_f64();
        let detail = match self.setting {
            TimeoutSetting::StreamIdleTimeout => format!(
                "the sandbox sent nothing for {secs}s (its agent sends a keep-alive every 15s, \
                 so it is stopped or unreachable); raise the client's stream_idle_timeout to \
                 wait longer, or set it to None to wait forever"
            ),
            _ => format!("no data for {secs}s; raise the client's timeout to wait longer"),
        };
        ClientError::Timeout {
            what: self.what.clone(),
            detail,
            setting: self.setting,
            after: idle,
        }
    }
}

/// Fails unless `response` is an event stream (`text/event-stream`).
pub(crate) fn expect_event_stream(response: &reqwest::Response) -> Result<(), ClientError> {
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type
        .to_ascii_lowercase()
        .starts_with("text/event-stream")
    {
        return Ok(());
    }
    Err(ClientError::decode(
        format!("the answer of {}", response.url().path()),
        format!("expected an event stream, got content-type {content_type:?}"),
    ))
}

/// Source of chunks for [`Lines`] (a [`Reader`], or a list of chunks in tests).
pub(crate) trait ChunkSource {
    /// The next chunk, or `None` at the end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, ClientError>> + Send;
}

impl ChunkSource for Reader {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.chunk().await
    }
}

/// Lines of a stream, split at `\n`, `\r\n` or `\r` (as SSE allows), without their endings.
#[derive(Debug)]
pub(crate) struct Lines<S> {
    source: S,
    buf: BytesMut,
    /// Bytes of `buf` known to hold no line ending.
    scanned: usize,
    /// The last line ended with `\r`: a `\n` right after it belongs to that ending.
    skip_lf: bool,
    done: bool,
}

impl<S: ChunkSource> Lines<S> {
    /// Splits the chunks of `source`.
    pub fn new(source: S) -> Self {
        Self {
            source,
            buf: BytesMut::new(),
            scanned: 0,
            skip_lf: false,
            done: false,
        }
    }

    /// The next line, or `None` at the end of the stream.
    pub async fn next_line(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            if self.skip_lf && !self.buf.is_empty() {
                if self.buf[0] == b'\n' {
                    self.buf.advance(1);
                }
                self.skip_lf = false;
            }
            let unscanned = &self.buf[self.scanned..];
            if let Some(offset) = unscanned.iter().position(|b| *b == b'\n' || *b == b'\r') {
                let end = self.scanned + offset;
                let line = self.buf.split_to(end);
                self.skip_lf = self.buf[0] == b'\r';
                self.buf.advance(1);
                self.scanned = 0;
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(ClientError::decode(
                    "an event stream",
                    format!("a line longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = self.buf.split();
                self.scanned = 0;
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            match self.source.next_chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Chunks handed out one by one.
    pub(crate) struct Chunks(pub VecDeque<Bytes>);

    impl Chunks {
        pub fn of(parts: &[&str]) -> Self {
            Self(
                parts
                    .iter()
                    .map(|p| Bytes::copy_from_slice(p.as_bytes()))
                    .collect(),
            )
        }
    }

    impl ChunkSource for Chunks {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
            Ok(self.0.pop_front())
        }
    }

    async fn all(parts: &[&str]) -> Vec<String> {
        let mut lines = Lines::new(Chunks::of(parts));
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.expect("reads") {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn lines_split_at_every_ending_across_chunks() {
        assert_eq!(all(&["a\nb\r\nc\rd"]).await, ["a", "b", "c", "d"]);
        assert_eq!(all(&["a\r", "\nb\n"]).await, ["a", "b"]);
        assert_eq!(all(&["da", "ta: x", "\n\n"]).await, ["data: x", ""]);
        assert_eq!(all(&["\r\r\n"]).await, ["", ""]);
        assert!(all(&[]).await.is_empty());
        assert_eq!(all(&["é\n"]).await, ["é"]);
    }
}
