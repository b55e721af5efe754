//! What recording costs. On the audio path: handing one 20 ms caller frame and one agent
//! frame to the call's recording queue (all the session does per frame). Off it, on the
//! writer thread: placing a frame on the timeline and appending the block to the WAV file.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use voxgate::audio::frame::FRAME_SAMPLES_8K;
use voxgate::recording::config::{RecordingConfig, RecordingFormat, RecordingRate};
use voxgate::recording::timeline::Timeline;
use voxgate::recording::wav::WavSink;
use voxgate::recording::writer::Recorder;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("voxgate-bench-rec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn audio_path(c: &mut Criterion) {
    let config = RecordingConfig {
        enabled: true,
        dir: scratch("path"),
        sample_rate: RecordingRate::Hz8000,
        format: RecordingFormat::Wav,
        upload_url: None,
        keep_local_days: None,
        upload_retries: 5,
        public_base_url: None,
    };
    let recorder = Recorder::start(&config).unwrap();
    let call = recorder.start_call("bench");
    let frame = [1_000i16; FRAME_SAMPLES_8K];
    let mut ts = 0u64;
    c.bench_function(
        "recording: caller + agent frame into the queue (session side)",
        |b| {
            b.iter(|| {
                call.caller(black_box(ts), black_box(&frame));
                call.agent(black_box(ts + 20), black_box(&frame));
                ts += 20;
            })
        },
    );
    drop(call);
    recorder.shutdown(Duration::from_secs(30));
}

fn writer_side(c: &mut Criterion) {
    let dir = scratch("writer");
    let frame = [1_000i16; FRAME_SAMPLES_8K];
    // One minute of a call per iteration (3,000 caller and 3,000 agent frames), into a
    // fresh file each time: divide by 3,000 for the cost per 20 ms block.
    for (name, rate) in [
        ("8 kHz", RecordingRate::Hz8000),
        ("16 kHz", RecordingRate::Hz16000),
    ] {
        let mut group = c.benchmark_group("recording: one minute of a call (writer thread)");
        group.sample_size(10);
        group.bench_function(name, |b| {
            b.iter(|| {
                let part = dir.join(format!("{name}.wav.part"));
                let mut sink = WavSink::create(part, rate).unwrap();
                let mut timeline = Timeline::new();
                for n in 0..3_000u64 {
                    timeline.agent(n * 20 + 20, black_box(&frame));
                    timeline.caller(n * 20, black_box(&frame), &mut |l: &[i16], r: &[i16]| {
                        sink.write_block(l, r).unwrap();
                    });
                }
                let (path, duration) = sink.finalize().unwrap();
                assert_eq!(duration, Duration::from_secs(60));
                std::fs::remove_file(path).unwrap();
            })
        });
        group.finish();
    }
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, audio_path, writer_side);
criterion_main!(benches);
