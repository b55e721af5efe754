//! Streaming sample-rate conversion between the phone leg (8 kHz) and the agent's audio rates.
//!
//! Owns: [`Resampler`], one mono i16 converter per stream direction, built on rubato's
//! asynchronous sinc engine run at a fixed ratio. Supported pairs are 8 kHz → 16 kHz (caller
//! audio to STT) and 16 / 22.05 / 24 / 44.1 / 48 kHz → 8 kHz (TTS audio back to the phone);
//! every other pair is refused at construction.
//!
//! Invariants:
//! - One [`Resampler::process`] call takes exactly one 20 ms frame at the input rate
//!   ([`Resampler::input_chunk`]) and writes exactly one 20 ms frame at the output rate
//!   ([`Resampler::output_chunk`]), so frames never need re-chunking downstream.
//! - Quality on the telephone band, checked by the tests below on pure tones: 300–3400 Hz flat
//!   within ±0.5 dB, and anything that would alias or image into 0–3.4 kHz at least 50 dB down.
//!   One filter design serves every pair: a Blackman-Harris windowed sinc spanning 5 ms at
//!   the input rate, cut off at 3.85 kHz. Its transition band sits between 3.4 and 4.6 kHz,
//!   straddling the 4 kHz Nyquist of the phone side, so only content that lands above
//!   3.4 kHz is allowed to fold.
//! - The sinc is sampled with rubato's `Nearest` interpolation at an oversampling factor that
//!   hits every output position exactly (`fs_out / gcd(fs_in, fs_out)`), so the fixed-ratio
//!   conversion carries no polynomial-interpolation error.
//! - Delay is constant, linear phase, about 2.5 ms for every pair and at most 2.7 ms; the exact
//!   figure is reported by [`Resampler::delay`] and checked against measurement.
//! - Errors are a `Copy` enum; a call refused for its buffer sizes leaves the converter's state
//!   untouched.
//!
//! Allocation and locking budget: the constructor allocates the engine (sinc tables, at most
//! about 72 KiB for the 22.05 and 44.1 kHz pairs, a few KiB otherwise) and two `f32` scratch
//! frames. [`Resampler::process`] and [`Resampler::reset`] never allocate, lock or log.

use std::time::Duration;

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{
    Async, FixedAsync, Resampler as _, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Duration of audio per [`Resampler::process`] call, as a divisor of one second (20 ms).
const FRAMES_PER_SECOND: u32 = 50;

/// Length of the sinc filter in microseconds of input audio; the delay is about half of it.
///
/// The shortest Blackman-Harris sinc that clears both quality targets with margin: at 5 ms
/// the passband loses about 0.15 dB at 3.4 kHz and aliases from 4.6 kHz up are at least
/// 95 dB down (measured), below the i16 noise floor. Rounded up to a multiple of 8 taps.
const FILTER_SPAN_US: u64 = 5_000;

/// Cutoff of the anti-alias / anti-image filter, in Hz, for every pair.
///
/// A little under the 4 kHz phone-side Nyquist, which centres the transition band in the
/// 3.4–4.6 kHz gap the quality targets leave free.
const CUTOFF_HZ: f32 = 3850.0;

/// Full-scale factor between i16 samples and the engine's `f32` samples.
const I16_SCALE: f32 = 32768.0;

/// A sample rate the converters accept on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    /// 8 kHz: Plivo's G.711 µ-law leg.
    Hz8000,
    /// 16 kHz: wideband speech, the usual STT rate and a common TTS rate.
    Hz16000,
    /// 22.05 kHz TTS output.
    Hz22050,
    /// 24 kHz TTS output.
    Hz24000,
    /// 44.1 kHz TTS output.
    Hz44100,
    /// 48 kHz TTS output.
    Hz48000,
}

impl Rate {
    /// The rate in samples per second.
    pub const fn hz(self) -> u32 {
        match self {
            Rate::Hz8000 => 8_000,
            Rate::Hz16000 => 16_000,
            Rate::Hz22050 => 22_050,
            Rate::Hz24000 => 24_000,
            Rate::Hz44100 => 44_100,
            Rate::Hz48000 => 48_000,
        }
    }

    /// Samples in one 20 ms frame at this rate.
    pub const fn frame_len(self) -> usize {
        (self.hz() / FRAMES_PER_SECOND) as usize
    }
}

impl TryFrom<u32> for Rate {
    type Error = ResampleError;

    fn try_from(hz: u32) -> Result<Self, Self::Error> {
        match hz {
            8_000 => Ok(Rate::Hz8000),
            16_000 => Ok(Rate::Hz16000),
            22_050 => Ok(Rate::Hz22050),
            24_000 => Ok(Rate::Hz24000),
            44_100 => Ok(Rate::Hz44100),
            48_000 => Ok(Rate::Hz48000),
            _ => Err(ResampleError::UnsupportedRate { hz }),
        }
    }
}

/// Why a conversion was refused. `Copy`, never allocates.
///
/// What the caller does: `UnsupportedRate` and `UnsupportedPair` are configuration errors and
/// fail startup or the session; `InputLength` and `OutputTooShort` mean the caller framed the
/// audio wrongly, the frame is dropped and the converter is still usable; `Engine` means the
/// converter is in an unexpected state, so [`Resampler::reset`] it (or drop it).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ResampleError {
    /// The sample rate is not one of [`Rate`]'s.
    #[error("unsupported sample rate {hz} Hz")]
    UnsupportedRate {
        /// The rate that was asked for.
        hz: u32,
    },
    /// Both rates are known but there is no converter between them.
    #[error("no converter from {from:?} to {to:?}")]
    UnsupportedPair {
        /// Input rate asked for.
        from: Rate,
        /// Output rate asked for.
        to: Rate,
    },
    /// The input is not exactly one frame ([`Resampler::input_chunk`] samples).
    #[error("input has {actual} samples, expected exactly {expected}")]
    InputLength {
        /// Required input length.
        expected: usize,
        /// Length that was passed.
        actual: usize,
    },
    /// The output buffer cannot hold one frame ([`Resampler::output_chunk`] samples).
    #[error("output holds {actual} samples, needs at least {needed}")]
    OutputTooShort {
        /// Required output capacity.
        needed: usize,
        /// Capacity that was passed.
        actual: usize,
    },
    /// rubato refused to build or run the converter, or broke the fixed-frame contract.
    #[error("resampler engine: {reason}")]
    Engine {
        /// What went wrong.
        reason: &'static str,
    },
}

/// A streaming mono i16 sample-rate converter for one direction of one call.
///
/// `Send`, so it can live on the DSP worker that owns the call. Build it once per stream with
/// [`Resampler::new`], feed it one 20 ms frame per [`Resampler::process`] call, and
/// [`Resampler::reset`] it between unrelated streams.
#[derive(Debug)]
pub struct Resampler {
    from: Rate,
    to: Rate,
    engine: Async<f32>,
    input_chunk: usize,
    output_chunk: usize,
    /// Input frame converted to `f32`, `input_chunk` long.
    input_f32: Vec<f32>,
    /// Engine output, `engine.output_frames_max()` long (a little over `output_chunk`).
    output_f32: Vec<f32>,
    /// Whether the engine has been run through its startup call (see [`Resampler::prime`]).
    primed: bool,
    /// Output frames the engine produces on its very first call after a reset.
    first_call_frames: usize,
    delay: Duration,
    delay_samples: usize,
}

// The converter lives on a DSP worker thread; keep that possible.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Resampler>();
};

impl Resampler {
    /// Builds the converter from `from` to `to`, allocating everything it will use.
    ///
    /// Supported: 8 kHz → 16 kHz, and 16 / 22.05 / 24 / 44.1 / 48 kHz → 8 kHz; any other pair
    /// returns [`ResampleError::UnsupportedPair`].
    pub fn new(from: Rate, to: Rate) -> Result<Self, ResampleError> {
        let supported = matches!(
            (from, to),
            (Rate::Hz8000, Rate::Hz16000)
                | (
                    Rate::Hz16000 | Rate::Hz22050 | Rate::Hz24000 | Rate::Hz44100 | Rate::Hz48000,
                    Rate::Hz8000
                )
        );
        if !supported {
            return Err(ResampleError::UnsupportedPair { from, to });
        }

        let (fs_in, fs_out) = (from.hz(), to.hz());
        let ratio = f64::from(fs_out) / f64::from(fs_in);
        // rubato rounds the sinc up to a multiple of 8; do it here so the delay below uses the
        // length that is actually built.
        let sinc_len =
            ((u64::from(fs_in) * FILTER_SPAN_US).div_ceil(1_000_000) as usize).next_multiple_of(8);
        // Output k sits at input position k * fs_in / fs_out, whose fractional part is always a
        // multiple of 1 / (fs_out / gcd), so that many sinc phases make `Nearest` exact.
        let oversampling = (fs_out / gcd(fs_in, fs_out)) as usize;
        let params = SincInterpolationParameters {
            sinc_len,
            // Relative to the lower Nyquist (4 kHz here); rubato scales it when downsampling.
            f_cutoff: Some(CUTOFF_HZ / 4000.0),
            oversampling_factor: oversampling,
            interpolation: SincInterpolationType::Nearest,
            window: WindowFunction::BlackmanHarris,
        };
        let input_chunk = from.frame_len();
        let output_chunk = to.frame_len();
        let engine = Async::<f32>::new_sinc(ratio, 1.0, &params, input_chunk, 1, FixedAsync::Input)
            .map_err(|_| ResampleError::Engine {
                reason: "rubato refused the sinc resampler parameters",
            })?;
        let first_call_frames = engine.output_frames_next();
        let output_f32 = vec![0.0; engine.output_frames_max().max(output_chunk)];
        if first_call_frames == 0 || first_call_frames > output_chunk {
            return Err(ResampleError::Engine {
                reason: "unexpected startup output size",
            });
        }

        // Delay, in output samples. rubato's `output_delay()` is the sinc half-length in output
        // samples, `sinc_len / 2 * ratio`, rounded down. Two details of the Async engine move
        // the real figure off it: its first output is centred `1 / oversampling` input samples
        // past the half-length, one step early (initial read index `1 - sinc_len`; table phase
        // `p` centred on `sinc_len / 2 - 1 + (p + 1) / oversampling`), and its first call
        // yields `shortfall` frames fewer than a steady one, which the primed stream makes up
        // by emitting that startup call as silence. Hence the `- 1 / oversampling` and the
        // `+ shortfall - 1` below. Tests measure the result to within 0.05 samples.
        let shortfall = (output_chunk - first_call_frames) as f64;
        let delay_out =
            (sinc_len as f64 / 2.0 - 1.0 / oversampling as f64) * ratio + shortfall - 1.0;
        let delay = Duration::from_secs_f64(delay_out / f64::from(fs_out));

        let mut resampler = Resampler {
            from,
            to,
            engine,
            input_chunk,
            output_chunk,
            input_f32: vec![0.0; input_chunk],
            output_f32,
            primed: false,
            first_call_frames,
            delay,
            delay_samples: delay_out.round() as usize,
        };
        resampler.prime()?;
        Ok(resampler)
    }

    /// The input rate.
    pub fn input_rate(&self) -> Rate {
        self.from
    }

    /// The output rate.
    pub fn output_rate(&self) -> Rate {
        self.to
    }

    /// Samples every [`Resampler::process`] call takes: 20 ms at the input rate.
    pub fn input_chunk(&self) -> usize {
        self.input_chunk
    }

    /// Samples every [`Resampler::process`] call writes: 20 ms at the output rate.
    pub fn output_chunk(&self) -> usize {
        self.output_chunk
    }

    /// Converts one frame: reads exactly [`Resampler::input_chunk`] samples from `input`,
    /// writes exactly [`Resampler::output_chunk`] samples to the start of `output` and returns
    /// that count. Output samples are saturated to the i16 range.
    ///
    /// Errors, checked in this order, leave the converter untouched (drop the frame):
    /// [`ResampleError::InputLength`] when `input` is not exactly one frame, then
    /// [`ResampleError::OutputTooShort`] when `output` is shorter than one frame.
    /// [`ResampleError::Engine`] means rubato misbehaved; [`Resampler::reset`] before reuse.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, ResampleError> {
        if input.len() != self.input_chunk {
            return Err(ResampleError::InputLength {
                expected: self.input_chunk,
                actual: input.len(),
            });
        }
        let out_len = output.len();
        let Some(output) = output.get_mut(..self.output_chunk) else {
            return Err(ResampleError::OutputTooShort {
                needed: self.output_chunk,
                actual: out_len,
            });
        };
        if !self.primed {
            self.prime()?;
        }
        i16_to_f32(input, &mut self.input_f32);
        let produced = self.run_engine()?;
        if produced != self.output_chunk {
            return Err(ResampleError::Engine {
                reason: "engine broke the fixed frame size",
            });
        }
        f32_to_i16(&self.output_f32[..self.output_chunk], output);
        Ok(self.output_chunk)
    }

    /// The converter's constant delay: an event at input time `t` comes out at `t + delay()`.
    ///
    /// Derived from rubato's `output_delay` (the sinc half-length) plus the engine's startup
    /// alignment; never more than about 2.7 ms for the supported pairs.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// [`Resampler::delay`] in output-rate samples, rounded to the nearest sample.
    pub fn delay_samples(&self) -> usize {
        self.delay_samples
    }

    /// Forgets all audio seen so far, as if freshly built; keeps every buffer.
    ///
    /// Cheap (clears the engine's history); the engine's startup call runs with the next
    /// [`Resampler::process`].
    pub fn reset(&mut self) {
        self.engine.reset();
        self.primed = false;
    }

    /// Runs the engine's first, short call on silence and discards it.
    ///
    /// rubato's fixed-input engine yields a few frames fewer on its first call (it holds back
    /// look-ahead); after it, every call yields exactly one output frame. Feeding that first
    /// call zeros keeps the public contract of one frame in, one frame out; the shift it adds
    /// is counted in the delay.
    fn prime(&mut self) -> Result<(), ResampleError> {
        self.input_f32.fill(0.0);
        let produced = self.run_engine()?;
        if produced != self.first_call_frames
            || self.engine.output_frames_next() != self.output_chunk
        {
            return Err(ResampleError::Engine {
                reason: "engine did not settle on one output frame per call",
            });
        }
        self.primed = true;
        Ok(())
    }

    /// One engine call from `input_f32` into `output_f32`; returns the frames produced.
    fn run_engine(&mut self) -> Result<usize, ResampleError> {
        const ADAPTER: ResampleError = ResampleError::Engine {
            reason: "scratch buffers do not match the engine",
        };
        let input =
            SequentialSlice::new(&self.input_f32[..], 1, self.input_chunk).map_err(|_| ADAPTER)?;
        let frames_out = self.output_f32.len();
        let mut output = SequentialSlice::new_mut(&mut self.output_f32[..], 1, frames_out)
            .map_err(|_| ADAPTER)?;
        let (consumed, produced) = self
            .engine
            .process_into_buffer(&input, &mut output, None)
            .map_err(|_| ResampleError::Engine {
                reason: "rubato refused the frame",
            })?;
        if consumed != self.input_chunk {
            return Err(ResampleError::Engine {
                reason: "engine did not consume one input frame",
            });
        }
        Ok(produced)
    }
}

/// Greatest common divisor, for the oversampling factor.
const fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// i16 → `f32` in [-1, 1). `dst` and `src` have the same length.
fn i16_to_f32(src: &[i16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32::from(s) / I16_SCALE;
    }
}

/// `f32` → i16, rounding to nearest and saturating out-of-range values (filter overshoot on
/// full-scale input) instead of wrapping. `dst` and `src` have the same length.
fn f32_to_i16(src: &[f32], dst: &mut [i16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        // `as` saturates (and maps NaN to 0); the clamp says so explicitly.
        *d = (s * I16_SCALE)
            .round()
            .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
    }
}

#[cfg(test)]
mod tests {
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
}
