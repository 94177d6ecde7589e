//! One file per command.

pub mod completions;
pub mod connection;
pub mod image;
pub mod login;
pub mod node;
pub mod output;
pub mod pool;
pub mod pool_settings;
pub mod sandbox;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod snapshot;
pub mod volume;

use std::io::IsTerminal;

/// Installs the tracing subscriber: text on a terminal, JSON otherwise.
pub fn init_logging(level: Option<&str>) {
    let filter = level
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}
