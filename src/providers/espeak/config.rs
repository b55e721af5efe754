//! The `[espeak]` configuration section: the default voice, rate and pitch of offline
//! speech, the rendered-prompt cache's size and the synthesis queue's length.
//!
//! Values are checked once here, at start; whether the voice exists in espeak-ng's data is
//! checked by [`super::Espeak::start`], which has the library. The same name and range
//! checks apply to what a caller passes per utterance ([`super::SpeakOptions`]).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::setting::{InvalidSetting, invalid};

/// Speaking rates espeak-ng accepts, words per minute.
pub const RATE_WPM: RangeInclusive<u32> = 80..=450;
/// Pitches espeak-ng accepts (50 is the voice's normal pitch).
pub const PITCH: RangeInclusive<u8> = 0..=100;
/// The longest voice name accepted.
const MAX_VOICE_LEN: usize = 64;
/// The largest cache accepted, bytes (1 GiB).
const MAX_CACHE_BYTES: usize = 1 << 30;
/// The longest synthesis queue accepted.
const MAX_QUEUE: usize = 4096;

/// `[espeak]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEspeak {
    /// Voice file name with an optional `+variant` (default `en-us`).
    pub voice: Option<String>,
    /// Speaking rate, words per minute, 80..=450 (default 175).
    pub rate_wpm: Option<u32>,
    /// Base pitch, 0..=100 (default 50).
    pub pitch: Option<u8>,
    /// Bytes of rendered audio kept for repeated prompts; 0 turns the cache off.
    pub cache_bytes: Option<usize>,
    /// Utterances that may wait for the synthesis thread; beyond it `speak` says busy.
    pub queue: Option<usize>,
}

/// Offline speech settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakConfig {
    /// The voice utterances use unless they name one.
    pub voice: String,
    /// The speaking rate unless an utterance names one, words per minute.
    pub rate_wpm: u32,
    /// The base pitch unless an utterance names one.
    pub pitch: u8,
    /// Bytes of rendered audio the cache keeps; 0: no cache.
    pub cache_bytes: usize,
    /// Utterances that may wait for the synthesis thread.
    pub queue: usize,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        Self {
            voice: "en-us".into(),
            rate_wpm: 175,
            pitch: 50,
            cache_bytes: 16 << 20,
            queue: 64,
        }
    }
}

impl RawEspeak {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<EspeakConfig, InvalidSetting> {
        let d = EspeakConfig::default();
        let voice = match self.voice {
            Some(voice) => {
                check_voice(&voice).map_err(|reason| invalid("espeak.voice", reason))?;
                voice
            }
            None => d.voice,
        };
        let rate_wpm = match self.rate_wpm {
            Some(wpm) => {
                check_rate(wpm).map_err(|reason| invalid("espeak.rate_wpm", reason))?;
                wpm
            }
            None => d.rate_wpm,
        };
        let pitch = match self.pitch {
            Some(pitch) => {
                check_pitch(pitch).map_err(|reason| invalid("espeak.pitch", reason))?;
                pitch
            }
            None => d.pitch,
        };
        let cache_bytes = match self.cache_bytes {
            Some(n) if n > MAX_CACHE_BYTES => {
                return Err(invalid(
                    "espeak.cache_bytes",
                    format!("must be at most {MAX_CACHE_BYTES} (1 GiB)"),
                ));
            }
            Some(n) => n,
            None => d.cache_bytes,
        };
        let queue = match self.queue {
            Some(0) => return Err(invalid("espeak.queue", "must be at least 1")),
            Some(n) if n > MAX_QUEUE => {
                return Err(invalid(
                    "espeak.queue",
                    format!("must be at most {MAX_QUEUE}"),
                ));
            }
            Some(n) => n,
            None => d.queue,
        };
        Ok(EspeakConfig {
            voice,
            rate_wpm,
            pitch,
            cache_bytes,
            queue,
        })
    }
}

/// The file's form of validated settings.
impl From<&EspeakConfig> for RawEspeak {
    fn from(config: &EspeakConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let EspeakConfig {
            voice,
            rate_wpm,
            pitch,
            cache_bytes,
            queue,
        } = config;
        Self {
            voice: Some(voice.clone()),
            rate_wpm: Some(*rate_wpm),
            pitch: Some(*pitch),
            cache_bytes: Some(*cache_bytes),
            queue: Some(*queue),
        }
    }
}

/// A voice name as espeak-ng's `espeak_SetVoiceByName` takes it: a file name such as
/// `en-us`, optionally `+variant` (`en-us+f3`).
///
/// Letters, digits, `-`, `_` and one `+` only: the library looks the name up as a path
/// under its data folder, so `/` and `.` are refused before it ever sees them.
pub fn check_voice(voice: &str) -> Result<(), String> {
    let well_formed = !voice.is_empty()
        && voice.len() <= MAX_VOICE_LEN
        && voice.matches('+').count() <= 1
        && !voice.starts_with('+')
        && !voice.ends_with('+')
        && voice
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+'));
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "{voice:?} is not a voice name (like \"en-us\" or \"en-us+f3\": letters, digits, \
             '-', '_', one '+', at most {MAX_VOICE_LEN} characters)"
        ))
    }
}

/// A speaking rate espeak-ng accepts.
pub fn check_rate(wpm: u32) -> Result<(), String> {
    if RATE_WPM.contains(&wpm) {
        Ok(())
    } else {
        Err(format!(
            "{wpm} words per minute is outside {}..={}",
            RATE_WPM.start(),
            RATE_WPM.end()
        ))
    }
}

/// A pitch espeak-ng accepts.
pub fn check_pitch(pitch: u8) -> Result<(), String> {
    if PITCH.contains(&pitch) {
        Ok(())
    } else {
        Err(format!(
            "pitch {pitch} is outside {}..={}",
            PITCH.start(),
            PITCH.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones_and_round_trip() {
        let config = RawEspeak::default().validate().unwrap();
        assert_eq!(config, EspeakConfig::default());
        assert_eq!(
            (config.voice.as_str(), config.rate_wpm, config.pitch),
            ("en-us", 175, 50)
        );
        assert_eq!((config.cache_bytes, config.queue), (16 * 1024 * 1024, 64));
        assert_eq!(RawEspeak::from(&config).validate(), Ok(config));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                RawEspeak {
                    voice: Some("../../etc/passwd".into()),
                    ..RawEspeak::default()
                },
                "espeak.voice",
            ),
            (
                RawEspeak {
                    voice: Some(String::new()),
                    ..RawEspeak::default()
                },
                "espeak.voice",
            ),
            (
                RawEspeak {
                    rate_wpm: Some(79),
                    ..RawEspeak::default()
                },
                "espeak.rate_wpm",
            ),
            (
                RawEspeak {
                    rate_wpm: Some(451),
                    ..RawEspeak::default()
                },
                "espeak.rate_wpm",
            ),
            (
                RawEspeak {
                    pitch: Some(101),
                    ..RawEspeak::default()
                },
                "espeak.pitch",
            ),
            (
                RawEspeak {
                    queue: Some(0),
                    ..RawEspeak::default()
                },
                "espeak.queue",
            ),
            (
                RawEspeak {
                    cache_bytes: Some(usize::MAX),
                    ..RawEspeak::default()
                },
                "espeak.cache_bytes",
            ),
        ];
        for (raw, key) in cases {
            let shown = format!("{raw:?}");
            let err = raw.validate().unwrap_err();
            assert_eq!(err.key, key, "{shown}");
        }
    }

    #[test]
    fn voice_names_with_variants_pass_and_paths_do_not() {
        for good in ["en-us", "en-us+f3", "en_GB-x-rp", "fr"] {
            assert_eq!(check_voice(good), Ok(()), "{good}");
        }
        for bad in [
            "", "en/us", "en.us", "+f3", "en+", "en+f3+m1", "en us", "en\0us",
        ] {
            assert!(check_voice(bad).is_err(), "{bad:?}");
        }
    }
}
