//! Streaming uploads and downloads, hashed on the way.

use std::path::Path;

use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::BlobStore;
use crate::error::{BlobError, Result};

/// S3 wants parts of at least 5 MiB; larger parts mean fewer requests.
const PART_SIZE: usize = 16 << 20;
/// Parts in flight at once: bounds the memory an upload holds.
const PARTS_IN_FLIGHT: usize = 4;

/// What an upload recorded: the sha256 of the bytes and their number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDigest {
    /// Lowercase hex sha256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
}

impl BlobStore {
    /// Streams `reader` to `key` (replacing what was there) and returns the
    /// digest of what was sent. Nothing is left under `key` on failure but
    /// what was there before (a multipart upload is aborted).
    pub async fn upload<R: AsyncRead + Unpin + ?Sized>(
        &self,
        key: &str,
        reader: &mut R,
    ) -> Result<BlobDigest> {
        let path = self.path(key)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        // Read the first part: smaller objects go up in one request.
        let mut first = vec![0u8; PART_SIZE];
        let filled = read_full(reader, &mut first, key).await?;
        first.truncate(filled);
        hasher.update(&first);
        size += filled as u64;
        if filled < PART_SIZE {
            self.inner
                .put(&path, PutPayload::from(first))
                .await
                .map_err(|e| BlobError::from_store(key, e))?;
        } else {
            let upload = self
                .inner
                .put_multipart(&path)
                .await
                .map_err(|e| BlobError::from_store(key, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            writer.write(&first);
            drop(first);
            let mut buf = vec![0u8; 1 << 20];
            let outcome: Result<()> = async {
                loop {
                    let n = reader.read(&mut buf).await.map_err(|e| {
                        BlobError::Store(format!("reading what {key} uploads: {e}"))
                    })?;
                    if n == 0 {
                        return Ok(());
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                    writer
                        .wait_for_capacity(PARTS_IN_FLIGHT)
                        .await
                        .map_err(|e| BlobError::from_store(key, e))?;
                    writer.write(&buf[..n]);
                }
            }
            .await;
            match outcome {
                Ok(()) => {
                    writer
                        .finish()
                        .await
                        .map_err(|e| BlobError::from_store(key, e))?;
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
        }
        // The store must hold as many bytes as were sent.
        let meta = self
            .inner
            .head(&path)
            .await
            .map_err(|e| BlobError::from_store(key, e))?;
        if meta.size != size {
            return Err(BlobError::Store(format!(
                "{key}: the store holds {} bytes after an upload of {size}",
                meta.size
            )));
        }
        Ok(BlobDigest {
            sha256: hex::encode(hasher.finalize()),
            size,
        })
    }

    /// Uploads a local file to `key`.
    pub async fn upload_file(&self, key: &str, file: &Path) -> Result<BlobDigest> {
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(BlobError::io("opening", file))?;
        self.upload(key, &mut f).await
    }

    /// Downloads `key` into `dest`, checking it against `expected`. The bytes
    /// go to `<dest>.partial` (mode 0600) first and reach `dest` only when
    /// their digest and size match; on a mismatch nothing is left locally and
    /// the object stays in the store for a retry.
    pub async fn download_file(&self, key: &str, dest: &Path, expected: &BlobDigest) -> Result<()> {
        let path = self.path(key)?;
        let partial = dest.with_extension(match dest.extension() {
            Some(ext) => format!("{}.partial", ext.to_string_lossy()),
            None => "partial".to_string(),
        });
        let result = async {
            let got = self
                .inner
                .get(&path)
                .await
                .map_err(|e| BlobError::from_store(key, e))?;
            let mut out = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .await
                .map_err(BlobError::io("creating", &partial))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| BlobError::from_store(key, e))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk)
                    .await
                    .map_err(BlobError::io("writing", &partial))?;
            }
            let actual = hex::encode(hasher.finalize());
            if actual != expected.sha256 || size != expected.size {
                return Err(BlobError::Corrupt {
                    key: key.to_string(),
                    expected: expected.sha256.clone(),
                    expected_size: expected.size,
                    actual,
                    actual_size: size,
                });
            }
            out.sync_all()
                .await
                .map_err(BlobError::io("syncing", &partial))?;
            tokio::fs::rename(&partial, dest)
                .await
                .map_err(BlobError::io("renaming", &partial))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }
}

/// Reads until `buf` is full or the reader ends; returns how much was read.
async fn read_full<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut [u8],
    key: &str,
) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader
            .read(&mut buf[filled..])
            .await
            .map_err(|e| BlobError::Store(format!("reading what {key} uploads: {e}")))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
