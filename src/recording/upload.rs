//! Uploading a finished recording file to the configured object store, with retries.
//!
//! The store comes from `upload_url` ([`UploadTarget`]): `file://` → object_store's
//! `LocalFileSystem` (fsynced); `s3://` → `AmazonS3Builder::from_env()` (region, endpoint and
//! credentials from the standard `AWS_*` variables, e.g. `AWS_ENDPOINT_URL` and
//! `AWS_ALLOW_HTTP=true` for a local S3-compatible server); `gs://` →
//! `GoogleCloudStorageBuilder::from_env()` (`GOOGLE_SERVICE_ACCOUNT`, …). Explicit
//! `store_options` (object_store config keys such as `aws_endpoint`) override the
//! environment.
//!
//! Retries are ours, not object_store's (its own retry layer is switched off so one
//! policy decides): capped exponential backoff with full jitter
//! ([`crate::retry`]) and a bounded attempt budget. Each retry is
//! logged at warn and counted; the give-up is logged once at error and counted. A missing
//! or unreadable local file, bad credentials or a refused permission are not retried.
//!
//! The file is streamed (bounded memory: one [`PART_BYTES`] buffer, multipart uploads
//! above it). This module never deletes or changes the local file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::RetryConfig;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::buffered::BufWriter;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{error, info, warn};

use super::target::UploadTarget;
use crate::retry::{Backoff, RetryPolicy};
use crate::telemetry;

/// Upload buffer: files up to this size go up in one request, larger ones as multipart
/// uploads of parts this size (S3 needs at least 5 MiB per part).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight at once in a multipart upload (memory: this many × [`PART_BYTES`]).
const PART_CONCURRENCY: usize = 2;
/// How long cleaning up a failed multipart upload may take before it is left to expire.
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the store could not be set up (a start-up error: bad config).
#[derive(Debug, Error)]
pub enum StoreSetupError {
    /// An option key object_store does not know for this kind of store.
    #[error("unknown {kind} store option {key:?}")]
    UnknownOption {
        /// `s3` or `gcs`.
        kind: &'static str,
        /// The key.
        key: String,
    },
    /// Options were given for a `file://` target, which takes none.
    #[error("store options are only for s3:// and gs:// targets")]
    OptionsForFile,
    /// The local folder could not be created.
    #[error("cannot create the upload folder {dir}: {source}")]
    Folder {
        /// The folder.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// object_store refused the configuration.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
}

/// One failed attempt.
#[derive(Debug, Error)]
pub enum AttemptError {
    /// Reading the local file failed (not retried: it will not get better).
    #[error("reading {path}: {source}")]
    Local {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("{0}")]
    Store(std::io::Error),
}

impl AttemptError {
    /// Whether trying again can help.
    pub fn retriable(&self) -> bool {
        match self {
            Self::Local { .. } => false,
            Self::Store(io) => !matches!(
                io.get_ref()
                    .and_then(|e| e.downcast_ref::<object_store::Error>()),
                Some(
                    object_store::Error::PermissionDenied { .. }
                        | object_store::Error::Unauthenticated { .. }
                        | object_store::Error::NotSupported { .. }
                        | object_store::Error::NotImplemented { .. }
                        | object_store::Error::InvalidPath { .. }
                )
            ),
        }
    }
}

/// The upload failed for good.
#[derive(Debug, Error)]
#[error("upload of {key} failed after {attempts} attempt(s): {last}")]
pub struct UploadError {
    /// The object key.
    pub key: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last: AttemptError,
}

/// A completed upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The object key.
    pub key: ObjectPath,
    /// The URL to announce ([`UploadTarget::url`]).
    pub url: String,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Attempts it took (1 = first try).
    pub attempts: u32,
}

/// Uploads files to one target.
#[derive(Debug, Clone)]
pub struct Uploader {
    target: UploadTarget,
    store: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    public_base: Option<String>,
}

impl Uploader {
    /// Builds the store for `target`. `options` are object_store config keys (for `s3`:
    /// `aws_endpoint`, `aws_allow_http`, `aws_access_key_id`, …; for `gcs`:
    /// `google_service_account`, …) applied over what `from_env()` read. `policy` times
    /// the retries; `public_base` replaces the `s3://`/`gs://`/`file://` form of the URL.
    pub fn new(
        target: UploadTarget,
        options: &[(String, String)],
        policy: RetryPolicy,
        public_base: Option<String>,
    ) -> Result<Self, StoreSetupError> {
        // One retry policy (ours); object_store's own layer would multiply attempts.
        let no_retry = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let store: Arc<dyn ObjectStore> = match &target {
            UploadTarget::File { dir } => {
                if !options.is_empty() {
                    return Err(StoreSetupError::OptionsForFile);
                }
                std::fs::create_dir_all(dir).map_err(|source| StoreSetupError::Folder {
                    dir: dir.display().to_string(),
                    source,
                })?;
                // A file:// target is the durable copy: fsynced before the URL goes out.
                Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_fsync(true))
            }
            UploadTarget::S3 { bucket, .. } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(no_retry);
                for (key, value) in options {
                    let parsed: AmazonS3ConfigKey =
                        key.parse().map_err(|_| StoreSetupError::UnknownOption {
                            kind: "s3",
                            key: key.clone(),
                        })?;
                    builder = builder.with_config(parsed, value);
                }
                Arc::new(builder.build()?)
            }
            UploadTarget::Gcs { bucket, .. } => {
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(no_retry);
                for (key, value) in options {
                    let parsed: GoogleConfigKey =
                        key.parse().map_err(|_| StoreSetupError::UnknownOption {
                            kind: "gcs",
                            key: key.clone(),
                        })?;
                    builder = builder.with_config(parsed, value);
                }
                Arc::new(builder.build()?)
            }
        };
        Ok(Self {
            target,
            store,
            policy,
            public_base,
        })
    }

    /// The target.
    pub fn target(&self) -> &UploadTarget {
        &self.target
    }

    /// The store (tests read back what was uploaded).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Uploads `file` as `call_id`'s recording (extension `ext`), retrying per the
    /// policy. The local file is only read.
    pub async fn upload(
        &self,
        file: &Path,
        call_id: &str,
        ext: &str,
    ) -> Result<Uploaded, UploadError> {
        let key = self.target.key(call_id, ext);
        let kind = self.target.kind();
        let mut backoff = Backoff::new(self.policy);
        loop {
            let attempts = backoff.retries() + 1;
            let error = match self.put_once(file, &key).await {
                Ok(bytes) => {
                    let url = self.target.url(&key, self.public_base.as_deref());
                    info!(%call_id, %url, bytes, attempts, "recording uploaded");
                    return Ok(Uploaded {
                        key,
                        url,
                        bytes,
                        attempts,
                    });
                }
                Err(error) => error,
            };
            let delay = if error.retriable() {
                backoff.next_delay(None)
            } else {
                None
            };
            match delay {
                Some(delay) => {
                    warn!(%call_id, %key, attempts, ?delay, %error, "recording upload failed; will retry");
                    metrics::counter!(telemetry::RECORDING_UPLOAD_RETRIES, "target" => kind)
                        .increment(1);
                    tokio::time::sleep(delay).await;
                }
                None => {
                    error!(%call_id, %key, attempts, %error, "recording upload gave up; the local file is kept");
                    return Err(UploadError {
                        key: key.to_string(),
                        attempts,
                        last: error,
                    });
                }
            }
        }
    }

    /// One attempt: streams the file into the store. A failed multipart upload is
    /// aborted so no parts linger.
    async fn put_once(&self, file: &Path, key: &ObjectPath) -> Result<u64, AttemptError> {
        let local = |source| AttemptError::Local {
            path: file.display().to_string(),
            source,
        };
        let mut input = tokio::fs::File::open(file).await.map_err(local)?;
        let mut output = BufWriter::with_capacity(Arc::clone(&self.store), key.clone(), PART_BYTES)
            .with_max_concurrency(PART_CONCURRENCY);
        let mut chunk = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let written: Result<(), AttemptError> = async {
            loop {
                let n = input.read(&mut chunk).await.map_err(local)?;
                if n == 0 {
                    return Ok(());
                }
                output
                    .write_all(&chunk[..n])
                    .await
                    .map_err(AttemptError::Store)?;
                total += n as u64;
            }
        }
        .await;
        if let Err(error) = written {
            // Nothing half-done stays behind: a started multipart upload is aborted.
            // (Only before `shutdown`: object_store's writer panics on abort after it.)
            let _ = tokio::time::timeout(ABORT_TIMEOUT, output.abort()).await;
            return Err(error);
        }
        // A failed completion leaves a multipart upload the store expires by itself.
        output.shutdown().await.map_err(AttemptError::Store)?;
        Ok(total)
    }
}
