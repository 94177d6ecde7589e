//! Images: the store, pulls, imports and builds (docs/images.md).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How sandboxes of an image run, from its OCI config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageRunConfig {
    /// `KEY=VALUE` entries every process starts with (a call's own `env` wins).
    #[serde(default)]
    #[schema(required)]
    pub env: Vec<String>,
    /// Default working directory of processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub working_dir: Option<String>,
    /// Default user of processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub user: Option<String>,
    /// `Entrypoint`.
    #[serde(default)]
    #[schema(required)]
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    #[serde(default)]
    #[schema(required)]
    pub cmd: Vec<String>,
    /// TCP ports the image exposes (routed like a sandbox's `exposed_ports`).
    #[serde(default)]
    #[schema(required)]
    pub exposed_ports: Vec<u16>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageLayerInfo {
    /// Digest of the uncompressed layer (its key in the store).
    pub diff_id: String,
    /// Digest of the stored blob, if the store keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub digest: Option<String>,
    /// Bytes of the blob.
    pub size_bytes: u64,
    /// Bytes of the unpacked files.
    pub unpacked_size_bytes: u64,
}

/// Who uses an image: it cannot be deleted while any does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageUsers {
    /// Sandboxes (running, suspended or pending) made from it.
    pub sandboxes: Vec<String>,
    /// Snapshots taken of its sandboxes.
    pub snapshots: Vec<String>,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageInfo {
    /// Image id: the digest of its config (`sha256:…`).
    pub id: String,
    /// References that name it (`name:tag`).
    pub names: Vec<String>,
    /// Digest of the manifest it was pulled or imported with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub manifest_digest: Option<String>,
    /// `builtin`, `pull`, `import`, `build` or `snapshot`.
    pub source: String,
    /// When it was stored (RFC 3339).
    pub created_at: String,
    /// Bytes of all its unpacked layers.
    pub size_bytes: u64,
    /// Layers, bottom first.
    pub layers: Vec<ImageLayerInfo>,
    /// How its sandboxes run.
    pub config: ImageRunConfig,
    /// Who uses it (answers of get only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub used_by: Option<ImageUsers>,
}

/// Answer of `GET {B}/images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageListResponse {
    /// Every image, newest first.
    pub images: Vec<ImageInfo>,
}

/// Body of `POST {B}/images/pull`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullImageRequest {
    /// `registry/repository:tag` or `registry/repository@sha256:…`.
    pub reference: String,
    /// Store it under this name too (`name:tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Registry user name (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Registry password or token (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A stored secret whose value is `username:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
}

/// Answer of `DELETE {B}/images/{ref}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeleteImageResponse {
    /// References removed.
    pub untagged: Vec<String>,
    /// Images removed (ids).
    pub deleted: Vec<String>,
    /// Bytes of blobs and layers freed.
    pub freed_bytes: u64,
}

/// Body of `POST {B}/snapshots/{id}/image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveSnapshotImageRequest {
    /// The new image's reference (`name:tag`).
    pub name: String,
}

/// One event of a pull or build followed as `text/event-stream` (the SSE
/// `event:` is the variant's name; its data is this object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ImageProgressEvent {
    /// A pull resolved its manifest.
    Resolved {
        /// Manifest digest.
        manifest_digest: String,
        /// Layer blobs to fetch, bottom first.
        layers: Vec<LayerProgress>,
    },
    /// A layer advanced.
    Layer(LayerProgress),
    /// A build step started.
    Step {
        /// 1-based step number.
        number: u32,
        /// Steps in all.
        total: u32,
        /// The instruction as written.
        instruction: String,
        /// Whether the step cache answered it.
        cached: bool,
    },
    /// A line of a build step's output.
    Output {
        /// `stdout` or `stderr`.
        stream: String,
        /// The line, without its newline.
        line: String,
    },
    /// The image is stored.
    Done {
        /// The image.
        image: Box<ImageInfo>,
    },
    /// The pull or build failed; nothing was stored.
    Error {
        /// The error code of the JSON error body.
        code: String,
        /// What went wrong.
        message: String,
        /// HTTP status the blocking call would have answered.
        status: u16,
    },
}

/// Progress of one layer blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LayerProgress {
    /// Blob digest.
    pub digest: String,
    /// `waiting`, `exists`, `downloading`, `verifying`, `unpacking` or `done`.
    pub status: String,
    /// Bytes fetched so far.
    pub current_bytes: u64,
    /// Bytes in all.
    pub total_bytes: u64,
}
