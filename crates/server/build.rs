//! Embeds the web console's built files (`console/dist`, made by `scripts/setup.sh node`) into
//! the server: writes `$OUT_DIR/console_assets.rs`, a table of `include_bytes!` of each file.
//!
//! A checkout whose console was never built (CI's clippy and unit tests run before the frontend
//! build) still compiles: the table then holds one page saying how to build it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The page served when `console/dist` was not built.
const NOT_BUILT: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Alcove console</title></head><body><h1>Alcove console not built</h1>\
<p>This server was compiled without the web console's files. Run \
<code>scripts/setup.sh node build</code> (it builds <code>console/dist</code>, then the server) \
and restart <code>alcove serve</code>.</p></body></html>\n";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let console = manifest.join("../../console");
    let dist = console.join("dist");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());

    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect(&dist, &dist, &mut files);
        // A directory makes cargo compare the newest mtime of every file under it.
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        // Watch the directory holding `dist`, so that building the console later recompiles.
        println!("cargo:rerun-if-changed={}", console.display());
    }
    files.sort();

    let mut table = String::from(
        "/// The console's files: (path under `/console/`, content type, bytes).\n\
         pub(crate) static ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    if files.is_empty() {
        let page = out.join("console-not-built.html");
        if let Err(e) = std::fs::write(&page, NOT_BUILT) {
            panic!("cannot write {}: {e}", page.display());
        }
        let _ = writeln!(
            table,
            "    (\"index.html\", \"text/html; charset=utf-8\", include_bytes!({:?})),",
            page.display().to_string()
        );
    }
    for (rel, path) in &files {
        let _ = writeln!(
            table,
            "    ({rel:?}, {:?}, include_bytes!({:?})),",
            content_type(rel),
            path.display().to_string()
        );
    }
    table.push_str("];\n");
    let _ = writeln!(
        table,
        "/// Whether `console/dist` was built when the server was compiled.\n\
         pub(crate) const BUILT: bool = {};",
        !files.is_empty()
    );
    let target = out.join("console_assets.rs");
    if let Err(e) = std::fs::write(&target, table) {
        panic!("cannot write {}: {e}", target.display());
    }
}

/// Every file under `dir` as (path relative to `root` with `/`, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            // Source maps stay out of the binary.
            if !rel.ends_with(".map") {
                let abs = path.canonicalize().unwrap_or(path);
                files.push((rel, abs));
            }
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
