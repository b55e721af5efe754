//! Pre-recorded transcription: `POST {http base}/v1/listen?…&multichannel=true&utterances=true`
//! with a WAV body, answered by one JSON document.
//!
//! Each party of voxgate's stereo recording is a channel, so `multichannel=true` gives
//! per-party text and `utterances=true` gives turns; [`parse_batch`] turns the answer into
//! a [`BatchTranscript`] sorted by start (the server's order is not documented). When the
//! answer has no `utterances`, each channel's best alternative becomes one utterance.
//!
//! Timeouts: connect (the client's), the answer's headers under `batch_timeout` (the
//! server transcribes before it answers), each later body read under the idle timeout and
//! the whole body within `batch_timeout` again. Bounded: an answer over [`MAX_ANSWER`]
//! bytes is a protocol error; of an error answer the first 64 KB are quoted. The plumbing
//! is [`crate::providers::api::http`]'s. Never: sends the key anywhere but the
//! `Authorization` header (marked sensitive), nor returns an error holding it.

use std::sync::Arc;

use metrics::counter;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::PROVIDER;
use super::config::DeepgramConfig;
use super::messages::seconds_to_ms;
use crate::providers::api::http::{self, count_error, count_ok};
use crate::providers::api::{
    BatchTranscript, BatchTranscription, ProviderError, Timeouts, Utterance,
};
use crate::telemetry;

/// Largest answer read.
pub const MAX_ANSWER: usize = 16 << 20;

/// Deepgram pre-recorded transcription, one HTTP client for every request.
#[derive(Debug, Clone)]
pub struct DeepgramBatch {
    http: reqwest::Client,
    config: Arc<DeepgramConfig>,
}

impl DeepgramBatch {
    /// An adapter for `config`, its client built once.
    pub fn new(config: impl Into<Arc<DeepgramConfig>>) -> Result<Self, ProviderError> {
        let config = config.into();
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .build()
            .map_err(|e| ProviderError::Invalid {
                provider: PROVIDER,
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self { http, config })
    }

    async fn request(&self, wav: Vec<u8>) -> Result<BatchTranscript, ProviderError> {
        if wav.is_empty() {
            return Err(ProviderError::Invalid {
                provider: PROVIDER,
                reason: "empty recording".to_owned(),
            });
        }
        let config = &self.config;
        let mut request = self
            .http
            .post(config.batch_url())
            .header(CONTENT_TYPE, "audio/wav")
            .body(wav);
        if let Some(key) = &config.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Token {}", key.expose())).map_err(|_| {
                    ProviderError::Invalid {
                        provider: PROVIDER,
                        reason: "the API key is not a valid header value".to_owned(),
                    }
                })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let timeouts = Timeouts {
            first_byte: config.batch_timeout,
            ..config.timeouts
        };
        let response = http::send_guarded(PROVIDER, "batch", request, &timeouts).await?;
        let body = http::read_capped(
            PROVIDER,
            response,
            MAX_ANSWER,
            config.timeouts.idle,
            config.batch_timeout,
        )
        .await?;
        parse_batch(&body).map_err(|reason| {
            counter!(telemetry::PROVIDER_BAD_MESSAGES, "provider" => PROVIDER).increment(1);
            ProviderError::protocol(PROVIDER, reason)
        })
    }
}

#[async_trait::async_trait]
impl BatchTranscription for DeepgramBatch {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn transcribe(&self, wav: Vec<u8>) -> Result<BatchTranscript, ProviderError> {
        let result = self
            .request(wav)
            .await
            .map_err(|e| e.without_key(self.config.api_key.as_ref()));
        match &result {
            Ok(_) => count_ok(PROVIDER, "batch"),
            Err(error) => count_error(PROVIDER, "batch", error),
        }
        result
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    metadata: Option<Metadata>,
    results: Results,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    duration: Option<f64>,
}

#[derive(Deserialize)]
struct Results {
    #[serde(default)]
    channels: Vec<Channel>,
    #[serde(default)]
    utterances: Option<Vec<WireUtterance>>,
}

#[derive(Deserialize)]
struct Channel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    words: Vec<Word>,
}

#[derive(Deserialize)]
struct Word {
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
}

#[derive(Deserialize)]
struct WireUtterance {
    #[serde(default)]
    channel: u32,
    #[serde(default)]
    speaker: Option<u32>,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
    #[serde(default)]
    transcript: String,
}

/// A pre-recorded answer as a transcript: `results.utterances` by start time, or one
/// utterance per channel when there are none; empty texts are left out. `Err` says why
/// the body is not Deepgram's answer.
pub fn parse_batch(body: &[u8]) -> Result<BatchTranscript, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut utterances: Vec<Utterance> = match answer.results.utterances {
        Some(list) => list
            .into_iter()
            .map(|u| Utterance {
                channel: u.channel,
                speaker: u.speaker,
                start_ms: seconds_to_ms(u.start),
                end_ms: seconds_to_ms(u.end),
                text: u.transcript.trim().to_owned(),
            })
            .collect(),
        None => answer
            .results
            .channels
            .into_iter()
            .enumerate()
            .filter_map(|(i, channel)| {
                let alt = channel.alternatives.into_iter().next()?;
                Some(Utterance {
                    channel: u32::try_from(i).unwrap_or(u32::MAX),
                    speaker: None,
                    start_ms: alt.words.first().map_or(0, |w| seconds_to_ms(w.start)),
                    end_ms: alt.words.last().map_or(0, |w| seconds_to_ms(w.end)),
                    text: alt.transcript.trim().to_owned(),
                })
            })
            .collect(),
    };
    utterances.retain(|u| !u.text.is_empty());
    utterances.sort_by_key(|u| (u.start_ms, u.channel));
    Ok(BatchTranscript {
        utterances,
        duration_ms: answer.metadata.and_then(|m| m.duration).map(seconds_to_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utterances_come_sorted_with_channels() {
        let body = br#"{"metadata":{"request_id":"r","duration":12.5,"channels":2},
          "results":{"channels":[{"alternatives":[{"transcript":"a","confidence":1,"words":[]}]},
                                 {"alternatives":[{"transcript":"b","confidence":1,"words":[]}]}],
          "utterances":[
            {"id":"2","start":3.0,"end":4.0,"confidence":0.9,"channel":1,"transcript":"How can I help?","words":[]},
            {"id":"1","start":0.5,"end":2.0,"confidence":0.9,"channel":0,"speaker":0,"transcript":"Hello.","words":[]},
            {"id":"3","start":5.0,"end":5.5,"confidence":0.9,"channel":0,"transcript":" ","words":[]}]}}"#;
        let transcript = parse_batch(body).unwrap();
        assert_eq!(transcript.duration_ms, Some(12_500));
        assert_eq!(
            transcript.utterances,
            vec![
                Utterance {
                    channel: 0,
                    speaker: Some(0),
                    start_ms: 500,
                    end_ms: 2_000,
                    text: "Hello.".into()
                },
                Utterance {
                    channel: 1,
                    speaker: None,
                    start_ms: 3_000,
                    end_ms: 4_000,
                    text: "How can I help?".into()
                },
            ]
        );
    }

    #[test]
    fn without_utterances_each_channel_is_one() {
        let body = br#"{"metadata":{"duration":3},"results":{"channels":[
          {"alternatives":[{"transcript":"hi there","confidence":1,"words":[{"word":"hi","start":0.2,"end":0.4,"confidence":1},{"word":"there","start":0.5,"end":0.9,"confidence":1}]}]},
          {"alternatives":[]},
          {"alternatives":[{"transcript":"yes","confidence":1,"words":[{"word":"yes","start":0.1,"end":0.3,"confidence":1}]}]}]}}"#;
        let transcript = parse_batch(body).unwrap();
        let got: Vec<_> = transcript
            .utterances
            .iter()
            .map(|u| (u.channel, u.start_ms, u.end_ms, u.text.as_str()))
            .collect();
        assert_eq!(got, [(2, 100, 300, "yes"), (0, 200, 900, "hi there")]);
    }

    #[test]
    fn other_bodies_are_refused() {
        assert!(parse_batch(b"").is_err());
        assert!(parse_batch(b"{\"metadata\":{}}").is_err());
        assert!(parse_batch(br#"{"results":{"utterances":[{"channel":-1}]}}"#).is_err());
        assert_eq!(
            parse_batch(br#"{"results":{}}"#),
            Ok(BatchTranscript::default())
        );
    }
}
