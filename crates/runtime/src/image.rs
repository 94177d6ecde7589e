//! What the runtime needs of an image: the read-only layers a sandbox's root
//! file system is stacked from, and what every sandbox of it gets at boot.
//! Where images come from (the content-addressed store, pulls, builds) is the
//! server's business (the `alcove-images` crate).

use std::path::PathBuf;

/// A program an image starts in each of its sandboxes at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageService {
    /// Name, unique in the image (the process is started under this name).
    pub name: String,
    /// Program and arguments.
    pub command: Vec<String>,
}

/// A resolved image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference it was resolved from, as shown to users.
    pub name: String,
    /// Its id in the store (`sha256:…`): a sandbox keeps the exact layers it
    /// was made from, whatever its name points at later.
    pub id: String,
    /// Unpacked layers, bottom first: the overlay's lower directories.
    pub layers: Vec<PathBuf>,
    /// Default environment of every process (sorted by name).
    pub env: Vec<(String, String)>,
    /// Programs started at boot.
    pub services: Vec<ImageService>,
    /// Default working directory of its processes (the agent's default).
    pub working_dir: Option<String>,
    /// Default user of its processes (the agent's default).
    pub user: Option<String>,
}
