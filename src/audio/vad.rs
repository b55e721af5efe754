//! Voice activity detection on the caller's 8 kHz audio, with start/end smoothing.
//!
//! Owns one webrtc-vad (libfvad) instance per call and the smoothing state machine on top
//! of its per-frame decisions. Input is 20 ms frames of 8 kHz linear PCM ([`FRAME_SAMPLES`]
//! = 160 samples) straight from the G.711 decoder, before any resampling. Output is at most
//! one [`VadEvent`] per frame, stamped with the caller's media-clock timestamps.
//!
//! # Threading
//!
//! The webrtc-vad handle is a raw C pointer and not `Send`, so neither is
//! [`VoiceDetector`]: build it with [`VoiceDetector::new`] on the DSP thread that owns the
//! call. [`VadConfig`] is plain `Copy + Send + Sync` data and is what crosses threads.
//!
//! # Smoothing
//!
//! webrtc-vad reports every voiced decision of its classifier and then keeps reporting
//! "voiced" for a few more frames (its hangover, `kOverHangMax1*`/`kOverHangMax2*` in
//! libfvad's `vad_core.c`): at least [`VadMode::hold_ms`] (60 ms aggressive, 80 ms
//! otherwise), 100 or 140 ms after more than six voiced frames in a row. That minimum hold
//! always follows the classifier's last voiced frame, so both durations below are counted in
//! the classifier's terms, with the minimum hold accounted for:
//!
//! - **Start**: speech starts once reported-voiced frames have run `start_ms` plus the hold;
//!   anything shorter may be a blip of under `start_ms` stretched by the hold (webrtc-vad
//!   flags the first frame of the line-noise fixture exactly so). The run must be unbroken:
//!   the hold already bridges classifier gaps of up to its length, so a frame reported
//!   unvoiced ends the run. `onset_ms` is the timestamp of the run's first frame, which is
//!   always a classifier decision, never a hold.
//! - **End**: speech ends once at least `hangover_ms` has passed since the classifier's last
//!   voiced frame, i.e. after `hangover_ms` − hold of frames reported unvoiced; any voiced
//!   frame restarts the count. `end_ms` is the end of the last reported-voiced frame minus
//!   the minimum hold: on a gap-free clock, never before the end of the classifier's last
//!   voiced frame and at most 40 ms (aggressive) or 60 ms (otherwise) after it.
//!
//! # Invariants
//!
//! - Events alternate strictly, starting with `SpeechStarted`, and
//!   [`VoiceDetector::is_speaking`] is true exactly between a start and its end.
//! - Durations are counted in frames, never from timestamp differences: timestamps only label
//!   events, so a jump in the caller's clock cannot stretch or cut a decision.
//! - A rejected frame (wrong length) changes no state.
//!
//! # Allocation and locking budget
//!
//! [`VoiceDetector::new`] allocates the libfvad state once (one `malloc` inside C).
//! [`VoiceDetector::process`] and [`VoiceDetector::reset`] allocate nothing, take no lock,
//! do not log and do not panic.

use thiserror::Error;
use webrtc_vad::{SampleRate, Vad};

/// Sample rate the detector runs at, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 8_000;
/// Duration of one frame, in milliseconds.
pub const FRAME_MS: u32 = 20;
/// Samples in one frame: 20 ms at 8 kHz.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE_HZ * FRAME_MS / 1_000) as usize;
/// Longest accepted `start_ms`; longer would swallow short answers ("yes", "no") whole.
pub const MAX_START_MS: u32 = 1_000;
/// Longest accepted `hangover_ms`.
pub const MAX_HANGOVER_MS: u32 = 5_000;

/// webrtc-vad aggressiveness: higher modes report speech less readily (fewer false
/// positives on noise, more missed soft speech).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VadMode {
    /// Mode 0, most permissive.
    Quality,
    /// Mode 1.
    LowBitrate,
    /// Mode 2.
    #[default]
    Aggressive,
    /// Mode 3, most restrictive.
    VeryAggressive,
}

impl VadMode {
    /// Shortest time webrtc-vad keeps reporting "voiced" after its classifier stops, at 20 ms
    /// frames (`kOverHangMax1*[1]` in libfvad's `vad_core.c`).
    pub const fn hold_ms(self) -> u32 {
        match self {
            Self::Quality | Self::LowBitrate => 4 * FRAME_MS,
            Self::Aggressive | Self::VeryAggressive => 3 * FRAME_MS,
        }
    }

    fn to_webrtc(self) -> webrtc_vad::VadMode {
        match self {
            Self::Quality => webrtc_vad::VadMode::Quality,
            Self::LowBitrate => webrtc_vad::VadMode::LowBitrate,
            Self::Aggressive => webrtc_vad::VadMode::Aggressive,
            Self::VeryAggressive => webrtc_vad::VadMode::VeryAggressive,
        }
    }
}

impl TryFrom<u8> for VadMode {
    type Error = VadError;

    /// webrtc-vad's numbering: 0 (least aggressive) to 3 (most).
    fn try_from(mode: u8) -> Result<Self, VadError> {
        Ok(match mode {
            0 => Self::Quality,
            1 => Self::LowBitrate,
            2 => Self::Aggressive,
            3 => Self::VeryAggressive,
            _ => {
                return Err(VadError::Config {
                    field: "mode",
                    reason: "must be 0, 1, 2 or 3",
                });
            }
        })
    }
}

impl From<VadMode> for u8 {
    fn from(mode: VadMode) -> u8 {
        match mode {
            VadMode::Quality => 0,
            VadMode::LowBitrate => 1,
            VadMode::Aggressive => 2,
            VadMode::VeryAggressive => 3,
        }
    }
}

/// Detector settings. Plain data: `Copy` and `Send`, built once from the service config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VadConfig {
    /// webrtc-vad aggressiveness.
    pub mode: VadMode,
    /// Voiced audio needed to declare a start, in ms: a multiple of [`FRAME_MS`] in
    /// `FRAME_MS..=MAX_START_MS`.
    pub start_ms: u32,
    /// Unvoiced audio needed to declare an end, in ms: a multiple of [`FRAME_MS`], longer
    /// than the mode's [`VadMode::hold_ms`], at most [`MAX_HANGOVER_MS`].
    pub hangover_ms: u32,
}

impl Default for VadConfig {
    /// Aggressive, 60 ms start, 400 ms hangover, tuned on `fixtures/audio` (see the tests).
    /// The hangover rides over the pauses of up to 200 ms inside a sentence and still ends a
    /// turn about 150 ms before a 600 ms gap is over. Aggressive never triggers on the
    /// −48 dBFS line noise and finds every dialogue turn both over that noise and 30 dB below
    /// the fixture level (−50…−60 dBFS); very aggressive already misses onsets 20 dB down.
    fn default() -> Self {
        Self {
            mode: VadMode::Aggressive,
            start_ms: 60,
            hangover_ms: 400,
        }
    }
}

impl VadConfig {
    /// Checks both durations are whole frames within their bounds. The caller fails startup
    /// on error.
    pub fn validate(&self) -> Result<(), VadError> {
        check_ms("start_ms", self.start_ms, FRAME_MS, MAX_START_MS)?;
        let min_hangover = self.mode.hold_ms() + FRAME_MS;
        check_ms(
            "hangover_ms",
            self.hangover_ms,
            min_hangover,
            MAX_HANGOVER_MS,
        )
    }
}

fn check_ms(field: &'static str, ms: u32, min: u32, max: u32) -> Result<(), VadError> {
    let reason = if !ms.is_multiple_of(FRAME_MS) {
        "must be a multiple of the 20 ms frame"
    } else if ms < min {
        "is below its minimum (one frame; for hangover_ms, one frame more than the mode's hold)"
    } else if ms > max {
        "is above its maximum"
    } else {
        return Ok(());
    };
    Err(VadError::Config { field, reason })
}

/// What can go wrong; cheap to build and copy, never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum VadError {
    /// The frame was not [`FRAME_SAMPLES`] long. Nothing changed: the caller drops the frame.
    #[error("VAD frame must be {expected} samples, got {actual}")]
    FrameLength {
        /// Always [`FRAME_SAMPLES`].
        expected: usize,
        /// Length that was passed.
        actual: usize,
    },
    /// A config value is out of range. The caller fails startup.
    #[error("invalid VAD config: {field} {reason}")]
    Config {
        /// Name of the offending [`VadConfig`] field.
        field: &'static str,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// libfvad rejected a frame of valid length (not expected). The caller drops the frame
    /// and may [`VoiceDetector::reset`].
    #[error("webrtc-vad rejected the frame")]
    Backend,
}

/// A smoothed speech boundary. Times are on the caller's media clock, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// The caller started speaking.
    SpeechStarted {
        /// Timestamp of the first voiced frame of the run.
        onset_ms: u64,
        /// Timestamp of the frame on which the start was decided.
        at_ms: u64,
    },
    /// The caller stopped speaking.
    SpeechEnded {
        /// End of the last voiced frame, webrtc-vad's minimum hold taken off (see the
        /// module docs).
        end_ms: u64,
        /// Timestamp of the frame on which the end was decided.
        at_ms: u64,
    },
}

/// Per-call voice detector: webrtc-vad plus start/hangover smoothing. Not `Send`; see the
/// module docs.
pub struct VoiceDetector {
    vad: Vad,
    mode: VadMode,
    smoother: Smoother,
}

impl VoiceDetector {
    /// Validates `cfg` and builds the webrtc-vad instance (its only allocation).
    pub fn new(cfg: VadConfig) -> Result<Self, VadError> {
        cfg.validate()?;
        Ok(Self {
            vad: Vad::new_with_rate_and_mode(SampleRate::Rate8kHz, cfg.mode.to_webrtc()),
            mode: cfg.mode,
            smoother: Smoother::new(cfg),
        })
    }

    /// Classifies one 20 ms frame ([`FRAME_SAMPLES`] samples at 8 kHz) stamped
    /// `timestamp_ms` on the caller's clock; returns the start or end it completes, if any.
    ///
    /// A frame of any other length is rejected with [`VadError::FrameLength`] and leaves all
    /// state untouched.
    pub fn process(
        &mut self,
        frame: &[i16],
        timestamp_ms: u64,
    ) -> Result<Option<VadEvent>, VadError> {
        // Checked here, not left to libfvad: webrtc-vad 0.4 indexes `frame[0]` before
        // passing the length on, so an empty frame would panic inside it.
        if frame.len() != FRAME_SAMPLES {
            return Err(VadError::FrameLength {
                expected: FRAME_SAMPLES,
                actual: frame.len(),
            });
        }
        let voiced = self
            .vad
            .is_voice_segment(frame)
            .map_err(|()| VadError::Backend)?;
        Ok(self.smoother.step(voiced, timestamp_ms))
    }

    /// Whether the caller is speaking: after a `SpeechStarted` and before its `SpeechEnded`.
    pub fn is_speaking(&self) -> bool {
        matches!(self.smoother.state, State::Speaking { .. })
    }

    /// Forgets all history (webrtc-vad's noise model and the smoothing state) but keeps the
    /// configuration and the allocation. Speech cut off by a reset gets no `SpeechEnded`.
    pub fn reset(&mut self) {
        // fvad_reset also restores libfvad's default rate and mode, so set ours again. The
        // setters assert that libfvad accepted the value, which it always does for these.
        self.vad.reset();
        self.vad.set_sample_rate(SampleRate::Rate8kHz);
        self.vad.set_mode(self.mode.to_webrtc());
        self.smoother.state = State::Silence;
    }
}

/// Smoothing over webrtc-vad's per-frame decisions; apart from the FFI so that it can be
/// tested with exact decision sequences.
#[derive(Debug, Clone, Copy)]
struct Smoother {
    /// Reported voiced frames that make a start: `start_ms` plus the hold.
    start_frames: u32,
    /// Reported unvoiced frames that make an end: `hangover_ms` minus the hold.
    end_frames: u32,
    hold_ms: u64,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence,
    /// An unbroken run of voiced frames that may become speech.
    Rising {
        onset_ms: u64,
        voiced: u32,
    },
    Speaking {
        end_ms: u64,
        unvoiced: u32,
    },
}

impl Smoother {
    fn new(cfg: VadConfig) -> Self {
        let hold = cfg.mode.hold_ms();
        Self {
            start_frames: (cfg.start_ms + hold) / FRAME_MS,
            // validate() guarantees at least one frame; saturate rather than trust it here.
            end_frames: (cfg.hangover_ms.saturating_sub(hold) / FRAME_MS).max(1),
            hold_ms: u64::from(hold),
            state: State::Silence,
        }
    }

    fn step(&mut self, voiced: bool, ts: u64) -> Option<VadEvent> {
        let (next, event) = match (self.state, voiced) {
            (State::Silence | State::Rising { .. }, false) => (State::Silence, None),
            (State::Silence, true) => self.rise(ts, 1, ts),
            (State::Rising { onset_ms, voiced }, true) => self.rise(onset_ms, voiced + 1, ts),
            (State::Speaking { .. }, true) => (self.speaking(ts), None),
            (State::Speaking { end_ms, unvoiced }, false) if unvoiced + 1 >= self.end_frames => (
                State::Silence,
                Some(VadEvent::SpeechEnded { end_ms, at_ms: ts }),
            ),
            (State::Speaking { end_ms, unvoiced }, false) => (
                State::Speaking {
                    end_ms,
                    unvoiced: unvoiced + 1,
                },
                None,
            ),
        };
        self.state = next;
        event
    }

    fn rise(&self, onset_ms: u64, voiced: u32, ts: u64) -> (State, Option<VadEvent>) {
        if voiced >= self.start_frames {
            let event = VadEvent::SpeechStarted {
                onset_ms,
                at_ms: ts,
            };
            (self.speaking(ts), Some(event))
        } else {
            (State::Rising { onset_ms, voiced }, None)
        }
    }

    /// Speaking, with `ts` the last voiced frame.
    fn speaking(&self, ts: u64) -> State {
        let frame_end = ts.saturating_add(u64::from(FRAME_MS));
        State::Speaking {
            end_ms: frame_end.saturating_sub(self.hold_ms),
            unvoiced: 0,
        }
    }
}

#[cfg(test)]
mod tests {
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
}
