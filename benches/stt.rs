//! Offline STT cost: one pocketsphinx decoder decoding 8 kHz phone audio with a digit
//! grammar. Time per 1 s of audio = the real-time factor of one stream (0.01 s = 1 %).
//!
//! Needs Debian's pocketsphinx-en-us model. Speech is synthesised once with espeak-ng if
//! present (the same fixtures as tests/stt_offline.rs); otherwise a tone stands in.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use voxgate::providers::pocketsphinx::config::DEFAULT_MODEL_DIR;
use voxgate::providers::pocketsphinx::decoder::{Decoder, FRAME_SAMPLES};
use voxgate::providers::pocketsphinx::lexicon::Lexicon;

/// 1 s of speech at 8 kHz (digits, espeak-ng's en-us voice), looped if shorter.
fn speech() -> Vec<i16> {
    let dir = std::env::temp_dir().join("voxgate-stt-bench");
    let made = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech/make.sh"))
        .arg(&dir)
        .output()
        .is_ok_and(|o| o.status.success());
    let mut audio = Vec::new();
    if made && let Ok(mut reader) = hound::WavReader::open(dir.join("en-us__nine_four_seven.wav")) {
        audio = reader.samples::<i16>().map_while(Result::ok).collect();
    }
    if audio.is_empty() {
        audio = (0..8000)
            .map(|i| ((i as f32 * 0.2).sin() * 8000.0) as i16)
            .collect();
    }
    audio.iter().copied().cycle().take(8000).collect()
}

fn decode(c: &mut Criterion) {
    let model = Path::new(DEFAULT_MODEL_DIR);
    let lexicon = Arc::new(Lexicon::read(&Decoder::dictionary(model)).expect("the en-us model"));
    let mut decoder = Decoder::load(model, lexicon).expect("the en-us model");
    let digits: Vec<String> = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ]
    .iter()
    .map(|w| (*w).to_owned())
    .collect();
    decoder.expect(&digits);
    let speech = speech();
    let silence = vec![0i16; 8000];

    let mut group = c.benchmark_group("stt");
    group.sample_size(20);
    for (name, audio) in [("speech_1s", &speech), ("silence_1s", &silence)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                for frame in audio.chunks_exact(FRAME_SAMPLES) {
                    black_box(decoder.process(black_box(frame)));
                }
                black_box(decoder.finish())
            })
        });
    }
    group.bench_function("frame_20ms", |b| {
        let mut frames = speech.chunks_exact(FRAME_SAMPLES).cycle();
        b.iter(|| black_box(decoder.process(black_box(frames.next().unwrap_or(&silence[..160])))))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
