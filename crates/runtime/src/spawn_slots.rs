//! Three low descriptor numbers kept for the stdio of a child being started, so that the
//! child can share the server's descriptor table until its `exec` and keep only a handful.
//!
//! A child started by `clone` without `CLONE_FILES` copies the server's whole descriptor
//! table (an agent connection per sandbox, pidfds, logs: about a thousand entries with
//! 1000 sandboxes up), and its `exec` closes every copy again: perf put about 1.4 ms of
//! each create there with 1000 up. Started with `CLONE_FILES`, the child shares the table
//! until it calls `close_range(first, ~0, CLOSE_RANGE_UNSHARE)`, which gives it a table of
//! its own holding only the descriptors below `first`: the server's stdio and the slots
//! reserved here at start-up, before the server opens anything else. The child's stdio is
//! put into the slots before the `clone` (under a lock: the table is shared, and so are the
//! slots) and moved to 0–2 after the unshare; the slots get `/dev/null` back once the child
//! has called `exec`. Without a reservation, children copy the table as before.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

struct Reserved {
    slots: [OwnedFd; 3],
    null: OwnedFd,
    lock: Mutex<()>,
}

static RESERVED: OnceLock<Reserved> = OnceLock::new();

/// Reserves the slots: the three lowest free descriptor numbers, holding `/dev/null`.
/// Call it first thing in `main`, while those numbers are low. Later calls do nothing.
pub fn reserve() -> std::io::Result<()> {
    if RESERVED.get().is_some() {
        return Ok(());
    }
    let null = OwnedFd::from(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?,
    );
    let slots = [null.try_clone()?, null.try_clone()?, null.try_clone()?];
    let _ = RESERVED.set(Reserved {
        slots,
        null,
        lock: Mutex::new(()),
    });
    Ok(())
}

/// A child's stdio placed in the slots; the slots are the caller's until this is dropped,
/// which must wait until the child has called `exec` (or died).
pub(crate) struct Staged {
    guard: Option<MutexGuard<'static, ()>>,
    slots: [RawFd; 3],
    null: RawFd,
}

impl Staged {
    /// The descriptors the child takes its stdio from.
    pub(crate) fn slots(&self) -> [RawFd; 3] {
        self.slots
    }

    /// The first descriptor the child does not keep when it unshares the table.
    pub(crate) fn unshare_from(&self) -> RawFd {
        self.slots.iter().copied().max().unwrap_or(2) + 1
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for slot in self.slots {
            // SAFETY: both are open descriptors of this process; the slot is ours.
            unsafe { libc::dup3(self.null, slot, libc::O_CLOEXEC) };
        }
        drop(self.guard.take());
    }
}

/// Puts `stdio` (the child's ends) into the slots, close-on-exec, if slots were reserved.
pub(crate) fn stage(stdio: [RawFd; 3]) -> std::io::Result<Option<Staged>> {
    let Some(reserved) = RESERVED.get() else {
        return Ok(None);
    };
    let guard = reserved.lock.lock().unwrap_or_else(PoisonError::into_inner);
    let staged = Staged {
        guard: Some(guard),
        slots: reserved.slots.each_ref().map(AsRawFd::as_raw_fd),
        null: reserved.null.as_raw_fd(),
    };
    for (slot, source) in staged.slots.iter().zip(stdio) {
        // SAFETY: `source` is open (the caller holds it); the slot is ours under the lock.
        if unsafe { libc::dup3(source, *slot, libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(Some(staged))
}

/// Whether every slot holds `/dev/null` (no child being started meanwhile).
#[cfg(test)]
pub(crate) fn slots_hold_null() -> bool {
    let Some(reserved) = RESERVED.get() else {
        return false;
    };
    let _guard = reserved.lock.lock().unwrap_or_else(PoisonError::into_inner);
    reserved.slots.iter().all(|slot| {
        std::fs::read_link(format!("/proc/self/fd/{}", slot.as_raw_fd()))
            .is_ok_and(|target| target == std::path::Path::new("/dev/null"))
    })
}
