use super::*;

/// Allowed distance between a detected and a true onset, and beyond the hangover for the
/// declared end.
const TOL_MS: u64 = 60;
/// Silence before the first speech sample in every `utterance_*` fixture.
const UTTERANCE_LEAD_IN_MS: u64 = 200;

// --- fixtures ------------------------------------------------------------------------

fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/audio")).join(name)
}

fn read_wav_8k(name: &str) -> Vec<i16> {
    let mut reader = hound::WavReader::open(fixture_path(name)).expect("open fixture");
    let spec = reader.spec();
    assert_eq!(spec.sample_rate, SAMPLE_RATE_HZ, "{name}");
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{name}");
    reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect()
}

/// G.711 µ-law expansion (ITU-T G.711; the classic Sun `g711.c` formulation). Local so
/// these tests do not depend on `audio::g711`.
fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let magnitude = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u >> 4) & 0x07);
    let sample = magnitude - 0x84;
    let signed = if u & 0x80 != 0 { -sample } else { sample };
    i16::try_from(signed).expect("µ-law magnitudes fit in i16")
}

fn read_ulaw(name: &str) -> Vec<i16> {
    let bytes = std::fs::read(fixture_path(name)).expect("read fixture");
    bytes.into_iter().map(ulaw_to_linear).collect()
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
struct Segment {
    onset_ms: u64,
    end_ms: u64,
}

fn dialogue_truth() -> Vec<Segment> {
    let json = std::fs::read(fixture_path("dialogue_segments.json")).expect("read truth");
    serde_json::from_slice(&json).expect("parse truth")
}

/// Feeds whole frames stamped 0, 20, 40, … ms; a trailing partial frame is dropped.
/// Checks `is_speaking` agrees with the events after every frame.
fn run(cfg: VadConfig, samples: &[i16]) -> Vec<VadEvent> {
    let mut vad = VoiceDetector::new(cfg).expect("valid config");
    let mut events = Vec::new();
    for (i, frame) in samples.chunks_exact(FRAME_SAMPLES).enumerate() {
        let ts = i as u64 * u64::from(FRAME_MS);
        if let Some(event) = vad.process(frame, ts).expect("160-sample frame") {
            events.push(event);
        }
        let started = matches!(events.last(), Some(VadEvent::SpeechStarted { .. }));
        assert_eq!(vad.is_speaking(), started, "at {ts} ms");
    }
    events
}

/// Pairs events with the true segments, asserts one start and one end per segment, the
/// onset within `TOL_MS`, the end declared after the true end and at most hangover +
/// `TOL_MS` after it. Returns (onset error, declared-end delay) per segment, in ms.
fn check_segments(
    what: &str,
    cfg: VadConfig,
    events: &[VadEvent],
    truth: &[Segment],
) -> Vec<(i64, i64)> {
    assert_eq!(
        events.len(),
        2 * truth.len(),
        "{what}: one start and one end per segment, got {events:?}"
    );
    let mut errors = Vec::new();
    for (pair, seg) in events.chunks(2).zip(truth) {
        let (onset_ms, at_ms) = match *pair {
            [
                VadEvent::SpeechStarted { onset_ms, .. },
                VadEvent::SpeechEnded { at_ms, .. },
            ] => (onset_ms, at_ms),
            _ => panic!("{what}: expected a start then an end, got {pair:?}"),
        };
        assert!(
            onset_ms.abs_diff(seg.onset_ms) <= TOL_MS,
            "{what}: onset {onset_ms} vs {seg:?}"
        );
        let latest = seg.end_ms + u64::from(cfg.hangover_ms) + TOL_MS;
        assert!(
            (seg.end_ms..=latest).contains(&at_ms),
            "{what}: end declared at {at_ms} vs {seg:?}"
        );
        errors.push((
            onset_ms as i64 - seg.onset_ms as i64,
            at_ms as i64 - seg.end_ms as i64,
        ));
    }
    errors
}

// --- config --------------------------------------------------------------------------

#[test]
fn config_is_plain_data_that_crosses_threads() {
    fn assert_send_sync_copy<T: Send + Sync + Copy>() {}
    assert_send_sync_copy::<VadConfig>();
    assert_send_sync_copy::<VadEvent>();
    assert_send_sync_copy::<VadError>();
    assert_eq!(VadConfig::default().validate(), Ok(()));
}

#[test]
fn config_validation_rejects_bad_durations() {
    let ok = VadConfig::default();
    let bad = [
        ("start_ms", VadConfig { start_ms: 0, ..ok }),
        ("start_ms", VadConfig { start_ms: 50, ..ok }),
        (
            "start_ms",
            VadConfig {
                start_ms: MAX_START_MS + FRAME_MS,
                ..ok
            },
        ),
        (
            "hangover_ms",
            VadConfig {
                hangover_ms: 0,
                ..ok
            },
        ),
        (
            "hangover_ms",
            VadConfig {
                hangover_ms: 410,
                ..ok
            },
        ),
        (
            "hangover_ms",
            VadConfig {
                hangover_ms: MAX_HANGOVER_MS + FRAME_MS,
                ..ok
            },
        ),
        // Not longer than webrtc-vad's own hold: nothing left to count.
        (
            "hangover_ms",
            VadConfig {
                hangover_ms: 60,
                ..ok
            },
        ),
        (
            "hangover_ms",
            VadConfig {
                mode: VadMode::Quality,
                hangover_ms: 80,
                ..ok
            },
        ),
    ];
    for (field, cfg) in bad {
        match cfg.validate() {
            Err(VadError::Config { field: f, .. }) => assert_eq!(f, field, "{cfg:?}"),
            other => panic!("{cfg:?} gave {other:?}"),
        }
        assert!(matches!(
            VoiceDetector::new(cfg),
            Err(VadError::Config { .. })
        ));
    }
    let edges = [
        VadConfig {
            start_ms: FRAME_MS,
            ..ok
        },
        VadConfig {
            start_ms: MAX_START_MS,
            hangover_ms: MAX_HANGOVER_MS,
            ..ok
        },
        VadConfig {
            hangover_ms: 80,
            ..ok
        },
        VadConfig {
            mode: VadMode::Quality,
            hangover_ms: 100,
            ..ok
        },
    ];
    for cfg in edges {
        assert_eq!(cfg.validate(), Ok(()), "{cfg:?}");
    }
}

// --- frames --------------------------------------------------------------------------

#[test]
fn wrong_frame_length_is_an_error_and_changes_nothing() {
    let audio = read_wav_8k("dialogue_8k.wav");
    let reference = run(VadConfig::default(), &audio);
    let mut vad = VoiceDetector::new(VadConfig::default()).expect("valid config");
    let mut events = Vec::new();
    let junk = [0i16; 2 * FRAME_SAMPLES];
    for (i, frame) in audio.chunks_exact(FRAME_SAMPLES).enumerate() {
        let ts = i as u64 * u64::from(FRAME_MS);
        for len in [0, 1, 80, FRAME_SAMPLES - 1, FRAME_SAMPLES + 1, 240, 320] {
            let speaking = vad.is_speaking();
            let err = vad.process(&junk[..len], ts);
            let expected = VadError::FrameLength {
                expected: FRAME_SAMPLES,
                actual: len,
            };
            assert_eq!(err, Err(expected));
            assert_eq!(vad.is_speaking(), speaking);
        }
        events.extend(vad.process(frame, ts).expect("160-sample frame"));
    }
    assert_eq!(events, reference);
}

// --- smoothing, on exact decision sequences ------------------------------------------

/// Runs the smoother over `pattern` ('1' voiced, '.' unvoiced) from `base_ms`.
fn smooth(cfg: VadConfig, pattern: &str, base_ms: u64) -> Vec<VadEvent> {
    let mut smoother = Smoother::new(cfg);
    pattern
        .bytes()
        .enumerate()
        .filter_map(|(i, c)| smoother.step(c == b'1', base_ms.saturating_add(20 * i as u64)))
        .collect()
}

#[test]
fn start_needs_start_ms_plus_the_hold_of_unbroken_voiced_frames() {
    // Aggressive: 60 ms start + 60 ms hold = 6 frames.
    let cfg = VadConfig::default();
    assert_eq!(smooth(cfg, "..11111.....", 0), []);
    assert_eq!(smooth(cfg, "..111.111...111.11", 0), []);
    assert_eq!(
        smooth(cfg, "..111111", 1_000),
        [VadEvent::SpeechStarted {
            onset_ms: 1_040,
            at_ms: 1_140
        }]
    );
    // A one-frame classifier blip as webrtc-vad reports it (1 frame + 3 held) is a start
    // only when one frame is all `start_ms` asks for.
    let blip = "1111.........";
    assert_eq!(
        smooth(
            VadConfig {
                start_ms: 40,
                ..cfg
            },
            blip,
            0
        ),
        []
    );
    assert_eq!(
        smooth(
            VadConfig {
                start_ms: 20,
                ..cfg
            },
            blip,
            0
        )
        .len(),
        1
    );
}

#[test]
fn end_comes_after_hangover_and_takes_the_hold_off() {
    // 400 ms hangover - 60 ms hold = 17 unvoiced frames.
    let cfg = VadConfig::default();
    let speech = "1111111111"; // frames 0..=9, last voiced frame ends at 200 ms
    let events = smooth(cfg, &format!("{speech}{}", ".".repeat(17)), 0);
    assert_eq!(
        events,
        [
            VadEvent::SpeechStarted {
                onset_ms: 0,
                at_ms: 100
            },
            VadEvent::SpeechEnded {
                end_ms: 140,
                at_ms: 520
            },
        ]
    );
    // One frame short: still speaking. A voiced frame restarts the count.
    assert_eq!(
        smooth(cfg, &format!("{speech}{}", ".".repeat(16)), 0).len(),
        1
    );
    let interrupted = format!("{speech}{}1{}", ".".repeat(16), ".".repeat(16));
    assert_eq!(smooth(cfg, &interrupted, 0).len(), 1);
    // Events alternate and the next start is a fresh run.
    let twice = format!("{speech}{}{speech}{}", ".".repeat(17), ".".repeat(17));
    assert_eq!(smooth(cfg, &twice, 0).len(), 4);
}

#[test]
fn voiced_until_follows_the_last_reported_voiced_frame() {
    // A 100 ms click as webrtc-vad reports it (5 frames plus the 60 ms hold = 8 frames):
    // speech starts, and the voice visibly stops at 160 ms while the end is still a
    // hangover away.
    let mut smoother = Smoother::new(VadConfig::default());
    assert_eq!(smoother.voiced_until_ms, None);
    for (i, c) in "11111111.....".bytes().enumerate() {
        smoother.step(c == b'1', 20 * i as u64);
    }
    assert!(matches!(smoother.state, State::Speaking { .. }));
    assert_eq!(smoother.voiced_until_ms, Some(160));
    smoother.step(true, 260);
    assert_eq!(smoother.voiced_until_ms, Some(280));

    let mut vad = VoiceDetector::new(VadConfig::default()).expect("valid config");
    vad.smoother.voiced_until_ms = Some(500);
    vad.reset();
    assert_eq!(vad.voiced_until_ms(), None);
}

#[test]
fn timestamps_only_label_events() {
    let cfg = VadConfig::default();
    let pattern = format!("..{}{}", "1".repeat(10), ".".repeat(20));
    let base = smooth(cfg, &pattern, 0);
    let shifted = smooth(cfg, &pattern, 7_000_000_000);
    assert_eq!(base.len(), 2);
    for (a, b) in base.iter().zip(&shifted) {
        let shift = |e: &VadEvent| match *e {
            VadEvent::SpeechStarted { onset_ms, at_ms } => (onset_ms, at_ms),
            VadEvent::SpeechEnded { end_ms, at_ms } => (end_ms, at_ms),
        };
        let ((a0, a1), (b0, b1)) = (shift(a), shift(b));
        assert_eq!((b0 - a0, b1 - a1), (7_000_000_000, 7_000_000_000));
    }
    // The clock's edges saturate instead of overflowing.
    assert_eq!(smooth(cfg, &pattern, u64::MAX - 100).len(), 2);
    assert_eq!(smooth(cfg, &pattern, 0).len(), 2);
}

// --- fixtures --------------------------------------------------------------------------

#[test]
fn ulaw_helper_matches_g711() {
    assert_eq!(ulaw_to_linear(0xff), 0);
    assert_eq!(ulaw_to_linear(0x7f), 0);
    assert_eq!(ulaw_to_linear(0x80), 32_124);
    assert_eq!(ulaw_to_linear(0x00), -32_124);
    assert_eq!(ulaw_to_linear(0xfe), 8);
    assert_eq!(ulaw_to_linear(0xef), 132);
}

#[test]
fn dialogue_turns_each_detected_once_at_the_right_times() {
    let cfg = VadConfig::default();
    let truth = dialogue_truth();
    assert_eq!(truth.len(), 5);
    let wav = check_segments(
        "wav",
        cfg,
        &run(cfg, &read_wav_8k("dialogue_8k.wav")),
        &truth,
    );
    let ulaw = check_segments("µ-law", cfg, &run(cfg, &read_ulaw("dialogue.ulaw")), &truth);
    // (onset error, end declared after true end) per turn, for tuning: `--nocapture`.
    println!("dialogue wav {wav:?}\ndialogue µ-law {ulaw:?}");
}

#[test]
fn dialogue_on_a_noisy_line_each_turn_detected_once() {
    // The dialogue with the line-noise fixture underneath (about 20 dB SNR): webrtc-vad
    // must adapt to the noise floor at the start and still find every turn.
    let cfg = VadConfig::default();
    let noise = read_wav_8k("line_noise_8k.wav");
    let mixed: Vec<i16> = read_wav_8k("dialogue_8k.wav")
        .iter()
        .zip(noise.iter().cycle())
        .map(|(&s, &n)| s.saturating_add(n))
        .collect();
    let errors = check_segments("noisy", cfg, &run(cfg, &mixed), &dialogue_truth());
    println!("dialogue + line noise {errors:?}");
}

#[test]
fn nothing_detected_on_silence_or_line_noise() {
    let cfg = VadConfig::default();
    for name in ["silence_8k.wav", "line_noise_8k.wav"] {
        let audio = read_wav_8k(name);
        assert_eq!(audio.len(), 5 * SAMPLE_RATE_HZ as usize, "{name}");
        assert_eq!(run(cfg, &audio), [], "{name}");
    }
    for name in ["silence.ulaw", "line_noise.ulaw"] {
        assert_eq!(run(cfg, &read_ulaw(name)), [], "{name}");
    }
}

#[test]
fn each_single_utterance_detected_once() {
    let cfg = VadConfig::default();
    for n in 1..=3 {
        let wav = read_wav_8k(&format!("utterance_{n}_8k.wav"));
        let ulaw = read_ulaw(&format!("utterance_{n}.ulaw"));
        assert_eq!(wav.len(), ulaw.len());
        for (what, audio) in [("wav", wav), ("µ-law", ulaw)] {
            let events = run(cfg, &audio);
            match events[..] {
                [
                    VadEvent::SpeechStarted { onset_ms, .. },
                    VadEvent::SpeechEnded { .. },
                ] => assert!(
                    onset_ms.abs_diff(UTTERANCE_LEAD_IN_MS) <= TOL_MS,
                    "utterance {n} {what}: onset {onset_ms}"
                ),
                _ => panic!("utterance {n} {what}: {events:?}"),
            }
        }
    }
}

#[test]
fn reset_forgets_history_but_keeps_config() {
    let audio = read_wav_8k("dialogue_8k.wav");
    let reference = run(VadConfig::default(), &audio);
    let mut vad = VoiceDetector::new(VadConfig::default()).expect("valid config");
    // Stop in the middle of the first turn.
    for (i, frame) in audio.chunks_exact(FRAME_SAMPLES).take(75).enumerate() {
        vad.process(frame, i as u64 * 20).expect("160-sample frame");
    }
    assert!(vad.is_speaking());
    vad.reset();
    assert!(!vad.is_speaking());
    let mut events = Vec::new();
    for (i, frame) in audio.chunks_exact(FRAME_SAMPLES).enumerate() {
        events.extend(vad.process(frame, i as u64 * 20).expect("160-sample frame"));
    }
    assert_eq!(events, reference);
}
