//! `alcove sandbox logs [-f]`: a sandbox's persisted logs (its processes' output and the events
//! around them), live or archived; `-f` keeps printing new records until interrupted or the
//! sandbox ends.

use std::collections::HashSet;
use std::time::Duration;

use alcove_client::LogsRequest;
use alcove_client::wire::journal::{LogLevel, SandboxLogRecord};
use anyhow::bail;

use crate::commands::connection::Connection;
use crate::commands::output;

/// How often `-f` asks for new records.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);
/// Records asked for per poll while following.
const FOLLOW_WINDOW: u32 = 1000;

/// `alcove sandbox logs`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove logs dev
  alcove logs dev -f
  alcove logs dev --tail 50 --level warn --level error
  alcove logs dev --process web --grep timeout
  alcove logs dev --json | jq -r '.[].body'")]
pub struct LogsArgs {
    /// Sandbox id or name (an ended sandbox: its id).
    sandbox: String,
    /// Keep printing new records until Ctrl-C or the sandbox ends.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N records (then new ones with -f).
    #[arg(short = 'n', long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    tail: Option<u32>,
    /// Only records of this level (repeatable): trace, debug, info, warn, error, fatal.
    #[arg(short, long = "level", value_enum)]
    levels: Vec<Level>,
    /// Only records of this process: a pid or a managed process's name (repeatable).
    #[arg(short, long = "process")]
    processes: Vec<String>,
    /// Only records whose text holds this (case-insensitive).
    #[arg(long)]
    grep: Option<String>,
    /// Show each record's time and level.
    #[arg(short, long)]
    timestamps: bool,
    /// Print the records as a JSON array (not with -f).
    #[arg(long, conflicts_with = "follow")]
    json: bool,
}

/// Log levels as flags spell them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
            Level::Fatal => LogLevel::Fatal,
        }
    }
}

/// Runs `alcove sandbox logs`.
pub async fn run(c: &Connection, args: LogsArgs) -> anyhow::Result<()> {
    let mut request = LogsRequest::new();
    for level in &args.levels {
        request = request.level((*level).into());
    }
    for process in &args.processes {
        request = request.process(process.as_str());
    }
    request.body = args.grep.clone();
    // --tail N is one page of the newest N; without it, every record, page after page.
    let records = match args.tail {
        Some(n) => {
            c.client
                .get_logs(&args.sandbox, &request.clone().tail(n))
                .await
                .map_err(|e| c.explain(e))?
                .logs
        }
        None => c
            .client
            .get_all_logs(&args.sandbox, &request)
            .await
            .map_err(|e| c.explain(e))?,
    };
    if args.json {
        return output::json(&records);
    }
    let mut seen: HashSet<String> = HashSet::new();
    for record in &records {
        print_record(record, args.timestamps);
        seen.insert(record.uuid.clone());
    }
    if !args.follow {
        return Ok(());
    }
    // Follow: ask for the newest records again and again, print the ones not seen yet. The
    // ids are stable, so nothing prints twice. By id: a name stops naming the sandbox once it
    // ends, and its last records must still come.
    let id = match c.client.get(&args.sandbox).await {
        Ok(info) => info.id,
        Err(_) => args.sandbox.clone(),
    };
    let window = request.tail(FOLLOW_WINDOW);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        let page = match c.client.get_logs(&id, &window).await {
            Ok(page) => page,
            Err(e) if e.is_not_found() => bail!("the sandbox's logs are gone (archive retention)"),
            Err(e) => return Err(c.explain(e)),
        };
        for record in &page.logs {
            if seen.insert(record.uuid.clone()) {
                print_record(record, args.timestamps);
            }
        }
        if !still_running(c, &id).await {
            return Ok(());
        }
    }
}

/// Whether the sandbox may still write logs (live: running, pending or suspended).
async fn still_running(c: &Connection, sandbox: &str) -> bool {
    match c.client.get(sandbox).await {
        Ok(info) => info.terminated_at.is_none(),
        Err(e) => !e.is_not_found(),
    }
}

fn print_record(record: &SandboxLogRecord, timestamps: bool) {
    // A record's text is the sandbox's: nothing in it a terminal would obey.
    let body = output::printable(&record.body);
    if timestamps {
        println!(
            "{} {:<5} {body}",
            output::time(record.timestamp),
            level_name(record.level)
        );
    } else {
        println!("{body}");
    }
}

fn level_name(level: u8) -> &'static str {
    match level {
        1 => "TRACE",
        2 => "DEBUG",
        3 => "INFO",
        4 => "WARN",
        5 => "ERROR",
        6 => "FATAL",
        _ => "?",
    }
}
