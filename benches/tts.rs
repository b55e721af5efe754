//! Offline speech with espeak-ng, through `providers::espeak` as an agent uses it.
//!
//! - `espeak/first_chunk_miss`: `speak` of one sentence (cache off, so always a miss) →
//!   the first chunk of audio in hand; the utterance is then dropped (cancelled). This is
//!   the TTS share of a turn's latency.
//! - `espeak/paragraph`: a paragraph of about five seconds of speech, synthesised whole.
//!   After it, one summary line prints the real-time factor from 20 extra runs: wall time
//!   and process CPU time (user + system, from /proc/self/stat) per second of audio.
//!
//! One synthesis thread serves every call, so 1 / (CPU per second of speech) is about how
//! many seconds of speech per second one core can keep up with.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use voxgate::providers::espeak::{Espeak, EspeakConfig, SpeakOptions};

const SENTENCE: &str = "Thanks for calling, how can I help you today?";
const PARAGRAPH: &str = "Hello, and thank you for calling the service desk. \
    I can book a visit for you or move an appointment.";

fn tts(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let espeak = Espeak::start(&EspeakConfig {
        cache_bytes: 0,
        ..EspeakConfig::default()
    })
    .expect("espeak-ng is installed");
    let options = SpeakOptions::default();

    c.bench_function("espeak/first_chunk_miss", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut speech = espeak.speak(black_box(SENTENCE), &options).unwrap();
                black_box(speech.next().await.unwrap().unwrap());
            })
        })
    });

    let mut group = c.benchmark_group("espeak");
    group.sample_size(20);
    group.bench_function("paragraph", |b| {
        b.iter(|| runtime.block_on(say(&espeak, black_box(PARAGRAPH), &options)))
    });
    group.finish();

    real_time_factor(&runtime, &espeak, &options);
}

async fn say(espeak: &Espeak, text: &str, options: &SpeakOptions) -> Vec<i16> {
    espeak
        .speak(text, options)
        .unwrap()
        .collect()
        .await
        .unwrap()
}

fn real_time_factor(runtime: &Runtime, espeak: &Espeak, options: &SpeakOptions) {
    const RUNS: u32 = 20;
    let cpu_before = process_cpu();
    let started = Instant::now();
    let mut samples = 0;
    for _ in 0..RUNS {
        samples += runtime.block_on(say(espeak, PARAGRAPH, options)).len();
    }
    let wall = started.elapsed();
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let audio = samples as f64 / f64::from(espeak.rate().hz());
    println!(
        "espeak paragraph: {:.2} s of speech per run; per second of speech: {:.2} ms wall \
         ({:.4} real-time factor), {} CPU",
        audio / f64::from(RUNS),
        wall.as_secs_f64() * 1000.0 / audio,
        wall.as_secs_f64() / audio,
        match cpu {
            Some(cpu) => format!(
                "{:.2} ms ({:.4} real-time factor)",
                cpu.as_secs_f64() * 1000.0 / audio,
                cpu.as_secs_f64() / audio
            ),
            None => "unknown".into(),
        },
    );
}

/// User + system time of this process so far, at the kernel's 100 Hz tick.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

criterion_group!(benches, tts);
criterion_main!(benches);
