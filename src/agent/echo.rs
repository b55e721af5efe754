//! The `echo` agent: when the caller finishes an utterance, it plays it back.
//!
//! It keeps the last [`MAX_UTTERANCE_MS`] of caller audio in a fixed ring of frames
//! (allocated once), and on `SpeechEnded` copies out the span from the utterance's onset
//! (less a short pre-roll) to its end (plus a short tail). It needs no service and no key,
//! which makes it the agent the tests and benches drive. It answers at the end of each
//! caller turn (the session's end-of-turn decision), with the whole utterance as one turn.

use std::sync::Arc;

use super::{Agent, AgentIo, Event, Input};
use crate::audio::frame::{FRAME_MS, FRAME_SAMPLES_8K};
use crate::audio::resample::Rate;

/// Longest utterance echoed; a longer one is echoed from its last 12 s.
pub const MAX_UTTERANCE_MS: u64 = 12_000;
/// Audio kept before the detected onset, so the first syllable is whole.
const PRE_ROLL_MS: u64 = 60;
/// Audio kept after the detected end.
const TAIL_MS: u64 = 60;

/// Plays each utterance back.
pub struct EchoAgent {
    frames: Vec<[i16; FRAME_SAMPLES_8K]>,
    stamps: Vec<Option<u64>>,
    onset_ms: Option<u64>,
}

impl EchoAgent {
    /// An echo agent remembering up to `max_ms` of caller audio.
    pub fn new(max_ms: u64) -> Self {
        let slots = (max_ms / FRAME_MS) as usize + 1;
        Self {
            frames: vec![[0; FRAME_SAMPLES_8K]; slots],
            stamps: vec![None; slots],
            onset_ms: None,
        }
    }

    fn slot(&self, timestamp_ms: u64) -> usize {
        ((timestamp_ms / FRAME_MS) % self.frames.len() as u64) as usize
    }

    /// The caller's audio from `from_ms` to `to_ms`, silence where frames are missing.
    fn span(&self, from_ms: u64, to_ms: u64) -> Vec<i16> {
        let first = from_ms / FRAME_MS;
        let last = to_ms.div_ceil(FRAME_MS);
        let mut out = Vec::with_capacity(((last - first) as usize) * FRAME_SAMPLES_8K);
        for index in first..last {
            let timestamp = index * FRAME_MS;
            let slot = self.slot(timestamp);
            match self.stamps[slot] {
                Some(stamp) if stamp / FRAME_MS == index => {
                    out.extend_from_slice(&self.frames[slot])
                }
                _ => out.extend(std::iter::repeat_n(0, FRAME_SAMPLES_8K)),
            }
        }
        out
    }
}

impl EchoAgent {
    /// A 20 ms frame of caller audio (8 kHz), stamped on the caller's media clock.
    fn on_caller_audio(&mut self, timestamp_ms: u64, samples: &[i16]) {
        if samples.len() != FRAME_SAMPLES_8K {
            return;
        }
        let slot = self.slot(timestamp_ms);
        self.frames[slot].copy_from_slice(samples);
        self.stamps[slot] = Some(timestamp_ms);
    }

    /// The caller started speaking at `onset_ms`.
    fn on_speech_started(&mut self, onset_ms: u64) {
        self.onset_ms = Some(onset_ms);
    }

    /// The caller's turn ended with speech ending at `end_ms`: the utterance to play back.
    fn on_end_of_turn(&mut self, end_ms: u64) -> Option<Vec<i16>> {
        let onset = self.onset_ms.take()?;
        let keep = (self.frames.len() as u64 - 1) * FRAME_MS;
        let from = onset
            .saturating_sub(PRE_ROLL_MS)
            .max((end_ms + TAIL_MS).saturating_sub(keep));
        Some(self.span(from, end_ms + TAIL_MS))
    }
}

#[async_trait::async_trait]
impl Agent for EchoAgent {
    fn caller_audio_rate(&self) -> Option<Rate> {
        Some(Rate::Hz8000)
    }

    async fn run(mut self: Box<Self>, mut io: AgentIo) {
        while let Some(input) = io.next().await {
            match input {
                Input::Audio(frame) => self.on_caller_audio(frame.at_ms, frame.samples()),
                Input::Event(Event::SpeechStarted { onset_ms }) => self.on_speech_started(onset_ms),
                Input::Event(Event::EndOfTurn { speech_end_ms, .. }) => {
                    if let Some(audio) = self.on_end_of_turn(speech_end_ms) {
                        let audio: Arc<[i16]> = audio.into();
                        if io.say("[echo]", Rate::Hz8000, audio).await.is_err() {
                            return;
                        }
                    }
                }
                Input::Event(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(agent: &mut EchoAgent, from_ms: u64, to_ms: u64) {
        for t in (from_ms..to_ms).step_by(FRAME_MS as usize) {
            agent.on_caller_audio(t, &[(t / 20) as i16; FRAME_SAMPLES_8K]);
        }
    }

    #[test]
    fn echoes_the_utterance_with_pre_roll_and_tail() {
        let mut agent = EchoAgent::new(MAX_UTTERANCE_MS);
        feed(&mut agent, 0, 3_000);
        agent.on_speech_started(1_000);
        let audio = agent.on_end_of_turn(2_000).unwrap();
        // 940 ms .. 2060 ms → frames 47 ..= 102 (56 frames)
        assert_eq!(audio.len(), 56 * FRAME_SAMPLES_8K);
        assert_eq!(audio[0], 47);
        assert_eq!(audio[audio.len() - 1], 102);
    }

    #[test]
    fn no_echo_without_a_start() {
        let mut agent = EchoAgent::new(MAX_UTTERANCE_MS);
        feed(&mut agent, 0, 1_000);
        assert_eq!(agent.on_end_of_turn(500), None);
    }

    #[test]
    fn a_long_utterance_keeps_its_last_part_and_missing_frames_are_silence() {
        let mut agent = EchoAgent::new(1_000);
        feed(&mut agent, 0, 5_000);
        agent.on_speech_started(0);
        let audio = agent.on_end_of_turn(4_000).unwrap();
        assert_eq!(audio.len(), 50 * FRAME_SAMPLES_8K, "1 s kept");
        let mut gappy = EchoAgent::new(1_000);
        feed(&mut gappy, 0, 100);
        feed(&mut gappy, 200, 300);
        gappy.on_speech_started(60);
        let audio = gappy.on_end_of_turn(240).unwrap();
        assert_eq!(audio[4 * FRAME_SAMPLES_8K], 4, "80 ms frame present");
        assert!(
            audio[5 * FRAME_SAMPLES_8K..10 * FRAME_SAMPLES_8K]
                .iter()
                .all(|&s| s == 0),
            "100-180 ms missing"
        );
    }
}
