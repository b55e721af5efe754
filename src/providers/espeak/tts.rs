//! espeak-ng behind the [`TextToSpeech`] trait: the offline voice an LLM agent can speak
//! with, and the one that says the fallback line when a hosted TTS is what failed.
//!
//! One task per utterance says each text piece in turn (espeak-ng synthesizes much faster
//! than real time, so a piece's audio streams while the next piece waits), and forwards
//! its chunks with word timings placed from the utterance's start. Dropping the
//! [`TtsStream`] drops the piece being made, which aborts its synthesis.

use std::sync::Arc;

use super::{Espeak, SpeakOptions, TtsError};
use crate::providers::api::{
    ProviderError, SpokenWord, TextToSpeech, TtsAudio, TtsChunk, TtsInput, TtsStream, TtsTask,
};

/// The provider's name.
pub const PROVIDER: &str = "espeak";

/// espeak-ng as a streaming text-to-speech.
#[derive(Debug, Clone)]
pub struct EspeakTts {
    espeak: Espeak,
    options: SpeakOptions,
}

impl EspeakTts {
    /// Speaks through `espeak` with `options` (a voice, a rate).
    pub fn new(espeak: Espeak, options: SpeakOptions) -> Self {
        Self { espeak, options }
    }
}

#[async_trait::async_trait]
impl TextToSpeech for EspeakTts {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn open(&self) -> Result<TtsStream, ProviderError> {
        let (stream, task) = TtsStream::pair();
        tokio::spawn(speak_all(self.clone(), task));
        Ok(stream)
    }
}

fn error(e: TtsError) -> ProviderError {
    ProviderError::stream(PROVIDER, e.to_string())
}

/// Says every piece of one utterance, in order.
async fn speak_all(tts: EspeakTts, mut task: TtsTask) {
    let rate = tts.espeak.rate();
    // Samples already sent, to place each piece's words from the utterance's start.
    let mut offset: u64 = 0;
    while let Some(input) = task.input.recv().await {
        let text = match input {
            TtsInput::Text(text) => text,
            TtsInput::End => return,
        };
        let mut speech = match tts.espeak.speak(&text, &tts.options) {
            Ok(speech) => speech,
            Err(e) => {
                let _ = task.chunks.send(Err(error(e))).await;
                return;
            }
        };
        let mut samples_here = 0;
        loop {
            let chunk = tokio::select! {
                chunk = speech.next() => chunk,
                () = task.chunks.closed() => return,
            };
            let chunk = match chunk {
                None => break,
                Some(Err(e)) => {
                    let _ = task.chunks.send(Err(error(e))).await;
                    return;
                }
                Some(Ok(chunk)) => chunk,
            };
            let hz = u64::from(rate.hz());
            let words = chunk
                .words
                .iter()
                .filter_map(|mark| {
                    let word = text.get(mark.char_offset..mark.char_offset + mark.len)?;
                    let start_ms = (offset + mark.at_sample) * 1_000 / hz;
                    Some(SpokenWord {
                        text: word.to_owned(),
                        start_ms,
                        end_ms: start_ms,
                    })
                })
                .collect();
            samples_here += chunk.samples.len() as u64;
            let audio = TtsAudio::Pcm {
                rate: chunk.rate,
                samples: Arc::clone(&chunk.samples),
            };
            if task
                .chunks
                .send(Ok(TtsChunk { audio, words }))
                .await
                .is_err()
            {
                return;
            }
        }
        offset += samples_here;
    }
}
