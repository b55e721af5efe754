//! The `[elevenlabs]` configuration section: ElevenLabs' stream-input WebSocket — where it
//! is, the key, the voice and model, the voice settings sent in each socket's init message,
//! the chunk schedule and the timeouts.
//!
//! The key comes from the file or `ELEVENLABS_API_KEY` (mapped by the config assembly; this
//! module never reads the environment) and is never printed back: the file form of a
//! validated config leaves it out.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::providers::api::{ApiKey, RawTimeouts, Timeouts};
use crate::setting::{InvalidSetting, invalid};

/// ElevenLabs' public API (WebSocket).
pub const DEFAULT_BASE_URL: &str = "wss://api.elevenlabs.io";
/// A public premade voice ("Rachel").
pub const DEFAULT_VOICE_ID: &str = "21m00Tcm4TlvDq8ikWAM";
/// The low-latency model.
pub const DEFAULT_MODEL_ID: &str = "eleven_flash_v2_5";
/// Voice stability when none is set.
pub const DEFAULT_STABILITY: f32 = 0.5;
/// Similarity boost when none is set.
pub const DEFAULT_SIMILARITY_BOOST: f32 = 0.75;
/// Speaking rate when none is set.
pub const DEFAULT_SPEED: f32 = 1.0;
/// Characters buffered before the first generation (then each later one): one small step,
/// for the earliest first audio (ElevenLabs' own low-latency helper uses `[50]`).
pub const DEFAULT_CHUNK_LENGTH_SCHEDULE: [u16; 1] = [50];

/// The slowest and fastest speed ElevenLabs accepts.
const SPEED_RANGE: (f32, f32) = (0.7, 1.2);
/// The smallest and largest step of a chunk schedule ElevenLabs accepts.
const SCHEDULE_STEP: (u16, u16) = (50, 500);
/// Most steps of a chunk schedule (ElevenLabs' default has four).
const MAX_SCHEDULE_STEPS: usize = 8;

const TIMEOUT_KEYS: [&str; 3] = [
    "elevenlabs.timeouts.connect_ms",
    "elevenlabs.timeouts.first_byte_ms",
    "elevenlabs.timeouts.idle_ms",
];

/// `[elevenlabs]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawElevenLabs {
    /// The API key (else `ELEVENLABS_API_KEY`).
    pub api_key: Option<String>,
    /// The WebSocket base URL, scheme and host (`wss://api.elevenlabs.io`).
    pub base_url: Option<String>,
    /// The voice.
    pub voice_id: Option<String>,
    /// The model.
    pub model_id: Option<String>,
    /// Voice stability, 0–1.
    pub stability: Option<f32>,
    /// Similarity boost, 0–1.
    pub similarity_boost: Option<f32>,
    /// Speaking rate, 0.7–1.2.
    pub speed: Option<f32>,
    /// Characters buffered before each generation, each 50–500.
    pub chunk_length_schedule: Option<Vec<u16>>,
    /// Request timeouts.
    pub timeouts: Option<RawTimeouts>,
}

/// Settings of the ElevenLabs adapter.
#[derive(Debug, Clone, PartialEq)]
pub struct ElevenLabsConfig {
    /// The key, if any (a socket cannot open without one).
    pub api_key: Option<ApiKey>,
    /// The WebSocket base URL (`ws` or `wss`).
    pub base_url: Url,
    /// The voice.
    pub voice_id: String,
    /// The model.
    pub model_id: String,
    /// Voice stability, 0–1.
    pub stability: f32,
    /// Similarity boost, 0–1.
    pub similarity_boost: f32,
    /// Speaking rate, 0.7–1.2.
    pub speed: f32,
    /// Characters buffered before each generation.
    pub chunk_length_schedule: Vec<u16>,
    /// Request timeouts (connect includes the upgrade; first byte is first text → first
    /// audio; idle is between audio messages once the text has ended).
    pub timeouts: Timeouts,
}

impl Default for ElevenLabsConfig {
    fn default() -> Self {
        RawElevenLabs::default()
            .validate()
            .expect("the defaults validate")
    }
}

impl RawElevenLabs {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<ElevenLabsConfig, InvalidSetting> {
        let name = |key: &'static str, value: Option<String>, default: &str| match value {
            None => Ok(default.to_owned()),
            Some(v) if v.trim().is_empty() => Err(invalid(key, "must not be empty")),
            Some(v)
                if !v
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) =>
            {
                Err(invalid(
                    key,
                    format!("{v:?} is not an id (letters, digits, _ and -)"),
                ))
            }
            Some(v) => Ok(v.trim().to_owned()),
        };
        let within = |key: &'static str, value: Option<f32>, default: f32, (lo, hi): (f32, f32)| {
            let value = value.unwrap_or(default);
            if (lo..=hi).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    key,
                    format!("{value} is not between {lo} and {hi}"),
                ))
            }
        };
        let schedule = self
            .chunk_length_schedule
            .unwrap_or_else(|| DEFAULT_CHUNK_LENGTH_SCHEDULE.to_vec());
        const SCHEDULE_KEY: &str = "elevenlabs.chunk_length_schedule";
        if schedule.is_empty() || schedule.len() > MAX_SCHEDULE_STEPS {
            return Err(invalid(
                SCHEDULE_KEY,
                format!("needs 1 to {MAX_SCHEDULE_STEPS} steps"),
            ));
        }
        let (lo, hi) = SCHEDULE_STEP;
        if let Some(step) = schedule.iter().find(|s| !(lo..=hi).contains(*s)) {
            return Err(invalid(
                SCHEDULE_KEY,
                format!("{step} is not between {lo} and {hi}"),
            ));
        }
        Ok(ElevenLabsConfig {
            api_key: self.api_key.and_then(ApiKey::new),
            base_url: ws_url(
                "elevenlabs.base_url",
                self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            )?,
            voice_id: name("elevenlabs.voice_id", self.voice_id, DEFAULT_VOICE_ID)?,
            model_id: name("elevenlabs.model_id", self.model_id, DEFAULT_MODEL_ID)?,
            stability: within(
                "elevenlabs.stability",
                self.stability,
                DEFAULT_STABILITY,
                (0.0, 1.0),
            )?,
            similarity_boost: within(
                "elevenlabs.similarity_boost",
                self.similarity_boost,
                DEFAULT_SIMILARITY_BOOST,
                (0.0, 1.0),
            )?,
            speed: within("elevenlabs.speed", self.speed, DEFAULT_SPEED, SPEED_RANGE)?,
            chunk_length_schedule: schedule,
            timeouts: self.timeouts.unwrap_or_default().validate(TIMEOUT_KEYS)?,
        })
    }
}

/// `url` if it is a ws(s) URL with a host and no credentials (its path and query are
/// replaced per socket).
fn ws_url(key: &'static str, url: &str) -> Result<Url, InvalidSetting> {
    let url = Url::parse(url.trim()).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Checked first: the message below quotes the URL.
        return Err(invalid(
            key,
            "must not hold credentials (set elevenlabs.api_key)",
        ));
    }
    if !matches!(url.scheme(), "ws" | "wss") || url.host().is_none() {
        return Err(invalid(
            key,
            format!("{url} is not a ws(s) URL with a host"),
        ));
    }
    Ok(url)
}

/// The file's form of validated settings, without the key.
impl From<&ElevenLabsConfig> for RawElevenLabs {
    fn from(config: &ElevenLabsConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let ElevenLabsConfig {
            api_key: _,
            base_url,
            voice_id,
            model_id,
            stability,
            similarity_boost,
            speed,
            chunk_length_schedule,
            timeouts,
        } = config;
        Self {
            api_key: None,
            base_url: Some(base_url.to_string()),
            voice_id: Some(voice_id.clone()),
            model_id: Some(model_id.clone()),
            stability: Some(*stability),
            similarity_boost: Some(*similarity_boost),
            speed: Some(*speed),
            chunk_length_schedule: Some(chunk_length_schedule.clone()),
            timeouts: Some(timeouts.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_low_latency_telephone_settings() {
        let config = ElevenLabsConfig::default();
        assert_eq!(config.base_url.as_str(), "wss://api.elevenlabs.io/");
        assert_eq!(config.model_id, "eleven_flash_v2_5");
        assert_eq!(config.voice_id, DEFAULT_VOICE_ID);
        assert_eq!(config.chunk_length_schedule, [50]);
        assert_eq!(
            (config.stability, config.similarity_boost, config.speed),
            (0.5, 0.75, 1.0)
        );
        assert_eq!(config.api_key, None);
        assert_eq!(config.timeouts, Timeouts::default());
    }

    #[test]
    fn a_file_section_parses_and_unknown_keys_are_refused() {
        let raw: RawElevenLabs = toml::from_str(
            "api_key = \"xi-secret\"\nvoice_id = \"abc123\"\nspeed = 1.1\n\
             chunk_length_schedule = [80, 120]\n[timeouts]\nfirst_byte_ms = 2500\n",
        )
        .unwrap();
        let config = raw.validate().unwrap();
        assert_eq!(config.voice_id, "abc123");
        assert_eq!(config.speed, 1.1);
        assert_eq!(config.chunk_length_schedule, [80, 120]);
        assert_eq!(config.timeouts.first_byte.as_millis(), 2_500);
        assert_eq!(config.api_key.unwrap().expose(), "xi-secret");
        assert!(toml::from_str::<RawElevenLabs>("voice = \"x\"").is_err());
    }

    #[test]
    fn the_printed_form_has_no_key_and_reads_back() {
        let config = RawElevenLabs {
            api_key: Some("xi-secret".into()),
            base_url: Some("ws://127.0.0.1:9000".into()),
            ..RawElevenLabs::default()
        }
        .validate()
        .unwrap();
        let raw = RawElevenLabs::from(&config);
        assert!(!toml::to_string(&raw).unwrap().contains("xi-secret"));
        assert!(!format!("{config:?}").contains("xi-secret"));
        let back = raw.validate().unwrap();
        assert_eq!(back.api_key, None);
        assert_eq!(
            ElevenLabsConfig {
                api_key: config.api_key.clone(),
                ..back
            },
            config
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |raw: RawElevenLabs| raw.validate().unwrap_err().key;
        let base = RawElevenLabs::default;
        assert_eq!(
            key(RawElevenLabs {
                speed: Some(1.5),
                ..base()
            }),
            "elevenlabs.speed"
        );
        assert_eq!(
            key(RawElevenLabs {
                stability: Some(-0.1),
                ..base()
            }),
            "elevenlabs.stability"
        );
        assert_eq!(
            key(RawElevenLabs {
                similarity_boost: Some(f32::NAN),
                ..base()
            }),
            "elevenlabs.similarity_boost"
        );
        for schedule in [vec![], vec![49], vec![50, 501], vec![50; 9]] {
            assert_eq!(
                key(RawElevenLabs {
                    chunk_length_schedule: Some(schedule),
                    ..base()
                }),
                "elevenlabs.chunk_length_schedule"
            );
        }
        assert_eq!(
            key(RawElevenLabs {
                base_url: Some("https://api.elevenlabs.io".into()),
                ..base()
            }),
            "elevenlabs.base_url"
        );
        let with_userinfo = RawElevenLabs {
            base_url: Some("wss://user:xi-secret-pw@api.elevenlabs.io".into()),
            ..base()
        }
        .validate()
        .unwrap_err();
        assert_eq!(with_userinfo.key, "elevenlabs.base_url");
        assert!(!format!("{with_userinfo} {with_userinfo:?}").contains("xi-secret-pw"));
        assert_eq!(
            key(RawElevenLabs {
                voice_id: Some("a/../b".into()),
                ..base()
            }),
            "elevenlabs.voice_id"
        );
        assert_eq!(
            key(RawElevenLabs {
                model_id: Some(" ".into()),
                ..base()
            }),
            "elevenlabs.model_id"
        );
        assert_eq!(
            key(RawElevenLabs {
                timeouts: Some(RawTimeouts {
                    idle_ms: Some(0),
                    ..RawTimeouts::default()
                }),
                ..base()
            }),
            "elevenlabs.timeouts.idle_ms"
        );
    }
}
