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
        // Round half away from zero, as `f32::round` does, but without its libm call
        // (baseline x86_64 has no rounding instruction): offset by ±0.5, then `as`, which
        // truncates, saturates out-of-range values and maps NaN to 0.
        let scaled = s * I16_SCALE;
        *d = (scaled + 0.5f32.copysign(scaled)) as i16;
    }
}

#[cfg(test)]
mod tests;
