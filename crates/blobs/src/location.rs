//! Where a blob store is (`file:///dir`, `s3://bucket/prefix`) and how to
//! reach it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;

use crate::error::{BlobError, Result};

/// How to reach an S3 store: from flags or the environment. The secret is
/// kept out of `Debug`.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// The server's URL (`http://127.0.0.1:9000`); AWS's when unset.
    pub endpoint: Option<String>,
    /// The region to sign for (`us-east-1` when unset).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where the blobs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A directory of this machine (or a file system shared between machines).
    Directory(PathBuf),
    /// A bucket of an S3-compatible server, under a key prefix.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix inside it, without slashes at either end ("" for none).
        prefix: String,
    },
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Directory(dir) => write!(f, "file://{}", dir.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl BlobLocation {
    /// Parses `file:///absolute/dir` or `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("file://") {
            let dir = PathBuf::from(path);
            if !dir.is_absolute() {
                return Err(BlobError::Config(format!(
                    "{url:?}: a file:// blob store needs an absolute path (file:///srv/alcove-blobs)"
                )));
            }
            return Ok(Self::Directory(dir));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !bucket_ok {
                return Err(BlobError::Config(format!(
                    "{url:?}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, '-' or '.')"
                )));
            }
            let prefix = prefix.trim_matches('/').to_string();
            if prefix.split('/').any(|p| p == ".." || p == ".")
                || prefix.contains("//")
                || prefix.chars().any(char::is_control)
            {
                return Err(BlobError::Config(format!(
                    "{url:?}: the key prefix must be plain names separated by '/'"
                )));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        Err(BlobError::Config(format!(
            "{url:?}: expected file:///dir or s3://bucket/prefix"
        )))
    }

    /// The key prefix every object is put under.
    pub(crate) fn prefix(&self) -> &str {
        match self {
            Self::Directory(_) => "",
            Self::S3 { prefix, .. } => prefix,
        }
    }

    /// The `object_store` client for this location.
    pub(crate) fn connect(&self, s3: &S3Settings) -> Result<Arc<dyn ObjectStore>> {
        match self {
            Self::Directory(dir) => {
                create_private_dir(dir)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| BlobError::Config(format!("{}: {e}", dir.display())))?
                    .with_automatic_cleanup(true);
                Ok(Arc::new(store))
            }
            Self::S3 { bucket, .. } => {
                let (Some(key_id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key)
                else {
                    return Err(BlobError::Config(
                        "an s3:// blob store needs an access key id and a secret access key \
                         (--s3-access-key-id and ALCOVE_S3_SECRET_ACCESS_KEY)"
                            .into(),
                    ));
                };
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
                    .with_access_key_id(key_id)
                    .with_secret_access_key(secret)
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(20),
                        ..Default::default()
                    })
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(300)),
                    );
                if let Some(endpoint) = &s3.endpoint {
                    if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                        return Err(BlobError::Config(format!(
                            "S3 endpoint {endpoint:?} must start with http:// or https://"
                        )));
                    }
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                let store = builder
                    .build()
                    .map_err(|e| BlobError::Config(e.to_string()))?;
                Ok(Arc::new(store))
            }
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(BlobError::io("creating", dir))
}
