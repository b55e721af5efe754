//! One utterance on its way out: the [`Speech`] a caller reads chunks from, and the
//! [`Outlet`] the synthesis thread writes them to.
//!
//! The chunk channel is bounded ([`CHUNK_QUEUE`] chunks) and the thread only ever
//! `try_send`s into it, so it can never be blocked by a reader. How an utterance ended
//! travels beside the channel, not in it, so a failure is reported even when the channel is
//! full: the thread records the outcome, then drops its end; the reader sees the channel end
//! and reads the outcome. An outlet dropped without an outcome (the thread died) reads as
//! [`TtsError::Closed`], never as a clean end, so truncated audio is never mistaken for a
//! whole utterance. Dropping the [`Speech`] closes the channel, which is how the thread
//! learns to abort.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::TtsError;
use crate::audio::resample::Rate;

/// Chunks an utterance may have waiting for its reader: at espeak-ng's 40 ms per chunk,
/// about 20 s of audio.
pub const CHUNK_QUEUE: usize = 512;

/// A piece of an utterance's audio, in order, as the library produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeechChunk {
    /// Mono 16-bit samples at [`SpeechChunk::rate`]; shared, so passing a chunk on or
    /// keeping it costs no copy.
    pub samples: Arc<[i16]>,
    /// The sample rate: 22.05 kHz for espeak-ng.
    pub rate: Rate,
    /// The words whose start the library announced with this chunk; a word may start
    /// inside a later chunk (see [`WordMark::at_sample`]).
    pub words: Vec<WordMark>,
}

/// Where a word of the text is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordMark {
    /// Byte offset of the word in the text given to `speak`.
    pub char_offset: usize,
    /// The word's length in bytes.
    pub len: usize,
    /// The sample the word starts at, counted from the start of the utterance at the
    /// chunk's rate (22 050 Hz); millisecond precision.
    pub at_sample: u64,
}

/// How an utterance ended, as the synthesis thread recorded it.
#[derive(Debug)]
enum Outcome {
    /// Not recorded (yet).
    Pending,
    /// Every chunk was sent.
    Done,
    /// It stopped early, for this reason.
    Failed(TtsError),
}

/// The audio of one utterance, chunk by chunk. Dropping it cancels the synthesis.
#[derive(Debug)]
pub struct Speech {
    chunks: mpsc::Receiver<SpeechChunk>,
    outcome: Arc<Mutex<Outcome>>,
    ended: bool,
    from_cache: bool,
}

/// The synthesis thread's end of one utterance.
#[derive(Debug)]
pub struct Outlet {
    chunks: mpsc::Sender<SpeechChunk>,
    outcome: Arc<Mutex<Outcome>>,
}

/// A new utterance's two ends.
pub fn channel() -> (Outlet, Speech) {
    let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
    let outcome = Arc::new(Mutex::new(Outcome::Pending));
    let outlet = Outlet {
        chunks: tx,
        outcome: Arc::clone(&outcome),
    };
    let speech = Speech {
        chunks: rx,
        outcome,
        ended: false,
        from_cache: false,
    };
    (outlet, speech)
}

impl Speech {
    /// An utterance that is already complete: `chunk` (if any), then the end.
    pub(super) fn ready(chunk: Option<SpeechChunk>, from_cache: bool) -> Self {
        let (outlet, mut speech) = channel();
        if let Some(chunk) = chunk {
            // The channel is new and has room for many chunks.
            let _ = outlet.try_send(chunk);
        }
        outlet.finish(Ok(()));
        speech.from_cache = from_cache;
        speech
    }

    /// The next chunk; `None` once the utterance is done. A failure is reported once, in
    /// place of the chunks that did not come.
    pub async fn next(&mut self) -> Option<Result<SpeechChunk, TtsError>> {
        if self.ended {
            return None;
        }
        if let Some(chunk) = self.chunks.recv().await {
            return Some(Ok(chunk));
        }
        self.ended = true;
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *outcome, Outcome::Done) {
            Outcome::Done => None,
            Outcome::Failed(error) => Some(Err(error)),
            Outcome::Pending => Some(Err(TtsError::Closed)),
        }
    }

    /// The whole utterance's samples, for tests, fixtures and fallback lines.
    pub async fn collect(mut self) -> Result<Vec<i16>, TtsError> {
        let mut samples = Vec::new();
        while let Some(chunk) = self.next().await {
            samples.extend_from_slice(&chunk?.samples);
        }
        Ok(samples)
    }

    /// Whether the audio came from the rendered-prompt cache, with no synthesis.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
}

impl Outlet {
    /// Hands a chunk to the reader without waiting; gives it back when there is no room,
    /// or says the reader is gone.
    pub fn try_send(
        &self,
        chunk: SpeechChunk,
    ) -> Result<(), mpsc::error::TrySendError<SpeechChunk>> {
        self.chunks.try_send(chunk)
    }

    /// Whether the reader dropped its [`Speech`].
    pub fn is_closed(&self) -> bool {
        self.chunks.is_closed()
    }

    /// Records how the utterance ended and closes the channel.
    pub fn finish(self, result: Result<(), TtsError>) {
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        *outcome = match result {
            Ok(()) => Outcome::Done,
            Err(error) => Outcome::Failed(error),
        };
    }
}
