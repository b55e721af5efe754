//! The one synthesis thread: it takes jobs from a bounded queue, one at a time, speaks each
//! through the library and streams the audio out as the library produces it.
//!
//! espeak-ng is not reentrant, so synthesis is serial: this thread is the only caller of
//! [`super::ffi`], and even it goes through the process-wide library lock (several
//! [`super::Espeak`]s in one process, as in tests, take turns). It runs in
//! `AUDIO_OUTPUT_SYNCHRONOUS` mode: each chunk is sent from inside the library's callback,
//! so the first audio leaves after the first clause, not after the whole text.
//!
//! What it must never do: wait on a reader without bound. Chunks go out with `try_send`;
//! when a reader's channel is full the thread polls for room, but an utterance may spend at
//! most [`STALL_BUDGET`] in total waiting, after which it is aborted and reported as
//! [`TtsError::Failed`]. A reader that dropped its [`super::Speech`] aborts its utterance
//! at the next chunk (the callback returns 1); a job whose reader left while it was
//! queued is skipped.
//!
//! Each job sets its own voice, rate and pitch (under a millisecond), so no job inherits
//! another's settings. The thread ends when every [`super::Espeak`] handle is gone and the
//! queue is drained.

use std::ffi::CString;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;

use super::cache::{Cache, Key, Rendered};
use super::ffi::{self, EVENT_WORD, Ended, Event, Flow, Library, SynthError};
use super::speech::{Outlet, SpeechChunk, WordMark};
use super::{EspeakConfig, TtsError};
use crate::audio::resample::Rate;
use crate::telemetry;

/// The longest an utterance may wait, in total, for room in its reader's channel.
pub const STALL_BUDGET: Duration = Duration::from_secs(2);
/// How often a full channel is looked at again.
const STALL_POLL: Duration = Duration::from_millis(2);

/// How an utterance should sound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Voice name, checked by [`super::config::check_voice`].
    pub voice: String,
    /// Words per minute, within [`super::config::RATE_WPM`].
    pub rate_wpm: u32,
    /// Base pitch, within [`super::config::PITCH`].
    pub pitch: u8,
}

/// One utterance to synthesise.
#[derive(Debug)]
pub struct Job {
    /// The text, checked for length and NUL bytes.
    pub text: CString,
    /// How to say it.
    pub settings: Settings,
    /// Where its audio goes.
    pub outlet: Outlet,
    /// When `speak` queued it (time to first chunk counts from here).
    pub queued_at: Instant,
    /// Under which key to cache it once finished; `None` when the cache is off.
    pub cache_key: Option<Key>,
}

/// The thread's queue and the sample rate of everything it says.
pub struct Started {
    /// Where `speak` puts jobs (`try_send` only).
    pub jobs: SyncSender<Job>,
    /// The library's sample rate.
    pub rate: Rate,
}

/// Starts the thread, initialises the library there (if nobody did yet) and checks the
/// configured voice; waits for that and reports a failure as [`TtsError::Unavailable`].
pub fn start(config: &EspeakConfig, cache: Arc<Mutex<Cache>>) -> Result<Started, TtsError> {
    let (jobs, queue) = sync_channel::<Job>(config.queue);
    let (ready_tx, ready_rx) = sync_channel(1);
    let defaults = Settings {
        voice: config.voice.clone(),
        rate_wpm: config.rate_wpm,
        pitch: config.pitch,
    };
    thread::Builder::new()
        .name("espeak".into())
        .spawn(move || {
            let rate = match ffi::with_library(|library| check(library, &defaults)) {
                Ok(Ok(rate)) => rate,
                Ok(Err(error)) | Err(error) => {
                    let _ = ready_tx.send(Err(TtsError::Unavailable(error)));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(rate));
            drop(ready_tx);
            run(&queue, &cache, rate);
        })
        .map_err(|e| TtsError::Unavailable(format!("cannot start the espeak thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(rate)) => Ok(Started { jobs, rate }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(TtsError::Unavailable(
            "the espeak thread stopped while starting".into(),
        )),
    }
}

/// The library's rate, and whether the default settings work.
fn check(library: &mut Library, defaults: &Settings) -> Result<Rate, String> {
    let rate = Rate::try_from(library.sample_rate()).map_err(|_| {
        format!(
            "espeak-ng speaks at {} Hz, not a rate voxgate resamples",
            library.sample_rate()
        )
    })?;
    apply(library, defaults).map_err(|e| match e {
        TtsError::Failed(reason) => reason,
        other => other.to_string(),
    })?;
    Ok(rate)
}

fn run(queue: &Receiver<Job>, cache: &Mutex<Cache>, rate: Rate) {
    while let Ok(job) = queue.recv() {
        if job.outlet.is_closed() {
            metrics::counter!(telemetry::ESPEAK_CANCELLED).increment(1);
            continue;
        }
        let text = job.text.to_string_lossy().into_owned();
        let keep = job.cache_key.is_some().then(|| {
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .max_entry_bytes()
                / 2
        });
        let mut stream = Stream::new(&job.outlet, &text, rate, job.queued_at, keep);
        let result = ffi::with_library(|library| {
            apply(library, &job.settings)?;
            library
                .synth(&job.text, |audio, events| stream.on_audio(audio, events))
                .map_err(|e| match e {
                    SynthError::Code(code) => {
                        TtsError::Failed(format!("espeak_Synth failed with code {code}"))
                    }
                    SynthError::HandlerPanicked => {
                        TtsError::Failed("the audio handler panicked".into())
                    }
                })
        });
        let result = match result {
            Ok(Ok(Ended::Finished)) => stream.finish(),
            Ok(Ok(Ended::Aborted)) => Err(stream.stopped.unwrap_or(Stop::Cancelled).error()),
            Ok(Err(error)) => Err(error),
            Err(reason) => Err(TtsError::Unavailable(reason)),
        };
        let kept = stream.kept.take();
        match result {
            Ok(()) => {
                metrics::counter!(telemetry::ESPEAK_UTTERANCES).increment(1);
                if let (Some(key), Some((samples, words))) = (job.cache_key, kept) {
                    let rendered = Rendered {
                        samples: samples.into(),
                        words,
                    };
                    cache
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key, rendered);
                }
                job.outlet.finish(Ok(()));
            }
            Err(TtsError::Closed) => {
                metrics::counter!(telemetry::ESPEAK_CANCELLED).increment(1);
            }
            Err(error) => {
                metrics::counter!(telemetry::ESPEAK_ERRORS, "reason" => error.reason())
                    .increment(1);
                tracing::warn!(%error, "espeak-ng utterance failed");
                job.outlet.finish(Err(error));
            }
        }
    }
}

/// Selects the voice, rate and pitch.
fn apply(library: &mut Library, settings: &Settings) -> Result<(), TtsError> {
    let voice = CString::new(settings.voice.as_str())
        .map_err(|_| TtsError::Failed(format!("{:?} is not a voice name", settings.voice)))?;
    library.set_voice(&voice).map_err(|_| {
        TtsError::Failed(format!(
            "unknown voice {:?}: espeak-ng's data has no such voice (see `espeak-ng --voices`)",
            settings.voice
        ))
    })?;
    library
        .set_rate(settings.rate_wpm)
        .and_then(|()| library.set_pitch(settings.pitch))
        .map_err(|code| TtsError::Failed(format!("espeak_SetParameter failed with code {code}")))
}

/// Why the thread stopped an utterance early.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// The reader dropped its `Speech`.
    Cancelled,
    /// The reader left its channel full for longer than [`STALL_BUDGET`].
    Stalled,
}

impl Stop {
    fn error(self) -> TtsError {
        match self {
            Stop::Cancelled => TtsError::Closed,
            Stop::Stalled => TtsError::Failed(format!(
                "the reader fell behind: audio waited over {} s for room",
                STALL_BUDGET.as_secs()
            )),
        }
    }
}

/// One utterance being streamed from inside the library's callback.
struct Stream<'a> {
    outlet: &'a Outlet,
    /// Byte offset of each character of the text, and the text's length at the end.
    offsets: Vec<usize>,
    rate: Rate,
    queued_at: Instant,
    /// Words announced but not yet sent with audio.
    words: Vec<WordMark>,
    /// A copy for the cache, while it stays within its sample limit.
    kept: Option<(Vec<i16>, Vec<WordMark>)>,
    keep_limit: usize,
    first_sent: bool,
    waited: Duration,
    stopped: Option<Stop>,
}

impl<'a> Stream<'a> {
    /// `keep`: keep a copy of up to this many samples for the cache.
    fn new(
        outlet: &'a Outlet,
        text: &str,
        rate: Rate,
        queued_at: Instant,
        keep: Option<usize>,
    ) -> Self {
        let offsets = text
            .char_indices()
            .map(|(at, _)| at)
            .chain([text.len()])
            .collect();
        Self {
            outlet,
            offsets,
            rate,
            queued_at,
            words: Vec::new(),
            kept: keep.map(|_| (Vec::new(), Vec::new())),
            keep_limit: keep.unwrap_or(0),
            first_sent: false,
            waited: Duration::ZERO,
            stopped: None,
        }
    }

    /// The library's callback: `audio` is `None` once the utterance is finished.
    fn on_audio(&mut self, audio: Option<&[i16]>, events: &[Event]) -> Flow {
        for event in events.iter().filter(|e| e.kind == EVENT_WORD) {
            if let Some(word) = self.word(event) {
                self.words.push(word);
            }
        }
        match audio {
            Some(samples) if !samples.is_empty() => self.send(samples),
            _ => Flow::Continue,
        }
    }

    /// A word event as a mark in the text and the audio. The library counts characters
    /// from 1; it also emits stray word events at position 0, which are skipped.
    fn word(&self, event: &Event) -> Option<WordMark> {
        let first = usize::try_from(event.text_position).ok()?.checked_sub(1)?;
        let chars = usize::try_from(event.length).ok().filter(|&n| n > 0)?;
        let start = *self.offsets.get(first)?;
        let end = self
            .offsets
            .get(first + chars)
            .or(self.offsets.last())
            .copied()?;
        let ms = u64::try_from(event.audio_position).unwrap_or(0);
        Some(WordMark {
            char_offset: start,
            len: end.saturating_sub(start),
            at_sample: ms * u64::from(self.rate.hz()) / 1000,
        })
    }

    fn send(&mut self, samples: &[i16]) -> Flow {
        let words = std::mem::take(&mut self.words);
        if let Some((kept, kept_words)) = &mut self.kept {
            if kept.len() + samples.len() <= self.keep_limit {
                kept.extend_from_slice(samples);
                kept_words.extend_from_slice(&words);
            } else {
                self.kept = None;
            }
        }
        let mut chunk = SpeechChunk {
            samples: samples.into(),
            rate: self.rate,
            words,
        };
        loop {
            match self.outlet.try_send(chunk) {
                Ok(()) => break,
                Err(TrySendError::Closed(_)) => {
                    self.stopped = Some(Stop::Cancelled);
                    return Flow::Abort;
                }
                Err(TrySendError::Full(back)) => {
                    if self.waited >= STALL_BUDGET {
                        self.stopped = Some(Stop::Stalled);
                        return Flow::Abort;
                    }
                    chunk = back;
                    let since = Instant::now();
                    thread::sleep(STALL_POLL);
                    self.waited += since.elapsed();
                }
            }
        }
        if !self.first_sent {
            self.first_sent = true;
            metrics::histogram!(telemetry::ESPEAK_FIRST_CHUNK)
                .record(self.queued_at.elapsed().as_secs_f64());
        }
        Flow::Continue
    }

    /// After the library finished: sends words announced after the last audio.
    fn finish(&mut self) -> Result<(), TtsError> {
        if self.words.is_empty() {
            return Ok(());
        }
        if let Flow::Abort = self.send(&[]) {
            return Err(self.stopped.unwrap_or(Stop::Cancelled).error());
        }
        Ok(())
    }
}
