//! Build contexts: the tar of a local directory, honouring its `.dockerignore`, written to an
//! anonymous temporary file that is then streamed (as the Python SDK's `_context.py`).
//!
//! Symbolic links are stored as links, never followed, so nothing outside the directory gets
//! in. Only directories, regular files and links are stored (sockets, FIFOs and devices are left
//! out; a hard link is stored as a file of its own); owners are stored as root.

use std::fs::{File, Metadata};
use std::io::{Read, Seek};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::ClientError;

/// Name of the ignore file read from the context's top directory.
pub const DOCKERIGNORE: &str = ".dockerignore";
/// Dockerfile used when a build names none.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

/// The patterns of a `.dockerignore`: one per line, `#` comments, `!` re-includes.
///
/// A pattern is a path relative to the context (a leading `/` or `./` changes nothing) in
/// which `*` stands for any characters but `/`, `?` for one, `[...]` for a class (`[!...]` or
/// `[^...]` negated) and `**` for any number of directories. A path is left out when the last
/// pattern that matches it or one of its parent directories is not a `!` one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    tokens: Vec<Token>,
    /// A `!` line: matching paths are included again.
    exclusion: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: one character but `/`.
    One,
    /// `*`: any characters but `/`.
    Star,
    /// `**/`: nothing, or any path ending with `/`.
    Dirs,
    /// `**` elsewhere: anything.
    Any,
    /// `[...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl DockerIgnore {
    /// The patterns of the lines of an ignore file.
    pub fn parse(text: &str) -> Self {
        let patterns = text
            .lines()
            .filter_map(|raw| {
                let line = raw.trim();
                if line.is_empty() || line.starts_with('#') {
                    return None;
                }
                let (exclusion, line) = match line.strip_prefix('!') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, line),
                };
                let cleaned = clean(line);
                (!cleaned.is_empty()).then(|| Pattern {
                    tokens: tokens(&cleaned),
                    exclusion,
                })
            })
            .collect();
        Self { patterns }
    }

    /// The `.dockerignore` of `dir` (no patterns when it has none).
    pub fn read(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join(DOCKERIGNORE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ClientError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Whether a `!` line may bring back a path below a directory left out.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether the `/`-separated `path` (relative to the context) is left out.
    pub fn excluded(&self, path: &str) -> bool {
        let mut candidates = vec![path];
        let mut rest = path;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            candidates.push(parent);
            rest = parent;
        }
        let chars: Vec<Vec<char>> = candidates.iter().map(|c| c.chars().collect()).collect();
        let mut result = false;
        for pattern in &self.patterns {
            if chars.iter().any(|c| matches(&pattern.tokens, c)) {
                result = !pattern.exclusion;
            }
        }
        result
    }
}

/// `pattern` without empty and `.` segments.
fn clean(pattern: &str) -> String {
    pattern
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    out.push(Token::Dirs);
                    i += 1;
                } else {
                    out.push(Token::Any);
                }
                continue;
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            '[' => {
                // The class ends at the first `]` after its first character.
                if let Some(end) = (i + 2..chars.len()).find(|&j| chars[j] == ']') {
                    let mut body = &chars[i + 1..end];
                    let negated = matches!(body.first(), Some('!' | '^'));
                    if negated {
                        body = &body[1..];
                    }
                    out.push(Token::Class {
                        negated,
                        ranges: class_ranges(body),
                    });
                    i = end + 1;
                    continue;
                }
                out.push(Token::Literal('['));
            }
            '\\' if i + 1 < chars.len() => {
                out.push(Token::Literal(chars[i + 1]));
                i += 2;
                continue;
            }
            c => out.push(Token::Literal(c)),
        }
        i += 1;
    }
    out
}

fn class_ranges(body: &[char]) -> Vec<(char, char)> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let mut low = body[i];
        if low == '\\' && i + 1 < body.len() {
            i += 1;
            low = body[i];
        }
        if body.get(i + 1) == Some(&'-') && i + 2 < body.len() {
            ranges.push((low, body[i + 2]));
            i += 3;
        } else {
            ranges.push((low, low));
            i += 1;
        }
    }
    ranges
}

/// Whether `tokens` match the whole of `path`.
fn matches(tokens: &[Token], path: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return path.is_empty();
    };
    match first {
        Token::Literal(c) => path.first() == Some(c) && matches(rest, &path[1..]),
        Token::One => path.first().is_some_and(|c| *c != '/') && matches(rest, &path[1..]),
        Token::Class { negated, ranges } => {
            path.first().is_some_and(|c| {
                let inside = ranges.iter().any(|(low, high)| low <= c && c <= high);
                inside != *negated
            }) && matches(rest, &path[1..])
        }
        Token::Star => {
            let mut i = 0;
            loop {
                if matches(rest, &path[i..]) {
                    return true;
                }
                if i == path.len() || path[i] == '/' {
                    return false;
                }
                i += 1;
            }
        }
        Token::Any => (0..=path.len()).any(|i| matches(rest, &path[i..])),
        Token::Dirs => {
            matches(rest, path)
                || (1..=path.len()).any(|i| path[i - 1] == '/' && matches(rest, &path[i..]))
        }
    }
}

/// The Dockerfile's path inside a build context: relative, inside it, `/`-separated.
pub(crate) fn dockerfile_path(value: &str) -> Result<String, ClientError> {
    let refused = || {
        ClientError::invalid(format!(
            "dockerfile must be a relative path inside the context, got {value:?}"
        ))
    };
    if value.trim().is_empty() || value.starts_with('/') {
        return Err(refused());
    }
    let parts: Vec<&str> = value
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(refused());
    }
    Ok(parts.join("/"))
}

/// Writes the tar of `dir` (everything its `.dockerignore` does not leave out, and always the
/// Dockerfile at the relative `dockerfile`) to an anonymous temporary file, rewound; returns it
/// and its length. Blocking: run it off the async threads.
pub(crate) fn write_context(dir: &Path, dockerfile: &str) -> Result<(File, u64), ClientError> {
    let io = |what: String| move |e: std::io::Error| ClientError::io(what, e);
    let ignore = DockerIgnore::read(dir)?;
    let file = tempfile::tempfile().map_err(io("creating a temporary file".into()))?;
    let mut writer = ContextWriter {
        tar: tar::Builder::new(file),
        ignore,
    };
    let mut names = sorted_names(dir)?;
    for name in names.drain(..) {
        writer.add(&dir.join(&name), &name)?;
    }
    if writer.ignore.excluded(dockerfile) {
        let local: PathBuf = dockerfile
            .split('/')
            .fold(dir.to_path_buf(), |p, s| p.join(s));
        writer.add_entry(&local, dockerfile)?;
    }
    let mut file = writer
        .tar
        .into_inner()
        .map_err(io("writing the build context".into()))?;
    let length = file
        .stream_position()
        .map_err(io("writing the build context".into()))?;
    file.rewind()
        .map_err(io("rewinding the build context".into()))?;
    Ok((file, length))
}

struct ContextWriter {
    tar: tar::Builder<File>,
    ignore: DockerIgnore,
}

impl ContextWriter {
    /// Adds `path` (known in the context as `relative`) unless it is left out; a directory left
    /// out is still looked into when a `!` line may bring back something below it.
    fn add(&mut self, path: &Path, relative: &str) -> Result<(), ClientError> {
        if !self.ignore.excluded(relative) {
            if self.add_entry(path, relative)? {
                for name in sorted_names(path)? {
                    self.add(&path.join(&name), &format!("{relative}/{name}"))?;
                }
            }
            return Ok(());
        }
        if self.ignore.has_exclusions() && lstat(path)?.is_dir() {
            for name in sorted_names(path)? {
                self.add(&path.join(&name), &format!("{relative}/{name}"))?;
            }
        }
        Ok(())
    }

    /// Stores one directory (without its children), file or link; returns whether it was a
    /// directory.
    fn add_entry(&mut self, path: &Path, relative: &str) -> Result<bool, ClientError> {
        let failed = |e: std::io::Error| ClientError::io(format!("adding {}", path.display()), e);
        let meta = lstat(path)?;
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.permissions().mode() & 0o7777);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root").map_err(failed)?;
        header.set_groupname("root").map_err(failed)?;
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            self.tar
                .append_data(&mut header, relative, std::io::empty())
                .map_err(failed)?;
            return Ok(true);
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(failed)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            self.tar
                .append_link(&mut header, relative, target)
                .map_err(failed)?;
            return Ok(false);
        }
        if !kind.is_file() {
            return Ok(false);
        }
        let file = File::open(path).map_err(failed)?;
        // What was opened must still be a regular file (not swapped for something else).
        let opened = file.metadata().map_err(failed)?;
        if !opened.is_file() {
            return Ok(false);
        }
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(opened.len());
        self.tar
            .append_data(&mut header, relative, file.take(opened.len()))
            .map_err(failed)?;
        Ok(false)
    }
}

fn lstat(path: &Path) -> Result<Metadata, ClientError> {
    std::fs::symlink_metadata(path)
        .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))
}

/// The names in a directory, sorted; names that are not UTF-8 are refused.
fn sorted_names(dir: &Path) -> Result<Vec<String>, ClientError> {
    let failed = |e: std::io::Error| ClientError::io(format!("listing {}", dir.display()), e);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let name = entry.map_err(failed)?.file_name();
        let name = name.into_string().map_err(|raw| {
            ClientError::invalid(format!("{}: the name {raw:?} is not UTF-8", dir.display()))
        })?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text)
    }

    #[test]
    fn patterns_match_as_dockerignore_says() {
        let i = ignore("# comment\n\n*.log\n/build/\n./tmp\ndocs/**/*.md\n!docs/keep.md\n");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("sub/a.log"), "* does not cross directories");
        assert!(i.excluded("build"));
        assert!(i.excluded("build/out/x.o"), "below a directory left out");
        assert!(i.excluded("tmp"));
        assert!(i.excluded("docs/a.md"));
        assert!(i.excluded("docs/x/y/a.md"));
        assert!(!i.excluded("docs/keep.md"), "a ! line brings it back");
        assert!(!i.excluded("src/main.rs"));
        assert!(i.has_exclusions());

        let i = ignore("**\n!src\nsrc/*.tmp\n");
        assert!(i.excluded("README"));
        assert!(!i.excluded("src/a.rs"));
        assert!(i.excluded("src/a.tmp"));

        let i = ignore("f?le\n[a-c]x\n[!a]y\n\\*z\n**/node_modules\n");
        assert!(i.excluded("file") && !i.excluded("fi/e"));
        assert!(i.excluded("bx") && !i.excluded("dx"));
        assert!(i.excluded("by") && !i.excluded("ay"));
        assert!(i.excluded("*z") && !i.excluded("az"));
        assert!(i.excluded("node_modules") && i.excluded("a/b/node_modules/c"));
        assert_eq!(ignore("# only a comment\n"), DockerIgnore::default());
    }

    #[test]
    fn dockerfile_paths_stay_inside_the_context() {
        assert_eq!(dockerfile_path("Dockerfile").expect("ok"), "Dockerfile");
        assert_eq!(
            dockerfile_path("./a//b/Dockerfile").expect("ok"),
            "a/b/Dockerfile"
        );
        for bad in [
            "",
            " ",
            "/etc/Dockerfile",
            "../Dockerfile",
            "a/../../b",
            ".",
        ] {
            assert!(dockerfile_path(bad).is_err(), "{bad:?}");
        }
    }

    /// The entries of a tar: (path, type, link target).
    fn entries(file: File) -> Vec<(String, tar::EntryType, Option<String>)> {
        let mut archive = tar::Archive::new(file);
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let path = path.trim_end_matches('/').to_string();
            let link = entry
                .link_name()
                .expect("link")
                .map(|l| l.display().to_string());
            out.push((path, entry.header().entry_type(), link));
        }
        out
    }

    #[test]
    fn a_context_keeps_links_as_links_and_leaves_out_what_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("Dockerfile"), "FROM x\n").expect("write");
        std::fs::write(root.join(".dockerignore"), "secret\n*.log\nDockerfile\n").expect("write");
        std::fs::write(root.join("f"), "hello").expect("write");
        std::fs::write(root.join("a.log"), "x").expect("write");
        std::fs::create_dir(root.join("secret")).expect("mkdir");
        std::fs::write(root.join("secret/key"), "k").expect("write");
        std::fs::create_dir(root.join("d")).expect("mkdir");
        std::fs::write(root.join("d/g"), "g").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("symlink");
        let long = "n".repeat(120);
        std::fs::write(root.join("d").join(&long), "long").expect("write");

        let (file, length) = write_context(root, "Dockerfile").expect("context");
        assert_eq!(file.metadata().expect("meta").len(), length);
        let got = entries(file);
        let names: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "d",
                "d/g",
                &format!("d/{long}"),
                "f",
                "link",
                "Dockerfile"
            ]
        );
        let link = got.iter().find(|(p, _, _)| p == "link").expect("link");
        assert_eq!(link.1, tar::EntryType::Symlink);
        assert_eq!(
            link.2.as_deref(),
            Some("/etc/passwd"),
            "stored, not followed"
        );
    }
}
