//! Standard input as chunks on a channel: a thread blocks on `read(2)` so the async side never
//! does (tokio's own stdin is a blocking read on a thread too, but cannot be given up on: this
//! one is simply left behind when the command ends).

use std::io::Read;

use tokio::sync::mpsc;

/// Bytes read at most per chunk.
const CHUNK: usize = 64 * 1024;

/// Chunks of standard input; the channel closes at end of input (or a read error).
pub fn chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; CHUNK];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        });
    // Without the thread the channel is closed at once: no input, which is what it can give.
    drop(spawned);
    rx
}
