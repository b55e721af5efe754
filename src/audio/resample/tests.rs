//! Quality is measured on pure tones pushed through the streaming API one frame at a time.
//! After a 100 ms settle the output is analysed over exactly one second, so every
//! integer-Hz tone has a whole number of periods and single-bin DFTs at integer-Hz
//! frequencies are exactly orthogonal: a strong wanted tone does not leak into the bin
//! where a -100 dB alias is measured.

use super::*;
use std::f64::consts::PI;

/// Every supported pair, in README order.
const PAIRS: [(Rate, Rate); 6] = [
    (Rate::Hz8000, Rate::Hz16000),
    (Rate::Hz16000, Rate::Hz8000),
    (Rate::Hz22050, Rate::Hz8000),
    (Rate::Hz24000, Rate::Hz8000),
    (Rate::Hz44100, Rate::Hz8000),
    (Rate::Hz48000, Rate::Hz8000),
];
const RATES: [Rate; 6] = [
    Rate::Hz8000,
    Rate::Hz16000,
    Rate::Hz22050,
    Rate::Hz24000,
    Rate::Hz44100,
    Rate::Hz48000,
];
/// Passband probe tones (Hz), across 300–3400 Hz.
const PASSBAND_HZ: [u32; 9] = [300, 500, 1000, 1500, 2000, 2500, 3000, 3200, 3400];
/// Tones that fold into the phone band when downsampling; filtered to below each input
/// Nyquist, plus one tone just under it.
const STOPBAND_HZ: [u32; 7] = [4600, 5000, 6000, 7500, 10_000, 15_000, 20_000];
/// Test tone amplitude, -6 dBFS.
const AMPLITUDE: f64 = 16_384.0;
/// Frames skipped before measuring (100 ms, far longer than any delay).
const SETTLE_FRAMES: usize = 5;
/// Frames per tone run: settle, one second measured, one spare.
const RUN_FRAMES: usize = SETTLE_FRAMES + FRAMES_PER_SECOND as usize + 1;

fn name(from: Rate, to: Rate) -> String {
    format!("{} Hz -> {} Hz", from.hz(), to.hz())
}

fn tone(rate: Rate, hz: u32, frames: usize) -> Vec<i16> {
    let w = 2.0 * PI * f64::from(hz) / f64::from(rate.hz());
    (0..frames * rate.frame_len())
        .map(|n| (AMPLITUDE * (w * n as f64).sin()).round() as i16)
        .collect()
}

/// Deterministic white-ish noise (xorshift32), amplitude about ±8000.
fn noise(seed: u32, len: usize) -> Vec<i16> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            ((state >> 16) as i16) / 4
        })
        .collect()
}

/// Runs whole frames of `input` through `r`, checking every call's contract.
fn convert(r: &mut Resampler, input: &[i16]) -> Vec<i16> {
    convert_both(r, input).0
}

/// As [`convert`], also returning the engine's output before quantisation to i16 (in i16
/// units), to measure attenuation below the i16 noise floor.
fn convert_both(r: &mut Resampler, input: &[i16]) -> (Vec<i16>, Vec<f64>) {
    let (n_in, n_out) = (r.input_chunk(), r.output_chunk());
    assert_eq!(input.len() % n_in, 0, "whole frames only");
    let mut out = vec![0; input.len() / n_in * n_out];
    let mut engine = Vec::with_capacity(out.len());
    for (i, o) in input.chunks_exact(n_in).zip(out.chunks_exact_mut(n_out)) {
        assert_eq!(r.process(i, o), Ok(n_out));
        engine.extend(
            r.output_f32[..n_out]
                .iter()
                .map(|&v| f64::from(v * I16_SCALE)),
        );
    }
    (out, engine)
}

/// The one-second analysis window of a tone run.
struct Window {
    /// What the caller gets.
    output: Vec<f64>,
    /// The same samples before rounding to i16.
    engine: Vec<f64>,
    /// Output index of the first sample.
    start: usize,
}

fn tone_window(from: Rate, to: Rate, hz: u32) -> Window {
    let mut r = Resampler::new(from, to).unwrap();
    let (output, engine) = convert_both(&mut r, &tone(from, hz, RUN_FRAMES));
    let start = SETTLE_FRAMES * to.frame_len();
    let range = start..start + to.hz() as usize;
    Window {
        output: output[range.clone()]
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
        engine: engine[range].to_vec(),
        start,
    }
}

/// Amplitude and phase of the `hz` component of `x` (whose first sample has output index
/// `start`): `x[k] ≈ amp * cos(2π hz k / fs + phase)`.
fn bin(x: &[f64], start: usize, fs: Rate, hz: u32) -> (f64, f64) {
    let w = 2.0 * PI * f64::from(hz) / f64::from(fs.hz());
    let (mut re, mut im) = (0.0, 0.0);
    for (k, &v) in x.iter().enumerate() {
        let phase = w * (start + k) as f64;
        re += v * phase.cos();
        im -= v * phase.sin();
    }
    (2.0 * re.hypot(im) / x.len() as f64, im.atan2(re))
}

/// Level of `amplitude` relative to the test tone, dB.
fn rel_db(amplitude: f64) -> f64 {
    20.0 * (amplitude / AMPLITUDE).log10()
}

/// Power of `x` once the `hz` component is fitted out, relative to the test tone, dB.
fn residual_db(x: &[f64], start: usize, fs: Rate, hz: u32) -> f64 {
    let (amp, phase) = bin(x, start, fs, hz);
    let w = 2.0 * PI * f64::from(hz) / f64::from(fs.hz());
    let power = x
        .iter()
        .enumerate()
        .map(|(k, &v)| (v - amp * (w * (start + k) as f64 + phase).cos()).powi(2))
        .sum::<f64>()
        / x.len() as f64;
    10.0 * (power / (AMPLITUDE * AMPLITUDE / 2.0)).log10()
}

/// Total power of `x` relative to the test tone, dB.
fn power_db(x: &[f64]) -> f64 {
    let power = x.iter().map(|&v| v * v).sum::<f64>() / x.len() as f64;
    10.0 * (power / (AMPLITUDE * AMPLITUDE / 2.0)).log10()
}

/// Where a tone at `hz` lands after sampling at `fs`.
fn fold(hz: u32, fs: Rate) -> u32 {
    let r = hz % fs.hz();
    r.min(fs.hz() - r)
}

fn is_downsampler(to: Rate) -> bool {
    to == Rate::Hz8000
}

/// Worst passband deviation from 0 dB over `PASSBAND_HZ`, dB.
fn worst_passband_db(from: Rate, to: Rate) -> f64 {
    PASSBAND_HZ
        .iter()
        .map(|&hz| {
            let w = tone_window(from, to, hz);
            let gain = rel_db(bin(&w.output, w.start, to, hz).0);
            assert!(
                gain.abs() <= 0.5,
                "{}: {hz} Hz passband gain {gain:.3} dB outside ±0.5 dB",
                name(from, to)
            );
            gain
        })
        .fold(
            0.0,
            |worst, g| if g.abs() > worst.abs() { g } else { worst },
        )
}

/// Highest levels, relative to the input tone in dB, of what must be at least 50 dB down.
#[derive(Debug, Clone, Copy)]
struct Unwanted {
    /// At the alias / image frequency, in the i16 output.
    at_output: f64,
    /// At the alias / image frequency, before rounding to i16.
    at_engine: f64,
    /// All unwanted power in the i16 output (includes its rounding noise).
    total_output: f64,
    /// All unwanted power before rounding to i16.
    total_engine: f64,
}

/// Worst unwanted levels over the probe tones. For downsamplers the probes are
/// `STOPBAND_HZ` below the input Nyquist plus one just under it; the alias sits at the
/// folded frequency and all output power is unwanted. For 8 kHz → 16 kHz the probes are
/// the passband tones, the image sits at 8000 - f, and the unwanted power is whatever is
/// left once the tone is fitted out. Asserts the i16 output is at least 50 dB down.
fn worst_unwanted_db(from: Rate, to: Rate) -> Unwanted {
    let nyquist = from.hz() / 2;
    let probes: Vec<u32> = if is_downsampler(to) {
        STOPBAND_HZ
            .iter()
            .copied()
            .filter(|&hz| hz < nyquist)
            .chain([nyquist - 100])
            .collect()
    } else {
        PASSBAND_HZ.to_vec()
    };
    let mut worst = Unwanted {
        at_output: f64::NEG_INFINITY,
        at_engine: f64::NEG_INFINITY,
        total_output: f64::NEG_INFINITY,
        total_engine: f64::NEG_INFINITY,
    };
    for hz in probes {
        let w = tone_window(from, to, hz);
        let levels = |x: &[f64]| {
            if is_downsampler(to) {
                (rel_db(bin(x, w.start, to, fold(hz, to)).0), power_db(x))
            } else {
                (
                    rel_db(bin(x, w.start, to, Rate::Hz8000.hz() - hz).0),
                    residual_db(x, w.start, to, hz),
                )
            }
        };
        let (at_output, total_output) = levels(&w.output);
        let (at_engine, total_engine) = levels(&w.engine);
        assert!(
            at_output <= -50.0 && total_output <= -50.0,
            "{}: {hz} Hz input leaves {at_output:.1} dB at the folded frequency and \
             {total_output:.1} dB in total, needs -50 dB",
            name(from, to)
        );
        worst = Unwanted {
            at_output: worst.at_output.max(at_output),
            at_engine: worst.at_engine.max(at_engine),
            total_output: worst.total_output.max(total_output),
            total_engine: worst.total_engine.max(total_engine),
        };
    }
    worst
}

/// Delay measured from the phase of a 1 kHz tone, in output samples. The phase fixes it
/// modulo one period; the reported delay picks the period (the impulse test checks that
/// choice independently).
fn measured_delay(from: Rate, to: Rate, reported: f64) -> f64 {
    let w = tone_window(from, to, 1000);
    let (_, phase) = bin(&w.output, w.start, to, 1000);
    // Input sin(w n) comes out as sin(w (k - d)) = cos(w k - w d - π/2).
    let period = f64::from(to.hz()) / 1000.0;
    let d = -(phase + PI / 2.0) * period / (2.0 * PI);
    d + period * ((reported - d) / period).round()
}

fn reported_delay(r: &Resampler) -> f64 {
    r.delay().as_secs_f64() * f64::from(r.output_rate().hz())
}

#[test]
fn rates_round_trip_and_frame_sizes() {
    for rate in RATES {
        assert_eq!(Rate::try_from(rate.hz()), Ok(rate));
        assert_eq!(rate.frame_len() as u32 * FRAMES_PER_SECOND, rate.hz());
    }
    for hz in [0, 11_025, 32_000, 96_000, u32::MAX] {
        assert_eq!(
            Rate::try_from(hz),
            Err(ResampleError::UnsupportedRate { hz })
        );
    }
}

#[test]
fn only_the_listed_pairs_are_built() {
    for from in RATES {
        for to in RATES {
            let built = Resampler::new(from, to);
            if PAIRS.contains(&(from, to)) {
                let r = built.unwrap();
                assert_eq!((r.input_rate(), r.output_rate()), (from, to));
                assert_eq!(r.input_chunk(), from.frame_len());
                assert_eq!(r.output_chunk(), to.frame_len());
            } else {
                assert_eq!(
                    built.err(),
                    Some(ResampleError::UnsupportedPair { from, to })
                );
            }
        }
    }
    let chunks: Vec<_> = PAIRS
        .iter()
        .map(|&(from, to)| {
            let r = Resampler::new(from, to).unwrap();
            (r.input_chunk(), r.output_chunk())
        })
        .collect();
    assert_eq!(
        chunks,
        [
            (160, 320),
            (320, 160),
            (441, 160),
            (480, 160),
            (882, 160),
            (960, 160)
        ]
    );
}

#[test]
fn passband_is_flat_within_half_a_db() {
    for (from, to) in PAIRS {
        worst_passband_db(from, to);
    }
}

#[test]
fn aliases_and_images_are_50_db_down() {
    for (from, to) in PAIRS {
        worst_unwanted_db(from, to);
    }
}

#[test]
fn reported_delay_matches_a_tone_phase_measurement() {
    for (from, to) in PAIRS {
        let r = Resampler::new(from, to).unwrap();
        let reported = reported_delay(&r);
        let measured = measured_delay(from, to, reported);
        assert!(
            (measured - reported).abs() < 0.05,
            "{}: reported {reported:.3} samples, measured {measured:.3}",
            name(from, to)
        );
        assert_eq!(r.delay_samples(), reported.round() as usize);
        assert!(r.delay() <= Duration::from_millis(5), "{}", name(from, to));
    }
}

#[test]
fn impulse_lands_at_the_reported_delay() {
    for (from, to) in PAIRS {
        let mut r = Resampler::new(from, to).unwrap();
        // Two frames in, so the impulse's output position is a whole number of samples.
        let mut input = vec![0; 6 * from.frame_len()];
        input[2 * from.frame_len()] = 20_000;
        let out = convert(&mut r, &input);
        let peak = (0..out.len())
            .max_by_key(|&k| out[k].unsigned_abs())
            .unwrap();
        let expected = 2 * to.frame_len() + r.delay_samples();
        assert!(
            peak.abs_diff(expected) <= 1,
            "{}: impulse peak at {peak}, expected {expected}",
            name(from, to)
        );
    }
}

#[test]
fn reset_then_same_input_matches_a_fresh_converter() {
    for (from, to) in PAIRS {
        let mut used = Resampler::new(from, to).unwrap();
        let first = noise(1, 12 * from.frame_len());
        let second = noise(2, 12 * from.frame_len());
        convert(&mut used, &first);
        used.reset();
        let after_reset = convert(&mut used, &second);
        let fresh = convert(&mut Resampler::new(from, to).unwrap(), &second);
        assert_eq!(after_reset, fresh, "{}", name(from, to));
        // And a second reset in a row changes nothing.
        used.reset();
        used.reset();
        assert_eq!(convert(&mut used, &second), fresh, "{}", name(from, to));
    }
}

#[test]
fn bad_buffers_are_refused_and_leave_state_untouched() {
    for (from, to) in PAIRS {
        let (n_in, n_out) = (from.frame_len(), to.frame_len());
        let frame = noise(3, n_in + 1);
        let frame = &frame[..n_in];
        let long = noise(4, n_in + 1);
        let mut out = vec![0; n_out + 7];
        for reset_first in [false, true] {
            let mut r = Resampler::new(from, to).unwrap();
            if reset_first {
                // Exercises the refusals before the engine's startup call has run.
                r.reset();
            }
            for bad in [&frame[..n_in - 1], &long[..], &[][..]] {
                assert_eq!(
                    r.process(bad, &mut out),
                    Err(ResampleError::InputLength {
                        expected: n_in,
                        actual: bad.len()
                    })
                );
            }
            for short in [n_out - 1, 0] {
                assert_eq!(
                    r.process(frame, &mut out[..short]),
                    Err(ResampleError::OutputTooShort {
                        needed: n_out,
                        actual: short
                    })
                );
            }
            // Both wrong: the input is reported.
            assert!(matches!(
                r.process(&long, &mut []),
                Err(ResampleError::InputLength { .. })
            ));

            out.fill(12_345);
            assert_eq!(r.process(frame, &mut out), Ok(n_out));
            assert!(
                out[n_out..].iter().all(|&v| v == 12_345),
                "wrote past one frame"
            );
            let mut expected = vec![0; n_out];
            Resampler::new(from, to)
                .unwrap()
                .process(frame, &mut expected)
                .unwrap();
            assert_eq!(out[..n_out], expected[..], "{}", name(from, to));
        }
    }
}

#[test]
fn full_scale_overshoot_saturates_instead_of_wrapping() {
    for (from, to) in PAIRS {
        let mut r = Resampler::new(from, to).unwrap();
        // A full-scale 50 Hz square wave: one period per frame, 10 ms plateaus.
        let half = from.frame_len() / 2;
        let input: Vec<i16> = (0..20 * from.frame_len())
            .map(|n| {
                if n % from.frame_len() < half {
                    i16::MAX
                } else {
                    -i16::MAX
                }
            })
            .collect();
        let out = convert(&mut r, &input);
        assert!(
            out.contains(&i16::MAX),
            "{}: no overshoot clipped",
            name(from, to)
        );
        // Away from the edges (more than 3 ms, beyond the filter's reach) the output must
        // keep the plateau's sign: a wrapped sample would flip it.
        let per_frame = to.frame_len() as f64;
        let guard = 0.003 * f64::from(to.hz());
        for (k, &v) in out.iter().enumerate().skip(to.frame_len()) {
            let t = (k as f64 - reported_delay(&r)).rem_euclid(per_frame);
            let to_edge = t.min((t - per_frame / 2.0).abs()).min(per_frame - t);
            if to_edge > guard {
                let positive = t < per_frame / 2.0;
                assert_eq!(v > 0, positive, "{}: sample {k} = {v}", name(from, to));
            }
        }
    }
}

#[test]
fn conversion_to_i16_rounds_and_saturates() {
    let src = [1.5, -1.5, 0.999_99, -1.0, 0.5 / I16_SCALE, f32::NAN, 0.0];
    let mut dst = [0; 7];
    f32_to_i16(&src, &mut dst);
    assert_eq!(dst, [i16::MAX, i16::MIN, i16::MAX, i16::MIN, 1, 0, 0]);
}

#[test]
fn long_runs_keep_one_frame_per_call() {
    // The 22.05 and 44.1 kHz ratios are not exact in binary floating point; check the
    // engine's position bookkeeping does not drift into a short or long frame.
    for from in [Rate::Hz22050, Rate::Hz44100] {
        let mut r = Resampler::new(from, Rate::Hz8000).unwrap();
        convert(&mut r, &tone(from, 1000, 1500));
    }
}

/// Prints the measurement table for the README (`cargo test -- --nocapture`).
///
/// Unwanted levels are given for the i16 output and, in brackets, for the engine's output
/// before rounding: an alias more than about 96 dB down rounds to exact silence (`-inf`)
/// in i16, so only the unrounded figure shows how far down the filter actually puts it.
#[test]
fn quality_report() {
    let db = |v: f64| {
        if v.is_finite() {
            format!("{v:.1}")
        } else {
            "silent".to_owned()
        }
    };
    println!();
    println!(
        "| converter | delay reported (ms) | delay measured (ms) | worst passband dev (dB) \
         | worst alias/image at its frequency, dB: i16 out (before rounding) \
         | worst total unwanted, dB: i16 out (before rounding) |"
    );
    println!("|---|---|---|---|---|---|");
    for (from, to) in PAIRS {
        let r = Resampler::new(from, to).unwrap();
        let reported = reported_delay(&r);
        let measured = measured_delay(from, to, reported);
        let ms = |samples: f64| samples * 1000.0 / f64::from(to.hz());
        let passband = worst_passband_db(from, to);
        let u = worst_unwanted_db(from, to);
        println!(
            "| {} | {:.3} | {:.3} | {:+.3} | {} ({:.1}) | {} ({:.1}) |",
            name(from, to),
            ms(reported),
            ms(measured),
            passband,
            db(u.at_output),
            u.at_engine,
            db(u.total_output),
            u.total_engine,
        );
    }
}
