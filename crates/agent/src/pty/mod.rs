//! PTY sessions (docs/protocol/sandbox-api.md, PTY sessions): the table of sessions and their
//! creation.
//!
//! A session's command runs on the slave side of a new terminal, started through the same
//! [`Launcher`] as every other process (user switching, environment rules, `oom_score_adj`,
//! its own session and process group, the reaper), with the terminal as its standard streams
//! and controlling terminal. `TERM` is `xterm-256color` unless the request's `env` sets it.
//!
//! Sessions stay in the table after their process exits, so a client can still attach and
//! get the remaining output and the exit frame, until `DELETE` or the idle rules of
//! [`session`] remove them. At most [`MAX_SESSIONS`] exist at once.

pub mod queue;
pub mod session;
pub mod term;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use alcove_wire::process::{OutputMode, StdinMode};
use alcove_wire::pty::{self, CreatePtyRequest, CreatePtyResponse, PtySessionInfo};

use crate::process::spawn::{LaunchError, LaunchSpec, Launcher};
use crate::process::tree;
use session::{PtySession, SessionLimits, SessionMap, SessionSpec, lock};

/// Sessions that may exist at once (each holds a terminal and usually a shell).
pub const MAX_SESSIONS: usize = 128;

/// `TERM` of a session whose request does not set one.
pub const DEFAULT_TERM: &str = "xterm-256color";

/// Why a PTY operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// No session has this id.
    #[error("PTY session {0} not found")]
    NotFound(String),
    /// Rows or columns out of range.
    #[error(
        "invalid terminal size {rows}x{cols}: rows and cols must be 1 to {max}",
        max = pty::MAX_DIMENSION
    )]
    InvalidSize {
        /// Requested rows.
        rows: u16,
        /// Requested columns.
        cols: u16,
    },
    /// [`MAX_SESSIONS`] sessions exist already.
    #[error("too many PTY sessions (at most {MAX_SESSIONS}); delete some first")]
    TooMany,
    /// The command could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The terminal could not be set up.
    #[error("{action}: {source}")]
    Terminal {
        /// What failed.
        action: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

/// The PTY sessions of the agent.
#[derive(Debug)]
pub struct PtyTable {
    sessions: Arc<SessionMap>,
    launcher: Arc<Launcher>,
    limits: SessionLimits,
}

fn check_size(rows: u16, cols: u16) -> Result<(), PtyError> {
    if pty::valid_dimension(rows) && pty::valid_dimension(cols) {
        Ok(())
    } else {
        Err(PtyError::InvalidSize { rows, cols })
    }
}

impl PtyTable {
    /// An empty table.
    pub fn new(launcher: Arc<Launcher>, limits: SessionLimits) -> Self {
        Self {
            sessions: Arc::default(),
            launcher,
            limits,
        }
    }

    /// Opens a terminal and starts the command on it. Must run inside a tokio runtime.
    pub fn create(&self, req: &CreatePtyRequest) -> Result<CreatePtyResponse, PtyError> {
        check_size(req.rows, req.cols)?;
        let terminal = |action| move |source| PtyError::Terminal { action, source };
        let id = random_hex(12).map_err(terminal("generating a session id"))?;
        let token = random_hex(32).map_err(terminal("generating a session token"))?;
        let mut env: BTreeMap<String, String> = req.env.clone();
        env.entry("TERM".into())
            .or_insert_with(|| DEFAULT_TERM.into());

        // Held across the start so that concurrent creates cannot pass the limit together.
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            return Err(PtyError::TooMany);
        }
        let pair = term::open(req.rows, req.cols).map_err(terminal("opening a terminal"))?;
        let spawned = self.launcher.launch(&LaunchSpec {
            command: &req.command,
            args: &req.args,
            env: &env,
            working_dir: req.working_dir.as_deref(),
            user: req.user.as_ref(),
            stdin: StdinMode::Closed,
            stdout: OutputMode::Discard,
            stderr: OutputMode::Discard,
            terminal: Some(pair.slave.as_fd()),
        })?;
        // Only the child keeps the slave side now, so its exit ends the terminal.
        drop(pair.slave);
        let master = match term::Master::new(pair.master) {
            Ok(master) => master,
            Err(source) => {
                tree::kill_tree(i32::try_from(spawned.pid).unwrap_or(0));
                return Err(PtyError::Terminal {
                    action: "registering the terminal",
                    source,
                });
            }
        };
        let session = PtySession::start(
            SessionSpec {
                id: id.clone(),
                token: token.clone(),
                command: req.command.clone(),
                args: req.args.clone(),
                rows: req.rows,
                cols: req.cols,
            },
            spawned.pid,
            master,
            spawned.exit,
            self.limits,
            Arc::downgrade(&self.sessions),
        );
        sessions.insert(id.clone(), session);
        Ok(CreatePtyResponse {
            session_id: id,
            token,
        })
    }

    /// The session with this id.
    pub fn get(&self, id: &str) -> Result<Arc<PtySession>, PtyError> {
        lock(&self.sessions)
            .get(id)
            .cloned()
            .ok_or_else(|| PtyError::NotFound(id.to_string()))
    }

    /// Every session, oldest first.
    pub fn list(&self) -> Vec<PtySessionInfo> {
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        let mut infos: Vec<_> = sessions.iter().map(|s| s.info()).collect();
        infos.sort_by(|a, b| (a.created_at, &a.session_id).cmp(&(b.created_at, &b.session_id)));
        infos
    }

    /// Resizes a session's terminal.
    pub fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<PtySessionInfo, PtyError> {
        check_size(rows, cols)?;
        let session = self.get(id)?;
        session
            .resize(rows, cols)
            .map_err(|source| PtyError::Terminal {
                action: "resizing the terminal",
                source,
            })?;
        Ok(session.info())
    }

    /// `DELETE /pty/{id}`: removes the session and kills its process tree.
    pub fn delete(&self, id: &str) -> Result<(), PtyError> {
        let session = lock(&self.sessions)
            .remove(id)
            .ok_or_else(|| PtyError::NotFound(id.to_string()))?;
        session.close();
        Ok(())
    }

    /// (live, total) session counts.
    pub fn counts(&self) -> (usize, usize) {
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        let live = sessions.iter().filter(|s| s.is_alive()).count();
        (live, sessions.len())
    }
}

/// `bytes` random bytes from the kernel, as lower-case hex.
fn random_hex(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => filled += n,
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_right_length_and_varies() {
        let a = random_hex(32).expect("random");
        let b = random_hex(32).expect("random");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn sizes_are_checked() {
        assert!(check_size(24, 80).is_ok());
        assert!(check_size(1000, 1).is_ok());
        assert!(matches!(
            check_size(0, 80),
            Err(PtyError::InvalidSize { rows: 0, cols: 80 })
        ));
        assert!(check_size(24, 1001).is_err());
    }
}
