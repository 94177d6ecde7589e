//! WebSocket helpers shared by the PTY and tunnel routes.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};

/// How long the agent waits for the client's half of a closing handshake.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends a close frame (an error means the client is gone already; nothing to do).
pub async fn close(sink: &mut SplitSink<WebSocket, Message>, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

/// Completes the closing handshake: answers a client's close (or flushes ours) and reads
/// until the client's side ends, so the connection is not torn down under frames the client
/// has not read yet (a reset could discard them).
pub async fn finish_close(
    mut sink: SplitSink<WebSocket, Message>,
    mut stream: SplitStream<WebSocket>,
) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
        let _ = sink.close().await;
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}
