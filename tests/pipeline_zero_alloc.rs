//! Proves the per-frame path allocates nothing once warm: Plivo JSON → base64 → µ-law →
//! PCM16 frame → pipeline (VAD, 8 k → 16 k resampling) → record tap and STT outputs.
//!
//! A counting global allocator sees every thread, the DSP workers included. This file
//! holds a single test so no other test allocates while it measures.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use voxgate::audio::frame::FRAME_SAMPLES_8K;
use voxgate::audio::pipeline::{CallHandle, CallOptions, Pipeline, PipelineConfig};
use voxgate::telephony::plivo::stream::{Inbound, MediaFormat, decode_payload, parse_inbound};

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// Plivo `media` messages of a caller: speech-like bursts (so the VAD fires) and silence.
fn media_messages(count: usize) -> Vec<String> {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/audio/dialogue.ulaw");
    let audio = std::fs::read(fixture).expect("dialogue fixture");
    use base64::Engine as _;
    (0..count)
        .map(|i| {
            let start = (i * FRAME_SAMPLES_8K) % (audio.len() - FRAME_SAMPLES_8K);
            let payload = base64::engine::general_purpose::STANDARD
                .encode(&audio[start..start + FRAME_SAMPLES_8K]);
            format!(
                r#"{{"event":"media","sequenceNumber":{},"streamId":"s-1","media":{{"track":"inbound","timestamp":"{}","chunk":{},"payload":"{payload}"}}}}"#,
                i + 2,
                i * 20,
                i + 1
            )
        })
        .collect()
}

fn run_frames(pipeline: &Pipeline, call: &CallHandle, messages: &[String], events: &mut u64) {
    let mut scratch = [0u8; 1024];
    for text in messages {
        let Ok(Inbound::Media(media)) = parse_inbound(text) else {
            panic!("fixture message did not parse")
        };
        let mut frame = pipeline.pool().get();
        frame.timestamp_ms = media.media.timestamp;
        frame.chunk = media.media.chunk;
        let n = decode_payload(
            &media.media.payload,
            MediaFormat::MuLaw8k,
            &mut scratch,
            frame.fill(8_000, 320),
        )
        .expect("payload decodes");
        frame.fill(8_000, n);
        call.push(frame);
        // Take the outputs as a session and a recorder would; frames go back to the pool.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(rec) = call.pop_record() {
                drop(rec);
                break;
            }
            assert!(Instant::now() < deadline, "worker stalled");
            std::thread::yield_now();
        }
        while let Some(wide) = call.pop_stt() {
            drop(wide);
        }
        while call.pop_event().is_some() {
            *events += 1;
        }
    }
}

#[test]
fn steady_state_frames_allocate_nothing() {
    let pipeline = Pipeline::start(PipelineConfig {
        workers: 2,
        ..PipelineConfig::default()
    })
    .unwrap();
    let call = pipeline
        .join(CallOptions {
            stt_16k: true,
            record: true,
        })
        .unwrap();
    let warm = media_messages(100);
    let measured = media_messages(1_500); // 30 s of audio
    let mut events = 0;
    run_frames(&pipeline, &call, &warm, &mut events);

    counting::start();
    run_frames(&pipeline, &call, &measured, &mut events);

    let allocations = counting::stop();
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations over {} frames",
        measured.len()
    );
    assert_eq!(call.stats().frames_processed.load(Ordering::Relaxed), 1_600);
    assert!(
        events >= 2,
        "the VAD saw the speech in the fixture ({events} events)"
    );
    assert_eq!(pipeline.pool().misses(), 0);
}
