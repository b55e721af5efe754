//! Recording transcription from an OpenAI-compatible server (`POST
//! {base}/audio/transcriptions`, multipart, providers.md §5): post-call work.
//!
//! The WAV goes up as `file` (`recording.wav`, `audio/wav`) with `model`,
//! `response_format=verbose_json` and `timestamp_granularities[]=segment`; the answer's
//! segments become [`Utterance`]s by start time. The API transcribes the mix: it does not
//! split a stereo file's channels nor tell speakers apart, so every utterance is channel 0
//! with no speaker — callers wanting per-party text must upload each channel on its own.
//! An answer without segments (a server that ignores `verbose_json`) gives its whole `text`
//! as one utterance.
//!
//! Errors: a 4xx is a non-retriable [`ProviderError::Status`], a 5xx (or 408/429) a
//! retriable one; an answer that is not the documented JSON is a protocol error. Never
//! reads more than [`MAX_ANSWER`] bytes of answer, or uploads more than [`MAX_UPLOAD`].

use std::sync::Arc;

use futures_util::StreamExt as _;
use metrics::counter;
use reqwest::multipart::{Form, Part};
use serde::Deserialize;

use super::{OpenAiClient, PROVIDER};
use crate::providers::api::{BatchTranscript, BatchTranscription, ProviderError, Utterance};
use crate::telemetry;

/// The largest file the API takes (OpenAI's schema: 25 MB).
pub const MAX_UPLOAD: usize = 25 * 1024 * 1024;
/// The largest answer read.
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;

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
}

#[async_trait::async_trait]
impl BatchTranscription for OpenAiTranscription {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn transcribe(&self, wav: Vec<u8>) -> Result<BatchTranscript, ProviderError> {
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
        let form = Form::new()
            .part("file", file)
            .text("model", self.model.clone())
            .text("response_format", "verbose_json")
            .text("timestamp_granularities[]", "segment");
        let request = self.client.post("audio/transcriptions").multipart(form);
        let response = self.client.send(request, "batch").await?;
        let result = read_answer(self.client.body(response))
            .await
            .and_then(|body| parse_verbose_json(&body));
        match &result {
            Ok(_) => counter!(telemetry::PROVIDER_REQUESTS, "provider" => PROVIDER, "api" => "batch", "outcome" => "ok")
                .increment(1),
            Err(error) => super::count_error("batch", error),
        }
        result
    }
}

/// The whole answer, if it is at most [`MAX_ANSWER`] bytes.
async fn read_answer(
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, ProviderError>>,
) -> Result<Vec<u8>, ProviderError> {
    let mut body = std::pin::pin!(body);
    let mut answer = Vec::new();
    while let Some(bytes) = body.next().await {
        let bytes = bytes?;
        if answer.len() + bytes.len() > MAX_ANSWER {
            return Err(ProviderError::protocol(
                PROVIDER,
                format!("the transcription is over {MAX_ANSWER} bytes"),
            ));
        }
        answer.extend_from_slice(&bytes);
    }
    Ok(answer)
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
}
