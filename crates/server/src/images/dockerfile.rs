//! Parsing of Dockerfiles for image builds.
//!
//! Only the instructions the builder can carry out are accepted; anything else
//! is refused up front, naming the line, so that a build never half-runs a
//! Dockerfile whose meaning it would silently change. Values that Docker
//! substitutes (`$VAR`) are kept raw: the builder substitutes them with the
//! ARG and ENV values in scope at each step, using [`substitute`].

use std::collections::HashMap;

/// The instructions the builder carries out, as named in errors.
const SUPPORTED: [&str; 11] = [
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "WORKDIR",
    "USER",
    "ENTRYPOINT",
    "CMD",
    "EXPOSE",
];

/// The only platform sandboxes run.
const PLATFORM: &str = "linux/amd64";

/// A parse error, naming the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DockerfileError {
    /// The 1-based line of the instruction at fault (its first line).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// ARGs declared before the first FROM (usable in FROM lines).
    pub global_args: Vec<ArgDecl>,
    /// Build stages in order.
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// Steps in all: every instruction, FROM and ARG included (the global ARGs too), one per logical line.
    pub fn step_count(&self) -> usize {
        self.global_args.len()
            + self
                .stages
                .iter()
                .map(|stage| 1 + stage.steps.len())
                .sum::<usize>()
    }
}

/// An `ARG` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The argument's name.
    pub name: String,
    /// The default value, quotes removed but unsubstituted.
    pub default: Option<String>,
    /// The 1-based line of the instruction.
    pub line: usize,
    /// The logical line as written (see [`Step::text`]).
    pub text: String,
}

/// A build stage: a FROM and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `FROM … AS name` (lowercased), if any.
    pub name: Option<String>,
    /// The FROM line's image, raw (may hold $VARs of global ARGs).
    pub base: String,
    /// The FROM step itself (line and text).
    pub from: Step,
    /// The stage's instructions after FROM.
    pub steps: Vec<Step>,
}

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The 1-based line of the instruction's first line.
    pub line: usize,
    /// The logical line as written: continuation lines joined with a space
    /// (each piece trimmed, comment lines left out), trimmed.
    pub text: String,
    /// What the step does.
    pub instruction: Instruction,
}

/// A parsed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM image [AS alias]` (alias lowercased).
    From {
        /// The image reference, raw.
        image: String,
        /// The stage name, lowercased.
        alias: Option<String>,
    },
    /// `RUN command`.
    Run(Command),
    /// `COPY [flags] sources… dest`.
    Copy(CopySpec),
    /// `ADD [flags] sources… dest` (local sources only).
    Add(CopySpec),
    /// `ENV` pairs; values raw (unsubstituted), quotes removed.
    Env(Vec<(String, String)>),
    /// `ARG name[=default]`.
    Arg(ArgDecl),
    /// `WORKDIR path`, raw.
    Workdir(String),
    /// `USER user[:group]`, raw.
    User(String),
    /// `ENTRYPOINT command`.
    Entrypoint(Command),
    /// `CMD command`.
    Cmd(Command),
    /// `EXPOSE` words, raw: e.g. `8080`, `8080/tcp`, `$PORT`.
    Expose(Vec<String>),
}

/// The two forms of RUN, CMD and ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: the text, to be run by `/bin/sh -c`.
    Shell(String),
    /// Exec form: the JSON array's strings.
    Exec(Vec<String>),
}

/// The arguments of COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// `--from=` (a stage name or index, or an image), raw.
    pub from: Option<String>,
    /// `--chown=`, raw.
    pub chown: Option<String>,
    /// `--chmod=`, raw.
    pub chmod: Option<String>,
    /// The sources, raw (at least one).
    pub sources: Vec<String>,
    /// The destination, raw.
    pub dest: String,
}

/// A logical line: an instruction with its continuation lines joined.
struct LogicalLine {
    line: usize,
    text: String,
}

fn error(line: usize, message: impl Into<String>) -> DockerfileError {
    DockerfileError {
        line,
        message: message.into(),
    }
}

/// The most instructions a Dockerfile may have. Each step of a build keeps its
/// state (the image's environment among it) in the step cache, so their number
/// bounds what one build writes there; real Dockerfiles have tens.
pub const MAX_INSTRUCTIONS: usize = 1000;

/// The most bytes a stage's environment (its `ENV`s and declared `ARG`s, as
/// `NAME=value`) may hold: 256 KiB, twice what Linux passes to a program in one
/// variable. Each step's cache entry holds the environment, so this and
/// [`MAX_INSTRUCTIONS`] bound a build's cache (one substituted word may be
/// 1 MiB, and a few lines could otherwise grow it by that much per step).
pub const MAX_ENVIRONMENT_BYTES: usize = 256 << 10;

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    // Stage name → line of its FROM, to name the first one in a duplicate's error.
    let mut stage_lines: HashMap<String, usize> = HashMap::new();

    for (count, LogicalLine { line, text }) in logical_lines(text).into_iter().enumerate() {
        if count == MAX_INSTRUCTIONS {
            return Err(error(
                line,
                format!("a Dockerfile may have at most {MAX_INSTRUCTIONS} instructions"),
            ));
        }
        let (word, rest) = match text.split_once(char::is_whitespace) {
            Some((word, rest)) => (word, rest.trim()),
            None => (text.as_str(), ""),
        };
        let keyword = word.to_ascii_uppercase();
        // Unsupported comes first: it is the most useful thing to say about
        // e.g. a LABEL before the first FROM.
        if !SUPPORTED.contains(&keyword.as_str()) {
            return Err(unsupported_instruction(line, &keyword));
        }
        if stages.is_empty() && keyword != "FROM" && keyword != "ARG" {
            return Err(error(
                line,
                format!("{keyword} is not allowed before the first FROM"),
            ));
        }
        if rest.is_empty() {
            return Err(error(line, format!("{keyword} has no arguments")));
        }
        let instruction = parse_instruction(&keyword, rest, line, &text)?;
        match instruction {
            Instruction::From { image, alias } => {
                if let Some(name) = &alias
                    && let Some(first) = stage_lines.insert(name.clone(), line)
                {
                    return Err(error(
                        line,
                        format!("stage name {name} is already used (line {first})"),
                    ));
                }
                stages.push(Stage {
                    name: alias.clone(),
                    base: image.clone(),
                    from: Step {
                        line,
                        text,
                        instruction: Instruction::From { image, alias },
                    },
                    steps: Vec::new(),
                });
            }
            instruction => match stages.last_mut() {
                Some(stage) => stage.steps.push(Step {
                    line,
                    text,
                    instruction,
                }),
                // Only an ARG gets here (anything else was refused above).
                None => match instruction {
                    Instruction::Arg(decl) => global_args.push(decl),
                    _ => {
                        return Err(error(
                            line,
                            format!("{keyword} is not allowed before the first FROM"),
                        ));
                    }
                },
            },
        }
    }

    if stages.is_empty() {
        // Name the last line: the whole file was read looking for a FROM.
        let line = text.lines().count().max(1);
        return Err(error(
            line,
            "no FROM instruction: a Dockerfile needs at least one",
        ));
    }
    Ok(Dockerfile {
        global_args,
        stages,
    })
}

fn unsupported_instruction(line: usize, keyword: &str) -> DockerfileError {
    error(
        line,
        format!(
            "instruction {keyword} is not supported (supported: {})",
            SUPPORTED.join(", ")
        ),
    )
}

/// Joins continuation lines and drops comments and blank lines.
fn logical_lines(text: &str) -> Vec<LogicalLine> {
    // A byte-order mark would otherwise become part of the first keyword.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    // The first line of the instruction being read and its pieces so far.
    let mut pending: Option<(usize, Vec<&str>)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        // Comments are dropped even inside a continuation (as Docker does),
        // and a comment ending in `\` does not continue.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (piece, continues) = match trimmed.strip_suffix('\\') {
            Some(head) => (head.trim_end(), true),
            None => (trimmed, false),
        };
        let (_, pieces) = pending.get_or_insert_with(|| (index + 1, Vec::new()));
        if !piece.is_empty() {
            pieces.push(piece);
        }
        if !continues && let Some((line, pieces)) = pending.take() {
            push_logical(&mut out, line, &pieces);
        }
    }
    // A continuation at the end of the file ends the instruction, as in Docker.
    if let Some((line, pieces)) = pending.take() {
        push_logical(&mut out, line, &pieces);
    }
    out
}

fn push_logical(out: &mut Vec<LogicalLine>, line: usize, pieces: &[&str]) {
    if !pieces.is_empty() {
        out.push(LogicalLine {
            line,
            text: pieces.join(" "),
        });
    }
}

/// Parses one instruction's arguments (`rest`, non-empty and trimmed).
fn parse_instruction(
    keyword: &str,
    rest: &str,
    line: usize,
    text: &str,
) -> Result<Instruction, DockerfileError> {
    Ok(match keyword {
        "FROM" => parse_from(rest, line)?,
        "RUN" => {
            let (flags, command) = split_flags(rest);
            if let Some(flag) = flags.first() {
                let (name, _) = split_flag(flag);
                return Err(error(line, format!("RUN {name} is not supported")));
            }
            match parse_command(command) {
                Command::Exec(args) if args.is_empty() => {
                    return Err(error(line, "RUN has an empty command"));
                }
                command => Instruction::Run(command),
            }
        }
        "CMD" => Instruction::Cmd(parse_command(rest)),
        "ENTRYPOINT" => Instruction::Entrypoint(parse_command(rest)),
        "COPY" => Instruction::Copy(parse_copy("COPY", rest, line)?),
        "ADD" => Instruction::Add(parse_copy("ADD", rest, line)?),
        "ENV" => Instruction::Env(parse_env(rest, line)?),
        "ARG" => Instruction::Arg(parse_arg(rest, line, text)?),
        "WORKDIR" => Instruction::Workdir(rest.to_owned()),
        "USER" => Instruction::User(rest.to_owned()),
        "EXPOSE" => Instruction::Expose(rest.split_whitespace().map(str::to_owned).collect()),
        // The caller checked the keyword against SUPPORTED already.
        other => return Err(unsupported_instruction(line, other)),
    })
}

/// Splits the leading `--flag[=value]` words off `text`.
fn split_flags(text: &str) -> (Vec<&str>, &str) {
    let mut flags = Vec::new();
    let mut rest = text.trim_start();
    while rest.starts_with("--") {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        flags.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (flags, rest.trim_end())
}

/// `--name=value` → (`--name`, Some(`value`)); `--name` → (`--name`, None).
fn split_flag(flag: &str) -> (&str, Option<&str>) {
    match flag.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (flag, None),
    }
}

fn parse_from(rest: &str, line: usize) -> Result<Instruction, DockerfileError> {
    let (flags, rest) = split_flags(rest);
    for flag in flags {
        match split_flag(flag) {
            ("--platform", Some(platform)) if platform.eq_ignore_ascii_case(PLATFORM) => {}
            ("--platform", Some(platform)) => {
                return Err(error(
                    line,
                    format!("FROM --platform={platform} is not supported (only {PLATFORM})"),
                ));
            }
            ("--platform", None) => {
                return Err(error(
                    line,
                    format!("FROM --platform needs a value (--platform={PLATFORM})"),
                ));
            }
            (name, _) => return Err(error(line, format!("FROM {name} is not supported"))),
        }
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (image, alias) = match words.as_slice() {
        [image] => (*image, None),
        [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            // Docker matches stage names case-insensitively; normalise once here.
            let name = name.to_ascii_lowercase();
            if !is_stage_name(&name) {
                return Err(error(
                    line,
                    format!(
                        "invalid stage name {name:?} (a letter, then letters, digits, '-', '_' or '.')"
                    ),
                ));
            }
            (*image, Some(name))
        }
        _ => {
            return Err(error(
                line,
                "FROM expects `FROM [--platform=linux/amd64] image [AS name]`",
            ));
        }
    };
    Ok(Instruction::From {
        image: image.to_owned(),
        alias,
    })
}

/// Docker's rule for stage names (after lowercasing): `[a-z][a-z0-9-_.]*`.
fn is_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// Exec form when the text is a JSON array of strings, else shell form
/// (Docker falls back to shell form the same way, e.g. for `[ -f x ]`).
fn parse_command(text: &str) -> Command {
    if text.starts_with('[')
        && let Ok(args) = serde_json::from_str::<Vec<String>>(text)
    {
        return Command::Exec(args);
    }
    Command::Shell(text.to_owned())
}

fn parse_copy(keyword: &str, rest: &str, line: usize) -> Result<CopySpec, DockerfileError> {
    let (flags, args) = split_flags(rest);
    let mut from = None;
    let mut chown = None;
    let mut chmod = None;
    for flag in flags {
        let (name, value) = split_flag(flag);
        let slot = match name {
            "--from" if keyword == "ADD" => {
                return Err(error(line, "ADD --from is not supported; use COPY --from"));
            }
            "--from" => &mut from,
            "--chown" => &mut chown,
            "--chmod" => &mut chmod,
            _ => {
                return Err(error(
                    line,
                    format!(
                        "{keyword} {name} is not supported (supported flags: --from, --chown, --chmod)"
                    ),
                ));
            }
        };
        let value = match value {
            Some(value) if !value.is_empty() => value,
            _ => {
                return Err(error(
                    line,
                    format!("{keyword} {name} needs a value ({name}=…)"),
                ));
            }
        };
        if slot.is_some() {
            return Err(error(line, format!("{keyword} {name} is given twice")));
        }
        *slot = Some(value.to_owned());
    }

    // JSON form is how paths with spaces are written; anything that does not
    // parse as a JSON array of strings is taken as words, as Docker does.
    let mut words = match args.starts_with('[') {
        true => serde_json::from_str::<Vec<String>>(args).ok(),
        false => None,
    }
    .unwrap_or_else(|| args.split_whitespace().map(str::to_owned).collect());
    let dest = match words.pop() {
        Some(dest) if !words.is_empty() => dest,
        _ => {
            return Err(error(
                line,
                format!("{keyword} needs at least one source and a destination"),
            ));
        }
    };
    if keyword == "ADD" && words.iter().any(|source| is_remote(source)) {
        // The builder has no fetcher of its own (and builds may run offline);
        // a RUN step with curl makes the download explicit and cacheable.
        return Err(error(
            line,
            "ADD of a URL is not supported; download it in a RUN step",
        ));
    }
    Ok(CopySpec {
        from,
        chown,
        chmod,
        sources: words,
        dest,
    })
}

fn is_remote(source: &str) -> bool {
    let lower = source.to_ascii_lowercase();
    ["http://", "https://", "git@", "git://"]
        .iter()
        .any(|prefix| lower.starts_with(prefix))
}

fn parse_env(rest: &str, line: usize) -> Result<Vec<(String, String)>, DockerfileError> {
    let first = rest.split(char::is_whitespace).next().unwrap_or(rest);
    // Docker tells the forms apart by the first word alone.
    if !first.contains('=') {
        // Legacy `ENV KEY value with spaces`: one pair, the rest is the value.
        let value = rest[first.len()..].trim();
        check_name("ENV", first, line)?;
        if value.is_empty() {
            return Err(error(
                line,
                format!("ENV {first} has no value (ENV {first}=value, or ENV {first} value)"),
            ));
        }
        return Ok(vec![(first.to_owned(), unquote(value, line)?)]);
    }
    split_words(rest, line)?
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) => {
                check_name("ENV", key, line)?;
                Ok((key.to_owned(), unquote(value, line)?))
            }
            None => Err(error(
                line,
                format!("ENV expects KEY=VALUE pairs, got {word:?}"),
            )),
        })
        .collect()
}

fn parse_arg(rest: &str, line: usize, text: &str) -> Result<ArgDecl, DockerfileError> {
    let words = split_words(rest, line)?;
    let [word] = words.as_slice() else {
        return Err(error(line, "one ARG per line"));
    };
    let (name, default) = match word.split_once('=') {
        Some((name, value)) => (name, Some(unquote(value, line)?)),
        None => (word.as_str(), None),
    };
    check_name("ARG", name, line)?;
    Ok(ArgDecl {
        name: name.to_owned(),
        default,
        line,
        text: text.to_owned(),
    })
}

fn check_name(keyword: &str, name: &str, line: usize) -> Result<(), DockerfileError> {
    if is_name(name) {
        Ok(())
    } else {
        Err(error(
            line,
            format!("{keyword}: {name:?} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"),
        ))
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits at whitespace outside quotes and not escaped, keeping quotes and
/// backslashes (they are removed per value by [`unquote`]).
fn split_words(text: &str, line: usize) -> Result<Vec<String>, DockerfileError> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), _) => {
                current.push(c);
                if c == '\'' {
                    quote = None;
                }
            }
            (Some(_), '\\') => {
                // Keep the escaped character so a `\"` does not end the quote.
                current.push(c);
                current.extend(chars.next());
            }
            (Some(_), _) => {
                current.push(c);
                if c == '"' {
                    quote = None;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, '\\') => {
                in_word = true;
                current.push(c);
                current.extend(chars.next());
            }
            (None, '"' | '\'') => {
                in_word = true;
                current.push(c);
                quote = Some(c);
            }
            (None, _) => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(error(line, format!("unterminated quote in {text:?}")));
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// Removes quotes the way a shell does: double quotes allow `\"` and `\\`,
/// single quotes are literal, a backslash outside quotes escapes the next
/// character.
///
/// The result is meant for [`substitute`], so a `$` that must stay literal
/// (in single quotes, or escaped) comes out as `\$`: the quotes that said so
/// are gone by the time the builder substitutes.
fn unquote(text: &str, line: usize) -> Result<String, DockerfileError> {
    let unterminated = || error(line, format!("unterminated quote in {text:?}"));
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('$') => out.push_str("\\$"),
                    Some(c) => out.push(c),
                    None => return Err(unterminated()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.peek() {
                        Some(&escaped @ ('"' | '\\')) => {
                            out.push(escaped);
                            chars.next();
                        }
                        // `\$` stays as is for substitute(); other backslashes are literal.
                        _ => out.push('\\'),
                    },
                    Some(c) => out.push(c),
                    None => return Err(unterminated()),
                }
            },
            '\\' => match chars.next() {
                Some('$') => out.push_str("\\$"),
                Some(escaped) => out.push(escaped),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Expands $VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative} in `word` with `lookup` (unset → empty); `\$` is a literal `$`. Errors name `line`.
///
/// A `$` not followed by a name or `{` stays literal; defaults and
/// alternatives are themselves expanded (`${A:-$B}`), and `\}` in them is a
/// literal `}`. Other backslashes are kept as they are.
pub fn substitute(
    word: &str,
    line: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, DockerfileError> {
    let chars: Vec<char> = word.chars().collect();
    let expander = Expander {
        chars: &chars,
        word,
        line,
        lookup,
    };
    let mut pos = 0;
    expander.expand(&mut pos, false, 0)
}

/// How deeply `${VAR:-…}` defaults and alternatives may nest: each level is
/// a recursive call, so an unbounded depth (the Dockerfile may be 1 MiB)
/// would overflow the stack of the task substituting.
pub const MAX_SUBSTITUTION_DEPTH: usize = 32;

/// The longest word a substitution may make, as long as a whole Dockerfile:
/// without a bound, `ENV A=$A$A…` doubles (or more) per line and a few
/// lines exhaust the server's memory.
pub const MAX_SUBSTITUTED_BYTES: usize = 1 << 20;

/// State of one [`substitute`] call.
struct Expander<'a> {
    chars: &'a [char],
    word: &'a str,
    line: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Expander<'_> {
    /// Expands from `pos` to the end, or (`in_braces`) to the `}` closing a
    /// `${…}`, which it consumes. `depth` counts the enclosing `${…}`s.
    fn expand(
        &self,
        pos: &mut usize,
        in_braces: bool,
        depth: usize,
    ) -> Result<String, DockerfileError> {
        let mut out = String::new();
        while let Some(&c) = self.chars.get(*pos) {
            let next = self.chars.get(*pos + 1).copied();
            match c {
                '}' if in_braces => {
                    *pos += 1;
                    return Ok(out);
                }
                '\\' if next == Some('$') || (in_braces && next == Some('}')) => {
                    out.extend(next);
                    *pos += 2;
                }
                '$' => {
                    *pos += 1;
                    out.push_str(&self.dollar(pos, depth)?);
                }
                c => {
                    out.push(c);
                    *pos += 1;
                }
            }
            if out.len() > MAX_SUBSTITUTED_BYTES {
                return Err(self.too_long());
            }
        }
        if in_braces {
            Err(self.unterminated())
        } else {
            Ok(out)
        }
    }

    /// Expands what follows a `$` (at `pos`), `depth` `${…}`s deep.
    fn dollar(&self, pos: &mut usize, depth: usize) -> Result<String, DockerfileError> {
        match self.chars.get(*pos) {
            Some('{') => {
                *pos += 1;
                let name = self.name(pos);
                match self.chars.get(*pos) {
                    None => Err(self.unterminated()),
                    Some(_) if name.is_empty() => Err(error(
                        self.line,
                        format!(
                            "bad substitution in {:?}: `${{` must be followed by a variable name",
                            self.word
                        ),
                    )),
                    Some('}') => {
                        *pos += 1;
                        Ok((self.lookup)(&name).unwrap_or_default())
                    }
                    Some(':') if matches!(self.chars.get(*pos + 1), Some('-' | '+')) => {
                        let use_default = self.chars.get(*pos + 1) == Some(&'-');
                        *pos += 2;
                        if depth >= MAX_SUBSTITUTION_DEPTH {
                            return Err(self.too_deep());
                        }
                        let word = self.expand(pos, true, depth + 1)?;
                        let value = (self.lookup)(&name).filter(|value| !value.is_empty());
                        Ok(match (value, use_default) {
                            (Some(value), true) => value,
                            (None, true) => word,
                            (Some(_), false) => word,
                            (None, false) => String::new(),
                        })
                    }
                    Some(_) => {
                        let operator: String = self.chars[*pos..]
                            .iter()
                            .take(2)
                            .take_while(|&&c| c != '}')
                            .collect();
                        Err(error(
                            self.line,
                            format!(
                                "unsupported substitution `${{{name}{operator}…}}` in {:?} \
                                 (supported: $VAR, ${{VAR}}, ${{VAR:-default}}, ${{VAR:+alternative}})",
                                self.word
                            ),
                        ))
                    }
                }
            }
            Some(&c) if is_name_start(c) => Ok((self.lookup)(&self.name(pos)).unwrap_or_default()),
            // `$` before anything else (`$ `, `$1`, `$(`, end) is literal.
            _ => Ok("$".to_owned()),
        }
    }

    /// Reads a variable name at `pos` (possibly empty).
    fn name(&self, pos: &mut usize) -> String {
        let mut name = String::new();
        if let Some(&c) = self.chars.get(*pos).filter(|&&c| is_name_start(c)) {
            name.push(c);
            *pos += 1;
            while let Some(&c) = self.chars.get(*pos).filter(|&&c| is_name_char(c)) {
                name.push(c);
                *pos += 1;
            }
        }
        name
    }

    /// The word is not quoted: it may be as long as the Dockerfile.
    fn too_deep(&self) -> DockerfileError {
        error(
            self.line,
            format!(
                "variable substitution nested deeper than {MAX_SUBSTITUTION_DEPTH} levels \
                 (`${{VAR:-${{…}}}}`)"
            ),
        )
    }

    fn too_long(&self) -> DockerfileError {
        error(
            self.line,
            format!(
                "variable substitution makes a word longer than {} MiB",
                MAX_SUBSTITUTED_BYTES >> 20
            ),
        )
    }

    fn unterminated(&self) -> DockerfileError {
        error(
            self.line,
            format!("unterminated `${{` in {:?} (missing `}}`)", self.word),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        text.to_owned()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| s(item)).collect()
    }

    fn parse_err(text: &str) -> DockerfileError {
        match parse(text) {
            Ok(parsed) => panic!("expected an error, got {parsed:?}"),
            Err(err) => err,
        }
    }

    /// The instructions of the only stage of `FROM img` + `body`.
    fn instructions(body: &str) -> Vec<Instruction> {
        let parsed = parse(&format!("FROM img\n{body}")).expect("parses");
        assert_eq!(parsed.stages.len(), 1);
        parsed.stages[0]
            .steps
            .iter()
            .map(|step| step.instruction.clone())
            .collect()
    }

    fn instruction(body: &str) -> Instruction {
        let mut all = instructions(body);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn env(body: &str) -> Vec<(String, String)> {
        match instruction(body) {
            Instruction::Env(pairs) => pairs,
            other => panic!("not ENV: {other:?}"),
        }
    }

    fn copy(body: &str) -> CopySpec {
        match instruction(body) {
            Instruction::Copy(spec) | Instruction::Add(spec) => spec,
            other => panic!("not COPY/ADD: {other:?}"),
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (s(k), s(v))).collect()
    }

    fn step(line: usize, text: &str, instruction: Instruction) -> Step {
        Step {
            line,
            text: s(text),
            instruction,
        }
    }

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some(s("alpha")),
            "B" => Some(s("beta")),
            "EMPTY" => Some(String::new()),
            "PORT" => Some(s("8080")),
            _ => None,
        }
    }

    fn sub(word: &str) -> Result<String, DockerfileError> {
        substitute(word, 7, &vars)
    }

    const UNSUPPORTED_TAIL: &str = "is not supported (supported: FROM, RUN, COPY, ADD, ENV, ARG, WORKDIR, USER, ENTRYPOINT, CMD, EXPOSE)";

    #[test]
    fn full_multi_stage_dockerfile() {
        let text = "\
# syntax=docker/dockerfile:1
ARG BASE=golang:1.22
ARG DEBIAN_TAG

FROM --platform=linux/amd64 $BASE AS Build
ARG VERSION=\"1.0 beta\"
ENV CGO_ENABLED=0 GOFLAGS='-trimpath'
WORKDIR /src
COPY --chown=1000:1000 --chmod=644 go.mod go.sum ./
ADD vendor.tar.gz /src/vendor
RUN go build \\
    -o /out/app ./cmd/app
USER builder

FROM debian:${DEBIAN_TAG:-12} as runtime
COPY --from=build /out/app /usr/local/bin/app
USER 1000:1000
EXPOSE 8080 9090/udp $PORT
ENTRYPOINT [\"/usr/local/bin/app\"]
CMD --serve --verbose
";
        let parsed = parse(text).expect("parses");
        let version = ArgDecl {
            name: s("VERSION"),
            default: Some(s("1.0 beta")),
            line: 6,
            text: s("ARG VERSION=\"1.0 beta\""),
        };
        let expected = Dockerfile {
            global_args: vec![
                ArgDecl {
                    name: s("BASE"),
                    default: Some(s("golang:1.22")),
                    line: 2,
                    text: s("ARG BASE=golang:1.22"),
                },
                ArgDecl {
                    name: s("DEBIAN_TAG"),
                    default: None,
                    line: 3,
                    text: s("ARG DEBIAN_TAG"),
                },
            ],
            stages: vec![
                Stage {
                    name: Some(s("build")),
                    base: s("$BASE"),
                    from: step(
                        5,
                        "FROM --platform=linux/amd64 $BASE AS Build",
                        Instruction::From {
                            image: s("$BASE"),
                            alias: Some(s("build")),
                        },
                    ),
                    steps: vec![
                        step(6, "ARG VERSION=\"1.0 beta\"", Instruction::Arg(version)),
                        step(
                            7,
                            "ENV CGO_ENABLED=0 GOFLAGS='-trimpath'",
                            Instruction::Env(pairs(&[
                                ("CGO_ENABLED", "0"),
                                ("GOFLAGS", "-trimpath"),
                            ])),
                        ),
                        step(8, "WORKDIR /src", Instruction::Workdir(s("/src"))),
                        step(
                            9,
                            "COPY --chown=1000:1000 --chmod=644 go.mod go.sum ./",
                            Instruction::Copy(CopySpec {
                                from: None,
                                chown: Some(s("1000:1000")),
                                chmod: Some(s("644")),
                                sources: strings(&["go.mod", "go.sum"]),
                                dest: s("./"),
                            }),
                        ),
                        step(
                            10,
                            "ADD vendor.tar.gz /src/vendor",
                            Instruction::Add(CopySpec {
                                from: None,
                                chown: None,
                                chmod: None,
                                sources: strings(&["vendor.tar.gz"]),
                                dest: s("/src/vendor"),
                            }),
                        ),
                        step(
                            11,
                            "RUN go build -o /out/app ./cmd/app",
                            Instruction::Run(Command::Shell(s("go build -o /out/app ./cmd/app"))),
                        ),
                        step(13, "USER builder", Instruction::User(s("builder"))),
                    ],
                },
                Stage {
                    name: Some(s("runtime")),
                    base: s("debian:${DEBIAN_TAG:-12}"),
                    from: step(
                        15,
                        "FROM debian:${DEBIAN_TAG:-12} as runtime",
                        Instruction::From {
                            image: s("debian:${DEBIAN_TAG:-12}"),
                            alias: Some(s("runtime")),
                        },
                    ),
                    steps: vec![
                        step(
                            16,
                            "COPY --from=build /out/app /usr/local/bin/app",
                            Instruction::Copy(CopySpec {
                                from: Some(s("build")),
                                chown: None,
                                chmod: None,
                                sources: strings(&["/out/app"]),
                                dest: s("/usr/local/bin/app"),
                            }),
                        ),
                        step(17, "USER 1000:1000", Instruction::User(s("1000:1000"))),
                        step(
                            18,
                            "EXPOSE 8080 9090/udp $PORT",
                            Instruction::Expose(strings(&["8080", "9090/udp", "$PORT"])),
                        ),
                        step(
                            19,
                            "ENTRYPOINT [\"/usr/local/bin/app\"]",
                            Instruction::Entrypoint(Command::Exec(strings(&[
                                "/usr/local/bin/app",
                            ]))),
                        ),
                        step(
                            20,
                            "CMD --serve --verbose",
                            Instruction::Cmd(Command::Shell(s("--serve --verbose"))),
                        ),
                    ],
                },
            ],
        };
        assert_eq!(parsed, expected);
        assert_eq!(parsed.step_count(), 2 + 1 + 7 + 1 + 5);
    }

    #[test]
    fn comments_and_continuations_keep_first_line_numbers() {
        let text = "\
# a comment
   # an indented comment

from img
RUN apt-get update && \\
    # a comment inside the continuation
    apt-get install -y \\

    curl   \\
    git
# comment ending in a backslash does not continue \\
env A=1 \\
  B=2
RUN echo 'a # not a comment'
WORKDIR /last \\";
        let parsed = parse(text).expect("parses");
        let stage = &parsed.stages[0];
        assert_eq!(stage.from.line, 4);
        assert_eq!(stage.from.text, "from img");
        let lines: Vec<(usize, &str)> = stage
            .steps
            .iter()
            .map(|step| (step.line, step.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (5, "RUN apt-get update && apt-get install -y curl git"),
                (12, "env A=1 B=2"),
                (14, "RUN echo 'a # not a comment'"),
                (15, "WORKDIR /last"),
            ]
        );
        assert_eq!(
            stage.steps[0].instruction,
            Instruction::Run(Command::Shell(s(
                "apt-get update && apt-get install -y curl git"
            )))
        );
        assert_eq!(
            stage.steps[1].instruction,
            Instruction::Env(pairs(&[("A", "1"), ("B", "2")]))
        );
        assert_eq!(stage.steps[3].instruction, Instruction::Workdir(s("/last")));
        assert_eq!(parsed.step_count(), 5);
    }

    #[test]
    fn crlf_line_endings_and_a_byte_order_mark() {
        let parsed = parse("\u{feff}FROM img\r\nRUN a \\\r\n  b\r\n").expect("parses");
        assert_eq!(parsed.stages[0].from.text, "FROM img");
        assert_eq!(parsed.stages[0].steps[0].text, "RUN a b");
        assert_eq!(parsed.stages[0].steps[0].line, 2);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let parsed = parse("From img\nrun true\nWorkDir /x\nuSeR me\n").expect("parses");
        assert_eq!(parsed.stages[0].steps.len(), 3);
        assert_eq!(
            parsed.stages[0].steps[2].instruction,
            Instruction::User(s("me"))
        );
    }

    #[test]
    fn exec_and_shell_forms() {
        let all = instructions(
            "RUN [\"echo\", \"a b\"]\n\
             RUN echo hello\n\
             RUN [ -f /etc/passwd ] && echo yes\n\
             CMD []\n\
             CMD [\"a\", 1]\n\
             ENTRYPOINT [\"/bin/sh\", \\\n  \"-c\"]\n\
             ENTRYPOINT exec app \"$@\"\n",
        );
        assert_eq!(
            all,
            vec![
                Instruction::Run(Command::Exec(strings(&["echo", "a b"]))),
                Instruction::Run(Command::Shell(s("echo hello"))),
                Instruction::Run(Command::Shell(s("[ -f /etc/passwd ] && echo yes"))),
                Instruction::Cmd(Command::Exec(Vec::new())),
                // Not an array of strings: shell form, as Docker does.
                Instruction::Cmd(Command::Shell(s("[\"a\", 1]"))),
                Instruction::Entrypoint(Command::Exec(strings(&["/bin/sh", "-c"]))),
                Instruction::Entrypoint(Command::Shell(s("exec app \"$@\""))),
            ]
        );
        let err = parse_err("FROM img\nRUN []\n");
        assert_eq!(
            err,
            DockerfileError {
                line: 2,
                message: s("RUN has an empty command")
            }
        );
    }

    #[test]
    fn env_forms_and_quoting() {
        assert_eq!(
            env("ENV A=1 B=\"two words\" C='single' D=a\\ b E= F=$HOME/bin G=\"${X:-y}\""),
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "single"),
                ("D", "a b"),
                ("E", ""),
                ("F", "$HOME/bin"),
                ("G", "${X:-y}"),
            ])
        );
        // Double quotes: `\"` and `\\` are escapes, other backslashes literal.
        assert_eq!(
            env(r#"ENV Q="say \"hi\" \\ c:\dir""#),
            pairs(&[("Q", r#"say "hi" \ c:\dir"#)])
        );
        // Quotes in the middle of a word, and `=` in the value.
        assert_eq!(
            env("ENV OPTS=--a=\"1 2\"'x y' _under_9=v"),
            pairs(&[("OPTS", "--a=1 2x y"), ("_under_9", "v")])
        );
        // Legacy form: one pair, the rest of the line is the value.
        assert_eq!(
            env("ENV GREETING hello  big \"world\""),
            pairs(&[("GREETING", "hello  big world")])
        );
        assert_eq!(
            env("ENV PATH /usr/bin:$PATH"),
            pairs(&[("PATH", "/usr/bin:$PATH")])
        );
    }

    #[test]
    fn literal_dollars_survive_unquoting_for_substitution() {
        // Single quotes and `\$` mean no substitution; the escape is kept for
        // substitute(), which turns it into a plain `$`.
        let values = env(r#"ENV A='$HOME' B=\$HOME C="\$HOME" D=$HOME"#);
        assert_eq!(
            values,
            pairs(&[
                ("A", r"\$HOME"),
                ("B", r"\$HOME"),
                ("C", r"\$HOME"),
                ("D", "$HOME")
            ])
        );
        let home = |name: &str| (name == "HOME").then(|| s("/root"));
        let substituted: Vec<String> = values
            .iter()
            .map(|(_, value)| substitute(value, 1, &home).expect("substitutes"))
            .collect();
        assert_eq!(substituted, strings(&["$HOME", "$HOME", "$HOME", "/root"]));
    }

    #[test]
    fn at_most_a_thousand_instructions() {
        let body = "ENV A=1\n".repeat(MAX_INSTRUCTIONS - 1);
        let file = parse(&format!("FROM b\n{body}")).expect("1000 instructions");
        assert_eq!(file.step_count(), MAX_INSTRUCTIONS);
        let err = parse(&format!("FROM b\n{body}# a comment\nENV B=2\n")).expect_err("1001");
        assert_eq!(err.line, MAX_INSTRUCTIONS + 2);
        assert!(err.message.contains("at most 1000 instructions"), "{err}");
    }

    #[test]
    fn env_errors() {
        let cases = [
            (
                "ENV 1A=x",
                "ENV: \"1A\" is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
            ),
            (
                "ENV A-B=x",
                "ENV: \"A-B\" is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
            ),
            (
                "ENV =x",
                "ENV: \"\" is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
            ),
            ("ENV A=1 B", "ENV expects KEY=VALUE pairs, got \"B\""),
            ("ENV A=\"open", "unterminated quote in \"A=\\\"open\""),
            (
                "ENV ONLY",
                "ENV ONLY has no value (ENV ONLY=value, or ENV ONLY value)",
            ),
            (
                "ENV BAD.KEY value",
                "ENV: \"BAD.KEY\" is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
            ),
            ("ENV K 'open", "unterminated quote in \"'open\""),
        ];
        for (body, message) in cases {
            let err = parse_err(&format!("FROM img\nRUN true\n{body}\n"));
            assert_eq!(
                err,
                DockerfileError {
                    line: 3,
                    message: s(message)
                },
                "{body}"
            );
        }
    }

    #[test]
    fn args_before_and_after_from() {
        let parsed = parse(
            "ARG TAG=3.19\nARG EMPTY=\nARG QUOTED='a b'\nFROM alpine:$TAG\nARG TAG\nARG LOCAL=\"x y\"\n",
        )
        .expect("parses");
        let globals: Vec<(&str, Option<&str>, usize)> = parsed
            .global_args
            .iter()
            .map(|arg| (arg.name.as_str(), arg.default.as_deref(), arg.line))
            .collect();
        assert_eq!(
            globals,
            vec![
                ("TAG", Some("3.19"), 1),
                ("EMPTY", Some(""), 2),
                ("QUOTED", Some("a b"), 3)
            ]
        );
        assert_eq!(parsed.stages[0].base, "alpine:$TAG");
        assert_eq!(
            parsed.stages[0].steps[1].instruction,
            Instruction::Arg(ArgDecl {
                name: s("LOCAL"),
                default: Some(s("x y")),
                line: 6,
                text: s("ARG LOCAL=\"x y\""),
            })
        );
        assert_eq!(parsed.step_count(), 6);
    }

    #[test]
    fn arg_errors() {
        assert_eq!(
            parse_err("FROM img\nARG A B\n"),
            DockerfileError {
                line: 2,
                message: s("one ARG per line")
            }
        );
        assert_eq!(
            parse_err("ARG A=1 B=2\nFROM img\n"),
            DockerfileError {
                line: 1,
                message: s("one ARG per line")
            }
        );
        assert_eq!(
            parse_err("FROM img\nARG 9LIVES\n"),
            DockerfileError {
                line: 2,
                message: s("ARG: \"9LIVES\" is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            }
        );
    }

    #[test]
    fn copy_flags_and_forms() {
        assert_eq!(
            copy("COPY a b /dest/"),
            CopySpec {
                from: None,
                chown: None,
                chmod: None,
                sources: strings(&["a", "b"]),
                dest: s("/dest/"),
            }
        );
        assert_eq!(
            copy("COPY --from=Builder --chown=app:app --chmod=0755 /out/bin /usr/bin/"),
            CopySpec {
                from: Some(s("Builder")),
                chown: Some(s("app:app")),
                chmod: Some(s("0755")),
                sources: strings(&["/out/bin"]),
                dest: s("/usr/bin/"),
            }
        );
        assert_eq!(
            copy("COPY --chown=1:1 [\"a b\", \"c\", \"/my dest\"]"),
            CopySpec {
                from: None,
                chown: Some(s("1:1")),
                chmod: None,
                sources: strings(&["a b", "c"]),
                dest: s("/my dest"),
            }
        );
        assert_eq!(
            copy("ADD [\"x.tar\", \\\n  \"/opt/\"]"),
            CopySpec {
                from: None,
                chown: None,
                chmod: None,
                sources: strings(&["x.tar"]),
                dest: s("/opt/"),
            }
        );
        // Not valid JSON: words, as Docker does.
        assert_eq!(copy("COPY [a] /d").sources, strings(&["[a]"]));
        assert_eq!(
            instruction("ADD local.tgz /x"),
            Instruction::Add(CopySpec {
                from: None,
                chown: None,
                chmod: None,
                sources: strings(&["local.tgz"]),
                dest: s("/x"),
            })
        );
    }

    #[test]
    fn copy_and_add_errors_name_the_line() {
        let cases = [
            (
                "COPY --link a /b",
                "COPY --link is not supported (supported flags: --from, --chown, --chmod)",
            ),
            (
                "COPY --parents a /b",
                "COPY --parents is not supported (supported flags: --from, --chown, --chmod)",
            ),
            (
                "COPY --exclude=*.md . /b",
                "COPY --exclude is not supported (supported flags: --from, --chown, --chmod)",
            ),
            (
                "ADD --checksum=sha256:00 a /b",
                "ADD --checksum is not supported (supported flags: --from, --chown, --chmod)",
            ),
            ("COPY --from a /b", "COPY --from needs a value (--from=…)"),
            (
                "COPY --chown= a /b",
                "COPY --chown needs a value (--chown=…)",
            ),
            (
                "COPY --chmod=1 --chmod=2 a /b",
                "COPY --chmod is given twice",
            ),
            (
                "COPY onlyone",
                "COPY needs at least one source and a destination",
            ),
            (
                "COPY --from=x",
                "COPY needs at least one source and a destination",
            ),
            (
                "COPY [\"/only\"]",
                "COPY needs at least one source and a destination",
            ),
            (
                "ADD https://example.com/x.tgz /x",
                "ADD of a URL is not supported; download it in a RUN step",
            ),
            (
                "ADD a HTTP://example.com/y /x",
                "ADD of a URL is not supported; download it in a RUN step",
            ),
            (
                "ADD git@github.com:o/r.git /src",
                "ADD of a URL is not supported; download it in a RUN step",
            ),
            (
                "ADD --from=build /a /b",
                "ADD --from is not supported; use COPY --from",
            ),
        ];
        for (body, message) in cases {
            let err = parse_err(&format!("FROM img\n\n{body}\n"));
            assert_eq!(
                err,
                DockerfileError {
                    line: 3,
                    message: s(message)
                },
                "{body}"
            );
        }
    }

    #[test]
    fn every_unsupported_instruction_is_named_with_its_line() {
        for keyword in [
            "LABEL",
            "VOLUME",
            "HEALTHCHECK",
            "SHELL",
            "ONBUILD",
            "STOPSIGNAL",
            "MAINTAINER",
            "FROBNICATE",
        ] {
            let err = parse_err(&format!("FROM img\nRUN true\n# c\n{keyword} something\n"));
            assert_eq!(
                err,
                DockerfileError {
                    line: 4,
                    message: format!("instruction {keyword} {UNSUPPORTED_TAIL}")
                }
            );
        }
        // Upper-cased as written, and refused even without arguments.
        let err = parse_err("FROM img\nlabel a=b\n");
        assert_eq!(err.message, format!("instruction LABEL {UNSUPPORTED_TAIL}"));
        assert_eq!(
            parse_err("FROM img\nhealthcheck\n").message,
            format!("instruction HEALTHCHECK {UNSUPPORTED_TAIL}")
        );
        // An unsupported instruction before FROM is named as unsupported.
        let err = parse_err("LABEL a=b\nFROM img\n");
        assert_eq!(
            err,
            DockerfileError {
                line: 1,
                message: format!("instruction LABEL {UNSUPPORTED_TAIL}")
            }
        );
    }

    #[test]
    fn unsupported_flags_name_the_line() {
        let cases = [
            (
                "RUN --mount=type=cache,target=/root/.cache pip install x",
                "RUN --mount is not supported",
            ),
            ("RUN --network=none true", "RUN --network is not supported"),
            (
                "RUN --security=insecure true",
                "RUN --security is not supported",
            ),
            (
                "FROM --platform=linux/arm64 img",
                "FROM --platform=linux/arm64 is not supported (only linux/amd64)",
            ),
            (
                "FROM --platform=$BUILDPLATFORM img",
                "FROM --platform=$BUILDPLATFORM is not supported (only linux/amd64)",
            ),
            (
                "FROM --platform img",
                "FROM --platform needs a value (--platform=linux/amd64)",
            ),
            ("FROM --squash img", "FROM --squash is not supported"),
        ];
        for (body, message) in cases {
            let err = parse_err(&format!("FROM img\nRUN true\n{body}\n"));
            assert_eq!(
                err,
                DockerfileError {
                    line: 3,
                    message: s(message)
                },
                "{body}"
            );
        }
        // The supported platform is accepted.
        let parsed = parse("FROM --platform=linux/amd64 img AS a\n").expect("parses");
        assert_eq!(parsed.stages[0].base, "img");
    }

    #[test]
    fn from_forms_and_stage_names() {
        let parsed = parse("FROM a AS One\nFROM b\nFROM one\nFROM c as x.y-z_2\n").expect("parses");
        let names: Vec<Option<&str>> = parsed
            .stages
            .iter()
            .map(|stage| stage.name.as_deref())
            .collect();
        assert_eq!(names, vec![Some("one"), None, None, Some("x.y-z_2")]);
        assert_eq!(parsed.stages[2].base, "one");

        let cases = [
            (
                "FROM a AS x\nFROM b AS X\n",
                2,
                "stage name x is already used (line 1)",
            ),
            (
                "FROM a AS 1st\n",
                1,
                "invalid stage name \"1st\" (a letter, then letters, digits, '-', '_' or '.')",
            ),
            (
                "FROM a AS b c\n",
                1,
                "FROM expects `FROM [--platform=linux/amd64] image [AS name]`",
            ),
            (
                "FROM a b\n",
                1,
                "FROM expects `FROM [--platform=linux/amd64] image [AS name]`",
            ),
            (
                "FROM --platform=linux/amd64\n",
                1,
                "FROM expects `FROM [--platform=linux/amd64] image [AS name]`",
            ),
        ];
        for (text, line, message) in cases {
            assert_eq!(
                parse_err(text),
                DockerfileError {
                    line,
                    message: s(message)
                },
                "{text}"
            );
        }
    }

    #[test]
    fn a_file_without_from_is_refused() {
        for (text, line) in [
            ("", 1),
            ("# only a comment\n\n", 2),
            ("ARG A=1\nARG B\n", 2),
        ] {
            assert_eq!(
                parse_err(text),
                DockerfileError {
                    line,
                    message: s("no FROM instruction: a Dockerfile needs at least one")
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn only_arg_comes_before_the_first_from() {
        for keyword in [
            "RUN true",
            "ENV A=1",
            "COPY a b",
            "WORKDIR /x",
            "CMD x",
            "EXPOSE 1",
        ] {
            let err = parse_err(&format!("ARG A\n{keyword}\nFROM img\n"));
            let name = keyword.split(' ').next().unwrap_or_default();
            assert_eq!(
                err,
                DockerfileError {
                    line: 2,
                    message: format!("{name} is not allowed before the first FROM")
                }
            );
        }
    }

    #[test]
    fn an_instruction_without_arguments_is_refused() {
        for keyword in [
            "RUN",
            "CMD",
            "ENTRYPOINT",
            "COPY",
            "ADD",
            "ENV",
            "ARG",
            "WORKDIR",
            "USER",
            "EXPOSE",
        ] {
            let err = parse_err(&format!("FROM img\n{keyword}   \n"));
            assert_eq!(
                err,
                DockerfileError {
                    line: 2,
                    message: format!("{keyword} has no arguments")
                }
            );
        }
        assert_eq!(
            parse_err("FROM\n"),
            DockerfileError {
                line: 1,
                message: s("FROM has no arguments")
            }
        );
        // A continuation of nothing but blank and comment lines is still empty.
        assert_eq!(
            parse_err("FROM img\nrun \\\n# c\n\n"),
            DockerfileError {
                line: 2,
                message: s("RUN has no arguments")
            }
        );
    }

    #[test]
    fn workdir_user_expose_are_raw() {
        assert_eq!(
            instructions("WORKDIR  /my dir/$X  \nUSER ${U:-app}:grp\nEXPOSE 80  443/tcp\t${P}\n"),
            vec![
                Instruction::Workdir(s("/my dir/$X")),
                Instruction::User(s("${U:-app}:grp")),
                Instruction::Expose(strings(&["80", "443/tcp", "${P}"])),
            ]
        );
    }

    #[test]
    fn step_count_counts_every_instruction() {
        let parsed = parse("ARG A\nARG B\nFROM x\nRUN a\nRUN b \\\n c\nFROM y\nFROM z\nCMD d\n")
            .expect("parses");
        assert_eq!(parsed.step_count(), 2 + (1 + 2) + 1 + (1 + 1));
        assert_eq!(parse("FROM x").expect("parses").step_count(), 1);
    }

    #[test]
    fn errors_display_their_line() {
        let err = parse_err("FROM img\nRUN --mount=x y\n");
        assert_eq!(err.to_string(), "line 2: RUN --mount is not supported");
    }

    #[test]
    fn substitute_forms() {
        let cases = [
            ("plain", "plain"),
            ("$A", "alpha"),
            ("${A}", "alpha"),
            ("$A$B", "alphabeta"),
            ("x${A}y", "xalphay"),
            ("$A-$B", "alpha-beta"),
            ("$A_suffix", ""),
            ("$UNSET", ""),
            ("${UNSET}", ""),
            ("pre/$UNSET/post", "pre//post"),
            ("${A:-dflt}", "alpha"),
            ("${UNSET:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${UNSET:-}", ""),
            ("${UNSET:-$B}", "beta"),
            ("${UNSET:-${B}-x}", "beta-x"),
            ("${UNSET:-a b}", "a b"),
            ("${A:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${UNSET:+alt}", ""),
            ("${A:+[$B]}", "[beta]"),
            ("${UNSET:-\\}}", "}"),
            ("\\$A", "$A"),
            ("\\${A}", "${A}"),
            ("c:\\dir\\$A", "c:\\dir$A"),
            ("c:\\dir\\x$A", "c:\\dir\\xalpha"),
            ("$", "$"),
            ("a$ b", "a$ b"),
            ("$1", "$1"),
            ("$$", "$$"),
            ("$(cmd)", "$(cmd)"),
            ("cost: 5$", "cost: 5$"),
            (":$PORT/tcp", ":8080/tcp"),
            ("ünïcode-${A}-ü", "ünïcode-alpha-ü"),
        ];
        for (word, expected) in cases {
            assert_eq!(sub(word).as_deref(), Ok(expected), "{word}");
        }
    }

    #[test]
    fn substitute_errors_name_the_line() {
        let supported = "(supported: $VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative})";
        let cases = [
            (
                "${A",
                "unterminated `${` in \"${A\" (missing `}`)".to_owned(),
            ),
            (
                "x${",
                "unterminated `${` in \"x${\" (missing `}`)".to_owned(),
            ),
            (
                "${A:-dflt",
                "unterminated `${` in \"${A:-dflt\" (missing `}`)".to_owned(),
            ),
            (
                "${A:-${B}",
                "unterminated `${` in \"${A:-${B}\" (missing `}`)".to_owned(),
            ),
            (
                "${}",
                "bad substitution in \"${}\": `${` must be followed by a variable name".to_owned(),
            ),
            (
                "${1}",
                "bad substitution in \"${1}\": `${` must be followed by a variable name".to_owned(),
            ),
            (
                "${:-x}",
                "bad substitution in \"${:-x}\": `${` must be followed by a variable name"
                    .to_owned(),
            ),
            (
                "${A:?required}",
                format!("unsupported substitution `${{A:?…}}` in \"${{A:?required}}\" {supported}"),
            ),
            (
                "${A-x}",
                format!("unsupported substitution `${{A-x…}}` in \"${{A-x}}\" {supported}"),
            ),
            (
                "${A#pre}",
                format!("unsupported substitution `${{A#p…}}` in \"${{A#pre}}\" {supported}"),
            ),
            (
                "${A:}",
                format!("unsupported substitution `${{A:…}}` in \"${{A:}}\" {supported}"),
            ),
        ];
        for (word, message) in cases {
            assert_eq!(
                sub(word),
                Err(DockerfileError { line: 7, message }),
                "{word}"
            );
        }
    }

    /// `${A:-` × `levels`, then `x`, then `}` × `levels`.
    fn nested(levels: usize) -> String {
        format!("{}x{}", "${UNSET:-".repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn substitution_nests_up_to_the_cap() {
        assert_eq!(sub(&nested(MAX_SUBSTITUTION_DEPTH)).as_deref(), Ok("x"));
        assert_eq!(
            sub(&nested(MAX_SUBSTITUTION_DEPTH + 1)),
            Err(DockerfileError {
                line: 7,
                message: "variable substitution nested deeper than 32 levels (`${VAR:-${…}}`)"
                    .into(),
            })
        );
        // Side by side is not nesting.
        assert_eq!(sub(&"${UNSET:-a}".repeat(1000)), Ok("a".repeat(1000)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // 10,000 levels (60 KB) once overflowed a worker's stack and aborted
        // the server; on a small stack it must come back as an error.
        let word = nested(10_000);
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || substitute(&word, 3, &|_: &str| None))
            .expect("spawn")
            .join()
            .expect("no crash");
        let err = result.expect_err("too deep");
        assert_eq!(err.line, 3);
        assert!(
            err.message.contains("nested deeper than 32 levels"),
            "{err}"
        );
        // Through parse + substitute, as a build does with a FROM line.
        let text = format!("FROM {}\n", nested(10_000));
        let parsed = parse(&text).expect("FROM is substituted later");
        let base = parsed.stages[0].base.clone();
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || substitute(&base, 1, &|_: &str| None))
            .expect("spawn")
            .join()
            .expect("no crash");
        assert_eq!(
            result.map_err(|e| e.to_string()).expect_err("too deep"),
            "line 1: variable substitution nested deeper than 32 levels (`${VAR:-${…}}`)"
        );
    }

    #[test]
    fn substitution_cannot_blow_a_word_up() {
        let big = "v".repeat(1 << 19);
        let lookup = |name: &str| (name == "BIG").then(|| big.clone());
        assert_eq!(
            substitute("$BIG$BIG", 4, &lookup).map(|word| word.len()),
            Ok(1 << 20)
        );
        assert_eq!(
            substitute(&"$BIG".repeat(1000), 4, &lookup),
            Err(DockerfileError {
                line: 4,
                message: "variable substitution makes a word longer than 1 MiB".into(),
            })
        );
        // Inside a default too.
        assert!(substitute("${UNSET:-$BIG$BIG$BIG}", 4, &lookup).is_err());
    }
}
