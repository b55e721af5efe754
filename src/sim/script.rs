//! The caller's side of a simulated call: a script of [`CallerStep`]s and the tick-by-tick
//! runner that turns it into 20 ms frames of caller audio.
//!
//! Owns: the step types, loading caller audio from 8 kHz WAV or raw µ-law files, the speech
//! bounds used by the latency figures ([`speech_bounds`]), and the runner that decides, once
//! per tick, what the caller sends. Between and after steps the caller sends silence, as a
//! real phone line does.
//!
//! Invariants: every step starts on a tick boundary (an `Audio` step whose length is not a
//! whole number of frames has its last frame padded with silence); waiting steps never wait
//! past their timeout; the runner is pure (no clock, no I/O): the call loop tells it what the
//! phone did this tick. It must never sleep or look at wall time: durations here are on the
//! simulated clock, so a script runs the same at any speed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::audio::frame::{FRAME_MS, FRAME_SAMPLES_8K};
use crate::audio::g711;
use crate::telephony::plivo::stream::is_dtmf_key;

/// Samples above this magnitude count as speech (≈ −50 dBFS, the fixtures' own threshold).
pub const SPEECH_THRESHOLD: i16 = 100;

/// Samples per millisecond at 8 kHz.
const SAMPLES_PER_MS: f64 = 8.0;

/// One step of what the caller does.
#[derive(Debug, Clone, PartialEq)]
pub enum CallerStep {
    /// Say this 8 kHz PCM16 audio.
    Audio(Vec<i16>),
    /// Stay silent this long.
    Silence(Duration),
    /// Stay silent until the phone has started playing agent audio (at or after the step's
    /// start), then for `then` more.
    UntilAgentHeard {
        /// Silence kept after the agent was first heard.
        then: Duration,
    },
    /// Stay silent until the agent's turn has finished playing: the phone is idle and an agent
    /// turn has ended (checkpoint played or cleared) since the caller last finished speaking.
    /// Gives up after `timeout`.
    UntilAgentSilent {
        /// Longest wait.
        timeout: Duration,
    },
    /// Stay silent until the agent is done: an agent turn has ended since the caller last
    /// spoke or pressed a key, and the phone has then stayed idle for `quiet` (so a greeting
    /// followed by a question counts as one). Gives up after `timeout`.
    WaitAgent {
        /// Longest wait.
        timeout: Duration,
        /// Idle time that means the agent has finished.
        quiet: Duration,
    },
    /// Stay silent until the other side hangs up; gives up after `timeout` and goes on.
    WaitHangup {
        /// Longest wait.
        timeout: Duration,
    },
    /// Press these keys (`0-9`, `*`, `#`, `A-D`), one `dtmf` message per digit and tick.
    Dtmf(String),
    /// Hang up now.
    Hangup,
}

impl CallerStep {
    /// A short name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Audio(_) => "audio",
            Self::Silence(_) => "silence",
            Self::UntilAgentHeard { .. } => "until_agent_heard",
            Self::UntilAgentSilent { .. } => "until_agent_silent",
            Self::WaitAgent { .. } => "wait_agent",
            Self::WaitHangup { .. } => "wait_hangup",
            Self::Dtmf(_) => "dtmf",
            Self::Hangup => "hangup",
        }
    }
}

/// Why caller audio or a script could not be used.
#[derive(Debug, Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The WAV file is damaged or not a WAV file.
    #[error("reading WAV {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What hound found.
        source: hound::Error,
    },
    /// The WAV file is not 8 kHz mono 16-bit PCM.
    #[error(
        "{path} is {rate} Hz, {channels} channel(s), {bits}-bit; caller audio must be 8000 Hz mono 16-bit PCM (convert it, e.g. `sox in.wav -r 8000 -c 1 -b 16 out.wav`)"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// Its sample rate.
        rate: u32,
        /// Its channel count.
        channels: u16,
        /// Its bits per sample.
        bits: u16,
    },
    /// The file name ends in neither `.wav` nor `.ulaw`.
    #[error("{0}: caller audio must be a .wav (8 kHz mono PCM16) or a raw .ulaw file")]
    UnknownExtension(PathBuf),
    /// A `Dtmf` step holds a character that is not a key.
    #[error("{0:?} is not a DTMF key (0-9, *, #, A-D)")]
    BadDigit(char),
}

/// Reads an 8 kHz mono PCM16 WAV file; any other format is refused with a clear error.
pub fn load_wav(path: impl AsRef<Path>) -> Result<Vec<i16>, ScriptError> {
    let path = path.as_ref();
    let wav_err = |source| ScriptError::Wav {
        path: path.to_owned(),
        source,
    };
    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(source) => ScriptError::Io {
            path: path.to_owned(),
            source,
        },
        other => wav_err(other),
    })?;
    let spec = reader.spec();
    if spec.sample_rate != 8_000
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(ScriptError::Format {
            path: path.to_owned(),
            rate: spec.sample_rate,
            channels: spec.channels,
            bits: spec.bits_per_sample,
        });
    }
    reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(wav_err)
}

/// Reads a raw, headerless 8 kHz G.711 µ-law file.
pub fn load_ulaw(path: impl AsRef<Path>) -> Result<Vec<i16>, ScriptError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ScriptError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(bytes.iter().map(|&b| g711::ulaw_to_pcm(b)).collect())
}

/// An `Audio` step from a `.wav` (8 kHz mono PCM16) or `.ulaw` file, chosen by extension.
pub fn audio_step(path: impl AsRef<Path>) -> Result<CallerStep, ScriptError> {
    let path = path.as_ref();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("wav") => load_wav(path).map(CallerStep::Audio),
        Some("ulaw") | Some("mulaw") | Some("ul") => load_ulaw(path).map(CallerStep::Audio),
        _ => Err(ScriptError::UnknownExtension(path.to_owned())),
    }
}

/// Checks every step can run (DTMF keys are valid).
pub fn validate(script: &[CallerStep]) -> Result<(), ScriptError> {
    for step in script {
        if let CallerStep::Dtmf(digits) = step
            && let Some(bad) = digits.chars().find(|c| !is_dtmf_key(*c))
        {
            return Err(ScriptError::BadDigit(bad));
        }
    }
    Ok(())
}

/// First and one-past-last sample with magnitude above [`SPEECH_THRESHOLD`], if any.
pub fn speech_bounds(samples: &[i16]) -> Option<(usize, usize)> {
    let loud = |s: &i16| s.unsigned_abs() > SPEECH_THRESHOLD.unsigned_abs();
    let first = samples.iter().position(loud)?;
    let last = samples.iter().rposition(loud)?;
    Some((first, last + 1))
}

/// Ticks a duration on the simulated clock lasts, rounded up.
pub(crate) fn ticks_for(d: Duration) -> u64 {
    let frame = u128::from(FRAME_MS) * 1_000_000;
    d.as_nanos().div_ceil(frame) as u64
}

/// Milliseconds on the simulated clock at the start of `tick`.
pub(crate) fn tick_ms(tick: u64) -> f64 {
    (tick * FRAME_MS) as f64
}

/// What the phone did this tick, as the runner needs it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PhoneView {
    /// The phone played agent audio in this tick.
    pub agent_heard: bool,
    /// No agent turn is playing and nothing is buffered.
    pub idle: bool,
    /// Agent turns finished so far (checkpoint played or cleared).
    pub turns_completed: u64,
}

/// A caller `Audio` step as it ran, for the per-turn figures.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallerTurn {
    /// Index of the step in the script.
    pub step: usize,
    /// Tick the step started at.
    pub start_tick: u64,
    /// Ticks the step lasted.
    pub ticks: u64,
    /// First speech sample, ms on the simulated clock.
    pub onset_ms: Option<f64>,
    /// One past the last speech sample, ms on the simulated clock.
    pub end_ms: Option<f64>,
}

/// Something the script did this tick that the timeline records.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ScriptEvent {
    /// Step `index` of kind `kind` began.
    StepStarted { index: usize, kind: &'static str },
    /// A waiting step gave up.
    WaitTimedOut { index: usize },
}

/// What the caller does in one tick.
#[derive(Debug, Default)]
pub(crate) struct TickPlan {
    /// The caller's 20 ms of audio.
    pub frame: Vec<i16>,
    /// A key pressed this tick.
    pub dtmf: Option<char>,
    /// Script events, in order.
    pub events: Vec<ScriptEvent>,
    /// The script ended at the start of this tick (the frame is then empty and unsent).
    pub finish: Option<Finish>,
}

/// Where the runner is inside the current step.
#[derive(Debug)]
enum StepState {
    NotStarted,
    Audio { offset: usize },
    Silence { left: u64 },
    Heard { waited: u64, then_left: Option<u64> },
    Silent { waited: u64 },
    Done { waited: u64, idle: u64 },
    Hangup { waited: u64 },
    Dtmf { next: usize },
}

/// How the script ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Every step ran.
    Done,
    /// A `Hangup` step.
    Hangup,
}

/// Turns the script into one frame per tick. Pure: the call loop supplies the phone's state.
pub(crate) struct Runner {
    script: Vec<CallerStep>,
    index: usize,
    state: StepState,
    /// Longest wait for `UntilAgentHeard`, in ticks.
    heard_limit: u64,
    /// Agent turns completed when the caller last finished an `Audio` step.
    turns_at_last_audio: u64,
    /// Agent turns completed when the caller last finished an `Audio` or `Dtmf` step.
    turns_at_last_action: u64,
    turns: Vec<CallerTurn>,
}

impl Runner {
    /// A runner for `script`; `UntilAgentHeard` waits at most `heard_timeout`.
    pub fn new(script: Vec<CallerStep>, heard_timeout: Duration) -> Self {
        Self {
            script,
            index: 0,
            state: StepState::NotStarted,
            heard_limit: ticks_for(heard_timeout),
            turns_at_last_audio: 0,
            turns_at_last_action: 0,
            turns: Vec::new(),
        }
    }

    /// The caller `Audio` steps run so far.
    pub fn turns(&self) -> &[CallerTurn] {
        &self.turns
    }

    /// Steps that have not started, as `index:kind` (what a hang-up by the other side cut
    /// off). The step in progress is not among them.
    pub fn not_started(&self) -> Vec<String> {
        let from = match self.state {
            StepState::NotStarted => self.index,
            _ => self.index + 1,
        };
        self.script
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, step)| format!("{i}:{}", step.kind()))
            .collect()
    }

    /// Plans tick `tick`; [`TickPlan::finish`] says the script is over.
    pub fn tick(&mut self, tick: u64, phone: PhoneView) -> TickPlan {
        let mut plan = TickPlan::default();
        loop {
            let Some(step) = self.script.get(self.index) else {
                plan.finish = Some(Finish::Done);
                return plan;
            };
            if matches!(self.state, StepState::NotStarted) {
                plan.events.push(ScriptEvent::StepStarted {
                    index: self.index,
                    kind: step.kind(),
                });
                self.state = match step {
                    CallerStep::Audio(samples) => {
                        let bounds = speech_bounds(samples);
                        let start = tick_ms(tick);
                        self.turns.push(CallerTurn {
                            step: self.index,
                            start_tick: tick,
                            ticks: samples.len().div_ceil(FRAME_SAMPLES_8K) as u64,
                            onset_ms: bounds.map(|(a, _)| start + a as f64 / SAMPLES_PER_MS),
                            end_ms: bounds.map(|(_, b)| start + b as f64 / SAMPLES_PER_MS),
                        });
                        StepState::Audio { offset: 0 }
                    }
                    CallerStep::Silence(d) => StepState::Silence {
                        left: ticks_for(*d),
                    },
                    CallerStep::UntilAgentHeard { .. } => StepState::Heard {
                        waited: 0,
                        then_left: None,
                    },
                    CallerStep::UntilAgentSilent { .. } => StepState::Silent { waited: 0 },
                    CallerStep::WaitAgent { .. } => StepState::Done { waited: 0, idle: 0 },
                    CallerStep::WaitHangup { .. } => StepState::Hangup { waited: 0 },
                    CallerStep::Dtmf(_) => StepState::Dtmf { next: 0 },
                    CallerStep::Hangup => {
                        plan.finish = Some(Finish::Hangup);
                        return plan;
                    }
                };
            }
            if self.advance(phone, &mut plan) {
                return plan;
            }
            // The step ended without using this tick: start the next one now.
            match self.script[self.index] {
                CallerStep::Audio(_) => {
                    self.turns_at_last_audio = phone.turns_completed;
                    self.turns_at_last_action = phone.turns_completed;
                }
                CallerStep::Dtmf(_) => self.turns_at_last_action = phone.turns_completed,
                _ => {}
            }
            self.index += 1;
            self.state = StepState::NotStarted;
        }
    }

    /// Runs the current step for this tick: `true` if it used the tick, `false` if the step
    /// is over and the next one should start in this same tick.
    fn advance(&mut self, phone: PhoneView, plan: &mut TickPlan) -> bool {
        let index = self.index;
        let step = &self.script[index];
        let used = match (&mut self.state, step) {
            (StepState::Audio { offset }, CallerStep::Audio(samples)) => {
                if *offset >= samples.len() {
                    false
                } else {
                    let end = (*offset + FRAME_SAMPLES_8K).min(samples.len());
                    plan.frame.extend_from_slice(&samples[*offset..end]);
                    *offset = end;
                    true
                }
            }
            (StepState::Silence { left }, _) => {
                if *left == 0 {
                    false
                } else {
                    *left -= 1;
                    true
                }
            }
            (StepState::Heard { waited, then_left }, CallerStep::UntilAgentHeard { then }) => {
                if then_left.is_none() && phone.agent_heard {
                    *then_left = Some(ticks_for(*then));
                }
                match then_left {
                    Some(0) => false,
                    Some(left) => {
                        *left -= 1;
                        true
                    }
                    None if *waited >= self.heard_limit => {
                        plan.events.push(ScriptEvent::WaitTimedOut { index });
                        false
                    }
                    None => {
                        *waited += 1;
                        true
                    }
                }
            }
            (StepState::Silent { waited }, CallerStep::UntilAgentSilent { timeout }) => {
                if phone.idle && phone.turns_completed > self.turns_at_last_audio {
                    false
                } else if *waited >= ticks_for(*timeout) {
                    plan.events.push(ScriptEvent::WaitTimedOut { index });
                    false
                } else {
                    *waited += 1;
                    true
                }
            }
            (StepState::Done { waited, idle }, CallerStep::WaitAgent { timeout, quiet }) => {
                let answered = phone.turns_completed > self.turns_at_last_action;
                *idle = if answered && phone.idle { *idle + 1 } else { 0 };
                if answered && *idle > ticks_for(*quiet) {
                    false
                } else if *waited >= ticks_for(*timeout) {
                    plan.events.push(ScriptEvent::WaitTimedOut { index });
                    false
                } else {
                    *waited += 1;
                    true
                }
            }
            (StepState::Hangup { waited }, CallerStep::WaitHangup { timeout }) => {
                if *waited >= ticks_for(*timeout) {
                    plan.events.push(ScriptEvent::WaitTimedOut { index });
                    false
                } else {
                    *waited += 1;
                    true
                }
            }
            (StepState::Dtmf { next }, CallerStep::Dtmf(digits)) => {
                match digits.chars().nth(*next) {
                    Some(c) => {
                        plan.dtmf = Some(c);
                        *next += 1;
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if used {
            plan.frame.resize(FRAME_SAMPLES_8K, 0);
        }
        used
    }
}

#[cfg(test)]
mod tests;
