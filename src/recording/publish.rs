//! After the call: a finished recording is (optionally) encoded, stored where its URL
//! points, marked published for retention, and announced through a
//! [`RecordingAnnouncer`] (the server wires the control plane: `recording_url` on the call,
//! `call.recording_ready` through the outbox).
//!
//! Order is the guarantee: the URL is announced only after the file is stored there, and
//! no local file is deleted before that. With `format = "opus"` the intermediate WAV is
//! removed once the Opus file is stored; if encoding fails the WAV is published instead
//! (counted as an `encode` failure). If the upload gives up, nothing is announced and
//! both files stay local and unmarked, so retention never deletes them.
//!
//! It must never block the caller: [`Publisher::handoff`] returns the recorder's
//! callback, which only spawns a task. Encoding runs on the blocking pool; at most
//! `max_concurrent` recordings are in flight, the rest wait their turn.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info_span, warn};

use super::FinishedRecording;
use super::config::RecordingFormat;
use super::encode::{self, EncodeError};
use super::publish_config::{PublishConfig, PublishConfigError};
use super::retention;
use super::target::file_url;
use super::upload::{StoreSetupError, UploadError, Uploader};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::telemetry;

/// Who hears that a recording is published: recording says what it announces, the
/// subscriber (the control plane, wired in `server.rs`) says what it does with it.
#[async_trait]
pub trait RecordingAnnouncer: Send + Sync {
    /// `call_id`'s recording is stored at `url`.
    async fn announce(&self, call_id: &str, url: &str) -> Result<(), AnnounceError>;
}

/// Why an announcement was not taken; the publisher retries only [`AnnounceError::Unavailable`].
#[derive(Debug, Error)]
pub enum AnnounceError {
    /// The subscriber cannot take it now (e.g. its store is down): worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// The subscriber refused it for good (e.g. an unknown call).
    #[error("{0}")]
    Rejected(String),
}

/// The recorder's end-of-call callback ([`Publisher::handoff`]).
pub type Handoff = Arc<dyn Fn(FinishedRecording) + Send + Sync>;

/// Why a publisher could not start.
#[derive(Debug, Error)]
pub enum PublisherError {
    /// Bad settings.
    #[error(transparent)]
    Config(#[from] PublishConfigError),
    /// The store could not be set up.
    #[error(transparent)]
    Store(#[from] StoreSetupError),
    /// [`Publisher::handoff`] was called outside a tokio runtime.
    #[error("the recording publisher needs a tokio runtime")]
    NoRuntime,
}

/// Why a recording was not published.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The upload gave up; the local file is kept.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The announcer did not take the URL.
    #[error("announcing the recording: {0}")]
    Announce(AnnounceError),
    /// The local file could not be synced to disk or made absolute for its URL.
    #[error("storing {path} locally: {source}")]
    Local {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A published recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The call.
    pub call_id: String,
    /// The announced URL.
    pub url: String,
    /// The local copy (the `.opus` when encoded), marked published.
    pub local: PathBuf,
    /// Upload attempts (0 without an upload target).
    pub attempts: u32,
}

/// Publishes finished recordings.
pub struct Publisher {
    format: RecordingFormat,
    uploader: Option<Uploader>,
    announce: Arc<dyn RecordingAnnouncer>,
    announce_policy: RetryPolicy,
    slots: Semaphore,
    tasks: TaskTracker,
}

impl Publisher {
    /// A publisher for `config`, announcing through `announce` (the control plane).
    pub fn new(
        config: &PublishConfig,
        announce: Arc<dyn RecordingAnnouncer>,
    ) -> Result<Self, PublisherError> {
        config.validate()?;
        let uploader = match config.upload_url.clone() {
            Some(target) => Some(Uploader::new(
                target,
                &config.store_options,
                config.retry_policy(),
                config.public_base_url.clone(),
            )?),
            None => None,
        };
        Ok(Self {
            format: config.format,
            uploader,
            announce,
            announce_policy: config.retry_policy(),
            slots: Semaphore::new(config.max_concurrent),
            tasks: TaskTracker::new(),
        })
    }

    /// The uploader, when recordings leave the machine.
    pub fn uploader(&self) -> Option<&Uploader> {
        self.uploader.as_ref()
    }

    /// The callback the recorder calls at the end of each call: it spawns the publishing
    /// onto the current runtime and returns at once (callable from any thread).
    pub fn handoff(self: &Arc<Self>) -> Result<Handoff, PublisherError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| PublisherError::NoRuntime)?;
        let this = Arc::clone(self);
        Ok(Arc::new(move |recording: FinishedRecording| {
            let publisher = Arc::clone(&this);
            this.tasks.spawn_on(
                async move {
                    // Failures are logged and counted inside.
                    let _ = publisher.publish(recording).await;
                },
                &runtime,
            );
        }))
    }

    /// Waits until every handed-over recording is published or given up (shutdown).
    /// Recordings handed over after this are still published.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// Publishes one recording: encode (if configured), upload (if configured), mark
    /// published, announce. Every failure is logged and counted here.
    pub async fn publish(&self, recording: FinishedRecording) -> Result<Published, PublishError> {
        let span = info_span!("publish_recording", call_id = %recording.call_id);
        async {
            let _slot = self.slots.acquire().await;
            self.publish_now(recording).await
        }
        .instrument(span)
        .await
    }

    async fn publish_now(&self, recording: FinishedRecording) -> Result<Published, PublishError> {
        let call_id = recording.call_id.clone();
        let wav = recording.path.clone();
        let (file, format) = match self.format {
            RecordingFormat::Wav => (wav.clone(), RecordingFormat::Wav),
            RecordingFormat::Opus => match encode_blocking(&wav).await {
                Ok(opus) => (opus, RecordingFormat::Opus),
                Err(error) => {
                    error!(%call_id, %error, "encoding the recording failed; publishing the WAV");
                    metrics::counter!(telemetry::RECORDING_PUBLISH_FAILURES, "stage" => "encode")
                        .increment(1);
                    (wav.clone(), RecordingFormat::Wav)
                }
            },
        };

        let (url, attempts, target) = match &self.uploader {
            Some(uploader) => {
                let uploaded = uploader
                    .upload(&file, &call_id, format.ext())
                    .await
                    .inspect_err(|_| {
                        metrics::counter!(telemetry::RECORDING_PUBLISH_FAILURES, "stage" => "upload")
                            .increment(1);
                    })?;
                (uploaded.url, uploaded.attempts, uploader.target().kind())
            }
            None => {
                // The local file is the stored copy: on disk before its URL goes out.
                let stored = async {
                    sync_blocking(&file).await?;
                    std::path::absolute(&file)
                };
                let absolute = stored.await.map_err(|source| {
                    error!(%call_id, file = %file.display(), %source, "cannot store the recording locally");
                    metrics::counter!(telemetry::RECORDING_PUBLISH_FAILURES, "stage" => "upload")
                        .increment(1);
                    PublishError::Local {
                        path: file.display().to_string(),
                        source,
                    }
                })?;
                (file_url(&absolute), 0, "local")
            }
        };

        // Stored where the URL points: from here the local copy may expire.
        if let Err(error) = retention::mark_published(&file, &url) {
            warn!(%call_id, file = %file.display(), %error, "cannot mark the recording published; retention will keep it");
        }
        if file != wav
            && let Err(error) = tokio::fs::remove_file(&wav).await
        {
            warn!(%call_id, file = %wav.display(), %error, "cannot remove the intermediate WAV");
        }

        self.announce_with_retries(&call_id, &url).await?;
        metrics::counter!(telemetry::RECORDINGS_PUBLISHED, "target" => target).increment(1);
        Ok(Published {
            call_id,
            url,
            local: file,
            attempts,
        })
    }

    /// Tells the announcer, retrying while it is unavailable.
    async fn announce_with_retries(&self, call_id: &str, url: &str) -> Result<(), PublishError> {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self.announce.announce(call_id, url).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let decision = match error {
                AnnounceError::Unavailable(_) => {
                    self.announce_policy.next(attempts, started.elapsed(), None)
                }
                _ => RetryDecision::GiveUp,
            };
            match decision {
                RetryDecision::RetryAt(delay) => {
                    warn!(%call_id, attempts, ?delay, %error, "announcing the recording failed; will retry");
                    tokio::time::sleep(delay).await;
                }
                RetryDecision::GiveUp => {
                    error!(%call_id, %url, attempts, %error, "the recording is stored but could not be announced");
                    metrics::counter!(telemetry::RECORDING_PUBLISH_FAILURES, "stage" => "announce")
                        .increment(1);
                    return Err(PublishError::Announce(error));
                }
            }
        }
    }
}

/// Flushes `file` and its folder entry to disk (fsync) on the blocking pool, so a power
/// loss after the URL is announced cannot lose the file.
async fn sync_blocking(file: &Path) -> std::io::Result<()> {
    let file = file.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&file)?.sync_all()?;
        match file.parent() {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Encodes `wav` to the `.opus` next to it on the blocking pool.
async fn encode_blocking(wav: &Path) -> Result<PathBuf, EncodeError> {
    let input = wav.to_owned();
    let output = encode::opus_path(wav);
    let out = output.clone();
    tokio::task::spawn_blocking(move || encode::encode_file(&input, &out))
        .await
        .map_err(|join| EncodeError::Io(std::io::Error::other(join)))??;
    Ok(output)
}
