//! Server-sent events: encoding events and turning a channel of encoded chunks into a body
//! stream that batches and keeps the connection alive.
//!
//! Each event is `event: <name>\ndata: <one-line JSON>\n\n`. Clients recognise events by the
//! shape of their data (docs/protocol/streaming.md); the names (`started`, `output`, `exit`,
//! `eof`) are for humans and indexify compatibility.

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

/// Content type of every SSE answer; the SDKs check it.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// A silent stream sends a comment this often, so proxies and clients do not time it out.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Upper bound of one body chunk when several queued chunks are merged.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// An SSE comment; clients skip it.
pub const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// Appends one event to `buf`.
pub fn push_event(buf: &mut Vec<u8>, name: &str, data: &impl Serialize) {
    push_event_with_id(buf, name, None, data);
}

/// Appends one event to `buf`, with an `id` field when `id` is given (the SSE "last event ID"
/// a client sends back as `Last-Event-ID` to go on from there).
pub fn push_event_with_id(buf: &mut Vec<u8>, name: &str, id: Option<u64>, data: &impl Serialize) {
    let start = buf.len();
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    if let Some(id) = id {
        // Writing into a Vec cannot fail.
        let _ = write!(buf, "\nid: {id}");
    }
    buf.extend_from_slice(b"\ndata: ");
    // serde_json escapes newlines inside strings, so the data is always one line.
    if serde_json::to_writer(&mut *buf, data).is_err() {
        // Only maps with non-string keys fail; never the wire types. Drop the half event.
        buf.truncate(start);
        return;
    }
    buf.extend_from_slice(b"\n\n");
}

/// One event as bytes.
pub fn event(name: &str, data: &impl Serialize) -> Bytes {
    let mut buf = Vec::with_capacity(128);
    push_event(&mut buf, name, data);
    Bytes::from(buf)
}

/// A body stream of `rx`'s chunks: chunks already queued are merged into one write (so a
/// burst of output costs few syscalls), and a keep-alive comment is sent after
/// [`KEEPALIVE_INTERVAL`] of silence. Ends when every sender is gone.
pub fn channel_stream(rx: mpsc::Receiver<Bytes>) -> impl Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move {
        let first = match tokio::time::timeout(KEEPALIVE_INTERVAL, rx.recv()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return None,
            Err(_silent) => return Some((Ok(Bytes::from_static(KEEPALIVE)), rx)),
        };
        let mut merged: Option<BytesMut> = None;
        while merged.as_ref().map_or(first.len(), BytesMut::len) < MAX_BATCH_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            merged
                .get_or_insert_with(|| BytesMut::from(&first[..]))
                .extend_from_slice(&next);
        }
        let chunk = merged.map_or(first, BytesMut::freeze);
        Some((Ok(chunk), rx))
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[test]
    fn events_are_single_data_lines() {
        let bytes = event("output", &serde_json::json!({"line": "a\nb"}));
        assert_eq!(&bytes[..], b"event: output\ndata: {\"line\":\"a\\nb\"}\n\n");
    }

    #[tokio::test]
    async fn queued_chunks_are_merged_and_stream_ends() {
        let (tx, rx) = mpsc::channel(8);
        for part in ["a", "b", "c"] {
            tx.send(Bytes::from(part)).await.expect("send");
        }
        drop(tx);
        let chunks: Vec<_> = channel_stream(rx).collect().await;
        let chunks: Vec<Bytes> = chunks.into_iter().map(|c| c.expect("infallible")).collect();
        assert_eq!(chunks, [Bytes::from("abc")]);
    }
}
