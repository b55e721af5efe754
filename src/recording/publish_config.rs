//! The settings of what happens to a recording after the call (the publish side of the
//! `[recording]` config section, whose values `recording::config` has already parsed and
//! checked), plus the publisher's own knobs.
//!
//! It must never read the environment itself: `s3://` and `gs://` stores read their
//! standard variables through object_store's `from_env()` when the store is built.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::config::{RecordingConfig, RecordingFormat};
use super::target::UploadTarget;
use crate::retry::{RetryPolicy, RetryPolicyError};

/// How recordings are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConfig {
    /// The writer's recording folder (where local copies live and the sweep looks).
    pub dir: PathBuf,
    /// Publish as WAV or Ogg Opus.
    pub format: RecordingFormat,
    /// Where recordings are uploaded; none keeps the recording local (its `file://` URL
    /// is announced).
    pub upload_url: Option<UploadTarget>,
    /// Delete published local copies this many days old; none keeps them forever.
    pub keep_local_days: Option<u32>,
    /// Retries after a failed upload attempt (default 5).
    pub upload_retries: u32,
    /// Upper bound of the first retry delay (default 1 s); it doubles per retry.
    pub retry_base: Duration,
    /// Upper bound of any retry delay (default 60 s).
    pub retry_cap: Duration,
    /// Announce `{public_base_url}/{key}` instead of `s3://bucket/{key}` (e.g. a CDN or
    /// the bucket's HTTPS address).
    pub public_base_url: Option<String>,
    /// object_store options applied over the environment (`aws_endpoint`,
    /// `aws_allow_http`, `aws_region`, `google_service_account`, …).
    pub store_options: Vec<(String, String)>,
    /// Recordings encoded or uploaded at once (default 2).
    pub max_concurrent: usize,
    /// How often the retention sweep runs (default 1 h).
    pub sweep_every: Duration,
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/recordings"),
            format: RecordingFormat::Wav,
            upload_url: None,
            keep_local_days: None,
            upload_retries: 5,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
            public_base_url: None,
            store_options: Vec::new(),
            max_concurrent: 2,
            sweep_every: Duration::from_secs(60 * 60),
        }
    }
}

/// A publish setting that cannot work.
#[derive(Debug, Error)]
pub enum PublishConfigError {
    /// The retry timing would misbehave.
    #[error("recording upload retries: {0}")]
    Retry(#[from] RetryPolicyError),
    /// `upload_url` is the recording folder itself: uploading would be a no-op and
    /// retention would delete the only copy.
    #[error("upload_url must not point at the recording folder itself")]
    UploadIntoRecordingDir,
    /// `public_base_url` is not an http(s) URL.
    #[error("public_base_url must start with http:// or https://")]
    PublicBase,
    /// `max_concurrent` or `sweep_every` is zero.
    #[error("{0} must be positive")]
    Zero(&'static str),
}

impl PublishConfig {
    /// Checks the settings together (the upload target against the recording folder).
    pub fn validate(&self) -> Result<(), PublishConfigError> {
        self.retry_policy().validate()?;
        if self.max_concurrent == 0 {
            return Err(PublishConfigError::Zero("max_concurrent"));
        }
        if self.sweep_every.is_zero() {
            return Err(PublishConfigError::Zero("sweep_every"));
        }
        if let Some(base) = &self.public_base_url
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(PublishConfigError::PublicBase);
        }
        if let Some(UploadTarget::File { dir }) = &self.upload_url {
            let same = match (dir.canonicalize(), self.dir.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => *dir == self.dir,
            };
            if same {
                return Err(PublishConfigError::UploadIntoRecordingDir);
            }
        }
        Ok(())
    }

    /// The upload retry timing: full-jitter backoff from `retry_base` up to `retry_cap`,
    /// `upload_retries` retries after the first attempt.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.retry_base,
            cap: self.retry_cap,
            max_attempts: None,
            max_age: Some(Duration::from_secs(6 * 60 * 60)),
            max_retry_after: None,
        }
        .with_retries(self.upload_retries)
    }

    /// How long published local copies are kept, if they expire.
    pub fn keep_local(&self) -> Option<Duration> {
        self.keep_local_days
            .map(|days| Duration::from_secs(u64::from(days) * 24 * 60 * 60))
    }
}

impl PublishConfig {
    /// The publish settings of the `[recording]` section; the rest keep their defaults.
    pub fn from_recording(recording: &RecordingConfig) -> Self {
        Self {
            dir: recording.dir.clone(),
            format: recording.format,
            upload_url: recording.upload_url.clone(),
            public_base_url: recording.public_base_url.clone(),
            keep_local_days: recording.keep_local_days,
            upload_retries: recording.upload_retries,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_recordings_local_with_five_retries() {
        let config = PublishConfig::default();
        config.validate().unwrap();
        assert_eq!(config.upload_url, None);
        assert_eq!(config.retry_policy().max_attempts, Some(6));
        assert_eq!(config.keep_local(), None);
    }

    #[test]
    fn refuses_settings_that_cannot_work() {
        let bad = |edit: fn(&mut PublishConfig)| {
            let mut config = PublishConfig::default();
            edit(&mut config);
            config.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.retry_base = Duration::ZERO).contains("positive"));
        assert!(bad(|c| c.max_concurrent = 0).contains("max_concurrent"));
        assert!(bad(|c| c.public_base_url = Some("cdn.example".into())).contains("http"));
        assert!(
            bad(|c| {
                c.dir = "/srv/rec".into();
                c.upload_url = Some(UploadTarget::File {
                    dir: "/srv/rec".into(),
                });
            })
            .contains("recording folder")
        );
    }
}
