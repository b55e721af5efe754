use std::time::Instant;

use super::*;
use crate::audio::frame::{FRAME_MS, FRAME_SAMPLES_8K};

fn small(workers: usize) -> PipelineConfig {
    PipelineConfig {
        workers,
        pool_capacity: 256,
        ..PipelineConfig::default()
    }
}

/// A 20 ms frame at `rate` holding a ramp that identifies it by `chunk`.
fn frame(pool: &FramePool, rate: u32, chunk: u64) -> PooledFrame {
    let mut f = pool.get();
    let n = (rate / 50) as usize;
    for (i, s) in f.fill(rate, n).iter_mut().enumerate() {
        *s = (chunk as i16).wrapping_mul(100).wrapping_add(i as i16);
    }
    f.chunk = chunk;
    f.timestamp_ms = (chunk - 1) * FRAME_MS;
    f
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn frames_flow_in_order_to_the_record_tap_and_stt() {
    let pipeline = Pipeline::start(small(2)).unwrap();
    let call = pipeline
        .join(CallOptions {
            stt_16k: true,
            record: true,
        })
        .unwrap();
    for chunk in 1..=20 {
        assert_eq!(
            call.push(frame(pipeline.pool(), 8_000, chunk)),
            Pushed::Queued
        );
    }
    wait_until("20 frames", || {
        call.stats().frames_processed.load(Ordering::Relaxed) == 20
    });
    for chunk in 1..=20 {
        let rec = call.pop_record().expect("record frame");
        assert_eq!(
            (rec.chunk, rec.timestamp_ms, rec.sample_rate()),
            (chunk, (chunk - 1) * 20, 8_000)
        );
        assert_eq!(
            rec.samples()[1],
            (chunk as i16) * 100 + 1,
            "record tap holds the caller's samples"
        );
        let wide = call.pop_stt().expect("stt frame");
        assert_eq!(
            (wide.chunk, wide.sample_rate(), wide.samples().len()),
            (chunk, 16_000, 320)
        );
    }
    assert!(call.pop_record().is_none());
    assert_eq!(call.stats().dropped_out.load(Ordering::Relaxed), 0);
    let stats = pipeline.stats();
    assert_eq!(
        (stats.frames_processed, stats.queued_frames, stats.calls),
        (20, 0, 1)
    );
}

#[test]
fn a_call_without_outputs_gets_only_events() {
    let pipeline = Pipeline::start(small(1)).unwrap();
    let call = pipeline.join(CallOptions::default()).unwrap();
    call.push(frame(pipeline.pool(), 8_000, 1));
    wait_until("1 frame", || {
        call.stats().frames_processed.load(Ordering::Relaxed) == 1
    });
    assert!(call.pop_record().is_none() && call.pop_stt().is_none());
}

#[test]
fn l16_16k_frames_are_narrowed_for_vad_and_recording() {
    let pipeline = Pipeline::start(small(1)).unwrap();
    let call = pipeline
        .join(CallOptions {
            stt_16k: true,
            record: true,
        })
        .unwrap();
    call.push(frame(pipeline.pool(), 16_000, 1));
    wait_until("1 frame", || {
        call.stats().frames_processed.load(Ordering::Relaxed) == 1
    });
    let rec = call.pop_record().unwrap();
    assert_eq!((rec.sample_rate(), rec.samples().len()), (8_000, 160));
    let wide = call.pop_stt().unwrap();
    assert_eq!((wide.sample_rate(), wide.samples().len()), (16_000, 320));
}

#[test]
fn a_slow_consumer_loses_the_oldest_output_and_it_is_counted() {
    let config = PipelineConfig {
        output_capacity: 4,
        ..small(1)
    };
    let pipeline = Pipeline::start(config).unwrap();
    let call = pipeline
        .join(CallOptions {
            stt_16k: false,
            record: true,
        })
        .unwrap();
    for chunk in 1..=10 {
        call.push(frame(pipeline.pool(), 8_000, chunk));
    }
    wait_until("10 frames", || {
        call.stats().frames_processed.load(Ordering::Relaxed) == 10
    });
    let kept: Vec<u64> = std::iter::from_fn(|| call.pop_record().map(|f| f.chunk)).collect();
    assert_eq!(kept, [7, 8, 9, 10]);
    assert_eq!(call.stats().dropped_out.load(Ordering::Relaxed), 6);
    assert_eq!(pipeline.stats().frames_dropped, 6);
}

#[test]
fn a_full_input_drops_the_oldest_frame_and_counts_it() {
    // A call whose worker never runs: pushes must still return at once.
    let pool = FramePool::new(16);
    let worker = Arc::new(WorkerShared {
        joins: ArrayQueue::new(1),
        sleeping: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        calls: AtomicUsize::new(0),
        counters: WorkerCounters::default(),
        thread: thread::current(),
    });
    let call = CallHandle {
        call: Arc::new(CallShared {
            input: ArrayQueue::new(3),
            events: ArrayQueue::new(4),
            stt: None,
            record: None,
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
            voiced_until_ms: AtomicU64::new(0),
            stats: CallStats::default(),
        }),
        worker,
    };
    let outcomes: Vec<Pushed> = (1..=5).map(|c| call.push(frame(&pool, 8_000, c))).collect();
    assert_eq!(outcomes[..3], [Pushed::Queued; 3]);
    assert_eq!(outcomes[3..], [Pushed::DroppedOldest; 2]);
    assert_eq!(call.stats().dropped_in.load(Ordering::Relaxed), 2);
    let left: Vec<u64> = std::iter::from_fn(|| call.call.input.pop().map(|f| f.chunk)).collect();
    assert_eq!(left, [3, 4, 5]);
}

#[test]
fn malformed_frames_are_dropped_and_counted() {
    let pipeline = Pipeline::start(small(1)).unwrap();
    let call = pipeline
        .join(CallOptions {
            stt_16k: false,
            record: true,
        })
        .unwrap();
    let mut odd = pipeline.pool().get();
    odd.fill(8_000, 100);
    call.push(odd);
    call.push(frame(pipeline.pool(), 8_000, 1));
    wait_until("1 frame", || {
        call.stats().frames_processed.load(Ordering::Relaxed) == 1
    });
    assert_eq!(call.stats().malformed.load(Ordering::Relaxed), 1);
    assert_eq!(pipeline.stats().frames_malformed, 1);
    assert_eq!(call.pop_record().unwrap().chunk, 1);
}

#[test]
fn calls_join_and_leave_while_others_run() {
    let pipeline = Pipeline::start(small(2)).unwrap();
    let options = CallOptions {
        stt_16k: true,
        record: true,
    };
    let steady = pipeline.join(options).unwrap();
    let mut chunk = 0;
    let mut feed = |call: &CallHandle| {
        chunk += 1;
        call.push(frame(pipeline.pool(), 8_000, chunk));
    };
    for round in 0..20 {
        let visitor = pipeline.join(options).unwrap();
        feed(&steady);
        feed(&visitor);
        if round % 2 == 0 {
            drop(visitor); // leaves at once, possibly with a frame still queued
        } else {
            wait_until("visitor frame", || {
                visitor.stats().frames_processed.load(Ordering::Relaxed) == 1
            });
        }
        while steady.pop_record().is_some() {}
        while steady.pop_stt().is_some() {}
    }
    wait_until("steady frames", || {
        steady.stats().frames_processed.load(Ordering::Relaxed) == 20
    });
    wait_until("visitors retired", || pipeline.stats().calls == 1);
    assert_eq!(steady.stats().dropped_in.load(Ordering::Relaxed), 0);
    assert_eq!(
        pipeline.stats().queued_frames,
        0,
        "frames of calls that left are not counted as queued"
    );
    // Calls spread over both workers.
    assert_eq!(pipeline.workers(), 2);
}

#[test]
fn calls_are_spread_over_workers() {
    let pipeline = Pipeline::start(small(2)).unwrap();
    let calls: Vec<_> = (0..6)
        .map(|_| pipeline.join(CallOptions::default()).unwrap())
        .collect();
    let per_worker: Vec<usize> = pipeline
        .workers
        .iter()
        .map(|w| w.calls.load(Ordering::Relaxed))
        .collect();
    assert_eq!(per_worker, [3, 3]);
    drop(calls);
}

#[test]
fn dialogue_turns_come_out_as_vad_events_in_order() {
    let audio = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/audio/dialogue.ulaw"
    ))
    .unwrap();
    let pipeline = Pipeline::start(small(2)).unwrap();
    let call = pipeline.join(CallOptions::default()).unwrap();
    let mut events = Vec::new();
    for (i, codes) in audio.chunks_exact(FRAME_SAMPLES_8K).enumerate() {
        let mut f = pipeline.pool().get();
        crate::audio::g711::decode_ulaw(codes, f.fill(8_000, FRAME_SAMPLES_8K)).unwrap();
        f.timestamp_ms = i as u64 * FRAME_MS;
        f.chunk = i as u64 + 1;
        call.push(f);
        // Pace a little so the input queue never overflows.
        wait_until("frame", || call.input_depth() < 40);
        events.extend(std::iter::from_fn(|| call.pop_event()));
    }
    let frames = (audio.len() / FRAME_SAMPLES_8K) as u64;
    wait_until("all frames", || {
        call.stats().frames_processed.load(Ordering::Relaxed) == frames
    });
    events.extend(std::iter::from_fn(|| call.pop_event()));
    let starts: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            VadEvent::SpeechStarted { onset_ms, .. } => Some(*onset_ms),
            _ => None,
        })
        .collect();
    let ends = events
        .iter()
        .filter(|e| matches!(e, VadEvent::SpeechEnded { .. }))
        .count();
    // The fixture's five turns (fixtures/audio/dialogue_segments.json), each within 60 ms.
    let truth = [512, 4040, 6802, 10391, 13857];
    assert_eq!(starts.len(), 5, "{events:?}");
    assert_eq!(ends, 5, "{events:?}");
    for (got, want) in starts.iter().zip(truth) {
        assert!(got.abs_diff(want) <= 60, "onset {got} vs {want}");
    }
}

#[tokio::test]
async fn an_async_consumer_is_woken_by_vad_events() {
    let audio = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/audio/utterance_1.ulaw"
    ))
    .unwrap();
    let pipeline = Pipeline::start(small(1)).unwrap();
    let call = pipeline.join(CallOptions::default()).unwrap();
    for (i, codes) in audio.chunks_exact(FRAME_SAMPLES_8K).take(40).enumerate() {
        let mut f = pipeline.pool().get();
        crate::audio::g711::decode_ulaw(codes, f.fill(8_000, FRAME_SAMPLES_8K)).unwrap();
        f.timestamp_ms = i as u64 * FRAME_MS;
        call.push(f);
    }
    tokio::time::timeout(Duration::from_secs(5), call.events_ready())
        .await
        .expect("woken by the speech start");
    assert!(matches!(
        call.pop_event(),
        Some(VadEvent::SpeechStarted { .. })
    ));
}
