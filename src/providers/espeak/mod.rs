//! Offline text-to-speech with espeak-ng, through its C library, in this process.
//!
//! [`Espeak::start`] starts the one synthesis thread (`worker.rs`) that owns the library;
//! [`Espeak::speak`] queues an utterance without ever blocking and returns a [`Speech`],
//! whose chunks of 22.05 kHz audio arrive while the library is still speaking, each with
//! the words it starts. Never a process per utterance: the library stays loaded.
//!
//! Contracts:
//! - **Serial synthesis.** espeak-ng keeps global state and is not reentrant; every call
//!   into it is made by the synthesis thread under one process-wide lock (`ffi.rs`).
//! - **Bounded queue, no waiting.** [`Espeak::speak`] `try`-pushes into a queue of
//!   `espeak.queue` utterances and answers [`TtsError::Busy`] when it is full.
//! - **Cancellation.** Dropping a [`Speech`] cancels its utterance: skipped if still
//!   queued, aborted at its next chunk if being spoken (the library's callback returns 1).
//! - **Bounded output.** Each utterance has a channel of [`CHUNK_QUEUE`] chunks (about 20 s
//!   of audio). A reader that leaves it full holds up every other utterance, so the thread
//!   waits for room at most [`STALL_BUDGET`] (2 s) in total per utterance, then aborts it
//!   with [`TtsError::Failed`]. A reader that plays in real time should move chunks into
//!   its own buffer rather than read them only as it plays.
//! - **Cache.** A finished utterance is kept by voice, rate, pitch and text in a cache of
//!   `espeak.cache_bytes` (`cache.rs`); saying it again streams the kept audio at once, as a
//!   single chunk, with no synthesis and no queue.
//! - **Bad input** (text over [`MAX_TEXT_BYTES`] or with a NUL byte, a malformed voice
//!   name, a rate or pitch out of range) is refused by `speak` with [`TtsError::Failed`];
//!   a well-formed voice espeak-ng does not have fails the utterance with a
//!   [`TtsError::Failed`] naming it. Each is counted in [`crate::telemetry::ESPEAK_ERRORS`].
//!
//! Metrics: [`crate::telemetry`]'s `ESPEAK_*` (utterances, cache hits and misses, busy
//! refusals, cancellations, errors, time from `speak` to the first chunk of a synthesis).

mod cache;
pub mod config;
mod ffi;
mod speech;
pub mod tts;
mod worker;

#[cfg(test)]
mod tests;

use std::ffi::CString;
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use self::cache::{Cache, Key};
pub use self::config::{EspeakConfig, RawEspeak};
pub use self::speech::{CHUNK_QUEUE, Speech, SpeechChunk, WordMark};
pub use self::worker::STALL_BUDGET;
use self::worker::{Job, Settings};
use crate::audio::resample::Rate;
use crate::telemetry;

/// The longest text one utterance may have, bytes (about four minutes of speech).
pub const MAX_TEXT_BYTES: usize = 4096;

/// Why speech could not be had.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TtsError {
    /// The synthesis queue is full; try again later or say less.
    #[error("espeak-ng is busy: its queue is full")]
    Busy,
    /// The library could not start: not installed, data missing, the voice not found.
    #[error("espeak-ng is unavailable: {0}")]
    Unavailable(String),
    /// This utterance failed: bad input, an unknown voice, a reader that fell behind.
    #[error("espeak-ng failed: {0}")]
    Failed(String),
    /// The synthesis thread is gone (or the utterance was cancelled).
    #[error("espeak-ng's synthesis thread is gone")]
    Closed,
}

impl TtsError {
    /// A fixed label for metrics.
    fn reason(&self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Unavailable(_) => "unavailable",
            Self::Failed(_) => "failed",
            Self::Closed => "closed",
        }
    }
}

/// How one utterance should sound; `None` takes the `[espeak]` section's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpeakOptions {
    /// Voice name with an optional `+variant` (`en-us`, `en-us+f3`).
    pub voice: Option<String>,
    /// Words per minute, 80..=450.
    pub rate_wpm: Option<u32>,
    /// Base pitch, 0..=100.
    pub pitch: Option<u8>,
}

/// Offline speech: a handle on the synthesis thread. Cheap to clone; the thread ends
/// when the last clone is dropped and its queue is drained.
#[derive(Clone)]
pub struct Espeak {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: std::sync::mpsc::SyncSender<Job>,
    cache: Arc<Mutex<Cache>>,
    defaults: Settings,
    rate: Rate,
}

impl std::fmt::Debug for Espeak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Espeak")
            .field("defaults", &self.inner.defaults)
            .field("rate", &self.inner.rate)
            .finish_non_exhaustive()
    }
}

impl Espeak {
    /// Starts the synthesis thread and initialises the library there; fails with
    /// [`TtsError::Unavailable`] when it cannot (library data missing, the configured voice
    /// unknown). Blocks until the library answers: call it at start-up.
    pub fn start(config: &EspeakConfig) -> Result<Self, TtsError> {
        let cache = Arc::new(Mutex::new(Cache::new(config.cache_bytes)));
        let started = worker::start(config, Arc::clone(&cache)).inspect_err(|error| {
            metrics::counter!(telemetry::ESPEAK_ERRORS, "reason" => error.reason()).increment(1);
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: started.jobs,
                cache,
                defaults: Settings {
                    voice: config.voice.clone(),
                    rate_wpm: config.rate_wpm,
                    pitch: config.pitch,
                },
                rate: started.rate,
            }),
        })
    }

    /// Queues `text` to be spoken and returns its audio stream; never blocks.
    ///
    /// A text already in the cache is streamed at once. Refuses with [`TtsError::Busy`]
    /// when the queue is full, [`TtsError::Failed`] for bad input (see the module doc) and
    /// [`TtsError::Closed`] when the thread is gone.
    pub fn speak(&self, text: &str, options: &SpeakOptions) -> Result<Speech, TtsError> {
        let queued_at = Instant::now();
        let settings = self.settings(options).inspect_err(count_error)?;
        let c_text = checked_text(text).inspect_err(count_error)?;
        if text.trim().is_empty() {
            return Ok(Speech::ready(None, false));
        }
        let mut cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cache_key = cache.enabled().then(|| Key {
            voice: settings.voice.clone(),
            rate_wpm: settings.rate_wpm,
            pitch: settings.pitch,
            text: text.to_owned(),
        });
        if let Some(key) = &cache_key {
            if let Some(rendered) = cache.get(key) {
                drop(cache);
                metrics::counter!(telemetry::ESPEAK_CACHE, "outcome" => "hit").increment(1);
                let chunk = SpeechChunk {
                    samples: rendered.samples,
                    rate: self.inner.rate,
                    words: rendered.words,
                };
                return Ok(Speech::ready(Some(chunk), true));
            }
            metrics::counter!(telemetry::ESPEAK_CACHE, "outcome" => "miss").increment(1);
        }
        drop(cache);
        let (outlet, speech) = speech::channel();
        let job = Job {
            text: c_text,
            settings,
            outlet,
            queued_at,
            cache_key,
        };
        match self.inner.jobs.try_send(job) {
            Ok(()) => Ok(speech),
            Err(TrySendError::Full(_)) => {
                metrics::counter!(telemetry::ESPEAK_BUSY).increment(1);
                Err(TtsError::Busy)
            }
            Err(TrySendError::Disconnected(_)) => Err(TtsError::Closed),
        }
    }

    /// The sample rate of every chunk: 22.05 kHz.
    pub fn rate(&self) -> Rate {
        self.inner.rate
    }

    /// `options` over the defaults, checked.
    fn settings(&self, options: &SpeakOptions) -> Result<Settings, TtsError> {
        let defaults = &self.inner.defaults;
        let voice = match &options.voice {
            Some(voice) => {
                config::check_voice(voice).map_err(TtsError::Failed)?;
                voice.clone()
            }
            None => defaults.voice.clone(),
        };
        let rate_wpm = options.rate_wpm.unwrap_or(defaults.rate_wpm);
        config::check_rate(rate_wpm).map_err(TtsError::Failed)?;
        let pitch = options.pitch.unwrap_or(defaults.pitch);
        config::check_pitch(pitch).map_err(TtsError::Failed)?;
        Ok(Settings {
            voice,
            rate_wpm,
            pitch,
        })
    }
}

/// `text` as the library takes it: at most [`MAX_TEXT_BYTES`], no NUL byte.
fn checked_text(text: &str) -> Result<CString, TtsError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(TtsError::Failed(format!(
            "text of {} bytes is over the {MAX_TEXT_BYTES}-byte limit of one utterance",
            text.len()
        )));
    }
    CString::new(text).map_err(|_| TtsError::Failed("text contains a NUL byte".into()))
}

fn count_error(error: &TtsError) {
    metrics::counter!(telemetry::ESPEAK_ERRORS, "reason" => error.reason()).increment(1);
}
