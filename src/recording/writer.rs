//! The writer thread: every call's recording, off the audio path.
//!
//! A session gets a [`CallRecording`] per call and hands it caller frames (from the record
//! tap), agent frames (as playout sends them) and clears. Each goes into the call's
//! fixed-capacity lock-free queue ([`QUEUE_MESSAGES`]); when it is full the oldest message
//! is dropped and counted — the session never waits, locks or makes a syscall. One writer
//! thread polls every call's queue every [`POLL`], places the audio on the call's
//! [`Timeline`] and appends it to the call's [`WavSink`]. When the session drops its handle
//! the writer finishes the file and hands a [`FinishedRecording`] to the handoff.
//!
//! Memory per call is fixed (≤ 64 KiB, [`MEMORY_PER_CALL`]): the queue, the timeline's
//! rings, the file's write buffer and, at 16 kHz, the resamplers, whatever the call's
//! length.
//!
//! Never: blocks a session, grows with a call's length, or panics on a file error (the call
//! goes on unrecorded; the failure is logged and counted).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use metrics::{Counter, counter, gauge};
use tracing::{error, info, warn};

use super::FinishedRecording;
use super::config::RecordingConfig;
use super::timeline::{BLOCK, RING, Timeline, TimelineStats};
use super::wav::{self, PART_SUFFIX, WavSink};
use crate::telemetry;

/// Messages a call's queue holds (caller and agent frames: about 480 ms of a call, which
/// the writer may fall behind by before the oldest are dropped).
pub const QUEUE_MESSAGES: usize = 48;
/// How often the writer looks at the queues.
pub const POLL: Duration = Duration::from_millis(5);
/// How long the writer sleeps when no call is being recorded (a new call wakes it).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Fixed memory per recorded call, bytes: queue + timeline rings + write buffer (a 16 kHz
/// recording adds its two resamplers, about 9 KiB). `tests/recording_memory.rs` measures
/// the real heap per call at both rates against the 64 KiB limit.
pub const MEMORY_PER_CALL: usize = QUEUE_MESSAGES * (std::mem::size_of::<Message>() + 8)
    + 2 * RING * 2
    + wav::WRITE_BUFFER
    + 4 * BLOCK * 2;

const _: () = assert!(MEMORY_PER_CALL <= 64 * 1024);

/// Told when a recording is finished (or repaired at start-up). Runs on the writer thread,
/// outside any async runtime: it must not block (spawn the upload on a captured
/// `tokio::runtime::Handle`).
pub type RecordingFinished = Arc<dyn Fn(FinishedRecording) + Send + Sync>;

/// One message from a session to the writer, fixed size.
#[derive(Clone, Copy)]
enum Message {
    Caller {
        timestamp_ms: u64,
        samples: [i16; BLOCK],
    },
    Agent {
        at_ms: u64,
        samples: [i16; BLOCK],
    },
    Clear {
        at_ms: u64,
    },
}

/// What a session and the writer share for one call.
struct Slot {
    call_id: String,
    queue: ArrayQueue<Message>,
    ended: AtomicBool,
}

struct Inner {
    dir: PathBuf,
    rate: super::config::RecordingRate,
    on_finished: Mutex<Option<RecordingFinished>>,
    new_calls: Mutex<Vec<Arc<Slot>>>,
    recover: AtomicBool,
    stop: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The process's recorder: the writer thread and what sessions need to reach it.
pub struct Recorder {
    inner: Arc<Inner>,
    thread: Thread,
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// Why the recorder could not start.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The recordings folder cannot be created.
    #[error("recording.dir {dir}: {source}")]
    Dir {
        /// The folder.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("could not start the recording writer thread: {0}")]
    Spawn(std::io::Error),
}

impl Recorder {
    /// Creates the recordings folder and starts the writer thread.
    pub fn start(config: &RecordingConfig) -> Result<Self, RecorderError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| RecorderError::Dir {
            dir: config.dir.clone(),
            source,
        })?;
        let inner = Arc::new(Inner {
            dir: config.dir.clone(),
            rate: config.sample_rate,
            on_finished: Mutex::new(None),
            new_calls: Mutex::new(Vec::new()),
            recover: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let handle = std::thread::Builder::new()
            .name("voxgate-recorder".into())
            .spawn({
                let inner = Arc::clone(&inner);
                move || Writer::new(inner).run()
            })
            .map_err(RecorderError::Spawn)?;
        Ok(Self {
            inner,
            thread: handle.thread().clone(),
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Sets who is told about finished recordings (the publisher). Without one, finished
    /// WAV files stay in the recordings folder.
    pub fn set_on_finished(&self, handoff: RecordingFinished) {
        *lock(&self.inner.on_finished) = Some(handoff);
    }

    /// Repairs and hands off recordings a crash left behind (`*.wav.part`). Call once the
    /// handoff is set.
    pub fn recover_left_behind(&self) {
        self.inner.recover.store(true, Ordering::Release);
        self.thread.unpark();
    }

    /// Starts recording a call. Called once per call, never per frame.
    pub fn start_call(&self, call_id: &str) -> CallRecording {
        let slot = Arc::new(Slot {
            call_id: call_id.to_owned(),
            queue: ArrayQueue::new(QUEUE_MESSAGES),
            ended: AtomicBool::new(false),
        });
        lock(&self.inner.new_calls).push(Arc::clone(&slot));
        self.thread.unpark();
        CallRecording {
            slot,
            thread: self.thread.clone(),
            dropped: counter!(telemetry::FRAMES_DROPPED, "stage" => "recording"),
        }
    }

    /// Finishes every recording (sessions should have ended) and stops the writer thread;
    /// waits for it at most `limit`. Blocking: call from a blocking context.
    pub fn shutdown(&self, limit: Duration) {
        self.inner.stop.store(true, Ordering::Release);
        self.thread.unpark();
        let Some(handle) = lock(&self.handle).take() else {
            return;
        };
        let deadline = Instant::now() + limit;
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        } else {
            warn!("recording writer still busy at shutdown: leaving it (files stay repairable)");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// One call's way to its recording. Dropping it ends the recording.
pub struct CallRecording {
    slot: Arc<Slot>,
    thread: Thread,
    dropped: Counter,
}

impl CallRecording {
    fn push(&self, message: Message) {
        if self.slot.queue.force_push(message).is_some() {
            self.dropped.increment(1);
        }
    }

    /// A 20 ms caller frame (8 kHz) with its Plivo media timestamp.
    pub fn caller(&self, timestamp_ms: u64, samples: &[i16]) {
        match samples.try_into() {
            Ok(samples) => self.push(Message::Caller {
                timestamp_ms,
                samples,
            }),
            // Not a 20 ms frame: counted as dropped, never silently lost.
            Err(_) => self.dropped.increment(1),
        }
    }

    /// A 20 ms agent frame (8 kHz) sent to the phone when the call was at `now_ms` on the
    /// media timeline.
    pub fn agent(&self, now_ms: u64, samples: &[i16]) {
        match samples.try_into() {
            Ok(samples) => self.push(Message::Agent {
                at_ms: now_ms,
                samples,
            }),
            Err(_) => self.dropped.increment(1),
        }
    }

    /// `clearAudio` at `now_ms` on the media timeline.
    pub fn clear(&self, now_ms: u64) {
        self.push(Message::Clear { at_ms: now_ms });
    }
}

impl Drop for CallRecording {
    fn drop(&mut self) {
        self.slot.ended.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// A call the writer is recording.
struct Active {
    slot: Arc<Slot>,
    timeline: Timeline,
    sink: Option<WavSink>,
    reported: TimelineStats,
}

struct Writer {
    inner: Arc<Inner>,
    calls: Vec<Active>,
    bytes: Counter,
}

impl Writer {
    fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            calls: Vec::new(),
            bytes: counter!(telemetry::RECORDING_BYTES),
        }
    }

    fn run(mut self) {
        loop {
            if self.inner.recover.swap(false, Ordering::AcqRel) {
                self.recover();
            }
            let new: Vec<Arc<Slot>> = std::mem::take(&mut *lock(&self.inner.new_calls));
            for slot in new {
                self.open(slot);
            }
            let stopping = self.inner.stop.load(Ordering::Acquire);
            let mut i = 0;
            while i < self.calls.len() {
                let ended = self.calls[i].slot.ended.load(Ordering::Acquire);
                self.drain(i);
                if ended || stopping {
                    let call = self.calls.swap_remove(i);
                    self.close(call);
                } else {
                    i += 1;
                }
            }
            if stopping {
                return;
            }
            std::thread::park_timeout(if self.calls.is_empty() {
                IDLE_POLL
            } else {
                POLL
            });
        }
    }

    fn open(&mut self, slot: Arc<Slot>) {
        let sink = match self.create(&slot.call_id) {
            Ok(sink) => {
                info!(call_id = %slot.call_id, path = %sink.path().display(), "recording");
                Some(sink)
            }
            Err(error) => {
                error!(call_id = %slot.call_id, %error, "cannot record this call");
                counter!(telemetry::RECORDINGS, "outcome" => "failed").increment(1);
                None
            }
        };
        gauge!(telemetry::RECORDINGS_ACTIVE).increment(1.0);
        self.calls.push(Active {
            slot,
            timeline: Timeline::new(),
            sink,
            reported: TimelineStats::default(),
        });
    }

    /// `CALLID.wav.part`, or `CALLID-2…` when the call already has a recording (Plivo
    /// reconnected the stream).
    fn create(&self, call_id: &str) -> Result<WavSink, wav::WavError> {
        let base = file_stem(call_id);
        let mut last = None;
        for n in 1..=100 {
            let stem = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let done = self.inner.dir.join(format!("{stem}.wav"));
            let part = self.inner.dir.join(format!("{stem}.wav{PART_SUFFIX}"));
            if done.exists() || part.exists() {
                continue;
            }
            match WavSink::create(part, self.inner.rate) {
                Ok(sink) => return Ok(sink),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(wav::WavError::Unrepairable {
            path: self.inner.dir.join(base),
            reason: "100 recordings of this call already exist",
        }))
    }

    /// Applies everything queued for call `i`.
    fn drain(&mut self, i: usize) {
        let bytes = &self.bytes;
        let call = &mut self.calls[i];
        let Active {
            slot,
            timeline,
            sink,
            ..
        } = &mut *call;
        let mut emit =
            |caller: &[i16], agent: &[i16]| write(sink, &slot.call_id, bytes, caller, agent);
        while let Some(message) = slot.queue.pop() {
            match message {
                Message::Caller {
                    timestamp_ms,
                    samples,
                } => timeline.caller(timestamp_ms, &samples, &mut emit),
                Message::Agent { at_ms, samples } => timeline.agent(at_ms, &samples),
                Message::Clear { at_ms } => timeline.clear(at_ms),
            }
        }
        report(&mut call.reported, call.timeline.stats());
    }

    fn close(&mut self, mut call: Active) {
        gauge!(telemetry::RECORDINGS_ACTIVE).decrement(1.0);
        let bytes = &self.bytes;
        let call_id = call.slot.call_id.clone();
        let sink = &mut call.sink;
        call.timeline
            .finish(&mut |c: &[i16], a: &[i16]| write(sink, &call_id, bytes, c, a));
        report(&mut call.reported, call.timeline.stats());
        let Some(sink) = call.sink else { return };
        let rate = sink.sample_rate();
        match sink.finalize() {
            Ok((path, duration)) => {
                counter!(telemetry::RECORDINGS, "outcome" => "finished").increment(1);
                info!(%call_id, path = %path.display(), ?duration, "recording finished");
                self.hand_off(FinishedRecording {
                    call_id,
                    path,
                    duration,
                    sample_rate: rate,
                });
            }
            Err(error) => {
                counter!(telemetry::RECORDINGS, "outcome" => "failed").increment(1);
                error!(%call_id, %error, "could not finish the recording");
            }
        }
    }

    fn hand_off(&self, recording: FinishedRecording) {
        let handoff = lock(&self.inner.on_finished).clone();
        if let Some(handoff) = handoff {
            handoff(recording);
        }
    }

    /// Repairs `*.wav.part` files in the folder that no live call (here or in another
    /// process: [`wav::repair`] skips locked files) is writing.
    fn recover(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            return;
        };
        let live: Vec<PathBuf> = self
            .calls
            .iter()
            .filter_map(|c| c.sink.as_ref().map(|s| s.path().to_owned()))
            .collect();
        for entry in entries.flatten() {
            let path = entry.path();
            let is_part = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".wav.part"));
            if !is_part || live.contains(&path) {
                continue;
            }
            match wav::repair(&path) {
                Ok((done, duration, sample_rate)) => {
                    counter!(telemetry::RECORDING_REPAIRS, "outcome" => "repaired").increment(1);
                    let call_id = call_id_of(&done);
                    warn!(%call_id, path = %done.display(), ?duration, "repaired a recording left by a crash");
                    self.hand_off(FinishedRecording {
                        call_id,
                        path: done,
                        duration,
                        sample_rate,
                    });
                }
                Err(wav::WavError::Busy { path }) => {
                    info!(path = %path.display(), "left alone: another live process is writing it");
                }
                Err(error) => {
                    counter!(telemetry::RECORDING_REPAIRS, "outcome" => "failed").increment(1);
                    error!(%error, "could not repair a recording left by a crash");
                }
            }
        }
    }
}

/// Appends one block to the call's file; a failing file stops that call's recording.
fn write(
    sink: &mut Option<WavSink>,
    call_id: &str,
    bytes: &Counter,
    caller: &[i16],
    agent: &[i16],
) {
    let Some(file) = sink.as_mut() else { return };
    match file.write_block(caller, agent) {
        Ok(n) => bytes.increment(n),
        Err(error) => {
            error!(%call_id, %error, "recording write failed: the call goes on unrecorded");
            counter!(telemetry::RECORDINGS, "outcome" => "failed").increment(1);
            *sink = None;
        }
    }
}

/// Counts what the timeline refused since the last report.
fn report(reported: &mut TimelineStats, now: TimelineStats) {
    let frames = |n: u64| n.div_ceil(BLOCK as u64);
    for (reason, before, after) in [
        ("caller_late", reported.caller_late, now.caller_late),
        (
            "caller_refused",
            reported.caller_refused,
            now.caller_refused,
        ),
        (
            "agent_overflow",
            frames(reported.agent_overflow),
            frames(now.agent_overflow),
        ),
        (
            "agent_cut",
            frames(reported.agent_cut),
            frames(now.agent_cut),
        ),
    ] {
        if after > before {
            counter!(telemetry::RECORDING_REFUSED, "reason" => reason).increment(after - before);
        }
    }
    *reported = now;
}

/// A file name from a call id (which comes from the network): letters, digits, `-`, `_`
/// and `.` are kept, anything else becomes `_`; never empty, never starting with `.`.
pub fn file_stem(call_id: &str) -> String {
    let mut stem: String = call_id
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with('.') {
        stem.insert(0, '_');
    }
    stem
}

/// The call id a repaired file stands for: its name without `.wav` (and without the `-N`
/// of a reconnected stream, which cannot be told apart from an id ending that way, so it
/// is kept).
fn call_id_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".wav"))
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests;
