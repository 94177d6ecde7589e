//! How client commands print: plain tables for people, JSON for scripts, progress bars on
//! long work (only when standard error is a terminal).

use std::io::IsTerminal;
use std::time::Duration;

use chrono::{DateTime, Utc};
use comfy_table::{Table, presets};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// `text` as it may reach an operator's terminal: control characters (escape sequences that
/// would set the window title, clear the screen or move the cursor, carriage returns that
/// would overwrite a line) and the bidirectional overrides that reorder what is shown are each
/// replaced by U+FFFD. Names, paths, commands and log lines are a sandbox's to choose.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    fn hostile(ch: char) -> bool {
        (ch.is_control() && ch != '\t')
            || matches!(ch, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if text.chars().any(hostile) {
        text.chars()
            .map(|ch| if hostile(ch) { '\u{fffd}' } else { ch })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// Prints a table with a header row, columns aligned, no borders (as `docker ps`). Every cell
/// is made [`printable`] (a tab, too, which would break the columns).
pub fn table<const N: usize>(header: [&str; N], rows: impl IntoIterator<Item = [String; N]>) {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header);
    for row in rows {
        table.add_row(row.map(|cell| printable(&cell).replace('\t', " ")));
    }
    // Columns flush left, two spaces apart, as `docker ps` prints them.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    // comfy-table pads every line to the widest: trim for clean copy and paste.
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
}

/// Prints one id (or name) a line, for `ls -q`: what scripts pipe into `xargs`.
pub fn ids<T: std::fmt::Display>(ids: impl IntoIterator<Item = T>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for id in ids {
        writeln!(out, "{id}")?;
    }
    Ok(())
}

/// Prints a value as indented JSON.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a sandbox just made (create, restore, claim): JSON, its id alone, or
/// `<id> (<name>) <status>`.
pub fn new_sandbox(
    info: &alcove_client::wire::sandbox::SandboxInfo,
    as_json: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if as_json {
        return json(info);
    }
    if quiet {
        println!("{}", info.id);
    } else {
        println!("{}", summary(info));
    }
    Ok(())
}

/// Prints a sandbox `create --reuse` handed out: as [`new_sandbox`], with what was done
/// (`created`, `attached`, `resumed`) after the status, or as `bind_outcome` in the JSON.
pub fn bound_sandbox(
    info: &alcove_client::wire::sandbox::SandboxInfo,
    outcome: &str,
    as_json: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if as_json {
        let mut value = serde_json::to_value(info)?;
        if let Some(fields) = value.as_object_mut() {
            fields.insert("bind_outcome".into(), outcome.into());
        }
        return json(&value);
    }
    if quiet {
        return new_sandbox(info, false, true);
    }
    println!("{}, {outcome}", summary(info));
    Ok(())
}

/// `<id> (<name>) <status>`, the name left out when there is none.
fn summary(info: &alcove_client::wire::sandbox::SandboxInfo) -> String {
    let name = info
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    format!("{}{name} {}", info.id, info.status)
}

/// A value's wire spelling (`"oom_killed"` for an enum variant), without quotes.
pub fn wire_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// "3 minutes ago" style, from epoch milliseconds.
pub fn ago(epoch_ms: i64) -> String {
    let now = Utc::now().timestamp_millis();
    let secs = (now - epoch_ms).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// An RFC 3339 time from epoch milliseconds.
pub fn time(epoch_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(epoch_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| epoch_ms.to_string())
}

/// Bytes in binary units, one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A spinner saying what is going on, hidden when standard error is not a terminal.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A byte-counting bar (`cp` of large files), hidden when standard error is not a terminal.
pub fn transfer(total: Option<u64>, message: impl Into<String>) -> ProgressBar {
    let bar = match (std::io::stderr().is_terminal(), total) {
        (false, _) => ProgressBar::hidden(),
        (true, Some(total)) => ProgressBar::new(total),
        (true, None) => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message.into());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_shows_what_a_terminal_would_obey_as_replacement_characters() {
        assert_eq!(printable("plain, tab\tkept"), "plain, tab\tkept");
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            printable("\u{1b}]0;title\u{7}\u{1b}[2Jx\ry\u{202e}z\u{9b}"),
            "\u{fffd}]0;title\u{fffd}\u{fffd}[2Jx\u{fffd}y\u{fffd}z\u{fffd}"
        );
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(100 * 1024 * 1024), "100.0 MiB");
    }

    #[test]
    fn ages_count_down_to_the_largest_unit() {
        let now = Utc::now().timestamp_millis();
        assert_eq!(ago(now - 5_000), "5s ago");
        assert_eq!(ago(now - 120_000), "2m ago");
        assert_eq!(ago(now - 7_200_000), "2h ago");
        assert_eq!(ago(now + 60_000), "0s ago");
    }
}
