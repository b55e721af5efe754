//! The `[openai]` configuration section: any server that speaks OpenAI's HTTP API (OpenAI,
//! Groq, vLLM, Ollama, a proxy) — its base URL, key, default models and timeouts.
//!
//! The key comes from the file or `OPENAI_API_KEY` (mapped by the config assembly; this
//! module never reads the environment) and is never printed back: the file form of a
//! validated config leaves it out.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::providers::api::{ApiKey, RawTimeouts, Timeouts};
use crate::setting::{InvalidSetting, invalid};

/// OpenAI's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The chat model when a profile names none.
pub const DEFAULT_CHAT_MODEL: &str = "gpt-4o-mini";
/// The speech model when a profile names none.
pub const DEFAULT_TTS_MODEL: &str = "gpt-4o-mini-tts";
/// The voice when a profile names none.
pub const DEFAULT_TTS_VOICE: &str = "alloy";
/// The transcription model for recordings.
pub const DEFAULT_TRANSCRIBE_MODEL: &str = "whisper-1";
/// How long a transcription may take to answer by default, ms (upload and transcription).
pub const DEFAULT_BATCH_TIMEOUT_MS: u64 = 120_000;
/// The longest `openai.batch_timeout_ms` may be.
pub const MAX_BATCH_TIMEOUT_MS: u64 = 600_000;

const TIMEOUT_KEYS: [&str; 3] = [
    "openai.timeouts.connect_ms",
    "openai.timeouts.first_byte_ms",
    "openai.timeouts.idle_ms",
];

/// `[openai]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenAi {
    /// The API key (else `OPENAI_API_KEY`). Servers that need none (Ollama, vLLM) work
    /// without one.
    pub api_key: Option<String>,
    /// The API's base URL, up to and including `/v1` (else `OPENAI_BASE_URL`, else
    /// OpenAI's).
    pub base_url: Option<String>,
    /// Default chat model.
    pub chat_model: Option<String>,
    /// Default speech model.
    pub tts_model: Option<String>,
    /// Default voice.
    pub tts_voice: Option<String>,
    /// Transcription model for recordings.
    pub transcribe_model: Option<String>,
    /// Longest wait for a transcription's answer — the upload (up to 25 MB) and the
    /// transcription — and for its body, ms (default 120 000, at most 600 000).
    pub batch_timeout_ms: Option<u64>,
    /// Request timeouts.
    pub timeouts: Option<RawTimeouts>,
}

/// Settings of an OpenAI-compatible server.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// The key, if any.
    pub api_key: Option<ApiKey>,
    /// Base URL, ending in `/` (so relative paths join under it).
    pub base_url: Url,
    /// Default chat model.
    pub chat_model: String,
    /// Default speech model.
    pub tts_model: String,
    /// Default voice.
    pub tts_voice: String,
    /// Transcription model.
    pub transcribe_model: String,
    /// Longest wait for a transcription's answer headers (from the request's start), and
    /// again for its body.
    pub batch_timeout: Duration,
    /// Request timeouts.
    pub timeouts: Timeouts,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        RawOpenAi::default()
            .validate()
            .expect("the defaults validate")
    }
}

/// `url` as a base other paths join under (a trailing `/` added), if it is http(s) and
/// holds no credentials (they would travel in every request and print with the URL).
pub(crate) fn base_url(key: &'static str, url: &str) -> Result<Url, InvalidSetting> {
    let mut url = Url::parse(url.trim()).map_err(|e| invalid(key, format!("is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            key,
            "must not hold credentials (set openai.api_key)",
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, format!("{url} is not an http(s) URL")));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

impl RawOpenAi {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<OpenAiConfig, InvalidSetting> {
        let name = |key: &'static str, value: Option<String>, default: &str| match value {
            None => Ok(default.to_owned()),
            Some(v) if v.trim().is_empty() => Err(invalid(key, "must not be empty")),
            Some(v) => Ok(v.trim().to_owned()),
        };
        Ok(OpenAiConfig {
            api_key: self.api_key.and_then(ApiKey::new),
            base_url: base_url(
                "openai.base_url",
                self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            )?,
            chat_model: name("openai.chat_model", self.chat_model, DEFAULT_CHAT_MODEL)?,
            tts_model: name("openai.tts_model", self.tts_model, DEFAULT_TTS_MODEL)?,
            tts_voice: name("openai.tts_voice", self.tts_voice, DEFAULT_TTS_VOICE)?,
            transcribe_model: name(
                "openai.transcribe_model",
                self.transcribe_model,
                DEFAULT_TRANSCRIBE_MODEL,
            )?,
            batch_timeout: batch_timeout(self.batch_timeout_ms)?,
            timeouts: self.timeouts.unwrap_or_default().validate(TIMEOUT_KEYS)?,
        })
    }
}

/// `openai.batch_timeout_ms` (or its default) as a duration, if it is 1 ms to 600 s.
fn batch_timeout(ms: Option<u64>) -> Result<Duration, InvalidSetting> {
    match ms.unwrap_or(DEFAULT_BATCH_TIMEOUT_MS) {
        ms @ 1..=MAX_BATCH_TIMEOUT_MS => Ok(Duration::from_millis(ms)),
        ms => Err(invalid(
            "openai.batch_timeout_ms",
            format!("{ms} is not between 1 and {MAX_BATCH_TIMEOUT_MS} ms"),
        )),
    }
}

/// The file's form of validated settings, without the key.
impl From<&OpenAiConfig> for RawOpenAi {
    fn from(config: &OpenAiConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let OpenAiConfig {
            api_key: _,
            base_url,
            chat_model,
            tts_model,
            tts_voice,
            transcribe_model,
            batch_timeout,
            timeouts,
        } = config;
        Self {
            api_key: None,
            base_url: Some(base_url.to_string()),
            chat_model: Some(chat_model.clone()),
            tts_model: Some(tts_model.clone()),
            tts_voice: Some(tts_voice.clone()),
            transcribe_model: Some(transcribe_model.clone()),
            batch_timeout_ms: Some(batch_timeout.as_millis() as u64),
            timeouts: Some(timeouts.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_local_server() {
        let config = OpenAiConfig::default();
        assert_eq!(config.base_url.as_str(), "https://api.openai.com/v1/");
        assert_eq!(config.api_key, None);
        let ollama = RawOpenAi {
            base_url: Some("http://127.0.0.1:11434/v1".into()),
            api_key: Some("ollama".into()),
            ..RawOpenAi::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            ollama.base_url.join("chat/completions").unwrap().as_str(),
            "http://127.0.0.1:11434/v1/chat/completions"
        );
    }

    #[test]
    fn the_printed_form_has_no_key_and_reads_back() {
        let config = RawOpenAi {
            api_key: Some("sk-secret".into()),
            ..RawOpenAi::default()
        }
        .validate()
        .unwrap();
        let raw = RawOpenAi::from(&config);
        assert!(!toml::to_string(&raw).unwrap().contains("sk-secret"));
        let back = raw.validate().unwrap();
        assert_eq!(back.api_key, None);
        assert_eq!(back.base_url, config.base_url);
    }

    #[test]
    fn a_bad_base_url_names_its_key() {
        let err = RawOpenAi {
            base_url: Some("ftp://example.com".into()),
            ..RawOpenAi::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.key, "openai.base_url");
    }

    #[test]
    fn a_base_url_with_credentials_is_refused_without_printing_them() {
        for url in [
            "https://user:s3cret-pw@proxy.example.com/v1",
            "https://sk-in-the-url@proxy.example.com/v1",
            "http:// user:s3cret-pw@bad url",
        ] {
            let err = RawOpenAi {
                base_url: Some(url.into()),
                ..RawOpenAi::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(err.key, "openai.base_url");
            let text = format!("{err} {err:?}");
            assert!(
                !text.contains("s3cret") && !text.contains("sk-in"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_batch_timeout_defaults_to_two_minutes_and_is_bounded() {
        let config = OpenAiConfig::default();
        assert_eq!(config.batch_timeout, Duration::from_secs(120));
        let long = RawOpenAi {
            batch_timeout_ms: Some(600_000),
            ..RawOpenAi::default()
        }
        .validate()
        .unwrap();
        assert_eq!(long.batch_timeout, Duration::from_secs(600));
        assert_eq!(RawOpenAi::from(&long).validate().unwrap(), long);
        for ms in [0, 600_001] {
            let err = RawOpenAi {
                batch_timeout_ms: Some(ms),
                ..RawOpenAi::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(err.key, "openai.batch_timeout_ms");
        }
    }
}
