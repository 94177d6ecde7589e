//! Killing a process that is not our child, race-free, and waiting for it to exit:
//! a pidfd pins the process, so a recycled pid can never be signalled by mistake.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// The start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`) of `pid`.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count from its last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A pidfd of process `pid` (`pidfd_open`).
pub(crate) fn open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let raw = i32::try_from(raw).map_err(|_| std::io::Error::other("a pidfd out of range"))?;
    // SAFETY: `raw` is a descriptor we just opened and own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends SIGKILL to the process of `pidfd`.
pub(crate) fn send_sigkill(pidfd: BorrowedFd<'_>) -> std::io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends SIGKILL to `pid` if it is still the process that started at `start`
/// (clock ticks after boot), then waits up to `timeout` for it to exit. Whether
/// that process is gone now (false: it had not exited when `timeout` ran out).
pub fn kill_and_wait(pid: i32, start: u64, timeout: Duration) -> std::io::Result<bool> {
    let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ESRCH);
    let fd = match open(pid) {
        Ok(fd) => fd,
        // Already gone: nothing to kill.
        Err(e) if gone(&e) => return Ok(true),
        Err(e) => return Err(e),
    };
    // Checked after the pidfd is open: from here the pid cannot be recycled.
    if start_time(pid) != Some(start) {
        return Ok(true);
    }
    match send_sigkill(fd.as_fd()) {
        Ok(()) => {}
        Err(e) if gone(&e) => return Ok(true),
        Err(e) => return Err(e),
    }
    // A pidfd becomes readable when its process exits.
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    let ready = unsafe { libc::poll(&mut pollfd, 1, ms) };
    if ready < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ready > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_a_process_that_is_not_a_child_and_waits_for_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        let start = start_time(pid).expect("start time");
        // A wrong start time (another process with a recycled pid) is left alone.
        // (It counts as gone: the process that started then is not there.)
        assert!(kill_and_wait(pid, start + 1, Duration::from_millis(10)).expect("no-op"));
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the wrong process was killed"
        );
        assert!(kill_and_wait(pid, start, Duration::from_secs(5)).expect("kill"));
        let status = child.wait().expect("wait");
        assert!(!status.success(), "sleep 30 was not killed");
        // Gone: nothing to do, no error.
        assert!(kill_and_wait(pid, start, Duration::from_millis(10)).expect("gone"));
    }
}
