//! Timestamps on the wire: epoch milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as sent in `created_at`, `timestamp`, ….
pub type EpochMillis = i64;

/// The current time in epoch milliseconds (0 if the clock is before 1970).
pub fn now_millis() -> EpochMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
