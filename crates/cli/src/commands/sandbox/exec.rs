//! `alcove sandbox exec SANDBOX -- CMD ARGS…`: runs a command as a background process, streams
//! its output live, forwards standard input, and exits with its exit code (128 + N when
//! signal N ended it). With `-t` it runs on a terminal instead (see `shell`).

use std::io::{IsTerminal, Write};

use alcove_client::wire::process::OutputStream;
use alcove_client::{Command, Sandbox};
use anyhow::{Context, bail};
use futures::StreamExt;

use super::background::{self, BackgroundArgs};
use super::create::parse_env;
use super::{CommandExit, not_started, shell, stdin};
use crate::commands::connection::Connection;

/// `alcove sandbox exec`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Output is streamed line by line, as the sandbox captures it (a last line \
without a newline gets one); use `alcove cp` for binary files. Standard input is forwarded when \
it is a pipe or a file, or with -i.

Exit code: the command's own (128 + N when signal N ended it); 1 when the call itself failed. \
With -d: 0 once the command started (126 or 127 when it could not be).

Examples:
  alcove exec dev -- ls -la /
  alcove exec dev -e DEBUG=1 -w /srv -- python3 app.py
  echo hello | alcove exec dev -- tr a-z A-Z
  alcove exec -it dev -- top
  alcove exec -d dev -- python3 -m http.server 8000          # prints the pid
  alcove exec -d dev --name web --restart on-failure --health-http 8000/ -- python3 -m http.server 8000"
)]
pub struct ExecArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// The command and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
    #[command(flatten)]
    process: ProcessArgs,
    /// Forward standard input even when it is a terminal.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Run the command on a terminal (raw mode, window size), like `docker exec -t`.
    #[arg(short = 't', long)]
    tty: bool,
    #[command(flatten)]
    background: BackgroundArgs,
}

/// How a command runs: environment, directory, user (`exec` and `shell`).
#[derive(Debug, clap::Args)]
pub struct ProcessArgs {
    /// An environment variable for the command (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Working directory in the sandbox.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// User to run as (name or uid).
    #[arg(short = 'u', long)]
    user: Option<String>,
}

impl ProcessArgs {
    /// Whether the variable is set by these arguments.
    pub fn sets(&self, key: &str) -> bool {
        self.env.iter().any(|(k, _)| k == key)
    }

    /// `command` with these settings.
    pub fn apply(self, mut command: Command) -> Command {
        for (key, value) in self.env {
            command = command.env(key, value);
        }
        if let Some(dir) = self.workdir {
            command = command.working_dir(dir);
        }
        if let Some(user) = self.user {
            command = command.user(user);
        }
        command
    }
}

/// Runs `alcove sandbox exec`.
pub async fn run(c: &Connection, args: ExecArgs) -> anyhow::Result<()> {
    let sandbox = c
        .client
        .connect(&args.sandbox)
        .await
        .map_err(|e| c.explain(e))?;
    let (program, rest) = args
        .command
        .split_first()
        .context("no command given (put it after --)")?;
    let mut command = args
        .process
        .apply(Command::new(program.clone()).args(rest.iter().cloned()));
    if args.background.detach {
        return background::start(c, &sandbox, command, args.background).await;
    }
    if args.tty && !std::io::stdin().is_terminal() {
        bail!("-t needs a terminal on standard input; leave it out to pipe input to the command");
    }
    if args.tty {
        let code = shell::run_on_terminal(c, &sandbox, command).await?;
        return exit_with(code);
    }
    let forward_stdin = args.interactive || !std::io::stdin().is_terminal();
    if forward_stdin {
        command = command.stdin_pipe();
    }
    let code = stream(c, &sandbox, command, forward_stdin).await?;
    exit_with(code)
}

/// Returns the command's code as the CLI's: 0 is success, anything else a [`CommandExit`].
fn exit_with(code: u8) -> anyhow::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(CommandExit(code).into())
    }
}

/// Starts the command as a background process, relays its output (and standard input when
/// `forward_stdin`; the command must have been made with a stdin pipe then), and answers its
/// exit code.
pub async fn stream(
    c: &Connection,
    sandbox: &Sandbox,
    command: Command,
    forward_stdin: bool,
) -> anyhow::Result<u8> {
    let process = sandbox
        .start_process(command)
        .await
        .map_err(|e| not_started(c, e))?;
    let pid = process.pid;
    let mut events = sandbox.follow_output(pid).await.map_err(|e| c.explain(e))?;
    let mut input = forward_stdin.then(stdin::chunks);
    let mut interrupts = 0u32;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    loop {
        tokio::select! {
            event = events.next() => match event {
                None => break,
                Some(Err(e)) => return Err(c.explain(e)).context("following the command's output"),
                Some(Ok(event)) => {
                    // A piece of a line the agent cut (over 1 MiB) goes on in the next one.
                    let end = if event.continued { "" } else { "\n" };
                    let line = format!("{}{end}", event.line);
                    match event.stream {
                        Some(OutputStream::Stderr) => {
                            stderr.write_all(line.as_bytes())?;
                        }
                        _ => {
                            stdout.write_all(line.as_bytes())?;
                            stdout.flush()?;
                        }
                    }
                }
            },
            chunk = async { match input.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            } } => match chunk {
                Some(bytes) => {
                    // A command that closed its stdin or ended refuses more: keep relaying output.
                    if sandbox.write_stdin(pid, bytes).await.is_err() {
                        input = None;
                    }
                }
                None => {
                    input = None;
                    let _ = sandbox.close_stdin(pid).await;
                }
            },
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                // First Ctrl-C interrupts the command, the second kills it.
                let signal = if interrupts == 1 { 2 } else { 9 };
                sandbox.send_signal(pid, signal).await.map_err(|e| c.explain(e))?;
            }
        }
    }
    drop(stdout);
    let ended = sandbox.get_process(pid).await.map_err(|e| c.explain(e))?;
    match (ended.exit_code, ended.signal) {
        // The agent may report a killed process as -signal.
        (Some(code), _) if code < 0 => Ok(u8::try_from(128 - code).unwrap_or(1)),
        (Some(code), _) => Ok(u8::try_from(code % 256).unwrap_or(1)),
        (None, Some(signal)) => Ok(u8::try_from(128 + signal).unwrap_or(1)),
        (None, None) => bail!("process {pid} stopped reporting before it exited"),
    }
}
