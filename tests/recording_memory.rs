//! Measures what a recorded call costs in memory: the heap bytes held while calls are being
//! recorded, per call, at 8 kHz and at 16 kHz (with its two resamplers), against the
//! 64 KiB a call may hold whatever its length — and that a longer call holds no more.
//!
//! A global allocator keeps the live heap total across every thread, the writer thread
//! included. This file holds a single test so no other test allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use voxgate::recording::FinishedRecording;
use voxgate::recording::config::{RecordingConfig, RecordingFormat, RecordingRate};
use voxgate::recording::writer::{CallRecording, Recorder};

struct Live;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only adds up sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Live = Live;

/// The limit the issue sets per recorded call.
const LIMIT: i64 = 64 * 1024;
/// Calls recorded at once while measuring.
const CALLS: usize = 20;
/// Samples in a 20 ms frame at 8 kHz.
const FRAME: usize = 160;

fn live() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Feeds every call `frames` frames of caller and agent audio from `first` on, paced so the
/// writer (polling every 5 ms) keeps up and no queue overflows.
fn talk(calls: &[CallRecording], first: u64, frames: u64) {
    let voice: Vec<i16> = (0..FRAME)
        .map(|i| ((i as f64 * 0.3).sin() * 8_000.0) as i16)
        .collect();
    for n in first..first + frames {
        for call in calls {
            call.caller(n * 20, &voice);
            call.agent(n * 20, &voice);
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    // Let the writer drain what was queued.
    std::thread::sleep(Duration::from_millis(100));
}

/// Bytes held per call after a short and after a ten-times-longer stretch of call.
fn per_call(rate: RecordingRate) -> (i64, i64) {
    let dir = std::env::temp_dir().join(format!(
        "voxgate-recmem-{}-{}",
        rate.hz(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let config = RecordingConfig {
        enabled: true,
        dir: dir.clone(),
        sample_rate: rate,
        format: RecordingFormat::Wav,
        upload_url: None,
        keep_local_days: None,
        upload_retries: 0,
        public_base_url: None,
    };
    let recorder = Recorder::start(&config).unwrap();
    let (tx, rx) = mpsc::channel::<FinishedRecording>();
    let tx = Mutex::new(tx);
    recorder.set_on_finished(Arc::new(move |done| {
        let _ = tx.lock().unwrap().send(done);
    }));
    // Warm up: one call start to finish, so one-time set-up is not counted.
    let warm = vec![recorder.start_call("warm-up")];
    talk(&warm, 0, 50);
    drop(warm);
    rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let before = live();
    let calls: Vec<CallRecording> = (0..CALLS)
        .map(|n| recorder.start_call(&format!("call-{n}")))
        .collect();
    talk(&calls, 0, 25);
    let short = live();
    talk(&calls, 25, 250);
    let long = live();
    drop(calls);
    for _ in 0..CALLS {
        let done = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(done.duration, Duration::from_millis(275 * 20), "{done:?}");
    }
    recorder.shutdown(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
    let n = CALLS as i64;
    ((short - before) / n, (long - before) / n)
}

#[test]
fn a_recorded_call_holds_at_most_64_kib_at_either_rate_whatever_its_length() {
    for rate in [RecordingRate::Hz8000, RecordingRate::Hz16000] {
        let (short, long) = per_call(rate);
        eprintln!(
            "{} Hz: {short} bytes per call after 0.5 s, {long} bytes after 5.5 s (limit {LIMIT})",
            rate.hz()
        );
        assert!(short <= LIMIT, "{} Hz: {short} bytes per call", rate.hz());
        assert!(long <= LIMIT, "{} Hz: {long} bytes per call", rate.hz());
        assert!(
            long - short <= 1_024,
            "{} Hz: a call grew {} bytes as it went on",
            rate.hz(),
            long - short
        );
    }
}
