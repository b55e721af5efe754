//! The `[pocketsphinx]` configuration section: offline speech recognition.
//!
//! The model directory is only checked when the recognisers start (a missing model is a
//! clear [`super::SttError::Unavailable`] then), not here: validation never touches disk.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::setting::{InvalidSetting, invalid};

/// Where Debian's `pocketsphinx-en-us` puts the model.
pub const DEFAULT_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";
/// Streams one worker carries at real time with room to spare: a decoder costs 1.5 % of a
/// core on continuous speech (benches/stt.rs), so one core would carry about 65; half that
/// leaves the core for bursts and the rest of the gateway (README, "Offline speech").
pub const DEFAULT_MAX_STREAMS: usize = 32;
/// More workers than this gains nothing on any machine voxgate targets.
const MAX_WORKERS: usize = 64;
/// Each stream holds a loaded decoder (memory measured in the README).
const MAX_STREAMS: usize = 1024;

/// `[pocketsphinx]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPocketsphinx {
    /// Whether to load the recognisers at start (default true).
    pub enabled: Option<bool>,
    /// The en-us model folder (holding `en-us/` and `cmudict-en-us.dict`).
    pub model_dir: Option<PathBuf>,
    /// Decoding threads (default 1).
    pub workers: Option<usize>,
    /// Streams recognising at once; more are refused (default 32).
    pub max_streams: Option<usize>,
}

/// Offline speech recognition settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PocketsphinxConfig {
    /// Whether to load the recognisers at start.
    pub enabled: bool,
    /// The en-us model folder.
    pub model_dir: PathBuf,
    /// Decoding threads.
    pub workers: usize,
    /// Streams recognising at once.
    pub max_streams: usize,
}

impl Default for PocketsphinxConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            model_dir: PathBuf::from(DEFAULT_MODEL_DIR),
            workers: 1,
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

impl RawPocketsphinx {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<PocketsphinxConfig, InvalidSetting> {
        let defaults = PocketsphinxConfig::default();
        let workers = self.workers.unwrap_or(defaults.workers);
        if !(1..=MAX_WORKERS).contains(&workers) {
            return Err(invalid(
                "pocketsphinx.workers",
                format!("{workers} is not between 1 and {MAX_WORKERS}"),
            ));
        }
        let max_streams = self.max_streams.unwrap_or(defaults.max_streams);
        if !(1..=MAX_STREAMS).contains(&max_streams) {
            return Err(invalid(
                "pocketsphinx.max_streams",
                format!("{max_streams} is not between 1 and {MAX_STREAMS}"),
            ));
        }
        if max_streams < workers {
            return Err(invalid(
                "pocketsphinx.max_streams",
                format!("{max_streams} is fewer than pocketsphinx.workers ({workers})"),
            ));
        }
        let model_dir = self.model_dir.unwrap_or(defaults.model_dir);
        if model_dir.as_os_str().is_empty() {
            return Err(invalid("pocketsphinx.model_dir", "must not be empty"));
        }
        Ok(PocketsphinxConfig {
            enabled: self.enabled.unwrap_or(defaults.enabled),
            model_dir,
            workers,
            max_streams,
        })
    }
}

/// The file's form of validated settings.
impl From<&PocketsphinxConfig> for RawPocketsphinx {
    fn from(config: &PocketsphinxConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let PocketsphinxConfig {
            enabled,
            model_dir,
            workers,
            max_streams,
        } = config;
        Self {
            enabled: Some(*enabled),
            model_dir: Some(model_dir.clone()),
            workers: Some(*workers),
            max_streams: Some(*max_streams),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_the_file_form() {
        let config = RawPocketsphinx::default().validate().unwrap();
        assert_eq!(config, PocketsphinxConfig::default());
        assert_eq!(RawPocketsphinx::from(&config).validate(), Ok(config));
    }

    #[test]
    fn bad_counts_name_their_key() {
        let raw = |workers, max_streams| RawPocketsphinx {
            workers: Some(workers),
            max_streams: Some(max_streams),
            ..RawPocketsphinx::default()
        };
        assert_eq!(
            raw(0, 4).validate().unwrap_err().key,
            "pocketsphinx.workers"
        );
        assert_eq!(
            raw(1, 0).validate().unwrap_err().key,
            "pocketsphinx.max_streams"
        );
        let err = raw(4, 2).validate().unwrap_err();
        assert_eq!(err.key, "pocketsphinx.max_streams");
        assert!(
            err.reason.contains("fewer than pocketsphinx.workers"),
            "{err}"
        );
    }
}
