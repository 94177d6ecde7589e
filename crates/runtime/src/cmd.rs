//! Running external tools (`runc`, `nft`, `mount`, `mkfs.ext4`) with their
//! argv and stderr kept for the error, and a debug line per call.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Instant;

use crate::error::CommandError;
use crate::runc_ns::{RuncNamespace, entry_for};
use crate::spawn::Spawn;

/// Runs `argv` to completion; fails with stderr when it exits non-zero.
pub async fn run(argv: &[&str]) -> Result<String, CommandError> {
    run_with_input(argv, None).await
}

/// Runs `argv`, feeding `input` on stdin (for `nft -f -`).
pub async fn run_with_input(argv: &[&str], input: Option<&str>) -> Result<String, CommandError> {
    run_spawned(argv, input, (None, None), false).await
}

/// Runs `argv` to completion as [`run_with_input`] does, in a copy of runc's
/// mount namespace `ns` (with `subtree` attached) when given, at idle
/// priority when `idle`. Every tool starts through [`crate::spawn`], which
/// never forks the server.
pub(crate) async fn run_spawned(
    argv: &[&str],
    input: Option<&str>,
    (ns, subtree): (Option<&Arc<RuncNamespace>>, Option<&Path>),
    idle: bool,
) -> Result<String, CommandError> {
    let started = Instant::now();
    let joined = argv.join(" ");
    let (program, args) = argv.split_first().ok_or_else(|| CommandError {
        argv: String::new(),
        reason: "empty command".into(),
    })?;
    let entry = entry_for(ns, subtree).map_err(|reason| CommandError {
        argv: joined.clone(),
        reason,
    })?;
    let output = Spawn::new(OsStr::new(program), args.iter().map(OsStr::new))
        .mount_entry(entry)
        .idle(idle)
        .capture()
        .kill_on_drop()
        .output(input.map(str::as_bytes))
        .await
        .map_err(|e| CommandError {
            argv: joined.clone(),
            reason: format!("spawn failed: {e}"),
        })?;
    finish(joined, started, output)
}

/// Stdout of a successful run; otherwise an error with the status and stderr.
fn finish(joined: String, started: Instant, output: Output) -> Result<String, CommandError> {
    tracing::debug!(
        argv = %joined,
        status = ?output.status.code(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "external command"
    );
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(CommandError {
            argv: joined,
            reason: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}
