//! A cloneable shutdown signal: a `watch` channel that flips to true once.

use tokio::sync::watch;

/// Resolves when shutdown starts.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// Starts shutdown for every [`Shutdown`] made from it.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A linked trigger and signal.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Starts shutdown.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Waits for the signal (or for the trigger to be dropped).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}
