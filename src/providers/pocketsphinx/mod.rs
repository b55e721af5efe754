//! Offline speech recognition with pocketsphinx (Debian 5prealpha, en-us model), in process,
//! on worker threads: for short expected answers (yes/no, digits, a menu's words) when no
//! cloud STT is wanted or available.
//!
//! Owns: [`Recognizers`], the pool started once from `[pocketsphinx]`; [`Recognition`], one
//! call's stream, which holds one of at most `max_streams` slots until dropped. Audio is
//! the caller's 8 kHz telephone frames as they are ([`FRAME_SAMPLES`] samples, 20 ms),
//! widened inside (see [`decoder`]), so the pipeline does not resample for this engine.
//!
//! Invariants:
//! - Decoders are loaded at start, `ceil(max_streams / workers)` per worker, and reused;
//!   never loaded per call. A bad model fails [`Recognizers::start`] with
//!   [`SttError::Unavailable`].
//! - [`Recognition::push`] never blocks: it copies one frame into a bounded queue or
//!   returns false (counted in `voxgate_frames_dropped_total{stage="stt"}`).
//! - Beyond `max_streams`, [`Recognizers::open`] answers [`SttError::AtCapacity`] (counted);
//!   the caller then goes on with DTMF only.
//! - Nothing is recognised until [`Recognition::expect`] names what to listen for.
//!
//! Metrics: `voxgate_stt_streams` (open), `voxgate_stt_refused_total` (at capacity),
//! `voxgate_frames_dropped_total{stage="stt"}`, `voxgate_stt_results_total{kind,outcome}`.

pub mod config;
pub mod decoder;
mod ffi;
pub mod lexicon;
mod pool;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::thread;

use crossbeam_queue::ArrayQueue;
use tokio::sync::mpsc;

pub use config::PocketsphinxConfig;
use decoder::Decoder;
pub use decoder::FRAME_SAMPLES;
use lexicon::Lexicon;
use pool::{Frame, NewStream, StreamShared, WorkerShared};

use crate::telemetry;

/// The rate [`Recognition::push`] takes: the phone's.
pub const SAMPLE_RATE: u32 = 8000;

/// Why speech recognition is not available for a call.
#[derive(thiserror::Error, Debug)]
pub enum SttError {
    /// Every recognising stream is in use (`pocketsphinx.max_streams`).
    #[error("all offline speech recognisers are in use")]
    AtCapacity,
    /// pocketsphinx is disabled, or could not load its model.
    #[error("offline speech recognition unavailable: {0}")]
    Unavailable(String),
    /// The recogniser pool has shut down.
    #[error("offline speech recognition closed")]
    Closed,
}

/// One recognised word, on the caller's media clock (the `at_ms` of the pushed audio).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word, lowercase.
    pub text: String,
    /// When it starts, ms.
    pub start_ms: u64,
    /// When it ends, ms.
    pub end_ms: u64,
}

/// What was heard: a partial guess, or the final text of an utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    /// The words, space-separated; always one of the expected phrases when final.
    pub text: String,
    /// The words with their times (finals only).
    pub words: Vec<Word>,
    /// Whether this is the utterance's final result.
    pub is_final: bool,
}

/// The started recogniser pool. Cheap to clone; the workers stop when the last clone and
/// the last [`Recognition`] are gone.
#[derive(Clone)]
pub struct Recognizers {
    pool: Arc<Pool>,
}

struct Pool {
    workers: Vec<Arc<WorkerShared>>,
    open: AtomicUsize,
    max_streams: usize,
}

impl Drop for Pool {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.shutdown.store(true, Ordering::Release);
            worker.thread.unpark();
        }
    }
}

impl Recognizers {
    /// Starts `config.workers` threads and loads their decoders; returns once all are
    /// loaded, or the first load error.
    pub fn start(config: &PocketsphinxConfig) -> Result<Self, SttError> {
        if !config.enabled {
            return Err(SttError::Unavailable(
                "pocketsphinx.enabled is false".into(),
            ));
        }
        let dictionary = Decoder::dictionary(&config.model_dir);
        let lexicon = Lexicon::read(&dictionary).map_err(|e| {
            SttError::Unavailable(format!(
                "cannot read the pocketsphinx dictionary {}: {e} (is pocketsphinx-en-us \
                 installed, and pocketsphinx.model_dir right?)",
                dictionary.display()
            ))
        })?;
        let lexicon = Arc::new(lexicon);
        let workers = config.workers.max(1);
        let per_worker = config.max_streams.div_ceil(workers);
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let mut shared = Vec::with_capacity(workers);
        for index in 0..workers {
            let ready = ready_tx.clone();
            let model_dir = config.model_dir.clone();
            let lexicon = Arc::clone(&lexicon);
            let (thread_tx, thread_rx) = std_mpsc::channel::<Arc<WorkerShared>>();
            let handle = thread::Builder::new()
                .name(format!("stt-{index}"))
                .spawn(move || {
                    let mut decoders = Vec::with_capacity(per_worker);
                    for _ in 0..per_worker {
                        match Decoder::load(&model_dir, Arc::clone(&lexicon)) {
                            Ok(decoder) => decoders.push(decoder),
                            Err(e) => {
                                let _ = ready.send(Err(e.0));
                                return;
                            }
                        }
                    }
                    let _ = ready.send(Ok(()));
                    if let Ok(me) = thread_rx.recv() {
                        pool::run(me, decoders);
                    }
                })
                .map_err(|e| SttError::Unavailable(format!("cannot start a worker: {e}")))?;
            let worker = Arc::new(WorkerShared {
                incoming: Mutex::new(Vec::new()),
                incoming_waiting: AtomicBool::new(false),
                sleeping: AtomicBool::new(false),
                open: AtomicUsize::new(0),
                capacity: per_worker,
                shutdown: AtomicBool::new(false),
                thread: handle.thread().clone(),
            });
            // The thread waits for its shared state before running; if it already quit
            // (a load error), the send fails and the error arrives below.
            let _ = thread_tx.send(Arc::clone(&worker));
            shared.push(worker);
        }
        drop(ready_tx);
        let pool = Pool {
            workers: shared,
            open: AtomicUsize::new(0),
            max_streams: config.max_streams,
        };
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(SttError::Unavailable(reason)),
                Err(_) => return Err(SttError::Unavailable("a worker quit at start".into())),
            }
        }
        Ok(Self {
            pool: Arc::new(pool),
        })
    }

    /// Opens a stream for one call, on the least busy worker.
    pub fn open(&self) -> Result<Recognition, SttError> {
        let pool = &self.pool;
        let taken = pool
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < pool.max_streams).then_some(n + 1)
            });
        if taken.is_err() {
            metrics::counter!(telemetry::STT_REFUSED).increment(1);
            return Err(SttError::AtCapacity);
        }
        let Some(worker) = self.claim_worker() else {
            pool.open.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!(telemetry::STT_REFUSED).increment(1);
            return Err(SttError::AtCapacity);
        };
        let shared = Arc::new(StreamShared {
            frames: ArrayQueue::new(pool::QUEUE_FRAMES),
            expect: Mutex::new(None),
            expect_changed: AtomicBool::new(false),
            pushed: AtomicUsize::new(0),
            end_after: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let (results, rx) = mpsc::channel(pool::RESULT_SLOTS);
        worker
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(NewStream {
                shared: Arc::clone(&shared),
                results,
            });
        worker.incoming_waiting.store(true, Ordering::Release);
        worker.thread.unpark();
        metrics::gauge!(telemetry::STT_STREAMS).increment(1.0);
        Ok(Recognition {
            pool: Arc::clone(pool),
            worker,
            shared,
            results: rx,
        })
    }

    /// Takes a slot on the worker with the fewest open streams that has a decoder free.
    fn claim_worker(&self) -> Option<Arc<WorkerShared>> {
        loop {
            let worker = self
                .pool
                .workers
                .iter()
                .filter(|w| w.open.load(Ordering::Acquire) < w.capacity)
                .min_by_key(|w| w.open.load(Ordering::Acquire))?;
            let claimed = worker
                .open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < worker.capacity).then_some(n + 1)
                });
            if claimed.is_ok() {
                return Some(Arc::clone(worker));
            }
        }
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.pool.open.load(Ordering::Acquire)
    }
}

/// One call's recognising stream. Dropping it frees its slot at once; its worker takes the
/// decoder back before it serves another stream.
pub struct Recognition {
    pool: Arc<Pool>,
    worker: Arc<WorkerShared>,
    shared: Arc<StreamShared>,
    results: mpsc::Receiver<Heard>,
}

impl Recognition {
    /// Recognises only these words or phrases (lowercase, words separated by spaces) from
    /// now on; an utterance under way is dropped. Empty = stop listening. Phrases with a
    /// word the dictionary lacks, or with characters other than letters, digits, `'` and
    /// `-`, are left out.
    pub fn expect(&self, phrases: &[String]) {
        *self.shared.expect.lock().unwrap_or_else(|e| e.into_inner()) = Some(phrases.to_vec());
        self.shared.expect_changed.store(true, Ordering::Release);
        self.worker.thread.unpark();
    }

    /// Queues one 20 ms frame of 8 kHz audio ([`FRAME_SAMPLES`] samples) that starts at
    /// `at_ms` on the caller's media clock. Never blocks: false (and counted) when the
    /// queue is full or the frame is not 160 samples.
    pub fn push(&self, at_ms: u64, samples: &[i16]) -> bool {
        let Ok(samples) = <[i16; FRAME_SAMPLES]>::try_from(samples) else {
            metrics::counter!(telemetry::FRAMES_DROPPED, "stage" => "stt").increment(1);
            return false;
        };
        if self.shared.frames.push(Frame { at_ms, samples }).is_err() {
            metrics::counter!(telemetry::FRAMES_DROPPED, "stage" => "stt").increment(1);
            return false;
        }
        self.shared.pushed.fetch_add(1, Ordering::AcqRel);
        self.worker.nudge();
        true
    }

    /// Ends the utterance once the audio pushed so far is decoded, and sends its final:
    /// always one, with empty text when nothing expected was heard. (The only other
    /// final: an utterance left open for 30 s is ended, if it holds words.)
    pub fn end_utterance(&self) {
        let pushed = self.shared.pushed.load(Ordering::Acquire);
        self.shared.end_after.store(pushed + 1, Ordering::Release);
        self.worker.thread.unpark();
    }

    /// The next result; `None` if its worker has stopped.
    pub async fn next(&mut self) -> Option<Heard> {
        self.results.recv().await
    }
}

impl Drop for Recognition {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.worker.open.fetch_sub(1, Ordering::AcqRel);
        self.pool.open.fetch_sub(1, Ordering::AcqRel);
        self.worker.thread.unpark();
        metrics::gauge!(telemetry::STT_STREAMS).decrement(1.0);
    }
}
