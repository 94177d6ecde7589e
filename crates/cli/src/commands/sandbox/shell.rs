//! `alcove sandbox shell SANDBOX`: an interactive terminal in a sandbox, like
//! `docker exec -it … bash`: the local terminal in raw mode, window-size changes followed,
//! the terminal restored however the session ends, and the socket reconnected when it drops
//! (the session lives on in the sandbox).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use alcove_client::{ClientError, Command, PtySession, Sandbox};
use anyhow::{Context, bail};
use rustix::termios::{self, OptionalActions, Termios};
use tokio::signal::unix::{SignalKind, signal};

use super::exec::{self, ProcessArgs};
use super::{CommandExit, not_started, stdin};
use crate::commands::connection::Connection;

/// Attempts at reopening a dropped socket before giving up, one second apart and more.
const RECONNECT_ATTEMPTS: u32 = 8;

/// Size of the terminal when standard output is not one.
const DEFAULT_SIZE: (u16, u16) = (80, 24);

/// Bash when the image has it, else sh.
const DEFAULT_SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi";

/// `alcove sandbox shell`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Leave with `exit` (or Ctrl-D). Ctrl-C goes to the sandbox. When the \
connection drops, the shell reconnects to the same session. With standard input from a pipe or \
a file, the shell reads it as a script, without a terminal.

Exit code: the shell's own.

Examples:
  alcove shell dev
  alcove shell dev -u 1000 -w /srv
  alcove shell dev -- python3"
)]
pub struct ShellArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// What to run instead of the default shell (bash, else sh).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
    #[command(flatten)]
    process: ProcessArgs,
}

/// Runs `alcove sandbox shell`.
pub async fn run(c: &Connection, args: ShellArgs) -> anyhow::Result<()> {
    let sandbox = c
        .client
        .connect(&args.sandbox)
        .await
        .map_err(|e| c.explain(e))?;
    let mut command = match args.command.split_first() {
        Some((program, rest)) => Command::new(program.clone()).args(rest.iter().cloned()),
        None => Command::new("/bin/sh").args(["-c", DEFAULT_SHELL]),
    };
    if !args.process.sets("TERM") {
        let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
        command = command.env("TERM", term);
    }
    let command = args.process.apply(command);
    // Input from a pipe or a file is a script, not a person: the shell reads it through a
    // pipe and ends at its end (on a terminal, the end of piped input could be lost in the
    // terminal's mode switches and leave the shell waiting).
    let code = if std::io::stdin().is_terminal() {
        run_on_terminal(c, &sandbox, command).await?
    } else {
        exec::stream(c, &sandbox, command.stdin_pipe(), true).await?
    };
    match code {
        0 => Ok(()),
        code => Err(CommandExit(code).into()),
    }
}

/// Runs `command` on a terminal in the sandbox wired to this one; answers its exit code.
pub async fn run_on_terminal(
    c: &Connection,
    sandbox: &Sandbox,
    command: Command,
) -> anyhow::Result<u8> {
    let (cols, rows) = window_size();
    let mut pty = sandbox
        .create_pty(command, cols, rows)
        .await
        .map_err(|e| not_started(c, e))?;
    pty.connect().await.map_err(|e| c.explain(e))?;
    let raw = RawMode::enter()?;
    let result = relay(&mut pty).await;
    drop(raw);
    if result.is_err() {
        // Leave nothing running behind a session we can no longer drive.
        let _ = pty.kill().await;
    }
    let code = result?;
    Ok(u8::try_from(code.rem_euclid(256)).unwrap_or(1))
}

/// Relays the terminal both ways until the command exits; answers its exit code.
async fn relay(pty: &mut PtySession) -> anyhow::Result<i32> {
    let mut input = Some(stdin::chunks());
    let mut resized = signal(SignalKind::window_change()).context("watching window size")?;
    let mut hangup = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            read = pty.read(None) => match read {
                Ok(bytes) if bytes.is_empty() => {
                    if let Some(code) = pty.exit_code() {
                        return Ok(code);
                    }
                }
                Ok(bytes) => {
                    stdout.write_all(&bytes)?;
                    stdout.flush()?;
                }
                Err(err) => reconnect(pty, err).await?,
            },
            chunk = async { match input.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            } } => match chunk {
                Some(bytes) => {
                    if let Err(err) = pty.send(&bytes).await {
                        reconnect(pty, err).await?;
                        pty.send(&bytes).await?;
                    }
                }
                // End of input: nothing more to send; the command decides when to end.
                None => input = None,
            },
            _ = resized.recv() => {
                let (cols, rows) = window_size();
                if let Err(err) = pty.resize(cols, rows).await {
                    reconnect(pty, err).await?;
                    pty.resize(cols, rows).await?;
                }
            }
            _ = hangup.recv() => bail!("the terminal hung up"),
            _ = terminate.recv() => bail!("terminated"),
        }
    }
}

/// Reopens the socket of a session that is still running; gives up after a few attempts.
async fn reconnect(pty: &mut PtySession, cause: ClientError) -> anyhow::Result<()> {
    if pty.exit_code().is_some() {
        return Ok(());
    }
    pty.close().await;
    let mut delay = Duration::from_millis(500);
    eprint!("\r\n[alcove: the connection dropped; reconnecting]\r\n");
    for _ in 0..RECONNECT_ATTEMPTS {
        match pty.connect().await {
            Ok(()) => {
                eprint!("\r\n[alcove: reconnected]\r\n");
                return Ok(());
            }
            Err(err) if err.is_not_found() => {
                return Err(err).context("the terminal session is gone");
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    Err(cause).context("the connection to the terminal dropped and could not be reopened")
}

/// The local terminal's size (columns, rows), or 80x24 when there is none.
fn window_size() -> (u16, u16) {
    match termios::tcgetwinsize(std::io::stdout()) {
        Ok(size) if size.ws_col > 0 && size.ws_row > 0 => (size.ws_col, size.ws_row),
        _ => DEFAULT_SIZE,
    }
}

/// The local terminal in raw mode while this lives (when standard input is a terminal).
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(Self { saved: None });
        }
        let saved = termios::tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(Self { saved: Some(saved) })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, saved);
        }
    }
}
