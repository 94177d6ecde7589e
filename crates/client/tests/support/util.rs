//! Helpers of the end-to-end scenarios: polling, large local files, a raw HTTP fetch.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls `probe` every 200 ms until it gives a value, for at most `limit`.
pub async fn eventually<T, Fut>(what: &str, limit: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes `size` bytes of a xorshift sequence (incompressible, position-dependent).
pub async fn write_pattern(path: &Path, size: usize) {
    let mut file = tokio::fs::File::create(path).await.expect("creating");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..size / chunk.len() {
        for word in chunk.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        file.write_all(&chunk).await.expect("writing");
    }
    file.flush().await.expect("flushing");
}

pub async fn same_content(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        tokio::fs::File::open(a).await.expect("opening"),
        tokio::fs::File::open(b).await.expect("opening"),
    );
    let (mut left, mut right) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut left).await.expect("reading");
        if n == 0 {
            return b.read(&mut right).await.expect("reading") == 0;
        }
        if b.read_exact(&mut right[..n]).await.is_err() || left[..n] != right[..n] {
            return false;
        }
    }
}

/// `GET /index.html` over `addr`; `None` while nothing answers in the sandbox.
pub async fn fetch(addr: std::net::SocketAddr) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: sandbox\r\n\r\n")
        .await
        .ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}
