//! `alcove sandbox ps`, `kill` and `restart-process`.

use alcove_client::ProcessKey;
use alcove_client::wire::process::ProcessInfo;

use crate::commands::connection::Connection;
use crate::commands::output;

/// `alcove sandbox ps`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove ps dev
  alcove ps dev --json | jq '.[] | select(.status == \"running\") | .pid'")]
pub struct PsArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// Print the processes as a JSON array (of ProcessInfo).
    #[arg(long)]
    json: bool,
}

/// `alcove sandbox kill`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Without --signal the process is killed (and a managed one is no longer \
restarted); with it, the signal is only sent.

Examples:
  alcove sandbox kill dev 42
  alcove sandbox kill dev web
  alcove sandbox kill dev 42 --signal TERM"
)]
pub struct KillArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// Process: its pid, or a managed process's name.
    process: String,
    /// Send this signal instead of killing: a number or a name (TERM, INT, HUP, USR1, …).
    #[arg(short, long, value_parser = parse_signal)]
    signal: Option<i32>,
}

/// `alcove sandbox restart-process`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The process is stopped and started again with the same command, \
environment and supervision (a new pid; a managed process keeps its name and counts a restart).

Examples:
  alcove sandbox restart-process dev web
  alcove sandbox restart-process dev 42"
)]
pub struct RestartArgs {
    /// Sandbox id or name.
    sandbox: String,
    /// Process: its pid, or a managed process's name.
    process: String,
}

/// Runs `alcove sandbox ps`.
pub async fn ps(c: &Connection, args: PsArgs) -> anyhow::Result<()> {
    let sandbox = c
        .client
        .connect(&args.sandbox)
        .await
        .map_err(|e| c.explain(e))?;
    let processes = sandbox.list_processes().await.map_err(|e| c.explain(e))?;
    if args.json {
        return output::json(&processes);
    }
    output::table(
        ["PID", "NAME", "STATUS", "EXIT", "STARTED", "COMMAND"],
        processes.iter().map(|p| {
            let exit = match (p.exit_code, p.signal) {
                (Some(code), _) => code.to_string(),
                (None, Some(signal)) => format!("signal {signal}"),
                _ => String::new(),
            };
            let name = p
                .managed
                .as_ref()
                .and_then(|m| m.name.clone())
                .unwrap_or_default();
            let mut command = std::iter::once(p.command.as_str())
                .chain(p.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            // One row per process, whatever the command line holds.
            command = command.replace(['\n', '\r'], " ");
            [
                p.pid.to_string(),
                name,
                output::wire_name(&p.status),
                exit,
                output::ago(p.started_at),
                command,
            ]
        }),
    );
    Ok(())
}

/// Runs `alcove sandbox kill`.
pub async fn kill(c: &Connection, args: KillArgs) -> anyhow::Result<()> {
    let sandbox = c
        .client
        .connect(&args.sandbox)
        .await
        .map_err(|e| c.explain(e))?;
    let key = process_key(&args.process);
    match args.signal {
        Some(signal) => sandbox.send_signal(key, signal).await,
        None => sandbox.kill_process(key).await,
    }
    .map_err(|e| c.explain(e))?;
    Ok(())
}

/// Runs `alcove sandbox restart-process`: prints the new run's pid (and name).
pub async fn restart(c: &Connection, args: RestartArgs) -> anyhow::Result<()> {
    let sandbox = c
        .client
        .connect(&args.sandbox)
        .await
        .map_err(|e| c.explain(e))?;
    let process = sandbox
        .restart_process(process_key(&args.process))
        .await
        .map_err(|e| c.explain(e))?;
    print_started(&process);
    Ok(())
}

/// Prints a process just started: its pid, and its name when it is a managed one.
pub fn print_started(process: &ProcessInfo) {
    match process.managed.as_ref().and_then(|m| m.name.as_deref()) {
        Some(name) => println!("{} {name}", process.pid),
        None => println!("{}", process.pid),
    }
}

/// A pid, or else a managed process's name.
fn process_key(text: &str) -> ProcessKey {
    match text.parse::<u32>() {
        Ok(pid) => ProcessKey::from(pid),
        Err(_) => ProcessKey::from(text),
    }
}

/// `9`, `KILL`, `SIGKILL`, `term` → the signal's number.
fn parse_signal(text: &str) -> Result<i32, String> {
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(format!("{n} is not a signal (1 to 64)"))
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let number = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "WINCH" => 28,
        _ => {
            return Err(format!(
                "{text:?} is not a signal name such as TERM or KILL"
            ));
        }
    };
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_number_and_name() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("TERM"), Ok(15));
        assert_eq!(parse_signal("sigint"), Ok(2));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
        assert!(parse_signal("NOPE").is_err());
    }
}
