//! The lock-free frame pipeline: DSP worker threads that run every call's VAD and
//! resampling off the I/O tasks.
//!
//! Shape: `N` worker threads (default: one per core). A call joins the least-loaded
//! worker and stays there, so that worker alone owns the call's state ([`VoiceDetector`],
//! which is not `Send`, and its [`Resampler`]s); the state is built on the worker itself.
//! Between a call's session and its worker there are only bounded, try-only queues:
//!
//! - **in**: 20 ms [`PooledFrame`]s from the session (8 kHz, or 16 kHz for L16 16 k);
//! - **out**: VAD events, 16 kHz frames for speech-to-text, 8 kHz frames for the
//!   recording's caller channel (the record tap).
//!
//! Every queue is fixed-size; a push to a full queue drops the **oldest** item and counts
//! it, so a slow consumer loses old audio, never blocks a producer and never grows memory.
//! Dropping a [`CallHandle`] is the end of that call's stream: the worker frees its state.
//!
//! Budget per frame on the worker: no allocation (frames come from the [`FramePool`],
//! scratch is owned by the call's state), no lock, no logging. The only syscall is the
//! futex that wakes a parked worker, and only when it was parked. An async consumer
//! awaiting [`CallHandle::events_ready`] is woken only for VAD events.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;
use thiserror::Error;

use super::frame::{FRAME_SAMPLES_8K, FramePool, PooledFrame};
use super::resample::{Rate, Resampler};
use super::vad::{VadConfig, VadEvent, VoiceDetector};

/// How the pipeline is sized.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    /// DSP worker threads; 0 means one per core.
    pub workers: usize,
    /// Frames a call may queue towards its worker (default 50: one second).
    pub input_capacity: usize,
    /// Frames each output queue of a call holds (default 50).
    pub output_capacity: usize,
    /// Idle frames the shared pool keeps.
    pub pool_capacity: usize,
    /// Voice activity detection settings for every call.
    pub vad: VadConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            input_capacity: 50,
            output_capacity: 50,
            pool_capacity: 4_096,
            vad: VadConfig::default(),
        }
    }
}

/// Which outputs a call wants besides VAD events.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// Produce 16 kHz frames for speech-to-text.
    pub stt_16k: bool,
    /// Keep the caller's 8 kHz frames for the recording.
    pub record: bool,
}

/// Why the pipeline refused a call.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PipelineError {
    /// Too many calls are waiting to be picked up by a worker.
    #[error("the DSP workers are not keeping up with new calls")]
    Busy,
    /// The pipeline is shutting down.
    #[error("the pipeline is shut down")]
    Closed,
    /// A worker thread could not be started.
    #[error("could not start a DSP worker thread")]
    Spawn,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued, and the oldest queued frame was dropped to make room.
    DroppedOldest,
}

/// Pipeline-wide counters at one moment, summed over the workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PipelineStats {
    /// Frames the workers processed.
    pub frames_processed: u64,
    /// Outputs dropped because a consumer's queue was full.
    pub frames_dropped: u64,
    /// Frames dropped because they were not 20 ms long.
    pub frames_malformed: u64,
    /// Calls currently joined.
    pub calls: usize,
    /// Frames waiting for a worker, over all calls.
    pub queued_frames: usize,
}

/// One worker's counters. Each worker writes only its own, so the per-frame path never
/// bounces a shared cache line between workers; [`Pipeline::stats`] sums them.
#[derive(Debug, Default)]
struct WorkerCounters {
    processed: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    queued: AtomicUsize,
}

/// Counters of one call.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Frames processed by the worker.
    pub frames_processed: AtomicU64,
    /// Frames dropped on the way in (queue full).
    pub dropped_in: AtomicU64,
    /// Frames or events dropped on the way out (consumer too slow).
    pub dropped_out: AtomicU64,
    /// Frames dropped because they were not 20 ms long.
    pub malformed: AtomicU64,
}

/// What the session and the worker share for one call.
struct CallShared {
    input: ArrayQueue<PooledFrame>,
    events: ArrayQueue<VadEvent>,
    stt: Option<ArrayQueue<PooledFrame>>,
    record: Option<ArrayQueue<PooledFrame>>,
    waker: AtomicWaker,
    closed: AtomicBool,
    /// [`VoiceDetector::voiced_until_ms`] after the latest frame; 0 before any voice.
    voiced_until_ms: AtomicU64,
    stats: CallStats,
}

struct WorkerShared {
    joins: ArrayQueue<Arc<CallShared>>,
    sleeping: AtomicBool,
    stop: AtomicBool,
    calls: AtomicUsize,
    counters: WorkerCounters,
    thread: Thread,
}

impl WorkerShared {
    /// Wakes the worker if it is parked (a futex call only in that case).
    #[inline]
    fn nudge(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

/// The running pipeline. Dropping it stops the workers after they finish their queues.
pub struct Pipeline {
    workers: Vec<Arc<WorkerShared>>,
    threads: Vec<JoinHandle<()>>,
    pool: FramePool,
    config: PipelineConfig,
}

impl Pipeline {
    /// Starts the worker threads.
    pub fn start(config: PipelineConfig) -> Result<Self, PipelineError> {
        let count = match config.workers {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = FramePool::new(config.pool_capacity);
        let mut workers = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let worker_pool = pool.clone();
            let vad = config.vad;
            let handle = thread::Builder::new()
                .name(format!("voxgate-dsp-{index}"))
                .spawn(move || {
                    let shared = Arc::new(WorkerShared {
                        joins: ArrayQueue::new(1_024),
                        sleeping: AtomicBool::new(false),
                        stop: AtomicBool::new(false),
                        calls: AtomicUsize::new(0),
                        counters: WorkerCounters::default(),
                        thread: thread::current(),
                    });
                    if tx.send(Arc::clone(&shared)).is_ok() {
                        Worker::new(shared, worker_pool, vad).run();
                    }
                })
                .map_err(|_| PipelineError::Spawn)?;
            let shared = rx.recv().map_err(|_| PipelineError::Spawn)?;
            workers.push(shared);
            threads.push(handle);
        }
        Ok(Self {
            workers,
            threads,
            pool,
            config,
        })
    }

    /// The VAD settings every call runs with (the hangover is part of each turn's latency).
    pub fn vad(&self) -> VadConfig {
        self.config.vad
    }

    /// The frame pool sessions take frames from.
    pub fn pool(&self) -> &FramePool {
        &self.pool
    }

    /// Pipeline-wide counters, summed over the workers now.
    pub fn stats(&self) -> PipelineStats {
        let mut stats = PipelineStats::default();
        for worker in &self.workers {
            let c = &worker.counters;
            stats.frames_processed += c.processed.load(Ordering::Relaxed);
            stats.frames_dropped += c.dropped.load(Ordering::Relaxed);
            stats.frames_malformed += c.malformed.load(Ordering::Relaxed);
            stats.queued_frames += c.queued.load(Ordering::Relaxed);
            stats.calls += worker.calls.load(Ordering::Relaxed);
        }
        stats
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Adds a call to the least-loaded worker.
    pub fn join(&self, options: CallOptions) -> Result<CallHandle, PipelineError> {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.calls.load(Ordering::Relaxed))
            .ok_or(PipelineError::Closed)?;
        if worker.stop.load(Ordering::Relaxed) {
            return Err(PipelineError::Closed);
        }
        let out = self.config.output_capacity.max(1);
        let call = Arc::new(CallShared {
            input: ArrayQueue::new(self.config.input_capacity.max(1)),
            events: ArrayQueue::new(64),
            stt: options.stt_16k.then(|| ArrayQueue::new(out)),
            record: options.record.then(|| ArrayQueue::new(out)),
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
            voiced_until_ms: AtomicU64::new(0),
            stats: CallStats::default(),
        });
        worker
            .joins
            .push(Arc::clone(&call))
            .map_err(|_| PipelineError::Busy)?;
        worker.calls.fetch_add(1, Ordering::Relaxed);
        worker.nudge();
        Ok(CallHandle {
            call,
            worker: Arc::clone(worker),
        })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.stop.store(true, Ordering::SeqCst);
            worker.thread.unpark();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A call's end of the pipeline. Dropping it ends the call's stream.
pub struct CallHandle {
    call: Arc<CallShared>,
    worker: Arc<WorkerShared>,
}

impl CallHandle {
    /// Queues a caller frame; drops the oldest queued frame when full. Never blocks.
    #[inline]
    pub fn push(&self, frame: PooledFrame) -> Pushed {
        let outcome = match self.call.input.force_push(frame) {
            None => {
                self.worker.counters.queued.fetch_add(1, Ordering::Relaxed);
                Pushed::Queued
            }
            Some(_oldest) => {
                self.call.stats.dropped_in.fetch_add(1, Ordering::Relaxed);
                Pushed::DroppedOldest
            }
        };
        self.worker.nudge();
        outcome
    }

    /// The next VAD event, if any.
    #[inline]
    pub fn pop_event(&self) -> Option<VadEvent> {
        self.call.events.pop()
    }

    /// The end (media clock, ms) of the latest caller frame the VAD reported voiced; 0
    /// before any. Turn-taking reads it to tell speech that goes on from a click.
    #[inline]
    pub fn voiced_until_ms(&self) -> u64 {
        self.call.voiced_until_ms.load(Ordering::Relaxed)
    }

    /// The next 16 kHz frame for speech-to-text, if the call asked for them.
    #[inline]
    pub fn pop_stt(&self) -> Option<PooledFrame> {
        self.call.stt.as_ref()?.pop()
    }

    /// The next 8 kHz caller frame for the recording, if the call asked for them.
    #[inline]
    pub fn pop_record(&self) -> Option<PooledFrame> {
        self.call.record.as_ref()?.pop()
    }

    /// Frames waiting for the worker.
    pub fn input_depth(&self) -> usize {
        self.call.input.len()
    }

    /// This call's counters.
    pub fn stats(&self) -> &CallStats {
        &self.call.stats
    }

    /// Resolves when a VAD event is waiting (register, then check: no lost wake-up).
    pub fn events_ready(&self) -> EventsReady<'_> {
        EventsReady { call: &self.call }
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        self.call.closed.store(true, Ordering::SeqCst);
        self.worker.nudge();
    }
}

/// Future returned by [`CallHandle::events_ready`].
pub struct EventsReady<'a> {
    call: &'a CallShared,
}

impl Future for EventsReady<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.call.events.is_empty() {
            return Poll::Ready(());
        }
        self.call.waker.register(cx.waker());
        if self.call.events.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// A call's state, owned by its worker thread.
struct CallState {
    shared: Arc<CallShared>,
    vad: Option<VoiceDetector>,
    up_8k_to_16k: Option<Resampler>,
    down_16k_to_8k: Option<Resampler>,
}

struct Worker {
    shared: Arc<WorkerShared>,
    pool: FramePool,
    vad: VadConfig,
    calls: Vec<CallState>,
}

/// Most frames taken from one call before looking at the next (fairness).
const BURST: usize = 8;
/// How long an idle worker sleeps before it checks for shutdown again.
const IDLE_PARK: Duration = Duration::from_millis(100);

impl Worker {
    fn new(shared: Arc<WorkerShared>, pool: FramePool, vad: VadConfig) -> Self {
        Self {
            shared,
            pool,
            vad,
            calls: Vec::with_capacity(64),
        }
    }

    fn run(mut self) {
        loop {
            self.admit_and_retire();
            let worked = self.process_round();
            if worked {
                continue;
            }
            if self.shared.stop.load(Ordering::SeqCst)
                && self.calls.iter().all(|c| c.shared.input.is_empty())
            {
                break;
            }
            self.shared.sleeping.store(true, Ordering::SeqCst);
            // Re-check after announcing sleep: a producer either sees `sleeping` or we see its item.
            let pending = !self.shared.joins.is_empty()
                || self
                    .calls
                    .iter()
                    .any(|c| !c.shared.input.is_empty() || c.shared.closed.load(Ordering::SeqCst));
            if !pending && !self.shared.stop.load(Ordering::SeqCst) {
                thread::park_timeout(IDLE_PARK);
            }
            self.shared.sleeping.store(false, Ordering::SeqCst);
        }
    }

    fn admit_and_retire(&mut self) {
        while let Some(shared) = self.shared.joins.pop() {
            // Built here, on the thread that will own it: the VAD is not `Send`.
            let wants_stt = shared.stt.is_some();
            self.calls.push(CallState {
                vad: VoiceDetector::new(self.vad).ok(),
                up_8k_to_16k: if wants_stt {
                    Resampler::new(Rate::Hz8000, Rate::Hz16000).ok()
                } else {
                    None
                },
                down_16k_to_8k: Resampler::new(Rate::Hz16000, Rate::Hz8000).ok(),
                shared,
            });
        }
        let before = self.calls.len();
        let counters = &self.shared.counters;
        self.calls.retain(|c| {
            let closed = c.shared.closed.load(Ordering::SeqCst);
            if closed {
                // Frames a leaving call never got processed: no longer queued.
                counters
                    .queued
                    .fetch_sub(c.shared.input.len(), Ordering::Relaxed);
            }
            !closed
        });
        let retired = before - self.calls.len();
        if retired > 0 {
            self.shared.calls.fetch_sub(retired, Ordering::Relaxed);
        }
    }

    fn process_round(&mut self) -> bool {
        let mut worked = false;
        for call in &mut self.calls {
            for _ in 0..BURST {
                let Some(frame) = call.shared.input.pop() else {
                    break;
                };
                self.shared.counters.queued.fetch_sub(1, Ordering::Relaxed);
                process_frame(call, frame, &self.pool, &self.shared.counters);
                worked = true;
            }
        }
        worked
    }
}

/// Pushes to an output queue, dropping (and counting) the oldest item when full.
#[inline]
fn push_out<T>(queue: &ArrayQueue<T>, item: T, call: &CallStats, stats: &WorkerCounters) {
    if queue.force_push(item).is_some() {
        call.dropped_out.fetch_add(1, Ordering::Relaxed);
        stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// One frame through VAD, resampling and the record tap.
fn process_frame(
    call: &mut CallState,
    frame: PooledFrame,
    pool: &FramePool,
    stats: &WorkerCounters,
) {
    let shared = &*call.shared;
    let timestamp = frame.timestamp_ms;
    // Bring everything to 8 kHz for the VAD and the recording; keep a 16 kHz copy for STT.
    let (narrow, wide) = match (frame.sample_rate(), frame.samples().len()) {
        (8_000, FRAME_SAMPLES_8K) => {
            let wide = match (&shared.stt, call.up_8k_to_16k.as_mut()) {
                (Some(_), Some(up)) => {
                    let mut wide = pool.get();
                    wide.timestamp_ms = timestamp;
                    wide.chunk = frame.chunk;
                    let out = wide.fill(16_000, up.output_chunk());
                    match up.process(frame.samples(), out) {
                        Ok(n) => {
                            wide.fill(16_000, n);
                            Some(wide)
                        }
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            (frame, wide)
        }
        (16_000, n) if n == 2 * FRAME_SAMPLES_8K => {
            let Some(down) = call.down_16k_to_8k.as_mut() else {
                return;
            };
            let mut narrow = pool.get();
            narrow.timestamp_ms = timestamp;
            narrow.chunk = frame.chunk;
            let out = narrow.fill(8_000, down.output_chunk());
            let Ok(n) = down.process(frame.samples(), out) else {
                return;
            };
            narrow.fill(8_000, n);
            (narrow, shared.stt.is_some().then_some(frame))
        }
        _ => {
            shared.stats.malformed.fetch_add(1, Ordering::Relaxed);
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };

    if let Some(vad) = call.vad.as_mut() {
        let event = vad.process(narrow.samples(), timestamp);
        if let Some(until) = vad.voiced_until_ms() {
            shared.voiced_until_ms.store(until, Ordering::Relaxed);
        }
        if let Ok(Some(event)) = event {
            push_out(&shared.events, event, &shared.stats, stats);
            shared.waker.wake();
        }
    }
    if let (Some(queue), Some(wide)) = (&shared.stt, wide) {
        push_out(queue, wide, &shared.stats, stats);
    }
    if let Some(queue) = &shared.record {
        push_out(queue, narrow, &shared.stats, stats);
    }
    shared
        .stats
        .frames_processed
        .fetch_add(1, Ordering::Relaxed);
    stats.processed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests;
