//! Latency of every per-frame stage of the inbound path, one 20 ms frame at a time.
//!
//! Inputs are real: the dialogue fixture (espeak-ng speech and silences) cut into frames
//! and wrapped in Plivo `media` messages as Plivo sends them.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use voxgate::audio::frame::FRAME_SAMPLES_8K;
use voxgate::audio::g711;
use voxgate::audio::pipeline::{CallHandle, CallOptions, Pipeline, PipelineConfig};
use voxgate::audio::resample::{Rate, Resampler};
use voxgate::audio::vad::{VadConfig, VoiceDetector};
use voxgate::telephony::plivo::stream::{Inbound, MediaFormat, decode_payload, parse_inbound};

fn dialogue_ulaw() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/audio/dialogue.ulaw"
    ))
    .expect("dialogue fixture")
}

fn media_messages(audio: &[u8]) -> Vec<String> {
    audio
        .chunks_exact(FRAME_SAMPLES_8K)
        .enumerate()
        .map(|(i, chunk)| {
            let payload = base64::engine::general_purpose::STANDARD.encode(chunk);
            format!(
                r#"{{"event":"media","sequenceNumber":{},"streamId":"5e2f8a90-1c3d-4e5f-8a7b-9c0d1e2f3a4b","media":{{"track":"inbound","timestamp":"{}","chunk":{},"payload":"{payload}"}},"extra_headers":"tenant=7"}}"#,
                i + 2,
                i * 20,
                i + 1
            )
        })
        .collect()
}

fn pcm_frames(audio: &[u8]) -> Vec<[i16; FRAME_SAMPLES_8K]> {
    audio
        .chunks_exact(FRAME_SAMPLES_8K)
        .map(|chunk| {
            let mut frame = [0i16; FRAME_SAMPLES_8K];
            g711::decode_ulaw(chunk, &mut frame).unwrap();
            frame
        })
        .collect()
}

fn g711_benches(c: &mut Criterion) {
    let audio = dialogue_ulaw();
    let codes: [u8; FRAME_SAMPLES_8K] = audio[8_000..8_160].try_into().unwrap();
    let pcm = pcm_frames(&audio)[50];
    let mut out = [0i16; FRAME_SAMPLES_8K];
    let mut bytes = [0u8; FRAME_SAMPLES_8K];
    let mut group = c.benchmark_group("g711_per_frame");
    group.bench_function("ulaw_decode", |b| {
        b.iter(|| g711::decode_ulaw(black_box(&codes), &mut out))
    });
    group.bench_function("ulaw_encode", |b| {
        b.iter(|| g711::encode_ulaw(black_box(&pcm), &mut bytes))
    });
    group.bench_function("alaw_decode", |b| {
        b.iter(|| g711::decode_alaw(black_box(&codes), &mut out))
    });
    group.bench_function("alaw_encode", |b| {
        b.iter(|| g711::encode_alaw(black_box(&pcm), &mut bytes))
    });
    group.finish();
}

fn parse_benches(c: &mut Criterion) {
    let messages = media_messages(&dialogue_ulaw());
    let text = &messages[100];
    let mut scratch = [0u8; 1024];
    let mut pcm = [0i16; 320];
    c.bench_function("plivo_media_parse_and_decode", |b| {
        b.iter(|| {
            let Ok(Inbound::Media(media)) = parse_inbound(black_box(text)) else {
                unreachable!()
            };
            decode_payload(
                &media.media.payload,
                MediaFormat::MuLaw8k,
                &mut scratch,
                &mut pcm,
            )
            .unwrap()
        })
    });
}

fn vad_benches(c: &mut Criterion) {
    let frames = pcm_frames(&dialogue_ulaw());
    let mut vad = VoiceDetector::new(VadConfig::default()).unwrap();
    let mut i = 0;
    c.bench_function("vad_per_frame", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            vad.process(black_box(&frames[i]), i as u64 * 20).unwrap()
        })
    });
}

fn resample_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample_per_frame");
    let pairs = [
        ("8k_to_16k", Rate::Hz8000, Rate::Hz16000),
        ("16k_to_8k", Rate::Hz16000, Rate::Hz8000),
        ("22k05_to_8k", Rate::Hz22050, Rate::Hz8000),
        ("24k_to_8k", Rate::Hz24000, Rate::Hz8000),
        ("44k1_to_8k", Rate::Hz44100, Rate::Hz8000),
        ("48k_to_8k", Rate::Hz48000, Rate::Hz8000),
    ];
    for (name, from, to) in pairs {
        let mut resampler = Resampler::new(from, to).unwrap();
        let input: Vec<i16> = (0..resampler.input_chunk())
            .map(|i| ((i as f32 * 0.3).sin() * 8_000.0) as i16)
            .collect();
        let mut output = vec![0i16; resampler.output_chunk()];
        group.bench_function(name, |b| {
            b.iter(|| resampler.process(black_box(&input), &mut output).unwrap())
        });
    }
    group.finish();
}

/// Decode one Plivo message into a pooled frame and push it to the call's worker.
fn feed(pipeline: &Pipeline, call: &CallHandle, text: &str, scratch: &mut [u8]) {
    let Ok(Inbound::Media(media)) = parse_inbound(text) else {
        unreachable!()
    };
    let mut frame = pipeline.pool().get();
    frame.timestamp_ms = media.media.timestamp;
    frame.chunk = media.media.chunk;
    let n = decode_payload(
        &media.media.payload,
        MediaFormat::MuLaw8k,
        scratch,
        frame.fill(8_000, 320),
    )
    .unwrap();
    frame.fill(8_000, n);
    call.push(frame);
}

/// Waits for a call's record-tap frame and drains its other outputs; `wait` is called
/// while nothing is there yet.
fn drain(call: &CallHandle, wait: fn()) {
    loop {
        if let Some(rec) = call.pop_record() {
            black_box(rec);
            break;
        }
        wait();
    }
    while let Some(wide) = call.pop_stt() {
        black_box(wide);
    }
    while call.pop_event().is_some() {}
}

fn inbound_path_benches(c: &mut Criterion) {
    let messages = media_messages(&dialogue_ulaw());
    let pipeline = Pipeline::start(PipelineConfig::default()).unwrap();
    let options = CallOptions {
        stt_16k: true,
        record: true,
    };
    let mut group = c.benchmark_group("inbound_path");
    group.measurement_time(Duration::from_secs(8));
    let mut scratch = [0u8; 1024];

    // 50 live calls sending frames back to back, as a loaded server sees them: the
    // wall time per frame of the whole path (JSON → base64 → µ-law → PCM → VAD →
    // 8k→16k → record tap) with both DSP workers and the feeding thread on 2 cores.
    // Each call has at most two frames in flight; outputs are taken as they come.
    let calls: Vec<CallHandle> = (0..50).map(|_| pipeline.join(options).unwrap()).collect();
    let mut next = 0usize;
    group.bench_function("per_frame_50_calls", |b| {
        b.iter_custom(|iters| {
            let mut in_flight = [0u8; 50];
            let start = Instant::now();
            for i in 0..iters as usize {
                let c = i % calls.len();
                if in_flight[c] == 2 {
                    // Sleep, not spin: a spinning feeder would take a core from the
                    // workers; a session task waits in the reactor the same way.
                    drain(&calls[c], || std::thread::sleep(Duration::from_micros(20)));
                    in_flight[c] -= 1;
                }
                feed(
                    &pipeline,
                    &calls[c],
                    &messages[next % messages.len()],
                    &mut scratch,
                );
                next += 1;
                in_flight[c] += 1;
            }
            for (call, n) in calls.iter().zip(in_flight) {
                for _ in 0..n {
                    drain(call, || std::thread::sleep(Duration::from_micros(20)));
                }
            }
            start.elapsed()
        })
    });
    drop(calls);

    // One call, one frame, wait for it to come out: includes waking the worker thread.
    let call = pipeline.join(options).unwrap();
    group.bench_function("one_frame_round_trip_1_call", |b| {
        b.iter(|| {
            feed(
                &pipeline,
                &call,
                &messages[next % messages.len()],
                &mut scratch,
            );
            next += 1;
            drain(&call, std::hint::spin_loop);
        })
    });
    group.finish();
}

/// The same stages on one thread, no queues: the CPU one frame costs.
fn inbound_cpu_benches(c: &mut Criterion) {
    let messages = media_messages(&dialogue_ulaw());
    let mut vad = VoiceDetector::new(VadConfig::default()).unwrap();
    let mut up = Resampler::new(Rate::Hz8000, Rate::Hz16000).unwrap();
    let pool = voxgate::audio::frame::FramePool::new(64);
    let tap = crossbeam_queue::ArrayQueue::new(4);
    let mut scratch = [0u8; 1024];
    let mut next = 0usize;
    c.bench_function("inbound_path/cpu_per_frame_1_thread", |b| {
        b.iter(|| {
            let text = &messages[next % messages.len()];
            next += 1;
            let Ok(Inbound::Media(media)) = parse_inbound(black_box(text)) else {
                unreachable!()
            };
            let mut frame = pool.get();
            let n = decode_payload(
                &media.media.payload,
                MediaFormat::MuLaw8k,
                &mut scratch,
                frame.fill(8_000, 320),
            )
            .unwrap();
            frame.fill(8_000, n);
            frame.timestamp_ms = media.media.timestamp;
            black_box(vad.process(frame.samples(), frame.timestamp_ms).unwrap());
            let mut wide = pool.get();
            let produced = up.process(frame.samples(), wide.fill(16_000, 320)).unwrap();
            black_box(produced);
            let _ = tap.force_push(frame);
            black_box(tap.pop());
            black_box(wide);
        })
    });
}

criterion_group!(
    benches,
    g711_benches,
    parse_benches,
    vad_benches,
    resample_benches,
    inbound_cpu_benches,
    inbound_path_benches
);
criterion_main!(benches);
