//! Requests in flight through the proxy, per sandbox, so a suspend can let
//! them finish before the dump (long streams are closed by it instead).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts proxied requests per sandbox.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// Held for the life of one proxied request (its response body included).
#[derive(Debug)]
pub struct InFlightGuard {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    id: String,
}

impl InFlight {
    /// Marks a request to sandbox `id` as started until the guard drops.
    pub fn enter(&self, id: &str) -> InFlightGuard {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(id.to_string()).or_default() += 1;
        InFlightGuard {
            counts: Arc::clone(&self.counts),
            id: id.to_string(),
        }
    }

    /// Requests to `id` in flight now.
    pub fn count(&self, id: &str) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(id).copied().unwrap_or(0)
    }

    /// Waits until no request to `id` is in flight, or `grace` has passed.
    /// Returns how many were still running.
    pub async fn drain(&self, id: &str, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        loop {
            let n = self.count(id);
            if n == 0 || Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_guards_or_gives_up() {
        let inflight = InFlight::default();
        let a = inflight.enter("x");
        let b = inflight.enter("x");
        assert_eq!(inflight.count("x"), 2);
        drop(a);
        let waiting = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.drain("x", Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "drain must wait for the open request"
        );
        drop(b);
        assert_eq!(waiting.await.expect("join"), 0);
        let _c = inflight.enter("y");
        assert_eq!(inflight.drain("y", Duration::from_millis(20)).await, 1);
        assert_eq!(inflight.count("x"), 0);
    }
}
