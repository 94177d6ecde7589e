//! `alcove image ls|pull|import|build|inspect|rm|save-snapshot`: the server's image store,
//! through `alcove-client`.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use alcove_client::wire::image::{DeleteImageResponse, ImageInfo, ImageProgressEvent};
use alcove_client::{BuildOptions, ClientError, PullOptions};
use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::connection::{ServerArgs, explain};

/// `alcove image …`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  alcove image ls
  alcove image pull localhost:5000/tools/jq:1 --name jq:1
  alcove image build ./app -t app:1 --build-arg VERSION=2
  alcove image rm app:1")]
pub struct ImageArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the images of the server's store, newest first.
    #[command(
        visible_alias = "list",
        after_help = "Examples:\n  alcove image ls\n  alcove image ls --json | jq '.[].names'\n  alcove image ls -q"
    )]
    Ls {
        /// Print the images as JSON instead of a table.
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pull an image from an OCI registry into the store.
    #[command(after_help = "Examples:
  alcove image pull localhost:5000/tools/jq:1
  alcove image pull localhost:5000/app@sha256:… --name app:1
  echo \"$TOKEN\" | alcove image pull localhost:5000/private/x:1 --username ci --password-stdin
  alcove image pull localhost:5000/private/x:1 --auth-secret REGISTRY_LOGIN")]
    Pull {
        /// `registry/repository:tag` or `registry/repository@sha256:…`.
        reference: String,
        /// Store the image under this reference (`name:tag`) too.
        #[arg(long)]
        name: Option<String>,
        /// Registry user name (the password is read from standard input).
        #[arg(long, requires = "password_stdin")]
        username: Option<String>,
        /// Read the registry password or token from standard input.
        #[arg(long, requires = "username")]
        password_stdin: bool,
        /// A stored secret (`alcove secrets set`) whose value is `username:password`.
        #[arg(long, conflicts_with = "username")]
        auth_secret: Option<String>,
        /// Print the stored image as JSON, without progress bars.
        #[arg(long)]
        json: bool,
    },
    /// Import a `docker save` archive or an OCI layout tarball (optionally gzipped).
    #[command(after_help = "Examples:
  docker save app:1 -o app.tar && alcove image import app.tar
  alcove image import layout.tar.gz --name app:1")]
    Import {
        /// The archive.
        file: PathBuf,
        /// Store the image under this reference (`name:tag`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Build an image from a Dockerfile and a local build context.
    #[command(
        after_help = "The directory is sent as a tar: what its .dockerignore lists is left out, and
symbolic links are sent as links, never followed.

Examples:
  alcove image build . -t app:1
  alcove image build ./ctx -t app:dev -f docker/Dockerfile.dev --build-arg VERSION=2 --no-cache
  alcove image build ./ctx -t offline:1 --no-internet"
    )]
    Build {
        /// The build context directory.
        context_dir: PathBuf,
        /// The new image's reference (`name:tag`).
        #[arg(short = 't', long = "tag", value_name = "NAME")]
        tag: String,
        /// The Dockerfile, relative to the context directory.
        #[arg(
            short = 'f',
            long = "file",
            value_name = "PATH",
            default_value = "Dockerfile"
        )]
        file: String,
        /// A build argument (`ARG` value), repeatable.
        #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_build_arg)]
        build_args: Vec<(String, String)>,
        /// Ignore the step cache.
        #[arg(long)]
        no_cache: bool,
        /// Run the RUN steps without network access.
        #[arg(long)]
        no_internet: bool,
    },
    /// Show one image as JSON, with the sandboxes and snapshots using it.
    #[command(
        after_help = "Examples:\n  alcove image inspect alcove/debian\n  alcove image inspect sha256:3f2a…"
    )]
    Inspect {
        /// Reference (`name:tag`) or id.
        reference: String,
    },
    /// Delete images (a name of an image with several names is only untagged).
    #[command(
        visible_aliases = ["remove", "delete"],
        after_help = "Examples:\n  alcove image rm app:1\n  alcove image rm app:1 app:2 sha256:3f2a…"
    )]
    Rm {
        /// References (`name:tag`) or ids.
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Save a completed snapshot's filesystem as a named image.
    #[command(after_help = "Examples:\n  alcove image save-snapshot 5f0c2a… dev-env:1")]
    SaveSnapshot {
        /// The snapshot.
        snapshot_id: String,
        /// The new image's reference (`name:tag`).
        name: String,
    },
}

/// `KEY=VALUE` of `--build-arg`.
fn parse_build_arg(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{value:?} is not KEY=VALUE")),
    }
}

/// Runs an image command.
pub async fn run(args: ImageArgs) -> anyhow::Result<()> {
    let connection = args.server.connect()?;
    let client = connection.client.clone();
    let api_url = connection.api_url.clone();
    let answered = |err: ClientError| explain(err, &api_url);
    match args.action {
        Action::Ls { json, quiet } => {
            let images = client.list_images().await.map_err(answered)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&images)?);
            } else if quiet {
                // Whole ids: what `image rm` takes, whatever names an image has.
                super::output::ids(images.iter().map(|i| &i.id))?;
            } else {
                print!("{}", image_table(&images, Utc::now()));
            }
        }
        Action::Pull {
            reference,
            name,
            username,
            password_stdin,
            auth_secret,
            json,
        } => {
            let mut options = PullOptions::new();
            options.name = name;
            options.auth_secret = auth_secret;
            if let Some(username) = username {
                options = options.credentials(username, read_password(password_stdin)?);
            }
            let image = pull(&client, &reference, &options, json)
                .await
                .map_err(answered)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&image)?);
            } else {
                println!("Pulled {reference}: {}", image.id);
            }
        }
        Action::Import { file, name } => {
            let image = import(&client, &file, name.as_deref())
                .await
                .map_err(answered)?;
            let names = if image.names.is_empty() {
                String::new()
            } else {
                format!(" ({})", image.names.join(", "))
            };
            println!("Imported {}{names}", image.id);
        }
        Action::Build {
            context_dir,
            tag,
            file,
            build_args,
            no_cache,
            no_internet,
        } => {
            let options = BuildOptions {
                dockerfile: file,
                build_args,
                no_cache,
                allow_internet: !no_internet,
            };
            let mut show = |event: &ImageProgressEvent| {
                if let Some(line) = build_line(event) {
                    println!("{line}");
                }
            };
            let image = client
                .build_image_from_dockerfile(&context_dir, &tag, &options, Some(&mut show))
                .await
                .map_err(answered)?;
            println!("Successfully built {}", short_id(&image.id));
            println!("Successfully tagged {tag}");
        }
        Action::Inspect { reference } => {
            let image = client.get_image(&reference).await.map_err(answered)?;
            println!("{}", serde_json::to_string_pretty(&image)?);
        }
        Action::Rm { references } => {
            let mut failed = 0usize;
            for reference in &references {
                match client.delete_image(reference).await {
                    Ok(answer) => print!("{}", deletion_report(&answer)),
                    Err(err) => {
                        failed += 1;
                        eprintln!("error: {:#}", removal_error(reference, err, &api_url));
                    }
                }
            }
            if failed > 0 {
                bail!(
                    "{failed} of {} images could not be removed",
                    references.len()
                );
            }
        }
        Action::SaveSnapshot { snapshot_id, name } => {
            let image = client
                .save_snapshot_as_image(&snapshot_id, &name)
                .await
                .map_err(answered)?;
            println!("Saved snapshot {snapshot_id} as {name}: {}", image.id);
        }
    }
    Ok(())
}

/// The registry password from standard input (its final newline dropped), when asked for.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if !from_stdin {
        bail!("--username needs --password-stdin");
    }
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("--password-stdin: standard input held no password");
    }
    Ok(password)
}

/// Pulls, with one progress bar per layer (none with `--json` or when stderr is no terminal).
async fn pull(
    client: &alcove_client::SandboxClient,
    reference: &str,
    options: &PullOptions,
    quiet: bool,
) -> Result<ImageInfo, ClientError> {
    let bars = MultiProgress::new();
    if quiet || !std::io::stderr().is_terminal() {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{prefix} {msg:>11} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut layers: HashMap<String, ProgressBar> = HashMap::new();
    let mut show = |event: &ImageProgressEvent| {
        let mut update = |digest: &str, status: &str, current: u64, total: u64| {
            let bar = layers.entry(digest.to_string()).or_insert_with(|| {
                bars.add(
                    ProgressBar::new(total)
                        .with_style(style.clone())
                        .with_prefix(short_id(digest)),
                )
            });
            bar.set_length(total);
            bar.set_position(current);
            if matches!(status, "done" | "exists") {
                bar.finish_with_message(status.to_string());
            } else {
                bar.set_message(status.to_string());
            }
        };
        match event {
            ImageProgressEvent::Resolved { layers, .. } => {
                for layer in layers {
                    update(
                        &layer.digest,
                        &layer.status,
                        layer.current_bytes,
                        layer.total_bytes,
                    );
                }
            }
            ImageProgressEvent::Layer(layer) => update(
                &layer.digest,
                &layer.status,
                layer.current_bytes,
                layer.total_bytes,
            ),
            _ => {}
        }
    };
    // Followed even without bars: a long pull is bounded by silence, not by its length.
    let result = client.pull_image(reference, options, Some(&mut show)).await;
    for bar in layers.values() {
        if !bar.is_finished() {
            bar.abandon();
        }
    }
    result
}

/// Imports, with a progress bar of the bytes sent.
async fn import(
    client: &alcove_client::SandboxClient,
    path: &std::path::Path,
    name: Option<&str>,
) -> Result<ImageInfo, ClientError> {
    let opening = |e| ClientError::Io {
        what: format!("opening {}", path.display()),
        source: e,
    };
    let file = tokio::fs::File::open(path).await.map_err(opening)?;
    let length = file.metadata().await.map_err(opening)?.len();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(length)
    } else {
        ProgressBar::hidden()
    };
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message("uploading");
    let reader = Uploading {
        inner: file,
        bar: bar.clone(),
    };
    let result = client
        .import_image_from_reader(reader, Some(length), name)
        .await;
    bar.finish_and_clear();
    result
}

/// A reader that moves a progress bar by the bytes read, and says when it reached the end
/// (the server then imports what it received).
struct Uploading<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Uploading<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = polled {
            let read = buf.filled().len() - before;
            if read == 0 {
                self.bar.set_message("importing");
            } else {
                self.bar.inc(read as u64);
            }
        }
        polled
    }
}

/// The line a build event prints, as `docker build` does: `Step n/N : INSTRUCTION`, then the
/// step's output lines as they are.
fn build_line(event: &ImageProgressEvent) -> Option<String> {
    match event {
        ImageProgressEvent::Step {
            number,
            total,
            instruction,
            cached,
        } => Some(format!(
            "Step {number}/{total} : {instruction}{}",
            if *cached { " (cached)" } else { "" }
        )),
        ImageProgressEvent::Output { line, .. } => Some(line.clone()),
        _ => None,
    }
}

/// What a deletion did: `Untagged: …`, `Deleted: …`, and the bytes freed.
fn deletion_report(answer: &DeleteImageResponse) -> String {
    let mut out = String::new();
    for name in &answer.untagged {
        out.push_str(&format!("Untagged: {name}\n"));
    }
    for id in &answer.deleted {
        out.push_str(&format!("Deleted: {id}\n"));
    }
    if !answer.deleted.is_empty() || answer.freed_bytes > 0 {
        out.push_str(&format!("Freed {}\n", human_size(answer.freed_bytes)));
    }
    out
}

/// Why `reference` could not be removed; an image in use names its users.
fn removal_error(reference: &str, err: ClientError, api_url: &str) -> anyhow::Error {
    match (&err, err.code()) {
        (ClientError::Api { message, .. }, Some("IMAGE_IN_USE")) => {
            anyhow!(in_use(reference, message))
        }
        (ClientError::ImageNotFound { .. }, _) => anyhow!("no such image: {reference}"),
        _ => explain(err, api_url).context(format!("removing {reference}")),
    }
}

/// The message of an image still in use (the server's message names the users).
fn in_use(reference: &str, message: &str) -> String {
    format!("cannot remove {reference}: {message}; delete those sandboxes and snapshots first")
}

/// The first 12 hex digits of an id or digest (`sha256:` dropped).
pub fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

/// Bytes in decimal units, as `docker images` shows them: `0B`, `512B`, `1.5kB`, `23.4MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else if value >= 100.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// How long ago `created_at` (RFC 3339) was, as of `now`: `just now`, `5 minutes ago`, …; the
/// text as it is when it is no time.
pub fn ago(created_at: &str, now: DateTime<Utc>) -> String {
    let Ok(created) = DateTime::parse_from_rfc3339(created_at) else {
        return created_at.to_string();
    };
    let secs = (now - created.with_timezone(&Utc)).num_seconds().max(0);
    let (count, unit) = match secs {
        0..60 => return "just now".into(),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        86_400..2_592_000 => (secs / 86_400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural} ago")
}

/// Names shown in a row of `alcove image ls`: up to three, then how many more (`inspect` and
/// `--json` list them all), so that one image with many names does not widen every row.
fn shown_names(names: &[String]) -> String {
    const SHOWN: usize = 3;
    match names.len() {
        0 => "<none>".to_string(),
        n if n <= SHOWN => names.join(", "),
        n => format!("{}, +{} more", names[..SHOWN].join(", "), n - SHOWN),
    }
}

/// The table of `alcove image ls`: NAME(S), ID, SOURCE, SIZE, CREATED, columns aligned.
pub fn image_table(images: &[ImageInfo], now: DateTime<Utc>) -> String {
    let mut rows = vec![[
        "NAME(S)".to_string(),
        "ID".to_string(),
        "SOURCE".to_string(),
        "SIZE".to_string(),
        "CREATED".to_string(),
    ]];
    for image in images {
        let names = shown_names(&image.names);
        rows.push([
            names,
            short_id(&image.id),
            image.source.clone(),
            human_size(image.size_bytes),
            ago(&image.created_at, now),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alcove_client::wire::image::ImageRunConfig;

    fn image(names: &[&str], id: &str, size: u64, created: &str) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            manifest_digest: None,
            source: "pull".into(),
            created_at: created.into(),
            size_bytes: size,
            layers: vec![],
            config: ImageRunConfig::default(),
            used_by: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .expect("a time")
            .with_timezone(&Utc)
    }

    #[test]
    fn sizes_read_like_docker_images() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1.0kB");
        assert_eq!(human_size(1_536), "1.5kB");
        assert_eq!(human_size(23_400_000), "23.4MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(5_000_000_000), "5.0GB");
        assert_eq!(human_size(u64::MAX), "18447PB");
    }

    #[test]
    fn ids_are_cut_to_twelve_hex_digits() {
        assert_eq!(short_id("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn times_read_as_ago() {
        assert_eq!(ago("2026-03-01T11:59:30Z", now()), "just now");
        assert_eq!(ago("2026-03-01T11:59:00Z", now()), "1 minute ago");
        assert_eq!(ago("2026-03-01T09:00:00+00:00", now()), "3 hours ago");
        assert_eq!(ago("2026-02-27T12:00:00Z", now()), "2 days ago");
        assert_eq!(ago("2024-01-01T00:00:00Z", now()), "2 years ago");
        assert_eq!(ago("2027-01-01T00:00:00Z", now()), "just now");
        assert_eq!(ago("yesterday", now()), "yesterday");
    }

    #[test]
    fn the_table_aligns_its_columns() {
        let images = [
            image(
                &["alcove/debian", "debian:12"],
                "sha256:0123456789abcdef",
                123_456_789,
                "2026-03-01T09:00:00Z",
            ),
            image(&[], "sha256:fedcba9876543210", 512, "2026-03-01T11:59:59Z"),
        ];
        let table = image_table(&images, now());
        let expected = "\
NAME(S)                    ID             SOURCE   SIZE    CREATED
alcove/debian, debian:12   0123456789ab   pull     123MB   3 hours ago
<none>                     fedcba987654   pull     512B    just now
";
        assert_eq!(table, expected);
        assert_eq!(
            image_table(&[], now()),
            "NAME(S)   ID   SOURCE   SIZE   CREATED\n"
        );
    }

    #[test]
    fn a_row_shows_three_names_and_counts_the_rest() {
        let names: Vec<String> = ["a:1", "b:1", "c:1", "d:1", "e:1"].map(String::from).into();
        assert_eq!(shown_names(&names), "a:1, b:1, c:1, +2 more");
        assert_eq!(shown_names(&names[..3]), "a:1, b:1, c:1");
        assert_eq!(shown_names(&[]), "<none>");
    }

    #[test]
    fn build_events_print_like_docker_build() {
        let step = ImageProgressEvent::Step {
            number: 2,
            total: 3,
            instruction: "RUN echo hi > /hi".into(),
            cached: true,
        };
        assert_eq!(
            build_line(&step).as_deref(),
            Some("Step 2/3 : RUN echo hi > /hi (cached)")
        );
        let output = ImageProgressEvent::Output {
            stream: "stderr".into(),
            line: "warning: x".into(),
        };
        assert_eq!(build_line(&output).as_deref(), Some("warning: x"));
    }

    #[test]
    fn deletions_report_what_they_did() {
        let answer = DeleteImageResponse {
            untagged: vec!["app:1".into()],
            deleted: vec!["sha256:aa".into()],
            freed_bytes: 2_500_000,
        };
        assert_eq!(
            deletion_report(&answer),
            "Untagged: app:1\nDeleted: sha256:aa\nFreed 2.5MB\n"
        );
        let untag_only = DeleteImageResponse {
            untagged: vec!["app:2".into()],
            ..DeleteImageResponse::default()
        };
        assert_eq!(deletion_report(&untag_only), "Untagged: app:2\n");
    }

    #[test]
    fn an_image_in_use_names_its_users() {
        let text = in_use(
            "app:1",
            "image app:1 is in use by sandbox sb-1, snapshot s-2",
        );
        assert_eq!(
            text,
            "cannot remove app:1: image app:1 is in use by sandbox sb-1, snapshot s-2; \
             delete those sandboxes and snapshots first"
        );
        let err = removal_error(
            "gone:1",
            ClientError::ImageNotFound {
                reference: Some("gone:1".into()),
                message: "not found".into(),
                code: None,
            },
            "http://x",
        );
        assert_eq!(err.to_string(), "no such image: gone:1");
    }

    fn parse(args: &[&str]) -> Result<Action, clap::Error> {
        use clap::Parser;
        let cli = crate::Cli::try_parse_from(["alcove", "image"].iter().chain(args))?;
        match cli.command {
            crate::Command::Image(image) => Ok(image.action),
            other => panic!("not an image command: {other:?}"),
        }
    }

    fn refused(args: &[&str]) -> clap::error::ErrorKind {
        let err = parse(args).expect_err("refused");
        assert_eq!(err.exit_code(), 2, "usage errors exit with 2");
        err.kind()
    }

    #[test]
    fn the_commands_parse() {
        use clap::error::ErrorKind;
        assert!(matches!(
            parse(&["ls"]),
            Ok(Action::Ls {
                json: false,
                quiet: false
            })
        ));
        assert!(matches!(
            parse(&["ls", "-q"]),
            Ok(Action::Ls {
                json: false,
                quiet: true
            })
        ));
        assert!(matches!(
            parse(&["ls", "--json"]),
            Ok(Action::Ls {
                json: true,
                quiet: false
            })
        ));
        let Ok(Action::Pull {
            reference,
            name,
            username,
            password_stdin,
            auth_secret,
            json,
        }) = parse(&[
            "pull",
            "localhost:5000/x:1",
            "--name",
            "x:1",
            "--username",
            "ci",
            "--password-stdin",
            "--json",
        ])
        else {
            panic!("a pull");
        };
        assert_eq!(
            (reference.as_str(), name.as_deref(), username.as_deref()),
            ("localhost:5000/x:1", Some("x:1"), Some("ci"))
        );
        assert!(password_stdin && json && auth_secret.is_none());
        assert_eq!(
            refused(&["pull", "x", "--username", "ci"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["pull", "x", "--password-stdin"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&[
                "pull",
                "x",
                "--auth-secret",
                "S",
                "--username",
                "u",
                "--password-stdin"
            ]),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(refused(&["pull"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            refused(&["pull", "x", "--password", "p"]),
            ErrorKind::UnknownArgument,
            "a password is never an argument"
        );

        let Ok(Action::Build {
            context_dir,
            tag,
            file,
            build_args,
            no_cache,
            no_internet,
        }) = parse(&[
            "build",
            "./ctx",
            "-t",
            "app:1",
            "-f",
            "sub/Dockerfile",
            "--build-arg",
            "A=1",
            "--build-arg",
            "B=x=y",
            "--no-cache",
            "--no-internet",
        ])
        else {
            panic!("a build");
        };
        assert_eq!(context_dir, PathBuf::from("./ctx"));
        assert_eq!((tag.as_str(), file.as_str()), ("app:1", "sub/Dockerfile"));
        assert_eq!(
            build_args,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert!(no_cache && no_internet);
        let Ok(Action::Build {
            file,
            build_args,
            no_cache,
            ..
        }) = parse(&["build", ".", "--tag", "app:1"])
        else {
            panic!("a build");
        };
        assert_eq!(file, "Dockerfile");
        assert!(build_args.is_empty() && !no_cache);
        assert_eq!(refused(&["build", "."]), ErrorKind::MissingRequiredArgument);
        assert_eq!(
            refused(&["build", ".", "-t", "a:1", "--build-arg", "NOVALUE"]),
            ErrorKind::ValueValidation
        );

        assert!(matches!(
            parse(&["import", "a.tar", "--name", "a:1"]),
            Ok(Action::Import { name: Some(ref n), .. }) if n == "a:1"
        ));
        assert!(matches!(
            parse(&["inspect", "alcove/debian"]),
            Ok(Action::Inspect { ref reference }) if reference == "alcove/debian"
        ));
        assert!(matches!(
            parse(&["rm", "a:1", "b:2"]),
            Ok(Action::Rm { ref references }) if references.len() == 2
        ));
        assert_eq!(refused(&["rm"]), ErrorKind::MissingRequiredArgument);
        assert!(matches!(
            parse(&["save-snapshot", "snap-1", "dev:1"]),
            Ok(Action::SaveSnapshot { ref snapshot_id, ref name }) if snapshot_id == "snap-1" && name == "dev:1"
        ));
        assert_eq!(
            refused(&["save-snapshot", "snap-1"]),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(refused(&["frobnicate"]), ErrorKind::InvalidSubcommand);
    }

    #[test]
    fn the_server_options_go_anywhere() {
        use clap::Parser;
        for args in [
            ["alcove", "image", "--api-url", "http://h:1", "ls"],
            ["alcove", "image", "ls", "--api-url", "http://h:1"],
        ] {
            let cli = crate::Cli::try_parse_from(args).expect("parses");
            let crate::Command::Image(image) = cli.command else {
                panic!("an image command");
            };
            assert_eq!(image.server.api_url.as_deref(), Some("http://h:1"));
        }
    }

    #[test]
    fn every_command_has_examples_in_its_help() {
        use clap::CommandFactory;
        let mut cli = crate::Cli::command();
        cli.build();
        let image = cli.find_subcommand_mut("image").expect("image");
        let mut help = Vec::new();
        help.push(image.render_long_help().to_string());
        for sub in image.get_subcommands_mut() {
            if sub.get_name() != "help" {
                help.push(sub.render_long_help().to_string());
            }
        }
        assert_eq!(help.len(), 8);
        for text in &help {
            assert!(text.contains("Examples:"), "{text}");
        }
        let err = parse(&["build", "--help"]).expect_err("help");
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        assert_eq!(err.exit_code(), 0);
    }

    #[test]
    fn build_args_are_key_value() {
        assert_eq!(
            parse_build_arg("A=b=c"),
            Ok(("A".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_build_arg("A="), Ok(("A".to_string(), String::new())));
        assert!(parse_build_arg("A").is_err());
        assert!(parse_build_arg("=x").is_err());
    }
}
