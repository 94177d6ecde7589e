//! Progress events of a pull, sent to whoever follows it.

use std::time::{Duration, Instant};

use alcove_wire::image::{ImageProgressEvent, LayerProgress};
use tokio::sync::mpsc;

use crate::digest::Digest;

/// `downloading` events of one layer come at most this many bytes apart…
const EVERY_BYTES: u64 = 256 << 10;
/// …or this long apart, whichever comes first.
const EVERY: Duration = Duration::from_millis(100);

/// Where events go, if anywhere. A follower that went away does not stop
/// the pull: the image is still wanted in the store.
#[derive(Clone, Default)]
pub(crate) struct Progress {
    tx: Option<mpsc::Sender<ImageProgressEvent>>,
}

impl Progress {
    pub(crate) fn new(tx: Option<mpsc::Sender<ImageProgressEvent>>) -> Self {
        Self { tx }
    }

    /// Sends an event that matters (a status change), waiting for room.
    pub(crate) async fn send(&self, event: ImageProgressEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event).await;
        }
    }

    /// Sends a layer's new status.
    pub(crate) async fn layer(&self, digest: &Digest, status: &str, current: u64, total: u64) {
        self.send(ImageProgressEvent::Layer(layer(
            digest, status, current, total,
        )))
        .await;
    }
}

/// One layer's progress, as the wire has it.
pub(crate) fn layer(digest: &Digest, status: &str, current: u64, total: u64) -> LayerProgress {
    LayerProgress {
        digest: digest.to_string(),
        status: status.to_string(),
        current_bytes: current,
        total_bytes: total,
    }
}

/// The `downloading` events of one layer, throttled.
pub(crate) struct Download<'a> {
    progress: &'a Progress,
    digest: &'a Digest,
    total: u64,
    sent_bytes: u64,
    sent_at: Instant,
}

impl<'a> Download<'a> {
    pub(crate) fn new(progress: &'a Progress, digest: &'a Digest, total: u64) -> Self {
        Self {
            progress,
            digest,
            total,
            sent_bytes: 0,
            sent_at: Instant::now(),
        }
    }

    /// Notes that `current` bytes have arrived. A throttled event is dropped
    /// rather than waited for when the follower lags: the next one carries
    /// the newer count anyway, and a slow reader must not slow the download.
    pub(crate) fn advance(&mut self, current: u64) {
        let Some(tx) = &self.progress.tx else {
            return;
        };
        if current - self.sent_bytes < EVERY_BYTES && self.sent_at.elapsed() < EVERY {
            return;
        }
        self.sent_bytes = current;
        self.sent_at = Instant::now();
        let _ = tx.try_send(ImageProgressEvent::Layer(layer(
            self.digest,
            "downloading",
            current,
            self.total,
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn downloading_events_are_throttled() {
        let (tx, mut rx) = mpsc::channel(64);
        let progress = Progress::new(Some(tx));
        let digest = Digest::of(b"x");
        let mut download = Download::new(&progress, &digest, 10 << 20);
        // 1000 chunks of 4 KiB within well under 100 ms: one event per 256 KiB.
        for i in 1..=1000u64 {
            download.advance(i * 4096);
        }
        drop(progress);
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        assert!(
            (15..=17).contains(&events.len()),
            "{} events for 4000 KiB",
            events.len()
        );
    }
}
