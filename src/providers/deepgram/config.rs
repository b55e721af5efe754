//! The `[deepgram]` configuration section: where Deepgram is, the key, the live stream's
//! query parameters (model, language, encoding, endpointing, utterance end, keep-alive,
//! formatting, key terms) and the timeouts of both the live socket and the batch request.
//!
//! The key comes from the file (or `DEEPGRAM_API_KEY`, mapped by the config assembly; this
//! module never reads the environment) and is never printed back: the file form of a
//! validated config leaves it out.
//!
//! One base URL serves both APIs: the live stream is `{base_url}/v1/listen` over ws(s), the
//! batch URL is the same host, port and path prefix over http(s).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::providers::api::{ApiKey, RawTimeouts, SttAudio, Timeouts};
use crate::setting::{InvalidSetting, invalid};

/// Deepgram's public API.
pub const DEFAULT_BASE_URL: &str = "wss://api.deepgram.com";
/// The model when none is set.
pub const DEFAULT_MODEL: &str = "nova-3";
/// The language when none is set.
pub const DEFAULT_LANGUAGE: &str = "en";
/// Silence before `speech_final`, ms (Deepgram suggests 300–500 for conversation).
pub const DEFAULT_ENDPOINTING_MS: u64 = 300;
/// Gap after the last final word before `UtteranceEnd`, ms (the docs' examples use 1000).
pub const DEFAULT_UTTERANCE_END_MS: u64 = 1_000;
/// Quiet time before a `KeepAlive` is sent, ms (Deepgram closes after 10 s without audio).
pub const DEFAULT_KEEPALIVE_MS: u64 = 4_000;
/// Longest wait for a pre-recorded transcription's answer headers, ms.
pub const DEFAULT_BATCH_TIMEOUT_MS: u64 = 120_000;
/// Longest a live server may say nothing while audio is being sent, ms. Generous: the docs
/// do not promise a message per stretch of audio (a long silence may yield none), and a
/// dead socket is caught sooner by the transport and by Deepgram's own `NET-0001` close.
pub const DEFAULT_ANSWER_TIMEOUT_MS: u64 = 30_000;

/// Deepgram closes a stream that received nothing for 10 s (`NET-0001`).
const SERVER_IDLE_LIMIT_MS: u64 = 10_000;
/// Longest `endpointing` / `utterance_end_ms` accepted: longer is no conversation.
const MAX_PAUSE_MS: u64 = 10_000;
/// Longest batch wait accepted (a post-call job, but not an hour).
const MAX_BATCH_TIMEOUT_MS: u64 = 600_000;
/// Longest `answer_timeout_ms` accepted.
const MAX_ANSWER_TIMEOUT_MS: u64 = 600_000;
/// Most key terms, and most characters of one: they all go into the URL.
const MAX_KEYTERMS: usize = 100;
const MAX_KEYTERM_CHARS: usize = 100;

const TIMEOUT_KEYS: [&str; 3] = [
    "deepgram.timeouts.connect_ms",
    "deepgram.timeouts.first_byte_ms",
    "deepgram.timeouts.idle_ms",
];

/// `[deepgram]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawDeepgram {
    /// The API key (else `DEEPGRAM_API_KEY`). A self-hosted server may need none.
    pub api_key: Option<String>,
    /// `ws://` or `wss://` host (and optional path prefix) of the API.
    pub base_url: Option<String>,
    /// Model (`nova-3`, `nova-2-phonecall`, …).
    pub model: Option<String>,
    /// Language (`en`, `en-US`, `multi`, …).
    pub language: Option<String>,
    /// Audio sent live: `mulaw` (the phone's 8 kHz bytes, default) or `linear16` (16 kHz).
    pub encoding: Option<String>,
    /// Silence before the provider's endpoint, ms; 0 turns endpointing off.
    pub endpointing_ms: Option<u64>,
    /// Gap after the last word before `UtteranceEnd`, ms.
    pub utterance_end_ms: Option<u64>,
    /// Quiet time before a `KeepAlive`, ms (below 10 000).
    pub keepalive_ms: Option<u64>,
    /// `smart_format` and `punctuate` (default true).
    pub smart_format: Option<bool>,
    /// Words to boost (`keyterm`, sent once each).
    pub keyterms: Option<Vec<String>>,
    /// Longest wait for a batch transcription's answer, ms (default 120 000).
    pub batch_timeout_ms: Option<u64>,
    /// Longest the live server may say nothing while audio is sent, ms (default 30 000;
    /// 0 = no limit).
    pub answer_timeout_ms: Option<u64>,
    /// Connect, first-byte and idle timeouts.
    pub timeouts: Option<RawTimeouts>,
}

/// Validated Deepgram settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepgramConfig {
    /// The key, if any.
    pub api_key: Option<ApiKey>,
    /// `ws://` or `wss://` base, ending in `/`.
    pub base_url: Url,
    /// Model.
    pub model: String,
    /// Language.
    pub language: String,
    /// Audio sent live.
    pub audio: SttAudio,
    /// Silence before the endpoint; `None` = `endpointing=false`.
    pub endpointing: Option<Duration>,
    /// Gap before `UtteranceEnd`.
    pub utterance_end: Duration,
    /// Quiet time before a `KeepAlive`.
    pub keepalive: Duration,
    /// `smart_format` and `punctuate`.
    pub smart_format: bool,
    /// Key terms.
    pub keyterms: Vec<String>,
    /// Longest wait for a batch answer's headers.
    pub batch_timeout: Duration,
    /// Longest the live server may say nothing while audio is sent; `None` = no limit.
    pub answer_timeout: Option<Duration>,
    /// Connect, first-byte and idle timeouts.
    pub timeouts: Timeouts,
}

impl Default for DeepgramConfig {
    fn default() -> Self {
        RawDeepgram::default()
            .validate()
            .expect("the defaults validate")
    }
}

impl DeepgramConfig {
    /// The audio its live streams take.
    pub fn audio(&self) -> SttAudio {
        self.audio
    }

    /// The live stream's URL with every query parameter.
    pub fn listen_url(&self) -> Url {
        let mut url = join_listen(&self.base_url);
        let (encoding, rate) = match self.audio {
            SttAudio::Mulaw8k => ("mulaw", "8000"),
            SttAudio::Pcm16k => ("linear16", "16000"),
        };
        let flag = |on: bool| if on { "true" } else { "false" };
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("model", &self.model)
                .append_pair("language", &self.language)
                .append_pair("encoding", encoding)
                .append_pair("sample_rate", rate)
                .append_pair("channels", "1")
                .append_pair("interim_results", "true")
                .append_pair(
                    "endpointing",
                    &self
                        .endpointing
                        .map_or_else(|| "false".to_owned(), |d| d.as_millis().to_string()),
                )
                .append_pair(
                    "utterance_end_ms",
                    &self.utterance_end.as_millis().to_string(),
                )
                .append_pair("vad_events", "true")
                .append_pair("smart_format", flag(self.smart_format))
                .append_pair("punctuate", flag(self.smart_format));
            for term in &self.keyterms {
                query.append_pair("keyterm", term);
            }
        }
        url
    }

    /// The pre-recorded API's URL (http(s) on the same host), with the batch query.
    pub fn batch_url(&self) -> Url {
        let mut url = join_listen(&self.base_url);
        let scheme = if url.scheme() == "wss" {
            "https"
        } else {
            "http"
        };
        // ws, wss, http and https are all "special" schemes: switching among them works.
        let _ = url.set_scheme(scheme);
        let flag = if self.smart_format { "true" } else { "false" };
        url.query_pairs_mut()
            .append_pair("model", &self.model)
            .append_pair("language", &self.language)
            .append_pair("multichannel", "true")
            .append_pair("utterances", "true")
            .append_pair("punctuate", flag)
            .append_pair("smart_format", flag);
        url
    }
}

/// `base` + `v1/listen` (the base ends in '/' and the path is constant: cannot fail).
fn join_listen(base: &Url) -> Url {
    base.join("v1/listen").unwrap_or_else(|_| base.clone())
}

/// `url` as a ws(s) base other paths join under (a trailing `/` added).
fn ws_base(key: &'static str, url: &str) -> Result<Url, InvalidSetting> {
    // The text is not quoted back: it may hold credentials.
    let mut url = Url::parse(url.trim()).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(invalid(key, format!("{url} is not a ws:// or wss:// URL")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(key, "must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            key,
            "must not hold credentials (set deepgram.api_key)",
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// A whole number of ms in `range`, or the default.
fn millis(
    key: &'static str,
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, InvalidSetting> {
    let ms = value.unwrap_or(default);
    if range.contains(&ms) {
        Ok(Duration::from_millis(ms))
    } else {
        Err(invalid(
            key,
            format!(
                "{ms} is not between {} and {} ms",
                range.start(),
                range.end()
            ),
        ))
    }
}

impl RawDeepgram {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<DeepgramConfig, InvalidSetting> {
        let name = |key: &'static str, value: Option<String>, default: &str| match value {
            None => Ok(default.to_owned()),
            Some(v) if v.trim().is_empty() => Err(invalid(key, "must not be empty")),
            Some(v) => Ok(v.trim().to_owned()),
        };
        let audio = match self.encoding.as_deref().map(str::trim) {
            None | Some("mulaw") => SttAudio::Mulaw8k,
            Some("linear16") => SttAudio::Pcm16k,
            Some(other) => {
                return Err(invalid(
                    "deepgram.encoding",
                    format!("{other:?} is not \"mulaw\" or \"linear16\""),
                ));
            }
        };
        let endpointing = match self.endpointing_ms.unwrap_or(DEFAULT_ENDPOINTING_MS) {
            0 => None,
            ms => Some(millis(
                "deepgram.endpointing_ms",
                Some(ms),
                0,
                1..=MAX_PAUSE_MS,
            )?),
        };
        let keyterms = self.keyterms.unwrap_or_default();
        if keyterms.len() > MAX_KEYTERMS {
            return Err(invalid(
                "deepgram.keyterms",
                format!("{} terms; at most {MAX_KEYTERMS}", keyterms.len()),
            ));
        }
        let keyterms = keyterms
            .into_iter()
            .map(|term| {
                let term = term.trim().to_owned();
                if term.is_empty() || term.chars().count() > MAX_KEYTERM_CHARS {
                    Err(invalid(
                        "deepgram.keyterms",
                        format!(
                            "{term:?}: each term must have 1 to {MAX_KEYTERM_CHARS} characters"
                        ),
                    ))
                } else {
                    Ok(term)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DeepgramConfig {
            api_key: self.api_key.and_then(ApiKey::new),
            base_url: ws_base(
                "deepgram.base_url",
                self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
            )?,
            model: name("deepgram.model", self.model, DEFAULT_MODEL)?,
            language: name("deepgram.language", self.language, DEFAULT_LANGUAGE)?,
            audio,
            endpointing,
            utterance_end: millis(
                "deepgram.utterance_end_ms",
                self.utterance_end_ms,
                DEFAULT_UTTERANCE_END_MS,
                1..=MAX_PAUSE_MS,
            )?,
            keepalive: millis(
                "deepgram.keepalive_ms",
                self.keepalive_ms,
                DEFAULT_KEEPALIVE_MS,
                1..=SERVER_IDLE_LIMIT_MS - 1,
            )?,
            smart_format: self.smart_format.unwrap_or(true),
            keyterms,
            batch_timeout: millis(
                "deepgram.batch_timeout_ms",
                self.batch_timeout_ms,
                DEFAULT_BATCH_TIMEOUT_MS,
                1..=MAX_BATCH_TIMEOUT_MS,
            )?,
            answer_timeout: match self.answer_timeout_ms.unwrap_or(DEFAULT_ANSWER_TIMEOUT_MS) {
                0 => None,
                ms => Some(millis(
                    "deepgram.answer_timeout_ms",
                    Some(ms),
                    0,
                    1..=MAX_ANSWER_TIMEOUT_MS,
                )?),
            },
            timeouts: self.timeouts.unwrap_or_default().validate(TIMEOUT_KEYS)?,
        })
    }
}

/// The file's form of validated settings, without the key.
impl From<&DeepgramConfig> for RawDeepgram {
    fn from(config: &DeepgramConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let DeepgramConfig {
            api_key: _,
            base_url,
            model,
            language,
            audio,
            endpointing,
            utterance_end,
            keepalive,
            smart_format,
            keyterms,
            batch_timeout,
            answer_timeout,
            timeouts,
        } = config;
        let ms = |d: &Duration| d.as_millis() as u64;
        Self {
            api_key: None,
            base_url: Some(base_url.to_string()),
            model: Some(model.clone()),
            language: Some(language.clone()),
            encoding: Some(
                match audio {
                    SttAudio::Mulaw8k => "mulaw",
                    SttAudio::Pcm16k => "linear16",
                }
                .to_owned(),
            ),
            endpointing_ms: Some(endpointing.as_ref().map_or(0, ms)),
            utterance_end_ms: Some(ms(utterance_end)),
            keepalive_ms: Some(ms(keepalive)),
            smart_format: Some(*smart_format),
            keyterms: Some(keyterms.clone()),
            batch_timeout_ms: Some(ms(batch_timeout)),
            answer_timeout_ms: Some(answer_timeout.as_ref().map_or(0, ms)),
            timeouts: Some(timeouts.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn defaults_make_the_phone_stream() {
        let config = DeepgramConfig::default();
        assert_eq!(config.audio(), SttAudio::Mulaw8k);
        assert_eq!(config.keepalive, Duration::from_secs(4));
        assert_eq!(config.answer_timeout, Some(Duration::from_secs(30)));
        let url = config.listen_url();
        assert_eq!(url.scheme(), "wss");
        assert_eq!(url.host_str(), Some("api.deepgram.com"));
        assert_eq!(url.path(), "/v1/listen");
        let pairs = query(&url);
        for (key, expected) in [
            ("model", "nova-3"),
            ("language", "en"),
            ("encoding", "mulaw"),
            ("sample_rate", "8000"),
            ("interim_results", "true"),
            ("endpointing", "300"),
            ("utterance_end_ms", "1000"),
            ("vad_events", "true"),
            ("smart_format", "true"),
            ("punctuate", "true"),
        ] {
            assert_eq!(value(&pairs, key), [expected], "{key}");
        }
        assert!(value(&pairs, "keyterm").is_empty());
    }

    #[test]
    fn options_reach_the_query() {
        let config = RawDeepgram {
            encoding: Some("linear16".into()),
            endpointing_ms: Some(0),
            keyterms: Some(vec!["Plivo".into(), " voxgate ".into()]),
            smart_format: Some(false),
            ..RawDeepgram::default()
        }
        .validate()
        .unwrap();
        assert_eq!(config.audio(), SttAudio::Pcm16k);
        let pairs = query(&config.listen_url());
        assert_eq!(value(&pairs, "encoding"), ["linear16"]);
        assert_eq!(value(&pairs, "sample_rate"), ["16000"]);
        assert_eq!(value(&pairs, "endpointing"), ["false"]);
        assert_eq!(value(&pairs, "keyterm"), ["Plivo", "voxgate"]);
        assert_eq!(value(&pairs, "punctuate"), ["false"]);
    }

    #[test]
    fn the_batch_url_follows_the_base() {
        let secure = DeepgramConfig::default().batch_url();
        assert_eq!(secure.scheme(), "https");
        assert_eq!(secure.host_str(), Some("api.deepgram.com"));
        assert_eq!(secure.path(), "/v1/listen");
        let pairs = query(&secure);
        assert_eq!(value(&pairs, "multichannel"), ["true"]);
        assert_eq!(value(&pairs, "utterances"), ["true"]);
        let local = RawDeepgram {
            base_url: Some("ws://127.0.0.1:8081/proxy".into()),
            ..RawDeepgram::default()
        }
        .validate()
        .unwrap();
        let url = local.batch_url();
        assert_eq!(
            url.as_str().split('?').next(),
            Some("http://127.0.0.1:8081/proxy/v1/listen")
        );
        assert_eq!(
            local.listen_url().as_str().split('?').next(),
            Some("ws://127.0.0.1:8081/proxy/v1/listen")
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let key_of = |raw: RawDeepgram| raw.validate().unwrap_err().key;
        let base = RawDeepgram::default;
        assert_eq!(
            key_of(RawDeepgram {
                base_url: Some("https://api.deepgram.com".into()),
                ..base()
            }),
            "deepgram.base_url"
        );
        assert_eq!(
            key_of(RawDeepgram {
                base_url: Some("wss://user:pw@api.deepgram.com".into()),
                ..base()
            }),
            "deepgram.base_url"
        );
        assert_eq!(
            key_of(RawDeepgram {
                encoding: Some("opus".into()),
                ..base()
            }),
            "deepgram.encoding"
        );
        assert_eq!(
            key_of(RawDeepgram {
                keepalive_ms: Some(10_000),
                ..base()
            }),
            "deepgram.keepalive_ms"
        );
        assert_eq!(
            key_of(RawDeepgram {
                utterance_end_ms: Some(0),
                ..base()
            }),
            "deepgram.utterance_end_ms"
        );
        assert_eq!(
            key_of(RawDeepgram {
                endpointing_ms: Some(60_000),
                ..base()
            }),
            "deepgram.endpointing_ms"
        );
        assert_eq!(
            key_of(RawDeepgram {
                model: Some(" ".into()),
                ..base()
            }),
            "deepgram.model"
        );
        assert_eq!(
            key_of(RawDeepgram {
                keyterms: Some(vec![String::new()]),
                ..base()
            }),
            "deepgram.keyterms"
        );
        assert_eq!(
            key_of(RawDeepgram {
                answer_timeout_ms: Some(MAX_ANSWER_TIMEOUT_MS + 1),
                ..base()
            }),
            "deepgram.answer_timeout_ms"
        );
        assert_eq!(
            key_of(RawDeepgram {
                batch_timeout_ms: Some(0),
                ..base()
            }),
            "deepgram.batch_timeout_ms"
        );
        assert_eq!(
            key_of(RawDeepgram {
                timeouts: Some(RawTimeouts {
                    connect_ms: Some(0),
                    ..RawTimeouts::default()
                }),
                ..base()
            }),
            "deepgram.timeouts.connect_ms"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<RawDeepgram>("modle = \"nova-3\"").is_err());
        let raw: RawDeepgram =
            toml::from_str("model = \"nova-2-phonecall\"\n[timeouts]\nconnect_ms = 500").unwrap();
        let config = raw.validate().unwrap();
        assert_eq!(config.model, "nova-2-phonecall");
        assert_eq!(config.timeouts.connect, Duration::from_millis(500));
    }

    #[test]
    fn the_printed_form_has_no_key_and_reads_back() {
        let config = RawDeepgram {
            api_key: Some("dg-secret-key".into()),
            endpointing_ms: Some(0),
            answer_timeout_ms: Some(0),
            keyterms: Some(vec!["Plivo".into()]),
            encoding: Some("linear16".into()),
            ..RawDeepgram::default()
        }
        .validate()
        .unwrap();
        let raw = RawDeepgram::from(&config);
        assert!(!toml::to_string(&raw).unwrap().contains("dg-secret-key"));
        assert!(!format!("{config:?}").contains("dg-secret-key"));
        let back = raw.validate().unwrap();
        assert_eq!(back.api_key, None);
        assert_eq!(
            DeepgramConfig {
                api_key: config.api_key.clone(),
                ..back
            },
            config
        );
    }
}
