//! Pulling an image from an OCI registry into the store.
//!
//! The registry protocol (manifest and blob requests, the bearer-token
//! dance, basic credentials) is oci-client's; this module decides what to
//! fetch and where it goes:
//!
//! 1. the manifest the reference names (an index or manifest list resolves
//!    to its `linux/amd64` entry), stored as a blob with the index;
//! 2. the config blob (≤ 4 MiB, digest verified), whose `rootfs.diff_ids`
//!    pair with the manifest's layers by position;
//! 3. each layer blob not yet stored, streamed into
//!    [`ImageStore::blob_writer`] (digest and size checked when it commits,
//!    so a truncated or altered blob leaves nothing), at most
//!    [`PullConfig::max_concurrent_downloads`] at a time, then unpacked on
//!    the blocking pool as soon as it is in (layers unpack independently);
//! 4. [`ImageStore::commit_pulled_image`], which keeps the registry's config
//!    blob as the image id.
//!
//! The record's `manifest_digest` is the digest the reference resolved to
//! (an index's, for a multi-platform image, as `docker pull` reports it),
//! so `name@<that digest>` finds the image again.
//!
//! A failed pull commits no image; blobs and layers it completed stay in the
//! store, so a retry does not fetch them again, and garbage collection
//! removes them if no image ever uses them.

mod credentials;
mod errors;
pub(crate) mod oci;
mod progress;
mod scheme;

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use alcove_wire::image::ImageProgressEvent;
use bytes::Bytes;
use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::{Semaphore, mpsc};

use crate::digest::Digest;
use crate::error::{ImageStoreError, Result};
use crate::reference::ImageRef;
use crate::store::{ImageRecord, ImageSource, ImageStore, LayerRecord};
use crate::unpack::UnpackLimits;

pub use credentials::RegistryCredentials;
use oci::{Descriptor, Document, MAX_DOCUMENT_BYTES};
use progress::Progress;

/// The default bound on one layer blob.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 16 << 30;

/// An index may point at another index (rare, but allowed); deeper chains
/// are refused rather than followed.
const MAX_INDEX_DEPTH: usize = 2;

/// Chunks of a download queued for the blocking writer: enough to keep the
/// disk busy while the network delivers, few enough to bound memory.
const WRITE_QUEUE: usize = 16;

/// How pulls are made; one per server.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// Registries (`host:port`, or `host` for all its ports) spoken to in
    /// plain HTTP. Loopback registries need not be listed.
    pub insecure_registries: Vec<String>,
    /// Bound on one layer blob (default 16 GiB).
    pub max_layer_bytes: u64,
    /// Layer blobs downloaded at once (default 3).
    pub max_concurrent_downloads: usize,
    /// Bounds on one unpacked layer.
    pub unpack_limits: UnpackLimits,
    /// Time to establish a connection (default 30 s).
    pub connect_timeout: Duration,
    /// Longest silence while reading an answer (default 60 s).
    pub read_timeout: Duration,
}

impl Default for PullConfig {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            max_concurrent_downloads: 3,
            unpack_limits: UnpackLimits::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Pulls images from registries into one store.
#[derive(Debug, Clone)]
pub struct Puller {
    store: ImageStore,
    config: PullConfig,
}

/// One pull's request.
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    /// `[registry/]repository[:tag]` or `…@sha256:…`; without a registry the
    /// name is Docker Hub's, as oci-client reads it.
    pub reference: String,
    /// Another name (`name[:tag]`) to store the image under.
    pub name: Option<String>,
    /// Credentials; `None` pulls anonymously.
    pub credentials: Option<RegistryCredentials>,
    /// Where progress events go: one `Resolved`, then `Layer` events.
    pub progress: Option<mpsc::Sender<ImageProgressEvent>>,
}

/// What one pull works with, shared by its layer tasks.
struct Session {
    client: Client,
    reference: Reference,
    /// The registry host, as errors name it.
    registry: String,
    /// The reference as given, as errors name it.
    text: String,
    store: ImageStore,
    progress: Progress,
}

impl Session {
    fn map(&self, err: oci_client::errors::OciDistributionError) -> ImageStoreError {
        errors::map_error(err, &self.registry, &self.text)
    }
}

impl PullConfig {
    /// Whether `registry` (`host[:port]`) is spoken to in plain HTTP: it is
    /// on a loopback address or listed as insecure. Any other is HTTPS.
    pub fn plain_http(&self, registry: &str) -> bool {
        scheme::plain_http(registry, &self.insecure_registries)
    }

    /// The oci-client configuration for one registry. Only that registry can
    /// be in the plain-HTTP exception list: one client serves one pull.
    fn client_config(&self, registry: &str) -> ClientConfig {
        let protocol = if self.plain_http(registry) {
            ClientProtocol::HttpsExcept(vec![registry.to_string()])
        } else {
            ClientProtocol::Https
        };
        ClientConfig {
            protocol,
            // Indexes are resolved here, to name the platforms offered when
            // none fits; oci-client is only asked for raw manifests.
            platform_resolver: None,
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            ..ClientConfig::default()
        }
    }
}

impl Puller {
    /// A puller into `store`.
    pub fn new(store: ImageStore, config: PullConfig) -> Self {
        Self { store, config }
    }

    /// Pulls `request.reference` into the store and names it: its
    /// [`ImageRef::key`] when it has a tag, and `request.name`.
    pub async fn pull(&self, request: PullRequest) -> Result<ImageRecord> {
        let image_ref = ImageRef::parse(&request.reference)?;
        let reference: Reference =
            request
                .reference
                .parse()
                .map_err(|e: oci_client::ParseError| ImageStoreError::BadReference {
                    reference: request.reference.clone(),
                    reason: e.to_string(),
                })?;
        let mut names = Vec::new();
        if image_ref.tag.is_some() {
            names.push(image_ref.key());
        }
        if let Some(name) = &request.name {
            names.push(ImageRef::parse(name)?.key());
        }
        // oci-client resolves an alias (Docker Hub's short name) to the host
        // it really speaks to; the scheme is decided for that host.
        let registry = reference.resolve_registry().to_string();
        let client = Client::try_from(self.config.client_config(&registry)).map_err(|e| {
            ImageStoreError::Registry {
                registry: registry.clone(),
                message: e.to_string(),
            }
        })?;
        let auth = request
            .credentials
            .as_ref()
            .map_or(RegistryAuth::Anonymous, RegistryCredentials::to_auth);
        let session = Arc::new(Session {
            client,
            reference,
            registry,
            text: request.reference.clone(),
            store: self.store.clone(),
            progress: Progress::new(request.progress),
        });
        tracing::info!(reference = %session.text, registry = %session.registry, "pulling image");

        let (manifest, manifest_digest) = resolve_manifest(&session, &auth).await?;
        oci::check_manifest(&manifest)?;

        let mut resolved = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            let status = if self.store.has_blob(&layer.digest) {
                "exists"
            } else {
                "waiting"
            };
            resolved.push(progress::layer(&layer.digest, status, 0, layer.size));
        }
        session
            .progress
            .send(ImageProgressEvent::Resolved {
                manifest_digest: manifest_digest.to_string(),
                layers: resolved,
            })
            .await;

        let config = fetch_config(&session, &manifest.config).await?;
        let diff_ids = oci::diff_ids(
            &config,
            &format!("config {}", manifest.config.digest),
            manifest.layers.len(),
        )?;

        let layers = self.fetch_layers(&session, &manifest, &diff_ids).await?;

        let store = self.store.clone();
        let config_digest = manifest.config.digest.clone();
        let source = ImageSource::Pull {
            reference: session.text.clone(),
        };
        let record = blocking(move || {
            store.commit_pulled_image(
                &config_digest,
                layers,
                Some(manifest_digest),
                source,
                &names,
            )
        })
        .await?;
        tracing::info!(reference = %session.text, id = %record.id, "pulled image");
        Ok(record)
    }

    /// Fetches and unpacks every layer, at most
    /// `max_concurrent_downloads` downloading at once; returns the records
    /// in manifest order. A blob listed twice is fetched once.
    async fn fetch_layers(
        &self,
        session: &Arc<Session>,
        manifest: &oci::Manifest,
        diff_ids: &[Digest],
    ) -> Result<Vec<LayerRecord>> {
        let downloads = Arc::new(Semaphore::new(self.config.max_concurrent_downloads.max(1)));
        let mut seen = HashSet::new();
        let mut tasks = Vec::new();
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            if !seen.insert(layer.digest.clone()) {
                continue;
            }
            let session = Arc::clone(session);
            let downloads = Arc::clone(&downloads);
            let layer = layer.clone();
            let diff_id = diff_id.clone();
            let max_bytes = self.config.max_layer_bytes;
            let limits = self.config.unpack_limits;
            tasks.push(async move {
                fetch_layer(&session, &downloads, &layer, &diff_id, max_bytes, &limits)
                    .await
                    .map(|record| (layer.digest.clone(), record))
            });
        }
        // The first failure drops the other tasks: their downloads stop, and
        // their unfinished blob writers remove what they wrote.
        let done: HashMap<Digest, LayerRecord> = futures::future::try_join_all(tasks)
            .await?
            .into_iter()
            .collect();
        manifest
            .layers
            .iter()
            .map(|l| {
                done.get(&l.digest)
                    .cloned()
                    .ok_or_else(|| ImageStoreError::BadImage {
                        what: format!("layer {}", l.digest),
                        reason: "was not fetched".into(),
                    })
            })
            .collect()
    }
}

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ImageStoreError::Io {
            op: "run blocking store work",
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Fetches the manifest the reference names, following an index to its
/// `linux/amd64` entry. Stores every document fetched as a blob. Returns the
/// image manifest and the digest the reference resolved to.
async fn resolve_manifest(
    session: &Session,
    auth: &RegistryAuth,
) -> Result<(oci::Manifest, Digest)> {
    let mut target = session.reference.clone();
    let mut top = None;
    for depth in 0..=MAX_INDEX_DEPTH {
        let (bytes, _) = session
            .client
            .pull_manifest_raw(&target, auth, &oci::MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| session.map(e))?;
        // oci-client reads a manifest whole; the bound is checked before
        // anything parses or stores it.
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(ImageStoreError::TooLarge {
                what: format!("manifest of {}", session.text),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        // The digest is computed here rather than taken from a header: it
        // is what the store keys the blob by and what a pin must match.
        let digest = Digest::of(&bytes);
        if let Some(pinned) = target.digest()
            && pinned != digest.as_str()
        {
            return Err(ImageStoreError::DigestMismatch {
                what: format!("manifest of {}", session.text),
                expected: pinned.to_string(),
                actual: digest.to_string(),
            });
        }
        let top_digest = top.get_or_insert_with(|| digest.clone()).clone();
        let what = format!("manifest {digest} of {}", session.text);
        let document = oci::parse_document(&bytes, &what)?;
        store_document(&session.store, bytes).await?;
        match document {
            Document::Manifest(manifest) => return Ok((manifest, top_digest)),
            Document::Index(index) if depth < MAX_INDEX_DEPTH => {
                let entry = oci::choose_platform(&index, &what)?;
                tracing::debug!(reference = %session.text, manifest = %entry.digest, "chose linux/amd64");
                target = session
                    .reference
                    .clone_with_digest(entry.digest.to_string());
            }
            Document::Index(_) => break,
        }
    }
    Err(ImageStoreError::BadImage {
        what: format!("manifest of {}", session.text),
        reason: format!("indexes nested deeper than {MAX_INDEX_DEPTH}"),
    })
}

/// Stores a manifest or index as it was received.
async fn store_document(store: &ImageStore, bytes: Bytes) -> Result<()> {
    let digest = Digest::of(&bytes);
    if store.has_blob(&digest) {
        return Ok(());
    }
    let store = store.clone();
    blocking(move || store.put_blob(&bytes).map(|_| ())).await
}

/// The config blob: from the store when present, else fetched (bounded and
/// verified) and stored.
async fn fetch_config(session: &Session, config: &Descriptor) -> Result<Vec<u8>> {
    let store = session.store.clone();
    let digest = config.digest.clone();
    if session.store.has_blob(&config.digest) {
        return blocking(move || store.read_blob(&digest, MAX_DOCUMENT_BYTES)).await;
    }
    let mut stream = session
        .client
        .pull_blob_stream(&session.reference, config.digest.as_str())
        .await
        .map_err(|e| session.map(e))?;
    // The size is the registry's word: check_manifest bounded it, and so
    // does this, should the order of the checks ever change.
    let mut bytes =
        Vec::with_capacity(usize::try_from(config.size.min(MAX_DOCUMENT_BYTES)).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| errors::map_stream_error(e, &session.registry, config.digest.as_str()))?;
        if (bytes.len() + chunk.len()) as u64 > config.size.min(MAX_DOCUMENT_BYTES) {
            return Err(ImageStoreError::TooLarge {
                what: format!("config {}", config.digest),
                limit: config.size.min(MAX_DOCUMENT_BYTES),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    let size = config.size;
    blocking(move || {
        let mut writer = store.blob_writer(Some((digest.clone(), size)), MAX_DOCUMENT_BYTES)?;
        writer
            .write_all(&bytes)
            .map_err(ImageStoreError::io("write blob", store.blob_path(&digest)))?;
        writer.commit()?;
        Ok(bytes)
    })
    .await
}

/// Downloads one layer blob unless stored, then unpacks it.
async fn fetch_layer(
    session: &Session,
    downloads: &Semaphore,
    layer: &Descriptor,
    diff_id: &Digest,
    max_bytes: u64,
    limits: &UnpackLimits,
) -> Result<LayerRecord> {
    let progress = &session.progress;
    // Stored and unpacked already: `exists` is the layer's last word.
    let existed = session.store.has_blob(&layer.digest) && session.store.has_layer(diff_id);
    if session.store.has_blob(&layer.digest) {
        progress
            .layer(&layer.digest, "exists", layer.size, layer.size)
            .await;
    } else {
        if layer.size > max_bytes {
            return Err(ImageStoreError::TooLarge {
                what: format!("layer {}", layer.digest),
                limit: max_bytes,
            });
        }
        let _permit = downloads
            .acquire()
            .await
            .map_err(|e| ImageStoreError::Registry {
                registry: session.registry.clone(),
                message: e.to_string(),
            })?;
        download_blob(session, layer, max_bytes).await?;
    }
    if !session.store.has_layer(diff_id) {
        progress
            .layer(&layer.digest, "unpacking", layer.size, layer.size)
            .await;
    }
    let store = session.store.clone();
    let (blob, media_type, diff, limits) = (
        layer.digest.clone(),
        layer.media_type.clone(),
        diff_id.clone(),
        *limits,
    );
    let record =
        blocking(move || store.unpack_blob(&blob, &media_type, Some(&diff), &limits)).await?;
    if !existed {
        progress
            .layer(&layer.digest, "done", layer.size, layer.size)
            .await;
    }
    Ok(record)
}

/// What the network side hands the blocking writer.
enum Chunk {
    Data(Bytes),
    /// All bytes were sent: verify and commit. A writer whose channel closes
    /// without this was abandoned and removes what it wrote.
    End,
}

/// Streams one blob into the store through a writer on the blocking pool.
async fn download_blob(session: &Session, layer: &Descriptor, max_bytes: u64) -> Result<()> {
    let mut stream = session
        .client
        .pull_blob_stream(&session.reference, layer.digest.as_str())
        .await
        .map_err(|e| session.map(e))?;
    let (tx, mut rx) = mpsc::channel::<Chunk>(WRITE_QUEUE);
    let store = session.store.clone();
    let expected = (layer.digest.clone(), layer.size);
    let writer = tokio::task::spawn_blocking(move || -> Result<(Digest, u64)> {
        let path = store.blob_path(&expected.0);
        let mut writer = store.blob_writer(Some(expected), max_bytes)?;
        while let Some(chunk) = rx.blocking_recv() {
            match chunk {
                Chunk::Data(bytes) => writer
                    .write_all(&bytes)
                    .map_err(ImageStoreError::io("write blob", &path))?,
                Chunk::End => return writer.commit(),
            }
        }
        Err(ImageStoreError::Io {
            op: "write blob",
            path,
            source: std::io::Error::other("download abandoned"),
        })
    });

    let mut meter = progress::Download::new(&session.progress, &layer.digest, layer.size);
    let mut received = 0u64;
    let mut failure = None;
    let mut writer_gone = false;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                failure = Some(errors::map_stream_error(
                    e,
                    &session.registry,
                    layer.digest.as_str(),
                ));
                break;
            }
        };
        received += chunk.len() as u64;
        // A registry sending more than the manifest announced is cut off
        // here rather than at the writer's much larger limit.
        if received > layer.size {
            failure = Some(ImageStoreError::TooLarge {
                what: format!("layer {}", layer.digest),
                limit: layer.size,
            });
            break;
        }
        if tx.send(Chunk::Data(chunk)).await.is_err() {
            // The writer stopped; its own error says why.
            writer_gone = true;
            break;
        }
        meter.advance(received);
    }
    if failure.is_none() && !writer_gone {
        session
            .progress
            .layer(&layer.digest, "verifying", received, layer.size)
            .await;
        let _ = tx.send(Chunk::End).await;
    }
    drop(tx);
    let written = writer.await.map_err(|e| ImageStoreError::Io {
        op: "write blob",
        path: session.store.blob_path(&layer.digest),
        source: std::io::Error::other(e.to_string()),
    })?;
    match (failure, written) {
        (Some(err), _) => Err(err),
        (None, Err(err)) => Err(err),
        (None, Ok(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests;
