//! The call's timeline: where each sample of a recording goes.
//!
//! Owns the alignment of the two channels. Positions are 8 kHz samples since the stream
//! began, on the media timeline Plivo timestamps caller audio on. A caller frame goes where
//! its media timestamp says; an agent frame goes where the phone plays it — right after the
//! agent audio before it, or at "now" when the phone had nothing left to play (the playout
//! clock) — and a `clearAudio` cuts the agent audio not yet played. Whatever nobody filled
//! (lost frames, the agent silent) is silence, so both channels stay on the one timeline.
//!
//! Audio waits in two fixed rings of [`RING`] samples until the caller's audio has passed
//! it (an agent frame can still be cut until then), then leaves in whole [`BLOCK`]s through
//! the `emit` callback. Memory is those two rings, whatever the call's length.
//!
//! Never: allocates after construction, panics on any timestamp, or emits more silence than
//! [`MAX_JUMP_MS`] for one hostile timestamp.

use crate::audio::frame::FRAME_SAMPLES_8K;

/// Samples per millisecond at 8 kHz.
const PER_MS: u64 = 8;
/// Samples each channel holds before they are emitted (1 s at 8 kHz).
pub const RING: usize = 8_000;
/// Audio is emitted in blocks of one 20 ms frame.
pub const BLOCK: usize = FRAME_SAMPLES_8K;
/// A caller timestamp further than this past the audio so far is refused, not filled.
pub const MAX_JUMP_MS: u64 = 60_000;
/// Calls longer than this (24 h) stop recording: a WAV file holds at most 4 GiB.
pub const MAX_POSITION: u64 = 24 * 3_600 * 1_000 * PER_MS;

const _: () = assert!(RING.is_multiple_of(BLOCK));

/// What the timeline refused or cut, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TimelineStats {
    /// Caller frames behind audio already emitted (duplicates, very late): dropped.
    pub caller_late: u64,
    /// Caller frames with a timestamp too far ahead or past [`MAX_POSITION`]: dropped.
    pub caller_refused: u64,
    /// Agent samples further ahead of the caller than the ring holds: dropped.
    pub agent_overflow: u64,
    /// Agent samples removed by a clear before they played.
    pub agent_cut: u64,
}

/// The two channels of one call between the pipeline and the file.
pub struct Timeline {
    caller: Box<[i16]>,
    agent: Box<[i16]>,
    /// Positions before this were emitted.
    written: u64,
    /// End of the furthest caller audio placed.
    caller_end: u64,
    /// Where the phone's queued agent audio ends.
    agent_cursor: u64,
    stats: TimelineStats,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    /// An empty timeline at position 0.
    pub fn new() -> Self {
        Self {
            caller: vec![0; RING].into_boxed_slice(),
            agent: vec![0; RING].into_boxed_slice(),
            written: 0,
            caller_end: 0,
            agent_cursor: 0,
            stats: TimelineStats::default(),
        }
    }

    /// Samples per channel emitted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// What was refused or cut so far.
    pub fn stats(&self) -> TimelineStats {
        self.stats
    }

    /// Places caller audio at its media timestamp, then emits what the caller has passed.
    pub fn caller(&mut self, timestamp_ms: u64, samples: &[i16], emit: &mut impl Emit) {
        let Some((start, end)) = timestamp_ms
            .checked_mul(PER_MS)
            .and_then(|start| Some((start, start.checked_add(samples.len() as u64)?)))
        else {
            self.stats.caller_refused += 1;
            return;
        };
        if start < self.written {
            self.stats.caller_late += 1;
            return;
        }
        if end > MAX_POSITION || start > self.caller_end.max(self.written) + MAX_JUMP_MS * PER_MS {
            self.stats.caller_refused += 1;
            return;
        }
        // A jump past the ring (frames lost): what lies before it is final, silence and all.
        let need = end.saturating_sub(RING as u64);
        while self.written < need {
            self.emit_block(emit);
        }
        write_ring(&mut self.caller, start, samples);
        self.caller_end = self.caller_end.max(end);
        while self.written + BLOCK as u64 <= self.caller_end {
            self.emit_block(emit);
        }
    }

    /// Places one agent frame where the phone plays it: after the agent audio queued before
    /// it, or at `now_ms` on the media timeline if the phone has played all that.
    pub fn agent(&mut self, now_ms: u64, samples: &[i16]) {
        let now = now_ms.saturating_mul(PER_MS).min(MAX_POSITION);
        let start = now.max(self.agent_cursor).max(self.written);
        let end = start + samples.len() as u64;
        self.agent_cursor = end;
        let room = (self.written + RING as u64).saturating_sub(start);
        let take = (samples.len() as u64).min(room) as usize;
        self.stats.agent_overflow += (samples.len() - take) as u64;
        write_ring(&mut self.agent, start, &samples[..take]);
    }

    /// A `clearAudio` at `at_ms`: agent audio the phone had not played by then is cut.
    pub fn clear(&mut self, at_ms: u64) {
        let cut = at_ms
            .saturating_mul(PER_MS)
            .max(self.written)
            .min(self.agent_cursor);
        let until = self.agent_cursor.min(self.written + RING as u64);
        self.stats.agent_cut += self.agent_cursor - cut;
        let mut pos = cut;
        while pos < until {
            let i = ring_index(pos);
            let n = (RING - i).min((until - pos) as usize);
            self.agent[i..i + n].fill(0);
            pos += n as u64;
        }
        self.agent_cursor = cut;
    }

    /// The call ended: emits everything up to the end of the caller's audio, the last block
    /// padded with silence. Agent audio queued past that was never heard and is dropped.
    pub fn finish(&mut self, emit: &mut impl Emit) {
        while self.written < self.caller_end {
            self.emit_block(emit);
        }
    }

    fn emit_block(&mut self, emit: &mut impl Emit) {
        let i = ring_index(self.written);
        emit.block(&self.caller[i..i + BLOCK], &self.agent[i..i + BLOCK]);
        self.caller[i..i + BLOCK].fill(0);
        self.agent[i..i + BLOCK].fill(0);
        self.written += BLOCK as u64;
    }
}

/// Takes emitted audio: one block per channel, the same length, aligned.
pub trait Emit {
    /// The next [`BLOCK`] samples of each channel.
    fn block(&mut self, caller: &[i16], agent: &[i16]);
}

impl<F: FnMut(&[i16], &[i16])> Emit for F {
    fn block(&mut self, caller: &[i16], agent: &[i16]) {
        self(caller, agent)
    }
}

fn ring_index(pos: u64) -> usize {
    (pos % RING as u64) as usize
}

/// Copies `samples` into `ring` from position `start`, wrapping around.
fn write_ring(ring: &mut [i16], start: u64, samples: &[i16]) {
    let mut done = 0;
    while done < samples.len() {
        let i = ring_index(start + done as u64);
        let n = (RING - i).min(samples.len() - done);
        ring[i..i + n].copy_from_slice(&samples[done..done + n]);
        done += n;
    }
}

#[cfg(test)]
mod tests;
