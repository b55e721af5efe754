//! Text to speech from an OpenAI-compatible server (`POST {base}/audio/speech`,
//! providers.md §4), streamed as it arrives.
//!
//! One task per utterance sends one request per batch of text, in order: the pieces waiting
//! when a request starts go together as one `input` (at most [`MAX_INPUT_CHARS`]; a longer
//! piece is split at a space). Each answer is `pcm` — headerless 24 kHz s16le mono — handed
//! on as [`TtsAudio::Pcm`] chunks as the body arrives (an odd byte is kept for the next
//! read; an odd byte at the very end is dropped). OpenAI gives no timings, so chunks carry
//! no words.
//!
//! Cancel: the agent dropping its [`TtsStream`] drops the request in flight (and with it the
//! connection) at once. An error answer (4xx/5xx, with `Retry-After` when sent) or a failed
//! body is one `Err` to the agent, then the end.
//!
//! Counted once per utterance in `PROVIDER_REQUESTS` (`ok`, `cancelled`, or `error` with
//! its kind), however many requests it took.
//!
//! Never: puts the key anywhere but the client's `Authorization` header, nor in an error.

use std::sync::Arc;

use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use super::{OpenAiClient, PROVIDER};
use crate::audio::resample::Rate;
use crate::providers::api::http::{count_error, count_outcome};
use crate::providers::api::{
    ProviderError, TextToSpeech, TtsAudio, TtsChunk, TtsInput, TtsStream, TtsTask,
};

/// Most characters of one request's `input` (OpenAI's limit).
pub const MAX_INPUT_CHARS: usize = 4096;
/// The rate of `pcm` answers.
pub const PCM_RATE: Rate = Rate::Hz24000;

/// Speech from one model and voice.
#[derive(Debug, Clone)]
pub struct OpenAiSpeech {
    client: Arc<OpenAiClient>,
    model: String,
    voice: String,
    speed: Option<f32>,
    instructions: Option<String>,
}

impl OpenAiSpeech {
    /// Speech from `model` with `voice` (else the section's `tts_model` / `tts_voice`).
    pub fn new(client: Arc<OpenAiClient>, model: Option<&str>, voice: Option<&str>) -> Self {
        let model = model.map_or_else(|| client.config().tts_model.clone(), str::to_owned);
        let voice = voice.map_or_else(|| client.config().tts_voice.clone(), str::to_owned);
        Self {
            client,
            model,
            voice,
            speed: None,
            instructions: None,
        }
    }

    /// Speaks at `speed` (1.0 is normal; clamped to OpenAI's 0.25–4.0).
    pub fn with_speed(mut self, speed: f32) -> Self {
        self.speed = speed.is_finite().then(|| speed.clamp(0.25, 4.0));
        self
    }

    /// How to speak (tone, accent; models other than `tts-1*`).
    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        let instructions = instructions.into();
        self.instructions = (!instructions.trim().is_empty()).then_some(instructions);
        self
    }
}

#[async_trait::async_trait]
impl TextToSpeech for OpenAiSpeech {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn open(&self) -> Result<TtsStream, ProviderError> {
        let (stream, task) = TtsStream::pair();
        let speech = self.clone();
        tokio::spawn(async move {
            let TtsTask { input, chunks } = task;
            let end = speech.utterance(input, &chunks).await;
            let outcome = match end {
                End::Done => "ok",
                End::Cancelled => "cancelled",
                End::Failed(error) => {
                    let _ = chunks.send(Err(error)).await;
                    "error"
                }
            };
            // A failure was counted, with its kind, where it happened.
            if outcome != "error" {
                count_outcome(PROVIDER, "tts", outcome);
            }
        });
        Ok(stream)
    }
}

/// How an utterance ended.
enum End {
    Done,
    Cancelled,
    /// Already counted.
    Failed(ProviderError),
}

type Chunks = mpsc::Sender<Result<TtsChunk, ProviderError>>;

#[derive(Serialize)]
struct SpeechRequest<'a> {
    model: &'a str,
    input: &'a str,
    voice: &'a str,
    response_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    speed: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
}

impl OpenAiSpeech {
    /// Speaks every batch of text in order until the end, the cancel or an error.
    async fn utterance(&self, mut input: mpsc::Receiver<TtsInput>, chunks: &Chunks) -> End {
        let mut batch = Batch::default();
        loop {
            let text = match batch.take() {
                Some(text) => text,
                None if batch.ended => return End::Done,
                None => {
                    let piece = tokio::select! {
                        biased;
                        () = chunks.closed() => return End::Cancelled,
                        piece = input.recv() => piece,
                    };
                    match piece {
                        None => return End::Cancelled,
                        Some(TtsInput::End) => return End::Done,
                        Some(TtsInput::Text(text)) => text,
                    }
                }
            };
            let mut text = batch.start(text);
            // The pieces already waiting go with this request.
            while batch.open() {
                match input.try_recv() {
                    Ok(TtsInput::Text(piece)) => batch.add(&mut text, piece),
                    Ok(TtsInput::End) => batch.ended = true,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return End::Cancelled,
                }
            }
            if text.trim().is_empty() {
                continue;
            }
            if let Err(end) = self.speak(&text, chunks).await {
                return end;
            }
        }
    }

    /// One request: its audio handed on as it arrives.
    async fn speak(&self, text: &str, chunks: &Chunks) -> Result<(), End> {
        let body = SpeechRequest {
            model: &self.model,
            input: text,
            voice: &self.voice,
            response_format: "pcm",
            speed: self.speed,
            instructions: self.instructions.as_deref(),
        };
        let request = self.client.post("audio/speech").json(&body);
        let response = tokio::select! {
            biased;
            () = chunks.closed() => return Err(End::Cancelled),
            response = self.client.send(request, "tts") => response.map_err(End::Failed)?,
        };
        let mut body = std::pin::pin!(self.client.body(response));
        let mut pcm = Pcm::default();
        loop {
            let read = tokio::select! {
                biased;
                () = chunks.closed() => return Err(End::Cancelled),
                read = body.next() => read,
            };
            let bytes = match read {
                None => break,
                Some(Ok(bytes)) => bytes,
                Some(Err(error)) => {
                    count_error(PROVIDER, "tts", &error);
                    return Err(End::Failed(error));
                }
            };
            let samples = pcm.samples(&bytes);
            if samples.is_empty() {
                continue;
            }
            let chunk = TtsChunk {
                audio: TtsAudio::Pcm {
                    rate: PCM_RATE,
                    samples: samples.into(),
                },
                words: Vec::new(),
            };
            if chunks.send(Ok(chunk)).await.is_err() {
                return Err(End::Cancelled);
            }
        }
        Ok(())
    }
}

/// The text of the next requests: a piece that did not fit the last one, and whether the
/// agent ended the utterance.
#[derive(Debug, Default)]
struct Batch {
    left: Option<String>,
    ended: bool,
}

impl Batch {
    /// The text left over from the last batch, if any.
    fn take(&mut self) -> Option<String> {
        self.left.take()
    }

    /// Starts a request's input with `text` (split if it is too long).
    fn start(&mut self, text: String) -> String {
        let (head, rest) = split_input(text);
        self.left = rest;
        head
    }

    /// Whether more waiting pieces may join the current input.
    fn open(&self) -> bool {
        !self.ended && self.left.is_none()
    }

    /// Adds `piece` to `text` if it fits, else keeps it for the next request.
    fn add(&mut self, text: &mut String, piece: String) {
        let space =
            !(text.ends_with(char::is_whitespace) || piece.starts_with(char::is_whitespace));
        let joined = text.chars().count() + usize::from(space) + piece.chars().count();
        if joined > MAX_INPUT_CHARS {
            self.left = Some(piece);
            return;
        }
        if space && !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&piece);
    }
}

/// `text` cut to at most [`MAX_INPUT_CHARS`], at the last whitespace before the limit when
/// there is one, and the rest.
fn split_input(text: String) -> (String, Option<String>) {
    let Some((limit, _)) = text.char_indices().nth(MAX_INPUT_CHARS) else {
        return (text, None);
    };
    let cut = text[..limit]
        .rfind(char::is_whitespace)
        .filter(|&at| at > 0)
        .unwrap_or(limit);
    let rest = text[cut..].trim_start().to_owned();
    let mut head = text;
    head.truncate(cut);
    (head, (!rest.is_empty()).then_some(rest))
}

/// s16le bytes into samples across reads: an odd byte waits for its partner.
#[derive(Debug, Default)]
struct Pcm {
    odd: Option<u8>,
}

impl Pcm {
    fn samples(&mut self, bytes: &[u8]) -> Vec<i16> {
        let mut out = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let (Some(low), Some((&high, tail))) = (self.odd, rest.split_first()) {
            out.push(i16::from_le_bytes([low, high]));
            self.odd = None;
            rest = tail;
        }
        let pairs = rest.chunks_exact(2);
        if let [last] = pairs.remainder() {
            self.odd = Some(*last);
        }
        out.extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_reads_reassemble_into_the_same_samples() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 - 9000) as i16).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        for size in [1, 3, 7, 333, 2000] {
            let mut pcm = Pcm::default();
            let out: Vec<i16> = bytes.chunks(size).flat_map(|c| pcm.samples(c)).collect();
            assert_eq!(out, samples, "reads of {size}");
            assert_eq!(pcm.odd, None);
        }
    }

    #[test]
    fn long_text_splits_at_a_space_and_pieces_join() {
        let word = "abcd ";
        let long = word.repeat(1000); // 5000 chars
        let (head, rest) = split_input(long.clone());
        assert!(head.chars().count() <= MAX_INPUT_CHARS);
        assert!(head.ends_with("abcd"));
        // Nothing lost: the two parts joined again are the text.
        assert!(format!("{head} {}", rest.unwrap()) == long);
        let solid = "é".repeat(5000);
        let (head, rest) = split_input(solid);
        assert_eq!(head.chars().count(), MAX_INPUT_CHARS);
        assert_eq!(rest.unwrap().chars().count(), 5000 - MAX_INPUT_CHARS);

        let mut batch = Batch::default();
        let mut text = batch.start("Sure.".into());
        batch.add(&mut text, "I can help.".into());
        batch.add(&mut text, " Anything else? ".into());
        assert_eq!(text, "Sure. I can help. Anything else? ");
        batch.add(&mut text, "x".repeat(MAX_INPUT_CHARS));
        assert!(!batch.open());
        assert_eq!(batch.take().map(|t| t.len()), Some(MAX_INPUT_CHARS));
    }
}
