//! `alcove sandbox cp SRC DST`: files and directory trees between this machine and a sandbox,
//! one side written `SANDBOX:PATH`, streamed with a progress bar.
//!
//! What comes out of a sandbox is hostile: names from its listings are checked (no `/`, `..`,
//! NUL), files are created fresh with mode 0644 and `O_NOFOLLOW` (never setuid, never through
//! a link planted in the destination), directories 0755; directories that links lead to out
//! of the tree or back into it are skipped, and a tree stops at [`MAX_ENTRIES`] entries or
//! [`MAX_DEPTH`] levels.

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use alcove_client::{Command, Sandbox};
use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use indicatif::ProgressBar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::commands::connection::Connection;
use crate::commands::output;

/// Entries (files and directories) one copy out of a sandbox handles at most.
pub const MAX_ENTRIES: usize = 100_000;
/// Directory levels one copy out of a sandbox descends at most.
pub const MAX_DEPTH: usize = 64;
/// Upload chunk size.
const CHUNK: usize = 256 * 1024;

/// `alcove sandbox cp`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "One side is SANDBOX:PATH (id or name, then an absolute path in the \
sandbox), the other a local path. As with `cp -r`: copying to an existing directory puts the \
source inside it; otherwise the destination becomes the copy. Out of a sandbox, files get mode \
0644 and directories 0755, symbolic links are followed (one that leads nowhere is skipped); into one, symbolic links are made \
as they point (not followed) and executable files stay executable.

Examples:
  alcove cp ./report.csv dev:/data/
  alcove cp ./src dev:/work/src
  alcove cp dev:/var/log/app.log .
  alcove cp dev:/work/out ./out"
)]
pub struct CpArgs {
    /// Source: a local path or SANDBOX:PATH.
    source: String,
    /// Destination: a local path or SANDBOX:PATH.
    destination: String,
    /// No progress bar, and no line per copied tree.
    #[arg(short, long)]
    quiet: bool,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Local(PathBuf),
    Remote { sandbox: String, path: String },
}

impl Side {
    /// `SANDBOX:PATH` names a sandbox unless the text is clearly a local path
    /// (`./a:b`, `/tmp/a:b`).
    fn parse(text: &str) -> anyhow::Result<Self> {
        if let Some((sandbox, path)) = text.split_once(':')
            && !sandbox.is_empty()
            && !sandbox.contains('/')
            && !text.starts_with('.')
        {
            if !path.starts_with('/') {
                bail!("{text:?}: the path in a sandbox must be absolute (SANDBOX:/path)");
            }
            return Ok(Self::Remote {
                sandbox: sandbox.to_string(),
                path: path.to_string(),
            });
        }
        if text.is_empty() {
            bail!("an empty path");
        }
        Ok(Self::Local(PathBuf::from(text)))
    }
}

/// Runs `alcove sandbox cp`.
pub async fn run(c: &Connection, args: CpArgs) -> anyhow::Result<()> {
    match (Side::parse(&args.source)?, Side::parse(&args.destination)?) {
        (Side::Local(from), Side::Remote { sandbox, path }) => {
            let sandbox = c.client.connect(&sandbox).await.map_err(|e| c.explain(e))?;
            upload(c, &sandbox, &from, &path, args.quiet).await
        }
        (Side::Remote { sandbox, path }, Side::Local(to)) => {
            let sandbox = c.client.connect(&sandbox).await.map_err(|e| c.explain(e))?;
            download(c, &sandbox, &path, &to, args.quiet).await
        }
        (Side::Local(_), Side::Local(_)) => {
            bail!("neither side is in a sandbox: write one as SANDBOX:PATH")
        }
        (Side::Remote { .. }, Side::Remote { .. }) => {
            bail!("both sides are in sandboxes: copy through this machine in two steps")
        }
    }
}

/// The last component of a path, for "copy into this directory".
fn base_name(path: &str) -> anyhow::Result<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .with_context(|| format!("{path:?} has no name to copy under"))
}

/// Joins a sandbox path and a name.
fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

// ---- into a sandbox -----------------------------------------------------------------------

/// What a local tree holds, gathered before anything is sent.
#[derive(Debug, Default)]
struct LocalTree {
    /// (local file, its path in the sandbox, size, executable)
    files: Vec<(PathBuf, String, u64, bool)>,
    /// Directories in the sandbox to create (empty ones included).
    dirs: Vec<String>,
    /// (its path in the sandbox, what it points to) of each symbolic link, made as it is.
    links: Vec<(String, String)>,
    /// Special files, and names or link targets that are not UTF-8, left out.
    skipped: Vec<PathBuf>,
}

async fn upload(
    c: &Connection,
    sandbox: &Sandbox,
    from: &Path,
    to: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let meta =
        std::fs::symlink_metadata(from).with_context(|| format!("reading {}", from.display()))?;
    // Copying to an existing directory puts the source inside it.
    let into_dir = to.ends_with('/') || sandbox.list_directory(to).await.is_ok();
    let local_name = from
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable name", from.display()))?;
    let target = if into_dir {
        join(to, local_name)
    } else {
        to.to_string()
    };
    let mut tree = LocalTree::default();
    if meta.is_dir() {
        gather(from, &target, &mut tree)?;
    } else if meta.is_file() {
        tree.files.push((
            from.to_path_buf(),
            target.clone(),
            meta.len(),
            executable(&meta),
        ));
    } else if meta.file_type().is_symlink() {
        gather_link(from, &target, &mut tree)?;
    } else {
        bail!(
            "{} is not a regular file, a directory or a symbolic link",
            from.display()
        );
    }
    for skipped in &tree.skipped {
        note(&format!(
            "skipped {} (a special file, or a name that is not UTF-8)",
            skipped.display()
        ));
    }
    let total: u64 = tree.files.iter().map(|f| f.2).sum();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        output::transfer(Some(total), format!("to {target}"))
    };
    for (local, remote, size, _) in &tree.files {
        upload_file(c, sandbox, local, remote, *size, &bar)
            .await
            .map_err(|e| e.context(format!("copying {} to {remote}", local.display())))?;
    }
    bar.finish_and_clear();
    // Directories the files did not create, and executable bits, in one command each.
    if !tree.dirs.is_empty() {
        in_sandbox(c, sandbox, "mkdir", &["-p"], &tree.dirs).await?;
    }
    let executables: Vec<String> = tree
        .files
        .iter()
        .filter(|f| f.3)
        .map(|f| f.1.clone())
        .collect();
    if !executables.is_empty() {
        in_sandbox(c, sandbox, "chmod", &["+x"], &executables).await?;
    }
    // Links as they are (what they point to is not copied, nor checked: as `cp -a` and `tar`),
    // so that a project's `node_modules/.bin` or `venv/bin/python` still works.
    make_links(c, sandbox, &tree.links).await?;
    if !quiet {
        let links = match tree.links.len() {
            0 => String::new(),
            n => format!(" and {n} link(s)"),
        };
        eprintln!(
            "copied {} file(s){links}, {} to {target}",
            tree.files.len(),
            output::bytes(total)
        );
    }
    Ok(())
}

/// Notes the symbolic link `path` to be made at `remote`, as it points (a target that is not
/// UTF-8 cannot be passed on, and is skipped).
fn gather_link(path: &Path, remote: &str, tree: &mut LocalTree) -> anyhow::Result<()> {
    let points_to =
        std::fs::read_link(path).with_context(|| format!("reading {}", path.display()))?;
    match points_to.to_str() {
        Some(text) if !text.is_empty() => tree.links.push((remote.to_string(), text.to_string())),
        _ => tree.skipped.push(path.to_path_buf()),
    }
    Ok(())
}

/// A note on standard error about a path: the sandbox names its files, so only what a
/// terminal shows as text is printed.
fn note(text: &str) {
    eprintln!("{}", output::printable(text));
}

fn executable(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

/// Walks a local directory without following links.
fn gather(dir: &Path, remote: &str, tree: &mut LocalTree) -> anyhow::Result<()> {
    tree.dirs.push(remote.to_string());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            tree.skipped.push(path);
            continue;
        };
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        let target = join(remote, &name);
        if meta.is_dir() {
            gather(&path, &target, tree)?;
        } else if meta.is_file() {
            tree.files
                .push((path, target, meta.len(), executable(&meta)));
        } else if meta.file_type().is_symlink() {
            gather_link(&path, &target, tree)?;
        } else {
            tree.skipped.push(path);
        }
    }
    Ok(())
}

async fn upload_file(
    c: &Connection,
    sandbox: &Sandbox,
    local: &Path,
    remote: &str,
    size: u64,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("opening {}", local.display()))?;
    let bar = bar.clone();
    let chunks = futures::stream::unfold(file, move |mut file| {
        let bar = bar.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    bar.inc(n as u64);
                    Some((Ok(Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        }
    });
    sandbox
        .write_file_stream(remote, chunks, Some(size))
        .await
        .map_err(|e| c.explain(e))
}

/// Runs `program fixed… paths…` in the sandbox; fails with its stderr.
async fn in_sandbox(
    c: &Connection,
    sandbox: &Sandbox,
    program: &str,
    fixed: &[&str],
    paths: &[String],
) -> anyhow::Result<()> {
    // Bounded batches keep each command line well under the kernel's argument limit.
    for batch in paths.chunks(500) {
        let command = Command::new(program)
            .args(fixed.iter().copied())
            .arg("--")
            .args(batch.iter().cloned());
        run_checked(c, sandbox, command, program).await?;
    }
    Ok(())
}

/// Makes each symbolic link `(path, what it points to)` in the sandbox (`ln -sfn`), a batch
/// of them per command rather than one command each.
async fn make_links(
    c: &Connection,
    sandbox: &Sandbox,
    links: &[(String, String)],
) -> anyhow::Result<()> {
    // The pairs are the script's arguments, never part of its text.
    const EACH_PAIR: &str =
        r#"while [ "$#" -gt 1 ]; do ln -sfn -- "$1" "$2" || exit; shift 2; done"#;
    for batch in links.chunks(250) {
        let pairs = batch
            .iter()
            .flat_map(|(path, points_to)| [points_to.clone(), path.clone()]);
        let command = Command::new("sh").args(["-c", EACH_PAIR, "sh"]).args(pairs);
        run_checked(c, sandbox, command, "ln").await?;
    }
    Ok(())
}

/// Runs `command` in the sandbox; fails with its stderr, naming `program`.
async fn run_checked(
    c: &Connection,
    sandbox: &Sandbox,
    command: Command,
    program: &str,
) -> anyhow::Result<()> {
    let result = sandbox.run(command).await.map_err(|e| c.explain(e))?;
    if result.exit_code != 0 {
        bail!(
            "{program} in the sandbox failed ({}): {}",
            result.exit_code,
            result.stderr.trim()
        );
    }
    Ok(())
}

// ---- out of a sandbox ---------------------------------------------------------------------

async fn download(
    c: &Connection,
    sandbox: &Sandbox,
    from: &str,
    to: &Path,
    quiet: bool,
) -> anyhow::Result<()> {
    let is_dir = sandbox.list_directory(from).await.is_ok();
    let name = base_name(from)?;
    check_name(name)?;
    let target = if to.is_dir() {
        to.join(name)
    } else {
        to.to_path_buf()
    };
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        output::transfer(None, format!("to {}", target.display()))
    };
    let (files, total) = if is_dir {
        download_tree(c, sandbox, from, &target, &bar).await?
    } else {
        match download_file(c, sandbox, from, &target, &bar).await {
            Ok(n) => (1, n),
            Err(Skip(why)) => bail!("{from}: {why}"),
            Err(Fail(e)) => return Err(e),
        }
    };
    bar.finish_and_clear();
    if !quiet {
        eprintln!(
            "copied {files} file(s), {} to {}",
            output::bytes(total),
            target.display()
        );
    }
    Ok(())
}

/// A name from a sandbox's listing, usable as one local path component.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("the sandbox listed an unusable file name {name:?}");
    }
    Ok(())
}

/// Copies a tree breadth-first, a level at a time; answers (files, bytes).
///
/// The sandbox's listing follows symbolic links, so each level's directories are resolved in
/// the sandbox (`realpath`) before they are entered: one that leads out of the tree or back
/// into a directory already copied is skipped with a warning, so a link to `/` or a loop ends
/// nothing but itself.
async fn download_tree(
    c: &Connection,
    sandbox: &Sandbox,
    from: &str,
    to: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<(usize, u64)> {
    make_dir(to)?;
    let root = canonical(c, sandbox, &[from.to_string()])
        .await?
        .pop()
        .with_context(|| format!("resolving {from} in the sandbox"))?;
    let mut visited = HashSet::from([root.clone()]);
    let mut level = vec![(from.to_string(), to.to_path_buf())];
    let (mut entries, mut files, mut bytes) = (0usize, 0usize, 0u64);
    for depth in 0.. {
        if level.is_empty() {
            break;
        }
        if depth > MAX_DEPTH {
            bail!("{from} is deeper than {MAX_DEPTH} levels: stopped");
        }
        let mut subdirs = Vec::new();
        for (remote, local) in level {
            let listing = sandbox
                .list_directory(&remote)
                .await
                .map_err(|e| c.explain(e))
                .with_context(|| format!("listing {remote}"))?;
            for entry in listing {
                entries += 1;
                if entries > MAX_ENTRIES {
                    bail!("{from} holds more than {MAX_ENTRIES} entries: stopped");
                }
                check_name(&entry.name)?;
                let remote_child = join(&remote, &entry.name);
                let local_child = local.join(&entry.name);
                if entry.is_dir {
                    subdirs.push((remote_child, local_child));
                    continue;
                }
                match download_file(c, sandbox, &remote_child, &local_child, bar).await {
                    Ok(n) => {
                        bytes += n;
                        files += 1;
                    }
                    Err(Skip(why)) => {
                        bar.suspend(|| note(&format!("skipped {remote_child}: {why}")))
                    }
                    Err(Fail(e)) => return Err(e),
                }
            }
        }
        // Resolve the next level's directories in the sandbox, in batches.
        let paths: Vec<String> = subdirs.iter().map(|(r, _)| r.clone()).collect();
        let resolved = canonical(c, sandbox, &paths).await?;
        let mut next = Vec::new();
        for ((remote, local), real) in subdirs.into_iter().zip(resolved) {
            let inside =
                real == root || real.starts_with(&format!("{}/", root.trim_end_matches('/')));
            if !inside {
                bar.suspend(|| {
                    note(&format!(
                        "skipped {remote}: a link out of {from} (to {real})"
                    ))
                });
            } else if !visited.insert(real.clone()) {
                bar.suspend(|| note(&format!("skipped {remote}: a link loop (to {real})")));
            } else {
                make_dir(&local)?;
                next.push((remote, local));
            }
        }
        level = next;
    }
    Ok((files, bytes))
}

/// The canonical paths of `paths` in the sandbox, in order (`realpath`, one command per
/// batch). A name holding a newline cannot be told apart in the answer and is refused.
async fn canonical(
    c: &Connection,
    sandbox: &Sandbox,
    paths: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut resolved = Vec::with_capacity(paths.len());
    for batch in paths.chunks(500) {
        if let Some(bad) = batch.iter().find(|p| p.contains('\n')) {
            bail!("the sandbox has a directory name with a newline ({bad:?}): copy it another way");
        }
        let command = Command::new("realpath")
            .arg("--")
            .args(batch.iter().cloned());
        let result = sandbox.run(command).await.map_err(|e| c.explain(e))?;
        let lines: Vec<String> = result.stdout.lines().map(str::to_string).collect();
        if result.exit_code != 0 || lines.len() != batch.len() {
            bail!(
                "resolving directories in the sandbox failed ({}): {}",
                result.exit_code,
                result.stderr.trim()
            );
        }
        resolved.extend(lines);
    }
    Ok(resolved)
}

/// Creates a directory (0755) unless a real directory is there already; a link there is
/// refused, so nothing is written through it.
fn make_dir(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!("{} exists and is not a directory", path.display()),
        Err(_) => std::fs::DirBuilder::new()
            .mode(0o755)
            .create(path)
            .with_context(|| format!("creating {}", path.display())),
    }
}

/// Why a file was not copied: a file the sandbox will not serve as bytes (a device, FIFO or
/// socket) or no longer finds (a dangling link) is skipped; anything else stops the copy.
enum Failure {
    Skip(String),
    Fail(anyhow::Error),
}
use Failure::{Fail, Skip};

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Fail(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Fail(e.into())
    }
}

/// Streams one file out of the sandbox into a fresh local file; answers its size.
async fn download_file(
    c: &Connection,
    sandbox: &Sandbox,
    from: &str,
    to: &Path,
    bar: &ProgressBar,
) -> Result<u64, Failure> {
    let mut chunks = match sandbox.read_file_stream(from).await {
        Ok(chunks) => chunks,
        Err(e) if e.code() == Some("INVALID_ARGUMENT") => return Err(Skip(e.to_string())),
        // Listed, then not there: a symbolic link that leads nowhere, or a file removed since.
        Err(e) if e.code() == Some("NOT_FOUND") => {
            return Err(Skip(
                "a link that leads nowhere, or removed meanwhile".to_string(),
            ));
        }
        Err(e) => return Err(Fail(c.explain(e).context(format!("reading {from}")))),
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)
        .with_context(|| {
            format!(
                "creating {} (a symbolic link there is refused)",
                to.display()
            )
        })?;
    // An existing file keeps its mode on open: drop anything beyond 0644's kind.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", to.display()))?;
    let mut file = tokio::fs::File::from_std(file);
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| c.explain(e))
            .with_context(|| format!("reading {from}"))?;
        file.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", to.display()))?;
        written += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    file.flush().await?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_parse_like_docker_cp() {
        assert_eq!(
            Side::parse("dev:/tmp/x").expect("remote"),
            Side::Remote {
                sandbox: "dev".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(
            Side::parse("./a:b").expect("local"),
            Side::Local("./a:b".into())
        );
        assert_eq!(
            Side::parse("/tmp/a:b").expect("local"),
            Side::Local("/tmp/a:b".into())
        );
        assert_eq!(
            Side::parse("file").expect("local"),
            Side::Local("file".into())
        );
        assert!(Side::parse("dev:relative").is_err());
        assert!(Side::parse("").is_err());
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in ["", ".", "..", "a/b", "x\0y"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("ok.txt").is_ok());
        assert!(check_name("..hidden").is_ok());
    }

    #[test]
    fn base_names_ignore_trailing_slashes() {
        assert_eq!(base_name("/a/b/").expect("name"), "b");
        assert_eq!(base_name("/a/b").expect("name"), "b");
        assert!(base_name("/").is_err());
    }
}
