//! The worker threads: each owns a fixed set of loaded decoders and runs the streams
//! assigned to it, one decoder per stream, handing the decoder to the next call when a
//! stream ends.
//!
//! Contract with the async side (the only place they meet):
//! - Audio goes through each stream's own [`ArrayQueue`] of [`QUEUE_FRAMES`] frames: the
//!   caller's push never blocks; when full the frame is handed back (refused) and counted.
//! - Control (expect, end of utterance, close) is a few flags and one small mutex-guarded
//!   slot per stream, read by the worker between frames; the lock is taken only when its
//!   flag says the slot changed, and held only to move a `Vec` in or out.
//! - Results go back on a bounded tokio channel with `try_send`; a full channel drops the
//!   result and counts it (partials are only ever a guess that the next one replaces).
//! - Utterances end when the caller says so ([`super::Recognition::end_utterance`], from
//!   its own VAD and turn-taking), never at the decoder's VAD pauses: a pause inside
//!   "se-ven" would split one answer in two. Each end sends one final, empty when nothing
//!   was heard. An utterance left open is ended after 30 s.
//! - A worker never blocks on a caller: it parks only when no stream has work, and is
//!   woken by a control change, or by a push only if it is parked (so a busy worker costs
//!   a caller's frame no syscall).
//!
//! Budget per frame on the worker: no allocation (the decoder reuses its buffers) except
//! when a partial or final is sent.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::sync::mpsc;

use super::decoder::{Decoder, FRAME_SAMPLES};
use super::{Heard, Word};
use crate::telemetry;

/// Frames a stream may queue before pushes are refused: 1 s of audio.
pub(super) const QUEUE_FRAMES: usize = 50;
/// Results a stream may hold unread.
pub(super) const RESULT_SLOTS: usize = 32;
/// Frames taken from one stream before the worker turns to the next, for fairness.
const BATCH: usize = 10;
/// Frames between two looks at the partial hypothesis (200 ms).
const PARTIAL_EVERY: u32 = 10;
/// Longest utterance (30 s): the caller's end of turn ends utterances; this only bounds
/// one whose end never comes.
const MAX_UTTERANCE_FRAMES: u32 = 1500;
/// How long an idle worker sleeps before looking for work unprompted.
const IDLE_PARK: Duration = Duration::from_millis(100);

/// One queued frame.
pub(super) struct Frame {
    pub(super) at_ms: u64,
    pub(super) samples: [i16; FRAME_SAMPLES],
}

/// What a stream and its worker share.
pub(super) struct StreamShared {
    pub(super) frames: ArrayQueue<Frame>,
    /// A new list of phrases to expect, not yet applied.
    pub(super) expect: Mutex<Option<Vec<String>>>,
    /// `expect` holds a list the worker has not taken yet.
    pub(super) expect_changed: AtomicBool,
    /// Frames pushed so far (the worker ends the utterance once it has taken this many).
    pub(super) pushed: AtomicUsize,
    /// `pushed` when the caller last asked for a final, plus one; 0 = none asked.
    pub(super) end_after: AtomicUsize,
    pub(super) closed: AtomicBool,
}

/// A stream on its way to a worker.
pub(super) struct NewStream {
    pub(super) shared: Arc<StreamShared>,
    pub(super) results: mpsc::Sender<Heard>,
}

/// What the pool and a worker share.
pub(super) struct WorkerShared {
    pub(super) incoming: Mutex<Vec<NewStream>>,
    /// `incoming` may hold a stream.
    pub(super) incoming_waiting: AtomicBool,
    /// The worker is parked, or about to be: a push must wake it.
    pub(super) sleeping: AtomicBool,
    /// Streams assigned and not yet dropped.
    pub(super) open: AtomicUsize,
    /// Decoders this worker owns.
    pub(super) capacity: usize,
    pub(super) shutdown: AtomicBool,
    pub(super) thread: Thread,
}

impl WorkerShared {
    /// Wakes the worker after a push, if it is parked (a futex call only then).
    pub(super) fn nudge(&self) {
        // Pairs with the fence in `run`: either the worker sees the frame before it parks,
        // or this sees it sleeping.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

/// A stream a worker is decoding.
struct Active {
    shared: Arc<StreamShared>,
    results: mpsc::Sender<Heard>,
    decoder: Decoder,
    /// Frames taken from the queue.
    taken: usize,
    /// Media time of the utterance's first frame, and of its first frame the decoder
    /// kept (known once the VAD declares speech).
    utterance_at: Option<u64>,
    speech_at: Option<u64>,
    frames_in_utterance: u32,
    since_partial: u32,
    last_partial: String,
    /// The latest look at the partial hypothesis.
    guess: String,
}

/// Runs one worker until shutdown: `decoders` are its own for its whole life.
pub(super) fn run(worker: Arc<WorkerShared>, mut decoders: Vec<Decoder>) {
    let mut active: Vec<Active> = Vec::new();
    while !worker.shutdown.load(Ordering::Acquire) {
        // Closed streams first, so a slot freed by a drop has its decoder back before a
        // new stream asks for one.
        let mut i = 0;
        while i < active.len() {
            if active[i].shared.closed.load(Ordering::Acquire) {
                let mut gone = active.swap_remove(i);
                gone.decoder.abandon();
                gone.decoder.expect(&[]);
                decoders.push(gone.decoder);
            } else {
                i += 1;
            }
        }
        attach(&worker, &mut decoders, &mut active);
        let mut worked = false;
        for stream in &mut active {
            worked |= stream.step();
        }
        if !worked {
            worker.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if active.iter().all(|s| s.shared.frames.is_empty()) {
                thread::park_timeout(IDLE_PARK);
            }
            worker.sleeping.store(false, Ordering::SeqCst);
        }
    }
}

/// Gives each waiting stream a decoder.
fn attach(worker: &WorkerShared, decoders: &mut Vec<Decoder>, active: &mut Vec<Active>) {
    if !worker.incoming_waiting.swap(false, Ordering::AcqRel) {
        return;
    }
    let mut incoming = worker.incoming.lock().unwrap_or_else(|e| e.into_inner());
    while !incoming.is_empty() {
        let Some(decoder) = decoders.pop() else {
            // Not reached: streams are assigned only up to `capacity`, and closed ones
            // give their decoder back above. Left waiting if it were.
            worker.incoming_waiting.store(true, Ordering::Release);
            return;
        };
        let NewStream { shared, results } = incoming.remove(0);
        if shared.closed.load(Ordering::Acquire) {
            decoders.push(decoder);
            continue;
        }
        active.push(Active {
            shared,
            results,
            decoder,
            taken: 0,
            utterance_at: None,
            speech_at: None,
            frames_in_utterance: 0,
            since_partial: 0,
            last_partial: String::new(),
            guess: String::with_capacity(256),
        });
    }
}

impl Active {
    /// Applies control changes and decodes up to [`BATCH`] frames; true if it did anything.
    fn step(&mut self) -> bool {
        let mut worked = false;
        let phrases = if self.shared.expect_changed.swap(false, Ordering::AcqRel) {
            self.shared
                .expect
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
        } else {
            None
        };
        if let Some(phrases) = phrases {
            // A new question: what was heard of the old one is dropped.
            self.decoder.expect(&phrases);
            self.reset_utterance();
            worked = true;
        }
        for _ in 0..BATCH {
            let Some(frame) = self.shared.frames.pop() else {
                break;
            };
            worked = true;
            self.taken += 1;
            self.decode(&frame);
            self.end_if_asked();
        }
        worked | self.end_if_asked()
    }

    fn decode(&mut self, frame: &Frame) {
        if !self.decoder.listening() {
            return;
        }
        let frame_ms = (FRAME_SAMPLES as u64) * 1000 / 8000;
        self.utterance_at.get_or_insert(frame.at_ms);
        let in_speech = self.decoder.process(&frame.samples);
        if in_speech && self.speech_at.is_none() {
            // The utterance's first kept frame, on the caller's clock.
            let kept = self.decoder.kept_ms();
            self.speech_at = Some((frame.at_ms + frame_ms).saturating_sub(kept));
        }
        self.frames_in_utterance += 1;
        if self.frames_in_utterance >= MAX_UTTERANCE_FRAMES {
            // The caller never ended the turn: bound the utterance.
            self.send_final(false);
        } else if in_speech {
            self.since_partial += 1;
            if self.since_partial >= PARTIAL_EVERY {
                self.since_partial = 0;
                self.send_partial();
            }
        }
    }

    /// Ends the utterance if the caller asked and every frame pushed before the ask is
    /// decoded.
    fn end_if_asked(&mut self) -> bool {
        let asked = self.shared.end_after.load(Ordering::Acquire);
        if asked == 0 || self.taken + 1 < asked {
            return false;
        }
        self.shared.end_after.store(0, Ordering::Release);
        self.send_final(true);
        true
    }

    fn send_partial(&mut self) {
        // Into a reused buffer: an unchanged guess (most looks) allocates nothing.
        if !self.decoder.partial(&mut self.guess) || self.guess == self.last_partial {
            return;
        }
        self.last_partial.clone_from(&self.guess);
        self.send(Heard {
            text: self.guess.clone(),
            words: Vec::new(),
            is_final: false,
        });
    }

    /// Ends the utterance and sends its final; one with no words only when `always`
    /// (the caller asked, and waits for an answer even if it is "nothing heard").
    fn send_final(&mut self, always: bool) {
        let decoded = self.decoder.finish();
        // Where the utterance's first kept frame lies on the caller's clock (without
        // speech, its first frame). Words after a pause longer than the VAD's hangover
        // (0.5 s), whose silence the decoder drops, come out early by that much.
        let utterance_at = self.utterance_at.unwrap_or(0);
        let origin = self
            .speech_at
            .map_or(utterance_at, |at| at.max(utterance_at));
        self.reset_utterance();
        let Some(decoded) = decoded else {
            if always {
                self.send(Heard {
                    text: String::new(),
                    words: Vec::new(),
                    is_final: true,
                });
            }
            return;
        };
        let words = decoded
            .words
            .into_iter()
            .map(|(text, start, end)| Word {
                text,
                start_ms: origin + start,
                end_ms: origin + end,
            })
            .collect();
        self.send(Heard {
            text: decoded.text,
            words,
            is_final: true,
        });
    }

    fn reset_utterance(&mut self) {
        self.utterance_at = None;
        self.speech_at = None;
        self.frames_in_utterance = 0;
        self.since_partial = 0;
        self.last_partial.clear();
    }

    fn send(&self, heard: Heard) {
        let kind = if heard.is_final { "final" } else { "partial" };
        let outcome = match self.results.try_send(heard) {
            Ok(()) => "sent",
            Err(mpsc::error::TrySendError::Full(_)) => "dropped",
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        };
        metrics::counter!(telemetry::STT_RESULTS, "kind" => kind, "outcome" => outcome)
            .increment(1);
    }
}
