//! The simulated phone: what Plivo does with the audio a server sends back.
//!
//! Owns: the playout buffer (8 kHz PCM16), checkpoint markers and the agent-turn state.
//! `playAudio` appends to the buffer ([`Phone::play_payload`]); every 20 ms tick the phone
//! plays one frame from it ([`Phone::tick`]), silence when it is empty; `checkpoint` puts a
//! marker at the current end of the buffer, and the marker is reported reached at the start
//! of the first tick after playback has passed it, so its `playedStream` is never sent before
//! its audio was heard; `clearAudio` empties the buffer and drops the markers in it, which are
//! then never reported (Plivo sends no ack for cleared checkpoints).
//!
//! An agent turn starts when the phone plays agent audio while idle and ends when a
//! checkpoint marker is reached or the buffer is cleared.
//!
//! Invariants: positions are counted in 8 kHz samples since the call began, so a marker's
//! position never moves; a tick always yields exactly one 160-sample frame. 16 kHz L16
//! audio is converted to 8 kHz with [`crate::audio::resample`] in whole 20 ms blocks; a
//! partial block is flushed (zero-padded, trimmed back to its length) at a checkpoint or when
//! the phone would otherwise run dry, so a marker always sits at the end of its audio.
//!
//! Never: touches a clock, a socket or a lock. The call loop owns the timing.

use std::collections::VecDeque;

use thiserror::Error;

use crate::audio::frame::FRAME_SAMPLES_8K;
use crate::audio::resample::{Rate, Resampler};
use crate::telephony::plivo::stream::{MediaFormat, PayloadError, decode_payload};

/// Why a `playAudio` payload was not played.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PlayError {
    /// `contentType`/`sampleRate` name no format Plivo plays.
    #[error("unsupported playAudio format {content_type:?} at {sample_rate} Hz")]
    Format {
        /// `media.contentType` as sent.
        content_type: String,
        /// `media.sampleRate` as sent.
        sample_rate: u32,
    },
    /// The payload could not be decoded.
    #[error("playAudio payload: {0}")]
    Payload(PayloadError),
}

/// What one tick of playback did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TickOutcome {
    /// Agent samples played this tick (0..=160); the rest of the frame was silence.
    pub agent_samples: usize,
    /// Checkpoints whose audio finished playing before this tick, in order.
    pub reached: Vec<String>,
    /// An agent turn started with this tick's audio.
    pub turn_started: bool,
    /// An agent turn ended at the start of this tick (its checkpoint was reached).
    pub turn_ended: bool,
}

/// What a `clearAudio` dropped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Cleared {
    /// Buffered agent samples dropped (8 kHz).
    pub samples: usize,
    /// Checkpoints dropped with them; they will never be acknowledged.
    pub checkpoints: Vec<String>,
    /// An agent turn was playing and ended here.
    pub turn_ended: bool,
}

/// Plivo's side of the playback: buffer, markers, turn state.
pub struct Phone {
    buffer: VecDeque<i16>,
    /// Agent samples played since the call began.
    played: u64,
    /// Checkpoints not yet reached, as (position, name), in position order.
    markers: VecDeque<(u64, String)>,
    in_turn: bool,
    turns_completed: u64,
    wide: Option<Wideband>,
    scratch: Vec<u8>,
    decoded: Vec<i16>,
}

/// 16 kHz → 8 kHz conversion in whole 20 ms blocks.
struct Wideband {
    resampler: Resampler,
    pending: Vec<i16>,
    out: Vec<i16>,
}

impl Wideband {
    /// The converter, built on first use.
    fn get(slot: &mut Option<Wideband>) -> Option<&mut Wideband> {
        if slot.is_none() {
            // 16 → 8 kHz is a supported pair; a failure here would be a bug in resample.
            let resampler = Resampler::new(Rate::Hz16000, Rate::Hz8000).ok()?;
            let out = vec![0; resampler.output_chunk()];
            *slot = Some(Wideband {
                resampler,
                pending: Vec::new(),
                out,
            });
        }
        slot.as_mut()
    }
}

impl Default for Phone {
    fn default() -> Self {
        Self::new()
    }
}

impl Phone {
    /// An idle phone with an empty buffer.
    pub fn new() -> Self {
        Self {
            buffer: VecDeque::new(),
            played: 0,
            markers: VecDeque::new(),
            in_turn: false,
            turns_completed: 0,
            wide: None,
            scratch: Vec::new(),
            decoded: Vec::new(),
        }
    }

    /// Decodes a `playAudio` payload by its `contentType`/`sampleRate` and queues it.
    /// Returns the 8 kHz samples queued (for 16 kHz audio, an estimate: half the input).
    pub fn play_payload(
        &mut self,
        content_type: &str,
        sample_rate: u32,
        payload: &str,
    ) -> Result<usize, PlayError> {
        let format = MediaFormat::from_plivo(content_type, sample_rate).ok_or_else(|| {
            PlayError::Format {
                content_type: content_type.to_owned(),
                sample_rate,
            }
        })?;
        self.scratch.resize(payload.len() / 4 * 3 + 3, 0);
        self.decoded.resize(self.scratch.len(), 0);
        let n = decode_payload(payload, format, &mut self.scratch, &mut self.decoded)
            .map_err(PlayError::Payload)?;
        let samples = std::mem::take(&mut self.decoded);
        let queued = match format {
            MediaFormat::MuLaw8k | MediaFormat::L16At8k => {
                self.play_8k(&samples[..n]);
                n
            }
            MediaFormat::L16At16k => {
                self.play_16k(&samples[..n]);
                n / 2
            }
        };
        self.decoded = samples;
        Ok(queued)
    }

    /// Queues 8 kHz samples.
    pub fn play_8k(&mut self, samples: &[i16]) {
        self.buffer.extend(samples.iter().copied());
    }

    /// Queues 16 kHz samples (converted to 8 kHz in whole 20 ms blocks).
    pub fn play_16k(&mut self, samples: &[i16]) {
        let Some(wide) = Wideband::get(&mut self.wide) else {
            return;
        };
        wide.pending.extend_from_slice(samples);
        let chunk = wide.resampler.input_chunk();
        let mut start = 0;
        while wide.pending.len() - start >= chunk {
            if let Ok(n) = wide
                .resampler
                .process(&wide.pending[start..start + chunk], &mut wide.out)
            {
                self.buffer.extend(wide.out[..n].iter().copied());
            }
            start += chunk;
        }
        wide.pending.drain(..start);
    }

    /// Converts a partial 16 kHz block: zero-padded through the converter, trimmed back.
    fn flush_wideband(&mut self) {
        let Some(wide) = self.wide.as_mut() else {
            return;
        };
        if wide.pending.is_empty() {
            return;
        }
        let keep = wide.pending.len() / 2;
        wide.pending.resize(wide.resampler.input_chunk(), 0);
        if let Ok(n) = wide.resampler.process(&wide.pending, &mut wide.out) {
            self.buffer.extend(wide.out[..n.min(keep)].iter().copied());
        }
        wide.pending.clear();
    }

    /// Puts a marker named `name` at the current end of the buffer.
    pub fn checkpoint(&mut self, name: &str) {
        self.flush_wideband();
        let at = self.played + self.buffer.len() as u64;
        self.markers.push_back((at, name.to_owned()));
    }

    /// Empties the buffer and drops the markers inside it.
    pub fn clear(&mut self) -> Cleared {
        let samples = self.buffer.len();
        self.buffer.clear();
        if let Some(wide) = self.wide.as_mut() {
            wide.pending.clear();
            wide.resampler.reset();
        }
        // Markers at or before the playback position were already passed: their audio was
        // heard, so they are still acknowledged at the next tick.
        let keep = self.markers.iter().take_while(|(at, _)| *at <= self.played);
        let keep = keep.count();
        let checkpoints = self.markers.drain(keep..).map(|(_, name)| name).collect();
        let turn_ended = std::mem::take(&mut self.in_turn);
        if turn_ended {
            self.turns_completed += 1;
        }
        Cleared {
            samples,
            checkpoints,
            turn_ended,
        }
    }

    /// Plays one 20 ms tick into `frame` (160 samples, silence where the buffer ran out).
    pub fn tick(&mut self, frame: &mut [i16; FRAME_SAMPLES_8K]) -> TickOutcome {
        let mut out = TickOutcome::default();
        while let Some((at, _)) = self.markers.front() {
            if *at > self.played {
                break;
            }
            if let Some((_, name)) = self.markers.pop_front() {
                out.reached.push(name);
            }
            if std::mem::take(&mut self.in_turn) {
                self.turns_completed += 1;
                out.turn_ended = true;
            }
        }
        if self.buffer.len() < FRAME_SAMPLES_8K {
            self.flush_wideband();
        }
        let n = self.buffer.len().min(FRAME_SAMPLES_8K);
        for (slot, sample) in frame.iter_mut().zip(self.buffer.drain(..n)) {
            *slot = sample;
        }
        frame[n..].fill(0);
        self.played += n as u64;
        out.agent_samples = n;
        if n > 0 && !self.in_turn {
            self.in_turn = true;
            out.turn_started = true;
        }
        out
    }

    /// Samples waiting to be played (8 kHz).
    pub fn buffered(&self) -> usize {
        self.buffer.len() + self.wide.as_ref().map_or(0, |w| w.pending.len() / 2)
    }

    /// Checkpoints queued and not yet reached.
    pub fn pending_checkpoints(&self) -> usize {
        self.markers.len()
    }

    /// No agent turn is playing and nothing is buffered.
    pub fn is_idle(&self) -> bool {
        !self.in_turn && self.buffered() == 0
    }

    /// Agent turns finished so far (checkpoint reached or cleared).
    pub fn turns_completed(&self) -> u64 {
        self.turns_completed
    }

    /// Agent samples played since the call began.
    pub fn played(&self) -> u64 {
        self.played
    }
}

#[cfg(test)]
mod tests;
