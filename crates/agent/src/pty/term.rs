//! The pseudo-terminal device: opening a master/slave pair and doing I/O on the master.
//!
//! Plain syscalls rather than glibc's `openpty`/`grantpt`: in a static glibc binary those may
//! look up the `tty` group through NSS, and devpts already gives the slave the right owner
//! and mode. The slave is opened through the master (`TIOCGPTPEER`, Linux 4.13+), which needs
//! no path lookup in the sandbox's `/dev/pts`; older kernels fall back to `/dev/pts/<n>`.
//!
//! Every descriptor is close-on-exec, so only the child the slave is handed to (as its
//! standard streams) keeps it. The master is non-blocking and registered with tokio; a read
//! fails with `EIO` once every holder of the slave side has closed it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Both ends of a new terminal.
#[derive(Debug)]
pub struct PtyPair {
    /// The agent's end: reads what the program writes, writes what the user types.
    pub master: OwnedFd,
    /// The program's end.
    pub slave: OwnedFd,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens a terminal pair sized `rows` × `cols`.
pub fn open(rows: u16, cols: u16) -> io::Result<PtyPair> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: posix_openpt takes flags only and returns a new descriptor or -1.
    let fd = check(unsafe { libc::posix_openpt(flags) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which is valid for the call.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    let slave = open_slave(&master, flags)?;
    set_size(&master, rows, cols)?;
    Ok(PtyPair { master, slave })
}

fn open_slave(master: &OwnedFd, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes the open flags as an integer and returns a new descriptor.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if rc >= 0 {
        // SAFETY: a fresh descriptor nobody else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(rc) });
    }
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer, valid for the call.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) })?;
    let path = CString::new(format!("/dev/pts/{number}")).map_err(io::Error::other)?;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = check(unsafe { libc::open(path.as_ptr(), flags) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the window size of the terminal `fd` belongs to (either end); the kernel sends
/// SIGWINCH to the terminal's foreground process group.
pub fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize through the pointer, valid for the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) })?;
    Ok(())
}

/// The master side, registered with the tokio runtime it was created in.
#[derive(Debug)]
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

impl Master {
    /// Makes `fd` non-blocking and registers it. Must run inside a tokio runtime.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no pointers involved.
        unsafe {
            let flags = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
            check(libc::fcntl(
                fd.as_raw_fd(),
                libc::F_SETFL,
                flags | libc::O_NONBLOCK,
            ))?;
        }
        let interest = Interest::READABLE | Interest::WRITABLE;
        // SAFETY: an OwnedFd is open, stays open while the AsyncFd owns it, and always
        // returns the same descriptor.
        let fd = unsafe { AsyncFd::register_with_interest(fd, interest) }?;
        Ok(Self { fd })
    }

    /// Reads what the program wrote; `EIO` means every holder of the slave side closed it.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            let result = ready.try_io(|fd| {
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            });
            match result {
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(read) => return read,
                Err(_would_block) => {}
            }
        }
    }

    /// Writes all of `bytes` as terminal input, waiting while the terminal's input queue is
    /// full (the program is not reading).
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut ready = self.fd.writable().await?;
            let result = ready.try_io(|fd| {
                // SAFETY: `bytes` is valid for reads of `bytes.len()` bytes.
                let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            });
            match result {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Sets the terminal's window size.
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        set_size(self.fd.get_ref(), rows, cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_pair_with_the_requested_size() {
        let pair = open(33, 101).expect("open pty");
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize through the pointer, valid for the call.
        let rc = unsafe { libc::ioctl(pair.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
        assert_eq!(rc, 0);
        assert_eq!((size.ws_row, size.ws_col), (33, 101));
        // SAFETY: isatty only inspects the descriptor.
        assert_eq!(unsafe { libc::isatty(pair.slave.as_raw_fd()) }, 1);
    }

    #[tokio::test]
    async fn master_reads_eio_after_the_slave_closes() {
        let pair = open(24, 80).expect("open pty");
        let master = Master::new(pair.master).expect("register");
        let text = b"ping\n";
        // SAFETY: writing a valid buffer to a descriptor we own.
        let n = unsafe { libc::write(pair.slave.as_raw_fd(), text.as_ptr().cast(), text.len()) };
        assert_eq!(n, 5);
        drop(pair.slave);
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        let err = loop {
            match master.read(&mut buf).await {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(err) => break err,
            }
        };
        // The terminal turns "\n" into "\r\n" on output.
        assert_eq!(got, b"ping\r\n");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
    }
}
