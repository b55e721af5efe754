//! espeak-ng behind the [`TextToSpeech`] trait: the offline voice an LLM agent can speak
//! with, and the one that says the fallback line when a hosted TTS is what failed.
//!
//! One task per utterance says each text piece in turn (espeak-ng synthesizes much faster
//! than real time, so a piece's audio streams while the next piece waits), and forwards
//! its chunks with word timings placed from the utterance's start: a word ends where the
//! next one starts (the last at its piece's end), so it is handed on once that is known,
//! the piece's last word in a final chunk without audio. Dropping the [`TtsStream`] drops
//! the piece being made, which aborts its synthesis. A full synthesis queue is a retriable
//! error; every other failure ends the utterance for good.

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

/// An espeak failure as a provider error. A full queue is transient: it is a (retriable)
/// [`ProviderError::Connect`] — the synthesizer could not be reached now — where every
/// other failure is the utterance's own and final.
fn error(e: TtsError) -> ProviderError {
    match e {
        TtsError::Busy => ProviderError::Connect {
            provider: PROVIDER,
            reason: e.to_string(),
        },
        other => ProviderError::stream(PROVIDER, other.to_string()),
    }
}

/// Gives each word of a piece its end: the next word's start, or the piece's end for the
/// last one. A word is held until its end is known, so it may come with a later chunk
/// than the one it starts in (its `start_ms` still says where it starts).
#[derive(Debug, Default)]
struct WordEnds {
    held: Option<SpokenWord>,
}

impl WordEnds {
    /// A word that starts at `word.start_ms`: the held word, now ended, if any.
    fn push(&mut self, word: SpokenWord) -> Option<SpokenWord> {
        let start = word.start_ms;
        self.held.replace(word).map(|mut ended| {
            ended.end_ms = start.max(ended.start_ms);
            ended
        })
    }

    /// The piece ended at `end_ms`: the held word, ended there.
    fn finish(&mut self, end_ms: u64) -> Option<SpokenWord> {
        self.held.take().map(|mut word| {
            word.end_ms = end_ms.max(word.start_ms);
            word
        })
    }
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
        let mut ends = WordEnds::default();
        let hz = u64::from(rate.hz());
        loop {
            let chunk = tokio::select! {
                chunk = speech.next() => chunk,
                () = task.chunks.closed() => return,
            };
            let chunk = match chunk {
                None => {
                    // The last word ends with the piece's audio; it comes with no audio.
                    let end_ms = (offset + samples_here) * 1_000 / hz;
                    if let Some(word) = ends.finish(end_ms) {
                        let last = TtsChunk {
                            audio: TtsAudio::Pcm {
                                rate,
                                samples: Arc::from(Vec::new()),
                            },
                            words: vec![word],
                        };
                        if task.chunks.send(Ok(last)).await.is_err() {
                            return;
                        }
                    }
                    break;
                }
                Some(Err(e)) => {
                    let _ = task.chunks.send(Err(error(e))).await;
                    return;
                }
                Some(Ok(chunk)) => chunk,
            };
            let words = chunk
                .words
                .iter()
                .filter_map(|mark| {
                    let word = text.get(mark.char_offset..mark.char_offset + mark.len)?;
                    let start_ms = (offset + mark.at_sample) * 1_000 / hz;
                    ends.push(SpokenWord {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, start_ms: u64, end_ms: u64) -> SpokenWord {
        SpokenWord {
            text: text.into(),
            start_ms,
            end_ms,
        }
    }

    #[test]
    fn a_word_ends_where_the_next_starts_or_at_the_pieces_end() {
        let mut ends = WordEnds::default();
        assert_eq!(ends.push(word("Hello", 100, 100)), None);
        assert_eq!(
            ends.push(word("there", 480, 480)),
            Some(word("Hello", 100, 480))
        );
        assert_eq!(ends.finish(900), Some(word("there", 480, 900)));
        assert_eq!(ends.finish(950), None);
        // Marks out of order never give an end before the start.
        ends.push(word("a", 500, 500));
        assert_eq!(ends.push(word("b", 400, 400)), Some(word("a", 500, 500)));
    }

    #[test]
    fn a_full_queue_is_worth_retrying_and_nothing_else_is() {
        assert!(error(TtsError::Busy).retriable());
        assert!(error(TtsError::Busy).to_string().contains("busy"));
        assert!(!error(TtsError::Failed("bad voice".into())).retriable());
        assert!(!error(TtsError::Closed).retriable());
    }
}
