//! The user's saved connection (`alcove login`): the API URL and key in
//! `$XDG_CONFIG_HOME/alcove/config.json` (`~/.config/alcove/config.json`), mode 0600.
//!
//! Flags and `ALCOVE_API_URL` / `ALCOVE_API_KEY` override what is saved.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Names the file explicitly (tests, several servers): `ALCOVE_CONFIG=/path/config.json`.
pub const CONFIG_ENV: &str = "ALCOVE_CONFIG";

/// What `alcove login` saves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The server's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The API key, when the server requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// Where the settings live.
pub fn path() -> anyhow::Result<PathBuf> {
    location().context("neither XDG_CONFIG_HOME nor HOME is set: cannot place the config")
}

/// Where the settings live, if the environment says where (`None` without `ALCOVE_CONFIG`,
/// `XDG_CONFIG_HOME` and `HOME`: a cron job, a bare container).
fn location() -> Option<PathBuf> {
    let set = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(explicit) = set(CONFIG_ENV) {
        return Some(explicit);
    }
    let base = set("XDG_CONFIG_HOME").or_else(|| set("HOME").map(|home| home.join(".config")))?;
    Some(base.join("alcove").join("config.json"))
}

impl Settings {
    /// The saved settings; none saved yet is the default. A file others can read is refused:
    /// it may hold a key. Without a place for them nothing was saved: the flags and
    /// environment say it all.
    pub fn load() -> anyhow::Result<Self> {
        let Some(path) = location() else {
            return Ok(Self::default());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mode = std::fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "{} is readable by other users (mode {:o}): run `chmod 600` on it or `alcove login` again",
                path.display(),
                mode & 0o777
            );
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid alcove config JSON", path.display()))
    }

    /// Saves the settings, readable by the user alone (written aside, then renamed over).
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = path()?;
        let dir = path
            .parent()
            .context("the config path has no parent directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let partial = path.with_extension("json.partial");
        let text = serde_json::to_string_pretty(self)?;
        let write = || -> std::io::Result<()> {
            let _ = std::fs::remove_file(&partial);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
        };
        write().with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Forgets the saved settings; true when there were some.
    pub fn remove() -> anyhow::Result<bool> {
        let path = path()?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
}
