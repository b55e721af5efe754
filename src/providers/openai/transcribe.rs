//! Recording transcription from an OpenAI-compatible server (`POST
//! {base}/audio/transcriptions`, multipart, providers.md §5): post-call work.
//!
//! The WAV goes up as `file` (`recording.wav`, `audio/wav`) with `model` and the answer
//! format the model takes ([`ResponseFormat::for_model`]): `gpt-4o-transcribe` and
//! `gpt-4o-mini-transcribe` (and their snapshots) accept only `json`, whose `text` becomes
//! one utterance ([`parse_json`]); other models (`whisper-1`, self-hosted Whisper) get
//! `verbose_json` with `timestamp_granularities[]=segment`, whose segments become
//! [`Utterance`]s by start time ([`parse_verbose_json`]). The API transcribes the mix: it
//! does not split a stereo file's channels nor tell speakers apart, so every utterance is
//! channel 0 with no speaker — callers wanting per-party text must upload each channel on
//! its own.
//!
//! Timeouts: connect (the client's); the answer's headers — the upload and the
//! transcription — within `openai.batch_timeout_ms`; the body with no read longer than the
//! idle timeout and the whole within `batch_timeout` again.
//!
//! Errors: a 4xx is a non-retriable [`ProviderError::Status`], a 5xx (or 408/429) a
//! retriable one; an answer that is not the documented JSON is a protocol error (counted
//! in `PROVIDER_BAD_MESSAGES`). None holds the key. Never reads more than [`MAX_ANSWER`]
//! bytes of answer, or uploads more than [`MAX_UPLOAD`].

use std::sync::Arc;

use metrics::counter;
use reqwest::multipart::{Form, Part};
use serde::Deserialize;

use super::{OpenAiClient, PROVIDER};
use crate::providers::api::http::{count_error, count_ok};
use crate::providers::api::{BatchTranscript, BatchTranscription, ProviderError, Utterance};
use crate::telemetry;

/// The largest file the API takes (OpenAI's schema: 25 MB).
pub const MAX_UPLOAD: usize = 25 * 1024 * 1024;
/// The largest answer read.
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// The `response_format` a transcription asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `{"text"}` only: the one format `gpt-4o-(mini-)transcribe` accept.
    Json,
    /// Segments with times (`whisper-1`).
    VerboseJson,
}

impl ResponseFormat {
    /// The format `model` accepts that says the most: `json` for the `gpt-4o…transcribe…`
    /// family (providers.md §5), `verbose_json` otherwise.
    pub fn for_model(model: &str) -> Self {
        let model = model.to_ascii_lowercase();
        if model.starts_with("gpt-4o") && model.contains("transcribe") {
            Self::Json
        } else {
            Self::VerboseJson
        }
    }

    /// Its name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::VerboseJson => "verbose_json",
        }
    }

    /// The answer `body` in this format as a transcript.
    pub fn parse(self, body: &[u8]) -> Result<BatchTranscript, ProviderError> {
        match self {
            Self::Json => parse_json(body),
            Self::VerboseJson => parse_verbose_json(body),
        }
    }
}

/// Transcription of recordings with one model.
#[derive(Debug, Clone)]
pub struct OpenAiTranscription {
    client: Arc<OpenAiClient>,
    model: String,
}

impl OpenAiTranscription {
    /// Transcription with `model` (else the section's `transcribe_model`).
    pub fn new(client: Arc<OpenAiClient>, model: Option<&str>) -> Self {
        let model = model.map_or_else(|| client.config().transcribe_model.clone(), str::to_owned);
        Self { client, model }
    }

    async fn request(&self, wav: Vec<u8>) -> Result<BatchTranscript, ProviderError> {
        if wav.len() > MAX_UPLOAD {
            return Err(ProviderError::Invalid {
                provider: PROVIDER,
                reason: format!("the recording is {} bytes, over {MAX_UPLOAD}", wav.len()),
            });
        }
        let file = Part::bytes(wav)
            .file_name("recording.wav")
            .mime_str("audio/wav")
            .map_err(|e| ProviderError::Invalid {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        let format = ResponseFormat::for_model(&self.model);
        let mut form = Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", format.as_str());
        if format == ResponseFormat::VerboseJson {
            form = form.text("timestamp_granularities[]", "segment");
        }
        let request = self.client.post("audio/transcriptions").multipart(form);
        // A failure to send is counted by the client.
        let response = self.client.send_batch(request, "batch").await?;
        let answer = self
            .client
            .read_all(response, MAX_ANSWER)
            .await
            .and_then(|body| {
                format.parse(&body).inspect_err(|_| {
                    counter!(telemetry::PROVIDER_BAD_MESSAGES, "provider" => PROVIDER).increment(1);
                })
            });
        match &answer {
            Ok(_) => count_ok(PROVIDER, "batch"),
            Err(error) => count_error(PROVIDER, "batch", error),
        }
        answer
    }
}

#[async_trait::async_trait]
impl BatchTranscription for OpenAiTranscription {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn transcribe(&self, wav: Vec<u8>) -> Result<BatchTranscript, ProviderError> {
        self.request(wav)
            .await
            .map_err(|e| self.client.without_key(e))
    }
}

#[derive(Deserialize)]
struct Plain {
    text: String,
}

/// A `json` answer (`{"text", "usage"?, "logprobs"?}`) as a transcript: its text, trimmed,
/// as one utterance from 0 with no end known (0); none when the text is blank. No
/// duration: the format gives none.
pub fn parse_json(body: &[u8]) -> Result<BatchTranscript, ProviderError> {
    let answer: Plain = serde_json::from_slice(body)
        .map_err(|e| ProviderError::protocol(PROVIDER, format!("not a json transcription: {e}")))?;
    let text = answer.text.trim();
    let utterances = (!text.is_empty())
        .then(|| Utterance {
            channel: 0,
            speaker: None,
            start_ms: 0,
            end_ms: 0,
            text: text.to_owned(),
        })
        .into_iter()
        .collect();
    Ok(BatchTranscript {
        utterances,
        duration_ms: None,
    })
}

#[derive(Deserialize)]
struct Verbose {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    segments: Option<Vec<Segment>>,
}

#[derive(Deserialize)]
struct Segment {
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
    #[serde(default)]
    text: String,
}

/// A `verbose_json` answer as a transcript: segments (trimmed, blank ones left out) by
/// start time; times in whole ms (negative or non-finite → 0; an end before its start →
/// the start).
pub fn parse_verbose_json(body: &[u8]) -> Result<BatchTranscript, ProviderError> {
    let answer: Verbose = serde_json::from_slice(body).map_err(|e| {
        ProviderError::protocol(PROVIDER, format!("not a verbose_json transcription: {e}"))
    })?;
    let duration_ms = answer.duration.map(ms);
    let mut utterances: Vec<Utterance> = match answer.segments {
        Some(segments) => segments
            .into_iter()
            .filter(|s| !s.text.trim().is_empty())
            .map(|s| {
                let start_ms = ms(s.start);
                Utterance {
                    channel: 0,
                    speaker: None,
                    start_ms,
                    end_ms: ms(s.end).max(start_ms),
                    text: s.text.trim().to_owned(),
                }
            })
            .collect(),
        None => answer
            .text
            .filter(|t| !t.trim().is_empty())
            .map(|text| Utterance {
                channel: 0,
                speaker: None,
                start_ms: 0,
                end_ms: duration_ms.unwrap_or(0),
                text: text.trim().to_owned(),
            })
            .into_iter()
            .collect(),
    };
    utterances.sort_by_key(|u| (u.start_ms, u.end_ms));
    Ok(BatchTranscript {
        utterances,
        duration_ms,
    })
}

/// Seconds from the wire as whole ms.
fn ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round().min(u64::MAX as f64 / 2.0) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_become_utterances_by_start() {
        let body = br#"{"language":"english","duration":8.47,"text":"Hello, is this Sam? Yes.",
            "segments":[
              {"id":1,"seek":0,"start":2.5,"end":3.1,"text":" Yes.","tokens":[1],"temperature":0.0},
              {"id":0,"seek":0,"start":0.0,"end":2.1,"text":" Hello, is this Sam?","tokens":[50364,2425],"temperature":0.0,
               "avg_logprob":-0.21,"compression_ratio":0.9,"no_speech_prob":0.01},
              {"id":2,"start":4.0,"end":3.0,"text":"  "}],
            "words":[{"word":"Hello","start":0.0,"end":0.4}],"usage":{"type":"duration","seconds":9}}"#;
        let transcript = parse_verbose_json(body).unwrap();
        assert_eq!(transcript.duration_ms, Some(8_470));
        let said: Vec<_> = transcript
            .utterances
            .iter()
            .map(|u| (u.start_ms, u.end_ms, u.text.as_str(), u.channel, u.speaker))
            .collect();
        assert_eq!(
            said,
            [
                (0, 2_100, "Hello, is this Sam?", 0, None),
                (2_500, 3_100, "Yes.", 0, None)
            ]
        );
    }

    #[test]
    fn plain_json_and_hostile_answers() {
        let plain = parse_verbose_json(br#"{"text":" Hi there. "}"#).unwrap();
        assert_eq!(plain.utterances.len(), 1);
        assert_eq!(plain.utterances[0].text, "Hi there.");
        assert_eq!(plain.duration_ms, None);
        let odd = parse_verbose_json(
            br#"{"duration":-1,"segments":[{"start":-3,"end":1e308,"text":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(odd.duration_ms, Some(0));
        assert_eq!(odd.utterances[0].start_ms, 0);
        let error = parse_verbose_json(b"Hello").unwrap_err();
        assert!(matches!(error, ProviderError::Protocol { .. }), "{error}");
        assert!(parse_verbose_json(br#"{"segments":[{"start":"0"}]}"#).is_err());
    }

    #[test]
    fn gpt_4o_transcribe_models_get_json_and_others_verbose_json() {
        for model in [
            "gpt-4o-transcribe",
            "gpt-4o-mini-transcribe",
            "gpt-4o-mini-transcribe-2025-03-20",
            "GPT-4o-Transcribe",
        ] {
            assert_eq!(
                ResponseFormat::for_model(model),
                ResponseFormat::Json,
                "{model}"
            );
        }
        for model in [
            "whisper-1",
            "whisper-large-v3",
            "gpt-4o-mini",
            "distil-whisper",
        ] {
            assert_eq!(
                ResponseFormat::for_model(model),
                ResponseFormat::VerboseJson,
                "{model}"
            );
        }
        let json = br#"{"text":" Hello, is this Sam? Yes. ","usage":{"type":"tokens","input_tokens":14,"output_tokens":9,"total_tokens":23}}"#;
        let transcript = ResponseFormat::Json.parse(json).unwrap();
        assert_eq!(transcript.utterances.len(), 1);
        assert_eq!(transcript.utterances[0].text, "Hello, is this Sam? Yes.");
        assert_eq!(transcript.duration_ms, None);
        assert!(
            parse_json(br#"{"text":"  "}"#)
                .unwrap()
                .utterances
                .is_empty()
        );
        assert!(parse_json(br#"{"segments":[]}"#).is_err());
        assert!(parse_json(b"Hello").is_err());
    }
}
