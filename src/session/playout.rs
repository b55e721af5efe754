//! Playout: when each 20 ms frame of agent audio goes to Plivo.
//!
//! Agent audio waits here and leaves at real-time pace, at most `lead` ahead of what the
//! phone is playing, so a `clearAudio` on barge-in silences the caller within one frame
//! and Plivo's buffer never fills. Each turn ends with a checkpoint; its `playedStream`
//! (or, since Plivo can drop an ack, a timeout past when the audio must have played) marks
//! the turn heard.
//!
//! Pure logic with the clock passed in, so tests need no sleeping. Memory is bounded:
//! at most [`MAX_QUEUED_SAMPLES`] wait; a longer turn is cut and the cut counted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::audio::frame::FRAME_SAMPLES_8K;

/// One frame's duration.
const FRAME: Duration = Duration::from_millis(20);
/// At most 60 s of agent audio waits at once.
pub const MAX_QUEUED_SAMPLES: usize = 60 * 8_000;

/// What the session must send next.
#[derive(Debug, PartialEq)]
pub enum Send<'a> {
    /// One 20 ms frame of 8 kHz agent audio; `lead` is how far ahead of the phone it is.
    Audio {
        /// The samples (always [`FRAME_SAMPLES_8K`]).
        samples: &'a [i16],
        /// Audio already queued at the phone before this frame.
        lead: Duration,
    },
    /// The last frame of `turn` went out: send a checkpoint named [`checkpoint_name`].
    Checkpoint {
        /// The turn.
        turn: u64,
    },
}

/// How a turn's playout was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// Plivo's `playedStream` arrived.
    Played,
    /// No ack in time; the audio must have played by now.
    Timeout,
}

/// The checkpoint name for `turn`.
pub fn checkpoint_name(turn: u64) -> String {
    format!("turn-{turn}")
}

/// Parses a checkpoint name back to its turn.
pub fn turn_of(name: &str) -> Option<u64> {
    name.strip_prefix("turn-")?.parse().ok()
}

#[derive(Debug)]
struct Pending {
    turn: u64,
    due: Instant,
}

/// The playout state of one call.
#[derive(Debug)]
pub struct Playout {
    lead: Duration,
    checkpoint_timeout: Duration,
    samples: VecDeque<i16>,
    /// Turn ends, as positions in the total sample count enqueued.
    turn_ends: VecDeque<(u64, u64)>,
    enqueued: u64,
    sent: u64,
    next_turn: u64,
    /// When the phone will have played everything sent so far.
    play_end: Option<Instant>,
    pending: VecDeque<Pending>,
    frame: [i16; FRAME_SAMPLES_8K],
    truncated: u64,
}

impl Playout {
    /// Empty playout sending at most `lead` ahead of real time.
    pub fn new(lead: Duration, checkpoint_timeout: Duration) -> Self {
        Self {
            lead,
            checkpoint_timeout,
            samples: VecDeque::with_capacity(8_000),
            turn_ends: VecDeque::new(),
            enqueued: 0,
            sent: 0,
            next_turn: 1,
            play_end: None,
            pending: VecDeque::new(),
            frame: [0; FRAME_SAMPLES_8K],
            truncated: 0,
        }
    }

    /// Queues one agent turn (8 kHz PCM) and returns its number. The turn is padded to
    /// whole frames with silence.
    pub fn enqueue_turn(&mut self, audio: &[i16]) -> u64 {
        let room = MAX_QUEUED_SAMPLES.saturating_sub(self.samples.len());
        let take = audio.len().min(room);
        self.truncated += (audio.len() - take) as u64;
        self.samples.extend(&audio[..take]);
        let pad = (FRAME_SAMPLES_8K - take % FRAME_SAMPLES_8K) % FRAME_SAMPLES_8K;
        self.samples.extend(std::iter::repeat_n(0, pad));
        self.enqueued += (take + pad) as u64;
        let turn = self.next_turn;
        self.next_turn += 1;
        self.turn_ends.push_back((self.enqueued, turn));
        turn
    }

    /// Samples cut from turns that did not fit.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Audio the phone still has to play at `now`.
    pub fn buffered_at_phone(&self, now: Instant) -> Duration {
        self.play_end
            .map_or(Duration::ZERO, |end| end.saturating_duration_since(now))
    }

    /// True while agent audio is queued here or still playing at the phone.
    pub fn is_speaking(&self, now: Instant) -> bool {
        !self.samples.is_empty() || self.buffered_at_phone(now) > Duration::ZERO
    }

    /// Hands the next due message to `send`, repeatedly, until the lead is reached.
    pub fn poll(&mut self, now: Instant, mut send: impl FnMut(Send<'_>)) {
        loop {
            // A turn whose last frame has gone: its checkpoint follows at once.
            if let Some(&(end, turn)) = self.turn_ends.front()
                && self.sent >= end
            {
                self.turn_ends.pop_front();
                let due = self.play_end.unwrap_or(now) + self.checkpoint_timeout;
                self.pending.push_back(Pending { turn, due });
                send(Send::Checkpoint { turn });
                continue;
            }
            let lead = self.buffered_at_phone(now);
            if self.samples.len() < FRAME_SAMPLES_8K || lead >= self.lead {
                return;
            }
            for (slot, sample) in self
                .frame
                .iter_mut()
                .zip(self.samples.drain(..FRAME_SAMPLES_8K))
            {
                *slot = sample;
            }
            self.sent += FRAME_SAMPLES_8K as u64;
            self.play_end = Some(now.max(self.play_end.unwrap_or(now)) + FRAME);
            send(Send::Audio {
                samples: &self.frame,
                lead,
            });
        }
    }

    /// Barge-in: drops everything queued and forgets what the phone had. Returns the turns
    /// whose audio was cut (they will get no `playedStream`).
    pub fn clear(&mut self, now: Instant) -> Vec<u64> {
        let mut cut: Vec<u64> = self.pending.drain(..).map(|p| p.turn).collect();
        cut.extend(self.turn_ends.drain(..).map(|(_, turn)| turn));
        self.samples.clear();
        self.sent = self.enqueued;
        self.play_end = Some(now);
        cut
    }

    /// `playedStream` for `name`: the turn it confirms, if one was waiting for it.
    pub fn on_played(&mut self, name: &str) -> Option<u64> {
        let turn = turn_of(name)?;
        let index = self.pending.iter().position(|p| p.turn == turn)?;
        self.pending.remove(index);
        Some(turn)
    }

    /// Turns whose ack is overdue at `now`; each is reported once.
    pub fn expire(&mut self, now: Instant, mut timed_out: impl FnMut(u64)) {
        while let Some(p) = self.pending.front() {
            if p.due > now {
                break;
            }
            timed_out(p.turn);
            self.pending.pop_front();
        }
    }

    /// Turns sent and waiting for their ack.
    pub fn awaiting_ack(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn collect(p: &mut Playout, now: Instant) -> (usize, Vec<u64>) {
        let (mut frames, mut checkpoints) = (0, Vec::new());
        p.poll(now, |s| match s {
            Send::Audio { samples, .. } => {
                assert_eq!(samples.len(), FRAME_SAMPLES_8K);
                frames += 1;
            }
            Send::Checkpoint { turn } => checkpoints.push(turn),
        });
        (frames, checkpoints)
    }

    #[test]
    fn sends_at_most_the_lead_ahead_then_keeps_pace() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(2_000));
        p.enqueue_turn(&[1000; 8_000]); // 1 s = 50 frames
        assert_eq!(
            collect(&mut p, t0).0,
            10,
            "200 ms lead = 10 frames up front"
        );
        assert_eq!(collect(&mut p, t0).0, 0, "nothing more until time passes");
        assert_eq!(collect(&mut p, t0 + ms(20)).0, 1);
        assert_eq!(collect(&mut p, t0 + ms(100)).0, 4);
        assert!(p.buffered_at_phone(t0 + ms(100)) <= ms(200));
        assert!(p.is_speaking(t0 + ms(100)));
    }

    #[test]
    fn a_turn_ends_with_one_checkpoint_after_its_last_frame() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(2_000));
        let turn = p.enqueue_turn(&[5; 500]); // 3.125 frames → padded to 4
        assert_eq!(collect(&mut p, t0), (4, vec![turn]));
        assert_eq!(collect(&mut p, t0 + ms(500)), (0, vec![]));
        assert_eq!(p.awaiting_ack(), 1);
        assert_eq!(p.on_played(&checkpoint_name(turn)), Some(turn));
        assert_eq!(p.on_played(&checkpoint_name(turn)), None, "acked once");
        assert!(!p.is_speaking(t0 + ms(80)));
    }

    #[test]
    fn an_unacked_checkpoint_times_out_after_its_audio_must_have_played() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(1_000));
        let turn = p.enqueue_turn(&[5; 1_600]); // 200 ms
        collect(&mut p, t0);
        let mut expired = Vec::new();
        p.expire(t0 + ms(1_100), |t| expired.push(t));
        assert!(
            expired.is_empty(),
            "not before play end (200 ms) + timeout (1 s)"
        );
        p.expire(t0 + ms(1_200), |t| expired.push(t));
        assert_eq!(expired, [turn]);
        p.expire(t0 + ms(5_000), |t| expired.push(t));
        assert_eq!(expired, [turn], "reported once");
    }

    #[test]
    fn clear_drops_everything_and_reports_cut_turns() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(2_000));
        let first = p.enqueue_turn(&[5; 160]);
        collect(&mut p, t0);
        let second = p.enqueue_turn(&[5; 8_000]);
        collect(&mut p, t0);
        assert!(p.is_speaking(t0));
        assert_eq!(p.clear(t0 + ms(10)), vec![first, second]);
        assert!(!p.is_speaking(t0 + ms(10)));
        assert_eq!(collect(&mut p, t0 + ms(40)), (0, vec![]));
        // A new turn after the clear plays from now.
        let third = p.enqueue_turn(&[5; 160]);
        assert_eq!(collect(&mut p, t0 + ms(40)), (1, vec![third]));
    }

    #[test]
    fn an_overlong_turn_is_cut_and_counted() {
        let mut p = Playout::new(ms(200), ms(2_000));
        p.enqueue_turn(&vec![1; MAX_QUEUED_SAMPLES + 100]);
        assert_eq!(p.truncated(), 100);
    }

    #[test]
    fn checkpoint_names_round_trip() {
        assert_eq!(turn_of(&checkpoint_name(42)), Some(42));
        assert_eq!(turn_of("other"), None);
        assert_eq!(turn_of("turn-x"), None);
    }
}
