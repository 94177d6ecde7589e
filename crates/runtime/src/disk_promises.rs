//! What the sandboxes' layers and volumes may still write, for disk admission.
//!
//! Measuring it stats every layer and volume image on disk: with 1000 sandboxes up
//! that was about 5 ms of every create, and it grew with each one. So it is
//! measured at most once per [`REMEASURE_AFTER`], and what was admitted since is
//! added to the measure. Images only shrink what they may still write as they are
//! written, so a measure that is up to that old over-counts, never under-counts; a
//! removed image is the exception, so removals ask for a new measure
//! ([`DiskPromises::forget`]) rather than keep refusing room that was freed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a measure stands.
pub const REMEASURE_AFTER: Duration = Duration::from_secs(1);

/// The last measure and what was admitted since.
#[derive(Debug, Default)]
pub struct DiskPromises {
    state: Mutex<Option<Measure>>,
}

#[derive(Debug, Clone, Copy)]
struct Measure {
    at: Instant,
    /// MiB the images on disk may still grow by, when measured.
    unwritten_mb: u64,
    /// MiB admitted since (images that may not be on disk yet).
    admitted_mb: u64,
}

impl DiskPromises {
    /// Admits `new_mb` more if all that is promised, with it, stays within
    /// `room_mb`; otherwise returns what would have been promised. `measure`
    /// is called (under the lock, so concurrent admissions add up) when the last
    /// measure is older than [`REMEASURE_AFTER`] at `now`, or was forgotten.
    pub fn admit(
        &self,
        new_mb: u64,
        room_mb: u64,
        now: Instant,
        measure: impl FnOnce() -> u64,
    ) -> Result<(), u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let current = match *state {
            Some(m) if now.saturating_duration_since(m.at) < REMEASURE_AFTER => m,
            _ => Measure {
                at: now,
                unwritten_mb: measure(),
                admitted_mb: 0,
            },
        };
        let promised = current
            .unwritten_mb
            .saturating_add(current.admitted_mb)
            .saturating_add(new_mb);
        if promised > room_mb {
            *state = Some(current);
            return Err(promised);
        }
        *state = Some(Measure {
            admitted_mb: current.admitted_mb.saturating_add(new_mb),
            ..current
        });
        Ok(())
    }

    /// Drops the measure: an image was removed (or grown), so the next
    /// admission measures again.
    pub fn forget(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admissions_add_up_until_the_measure_is_old_or_forgotten() {
        let promises = DiskPromises::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let measures = &std::cell::Cell::new(0);
        let measure = |mb: u64| {
            move || {
                measures.set(measures.get() + 1);
                mb
            }
        };
        assert_eq!(promises.admit(300, 1000, at(0), measure(500)), Ok(()));
        // Within the window the 300 just admitted counts, and nothing is measured.
        assert_eq!(promises.admit(300, 1000, at(10), measure(0)), Err(1100));
        assert_eq!(promises.admit(200, 1000, at(20), measure(0)), Ok(()));
        assert_eq!(measures.get(), 1);
        // A forgotten measure is taken again (a layer was removed).
        promises.forget();
        assert_eq!(promises.admit(300, 1000, at(30), measure(100)), Ok(()));
        assert_eq!(measures.get(), 2);
        // So is an old one.
        let late = t0 + REMEASURE_AFTER * 2;
        assert_eq!(promises.admit(100, 1000, late, measure(950)), Err(1050));
        assert_eq!(measures.get(), 3);
    }
}
