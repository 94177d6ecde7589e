//! `alcove exec -d`: a command started in the background, optionally supervised (a name, a
//! restart policy, a health check), that goes on after the CLI returns.

use alcove_client::wire::process::{HealthCheck, RestartConfig, RestartPolicy};
use alcove_client::{Command, Sandbox};

use super::not_started;
use crate::commands::connection::Connection;

/// The options of a background process (`exec -d`).
#[derive(Debug, clap::Args)]
pub struct BackgroundArgs {
    /// Start the command in the background and print its pid, like `docker exec -d`; its
    /// output stays readable with `alcove logs`.
    #[arg(short = 'd', long, conflicts_with_all = ["tty", "interactive"])]
    pub detach: bool,
    /// Name the background process: it is then supervised by the sandbox's agent, and `kill`,
    /// `restart-process` and `logs --process` take the name.
    #[arg(long, requires = "detach")]
    name: Option<String>,
    /// Restart it when it ends: on every exit (always), after a failure (on-failure), or never.
    #[arg(long, value_enum, requires = "detach")]
    restart: Option<Restart>,
    /// Most restarts (with --restart; unlimited without it).
    #[arg(long, requires = "restart")]
    max_restarts: Option<u32>,
    /// Probe it over HTTP: PORT or PORT/PATH (a 2xx answer is healthy); with --restart, a
    /// process that keeps failing is restarted.
    #[arg(long, value_name = "PORT[/PATH]", value_parser = parse_http_check, requires = "detach", conflicts_with = "health_tcp")]
    health_http: Option<HealthCheck>,
    /// Probe it by connecting to this TCP port.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..), requires = "detach")]
    health_tcp: Option<u16>,
}

/// Restart policies as flags spell them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Restart {
    Never,
    OnFailure,
    Always,
}

impl BackgroundArgs {
    /// `command` with the supervision these flags ask for.
    fn apply(self, mut command: Command) -> Command {
        if let Some(name) = self.name {
            command = command.name(name);
        }
        if let Some(restart) = self.restart {
            let policy = match restart {
                Restart::Never => RestartPolicy::Never,
                Restart::OnFailure => RestartPolicy::OnFailure,
                Restart::Always => RestartPolicy::Always,
            };
            command = command.restart(RestartConfig {
                policy,
                max_restarts: self.max_restarts,
                ..RestartConfig::default()
            });
        }
        let check = self.health_http.or(self.health_tcp.map(HealthCheck::tcp));
        if let Some(check) = check {
            command = command.health_check(check);
        }
        command
    }
}

/// Starts `command` in the background and prints its pid (and name when it has one).
pub async fn start(
    c: &Connection,
    sandbox: &Sandbox,
    command: Command,
    args: BackgroundArgs,
) -> anyhow::Result<()> {
    let process = sandbox
        .start_process(args.apply(command))
        .await
        .map_err(|e| not_started(c, e))?;
    super::processes::print_started(&process);
    Ok(())
}

/// `8080` or `8080/healthz` → an HTTP check.
fn parse_http_check(text: &str) -> Result<HealthCheck, String> {
    let (port, path) = match text.split_once('/') {
        Some((port, path)) => (port, Some(format!("/{path}"))),
        None => (text, None),
    };
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(HealthCheck::http(port, path)),
        _ => Err(format!(
            "{text:?} is not PORT or PORT/PATH (a port from 1 to 65535)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_checks_take_a_port_and_an_optional_path() {
        let bare = parse_http_check("8080").expect("port");
        assert_eq!((bare.port, bare.path), (8080, None));
        let path = parse_http_check("3000/api/health").expect("port and path");
        assert_eq!(
            (path.port, path.path.as_deref()),
            (3000, Some("/api/health"))
        );
        for bad in ["0", "70000", "web", "/health", ""] {
            assert!(parse_http_check(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
