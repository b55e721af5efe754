//! The `[recording]` configuration section: whether calls are recorded, where and at what
//! rate the writer puts them, and what happens after the call (format, upload target,
//! retries, local retention, the announced URL).
//!
//! `upload_url` is parsed here, once, into an [`UploadTarget`]; everything downstream
//! (the writer, [`PublishConfig`](super::publish_config::PublishConfig)) takes the typed
//! value.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::target::UploadTarget;
use crate::setting::{InvalidSetting, invalid};

/// Upload retries when none are configured.
const DEFAULT_UPLOAD_RETRIES: u32 = 5;
/// More upload retries than this is a misconfiguration.
const MAX_UPLOAD_RETRIES: u32 = 100;

/// `[recording]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecording {
    /// Record calls (default on); a call opts out with `record=false` on its answer URL.
    pub enabled: Option<bool>,
    /// Folder for recordings (default `{data_dir}/recordings`).
    pub dir: Option<PathBuf>,
    /// Samples per second per channel: 8000 or 16000.
    pub sample_rate: Option<u32>,
    /// What is published: `wav` or `opus` (Ogg/Opus).
    pub format: Option<String>,
    /// Where recordings are uploaded: `file:///abs/path`, `s3://bucket/prefix` or
    /// `gs://bucket/prefix`; none keeps them in `dir`.
    pub upload_url: Option<String>,
    /// Days the local copy is kept after upload; none keeps it.
    pub keep_local_days: Option<u32>,
    /// Upload attempts after the first fails.
    pub upload_retries: Option<u32>,
    /// Announce `{public_base_url}/{key}` (a CDN or the bucket's HTTPS address) instead
    /// of the `s3://`, `gs://` or `file://` URL.
    pub public_base_url: Option<String>,
}

/// Recording settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Record calls unless a call opts out.
    pub enabled: bool,
    /// Folder recordings are written to.
    pub dir: PathBuf,
    /// Samples per second per channel.
    pub sample_rate: RecordingRate,
    /// What is published.
    pub format: RecordingFormat,
    /// Where recordings are uploaded; `None` keeps them in `dir`.
    pub upload_url: Option<UploadTarget>,
    /// Days the local copy is kept after upload; `None` keeps it.
    pub keep_local_days: Option<u32>,
    /// Upload attempts after the first fails.
    pub upload_retries: u32,
    /// Base of the announced recording URL, if not the store's own URL.
    pub public_base_url: Option<String>,
}

/// A recording's sample rate per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingRate {
    /// 8 kHz: the call's own rate.
    #[default]
    Hz8000,
    /// 16 kHz: both channels upsampled.
    Hz16000,
}

impl RecordingRate {
    /// Samples per second.
    pub const fn hz(self) -> u32 {
        match self {
            Self::Hz8000 => 8_000,
            Self::Hz16000 => 16_000,
        }
    }
}

/// The published recording's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingFormat {
    /// The stereo WAV as written.
    #[default]
    Wav,
    /// Encoded to Ogg/Opus.
    Opus,
}

impl RecordingFormat {
    /// The name in the config file, which is also the published file's extension.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Opus => "opus",
        }
    }

    /// The published file's extension (`wav`, `opus`).
    pub const fn ext(self) -> &'static str {
        self.as_str()
    }
}

impl RawRecording {
    /// Checks every value and fills in the defaults; recordings go under `data_dir`
    /// unless `dir` says otherwise.
    pub fn validate(self, data_dir: &Path) -> Result<RecordingConfig, InvalidSetting> {
        let dir = match self.dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(invalid("recording.dir", "must not be empty"));
            }
            Some(dir) => dir,
            None => data_dir.join("recordings"),
        };
        let sample_rate = match self.sample_rate {
            None | Some(8_000) => RecordingRate::Hz8000,
            Some(16_000) => RecordingRate::Hz16000,
            Some(other) => {
                return Err(invalid(
                    "recording.sample_rate",
                    format!("{other} is not 8000 or 16000"),
                ));
            }
        };
        let format = match self
            .format
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("wav") => RecordingFormat::Wav,
            Some("opus") => RecordingFormat::Opus,
            Some(other) => {
                return Err(invalid(
                    "recording.format",
                    format!("{other:?} is not \"wav\" or \"opus\""),
                ));
            }
        };
        let upload_url = match self.upload_url.filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => Some(
                UploadTarget::parse(&url)
                    .map_err(|e| invalid("recording.upload_url", e.to_string()))?,
            ),
        };
        let upload_retries = match self.upload_retries {
            Some(n) if n > MAX_UPLOAD_RETRIES => {
                return Err(invalid(
                    "recording.upload_retries",
                    format!("must be at most {MAX_UPLOAD_RETRIES}"),
                ));
            }
            Some(n) => n,
            None => DEFAULT_UPLOAD_RETRIES,
        };
        if self.keep_local_days == Some(0) && upload_url.is_none() {
            return Err(invalid(
                "recording.keep_local_days",
                "0 with no upload_url would delete every recording",
            ));
        }
        let public_base_url = self.public_base_url.filter(|u| !u.is_empty());
        if let Some(base) = &public_base_url
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(invalid(
                "recording.public_base_url",
                format!("{base:?} is not an http:// or https:// URL"),
            ));
        }
        Ok(RecordingConfig {
            enabled: self.enabled.unwrap_or(true),
            dir,
            sample_rate,
            format,
            upload_url,
            keep_local_days: self.keep_local_days,
            upload_retries,
            public_base_url,
        })
    }
}

/// The file's form of validated settings.
impl From<&RecordingConfig> for RawRecording {
    fn from(config: &RecordingConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let RecordingConfig {
            enabled,
            dir,
            sample_rate,
            format,
            upload_url,
            keep_local_days,
            upload_retries,
            public_base_url,
        } = config;
        Self {
            enabled: Some(*enabled),
            dir: Some(dir.clone()),
            sample_rate: Some(sample_rate.hz()),
            format: Some(format.as_str().to_owned()),
            upload_url: upload_url.as_ref().map(ToString::to_string),
            keep_local_days: *keep_local_days,
            upload_retries: Some(*upload_retries),
            public_base_url: public_base_url.clone(),
        }
    }
}
