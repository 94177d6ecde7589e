//! Files of a sandbox (docs/protocol/sandbox-api.md, Files): streamed both ways, so a large
//! file never sits whole in memory unless asked for ([`Sandbox::read_file`],
//! [`Sandbox::write_file`] with bytes).
//!
//! Transfers are bounded per read and write, not as a whole: each may wait the client's
//! `timeout`, so a transfer lasts as long as bytes keep moving.

use std::path::Path;

use alcove_wire::files::{FileEntry, FileList};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Sandbox;
use crate::body::Reader;
use crate::error::{ClientError, TimeoutSetting};
use crate::transport::{Call, Kind};

/// Chunk size of uploads read from local files.
pub const UPLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// A file's content as it arrives, each chunk within the client's `timeout`.
pub type ByteStream = BoxStream<'static, Result<Bytes, ClientError>>;

impl Sandbox {
    fn file_call(
        &self,
        method: Method,
        segments: &[&str],
        path: &str,
    ) -> Result<Call, ClientError> {
        if path.is_empty() {
            return Err(ClientError::invalid("path must be a non-empty string"));
        }
        Ok(self.call(method, segments)?.query("path", path))
    }

    /// Writes a file from memory (parents are created, an existing file is replaced).
    pub async fn write_file(&self, path: &str, data: impl Into<Bytes>) -> Result<(), ClientError> {
        let call = self
            .file_call(Method::PUT, &["files"], path)?
            .bytes(data.into())
            .kind(Kind::Transfer);
        self.transport().body(call).await.map(drop)
    }

    /// Writes a file from a stream of chunks, holding one chunk at a time. `length` (when
    /// known) is sent as `Content-Length`. A streamed upload is never sent twice.
    pub async fn write_file_stream<S>(
        &self,
        path: &str,
        chunks: S,
        length: Option<u64>,
    ) -> Result<(), ClientError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let call = self
            .file_call(Method::PUT, &["files"], path)?
            .stream(chunks.boxed(), length);
        self.transport().body(call).await.map(drop)
    }

    /// Uploads the local file `local_path` to `path` in the sandbox, streamed.
    pub async fn upload_file(
        &self,
        local_path: impl AsRef<Path>,
        path: &str,
    ) -> Result<(), ClientError> {
        let local_path = local_path.as_ref();
        let what = || format!("opening {}", local_path.display());
        let file = tokio::fs::File::open(local_path)
            .await
            .map_err(|e| ClientError::io(what(), e))?;
        let length = file
            .metadata()
            .await
            .map_err(|e| ClientError::io(what(), e))?
            .len();
        self.write_file_stream(path, file_chunks(file), Some(length))
            .await
    }

    /// Reads a whole file into memory (see [`Self::read_file_stream`] for big files).
    pub async fn read_file(&self, path: &str) -> Result<Bytes, ClientError> {
        let mut reader = self.open_file(path).await?;
        let mut content = bytes::BytesMut::new();
        while let Some(chunk) = reader.chunk().await? {
            content.extend_from_slice(&chunk);
        }
        Ok(content.freeze())
    }

    /// A file's content chunk by chunk, without holding it in memory.
    pub async fn read_file_stream(&self, path: &str) -> Result<ByteStream, ClientError> {
        let reader = self.open_file(path).await?;
        let chunks = futures::stream::unfold(Some(reader), |state| async move {
            let mut reader = state?;
            match reader.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        });
        Ok(chunks.boxed())
    }

    /// Streams a sandbox file to `local_path`; returns the number of bytes written.
    pub async fn download_file(
        &self,
        path: &str,
        local_path: impl AsRef<Path>,
    ) -> Result<u64, ClientError> {
        let local_path = local_path.as_ref();
        let what = || format!("writing {}", local_path.display());
        let mut reader = self.open_file(path).await?;
        let mut out = tokio::fs::File::create(local_path)
            .await
            .map_err(|e| ClientError::io(what(), e))?;
        let mut written = 0u64;
        while let Some(chunk) = reader.chunk().await? {
            out.write_all(&chunk)
                .await
                .map_err(|e| ClientError::io(what(), e))?;
            written += chunk.len() as u64;
        }
        out.flush().await.map_err(|e| ClientError::io(what(), e))?;
        Ok(written)
    }

    /// The entries of a directory: directories first, then by name.
    pub async fn list_directory(&self, path: &str) -> Result<Vec<FileEntry>, ClientError> {
        let call = self.file_call(Method::GET, &["files", "list"], path)?;
        let list: FileList = self.transport().json(call, "directory listing").await?;
        Ok(list.entries)
    }

    /// Deletes a file.
    pub async fn delete_file(&self, path: &str) -> Result<(), ClientError> {
        let call = self.file_call(Method::DELETE, &["files"], path)?;
        self.transport().body(call).await.map(drop)
    }

    async fn open_file(&self, path: &str) -> Result<Reader, ClientError> {
        let call = self
            .file_call(Method::GET, &["files"], path)?
            .kind(Kind::Transfer);
        let response = self.transport().send(call).await?;
        let timeout = self.transport().config.timeout;
        Ok(Reader::new(
            response,
            Some(timeout),
            TimeoutSetting::Timeout,
        ))
    }
}

/// The chunks of a local file (or any reader), one [`UPLOAD_CHUNK_BYTES`] read at a time.
pub(crate) fn file_chunks<R>(file: R) -> impl Stream<Item = std::io::Result<Bytes>> + Send
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    futures::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; UPLOAD_CHUNK_BYTES];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(err) => Some((Err(err), None)),
        }
    })
}
