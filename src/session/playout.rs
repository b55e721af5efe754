//! Playout: when each 20 ms frame of agent audio goes to Plivo.
//!
//! Agent audio waits here and leaves at real-time pace, at most `lead` ahead of what the
//! phone is playing, so a `clearAudio` on barge-in silences the caller within one frame
//! and Plivo's buffer never fills. Each turn ends with a checkpoint; its `playedStream`
//! marks the turn heard. Plivo can drop an ack, so a turn also counts as heard a timeout
//! past when its audio must have played — but only if its checkpoint reached the socket
//! (the session says where each checkpoint is in the outbound queue and how much of the
//! queue the socket has taken): a peer that stops reading hears nothing, and a turn still
//! queued when the stream ends is counted unsent.
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
    /// No ack in time, but the checkpoint reached the socket and the audio must have
    /// played by now.
    Timeout,
    /// Not heard: the turn's audio or checkpoint never reached the socket (the outbound
    /// queue was full, or the stream ended while it was still queued).
    Unsent,
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
    /// The checkpoint's place in the outbound queue; `None` when it was dropped.
    place: Option<u64>,
}

/// One turn on its way to the phone: where it sits in the sample stream and when its
/// audio plays, so a cut knows how much was heard.
#[derive(Debug)]
struct Track {
    turn: u64,
    /// Position of its first sample in everything enqueued.
    begin: u64,
    /// Position after its last sample, once the turn is closed.
    end: Option<u64>,
    /// Its checkpoint was handed to the socket.
    checkpointed: bool,
    /// Stretches of its audio playing back to back at the phone: (start, samples). A new
    /// stretch begins only after the phone ran dry mid-turn.
    played: Vec<(Instant, u64)>,
}

impl Track {
    /// Samples the phone has played of this turn by `now`.
    fn heard_at(&self, now: Instant) -> u64 {
        self.played
            .iter()
            .map(|&(start, samples)| {
                let elapsed = now.saturating_duration_since(start).as_micros() as u64;
                samples.min(elapsed * 8 / 1_000)
            })
            .sum()
    }

    /// Samples sent of this turn.
    fn sent(&self) -> u64 {
        self.played.iter().map(|&(_, samples)| samples).sum()
    }
}

/// Samples to milliseconds at 8 kHz.
fn ms_of(samples: u64) -> u64 {
    samples / 8
}

/// A turn cut by [`Playout::clear`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The turn.
    pub turn: u64,
    /// Audio the phone played of it, ms.
    pub heard_ms: u64,
    /// Audio sent of it, ms.
    pub sent_ms: u64,
}

/// The playout state of one call.
#[derive(Debug)]
pub struct Playout {
    lead: Duration,
    checkpoint_timeout: Duration,
    samples: VecDeque<i16>,
    /// Turns not yet settled (heard, cut or unsent), in order.
    tracks: VecDeque<Track>,
    /// True while the last track takes audio.
    open: bool,
    enqueued: u64,
    sent: u64,
    next_turn: u64,
    /// When the phone will have played everything sent so far.
    play_end: Option<Instant>,
    pending: VecDeque<Pending>,
    /// Turns whose first audio was sent: (turn, when it plays at the phone).
    started: VecDeque<(u64, Instant)>,
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
            tracks: VecDeque::new(),
            open: false,
            enqueued: 0,
            sent: 0,
            next_turn: 1,
            play_end: None,
            pending: VecDeque::new(),
            started: VecDeque::new(),
            frame: [0; FRAME_SAMPLES_8K],
            truncated: 0,
        }
    }

    /// Starts a turn (closing the open one) and returns its number. Its audio follows
    /// through [`Playout::push`]; it starts playing with its first frame.
    pub fn open_turn(&mut self) -> u64 {
        self.close_turn();
        let turn = self.next_turn;
        self.next_turn += 1;
        self.tracks.push_back(Track {
            turn,
            begin: self.enqueued,
            end: None,
            checkpointed: false,
            played: Vec::new(),
        });
        self.open = true;
        turn
    }

    /// Appends 8 kHz audio to the open turn; false when no turn is open (the audio is
    /// dropped). Beyond [`MAX_QUEUED_SAMPLES`] waiting, the rest is cut and counted.
    pub fn push(&mut self, audio: &[i16]) -> bool {
        if !self.open {
            return false;
        }
        let room = MAX_QUEUED_SAMPLES.saturating_sub(self.samples.len());
        let take = audio.len().min(room);
        self.truncated += (audio.len() - take) as u64;
        self.samples.extend(&audio[..take]);
        self.enqueued += take as u64;
        true
    }

    /// Ends the open turn, padding it to whole frames with silence; its checkpoint follows
    /// its last frame. Nothing happens when no turn is open.
    pub fn close_turn(&mut self) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let pad = (FRAME_SAMPLES_8K - self.samples.len() % FRAME_SAMPLES_8K) % FRAME_SAMPLES_8K;
        self.samples.extend(std::iter::repeat_n(0, pad));
        self.enqueued += pad as u64;
        if let Some(track) = self.tracks.back_mut() {
            track.end = Some(self.enqueued);
        }
    }

    /// Queues one whole agent turn (8 kHz PCM) and returns its number.
    pub fn enqueue_turn(&mut self, audio: &[i16]) -> u64 {
        let turn = self.open_turn();
        self.push(audio);
        self.close_turn();
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

    /// True while agent audio is playing at the phone (what barge-in cuts).
    pub fn is_audible(&self, now: Instant) -> bool {
        self.buffered_at_phone(now) > Duration::ZERO
    }

    /// True when nothing is queued, open or waiting for its ack.
    pub fn is_idle(&self) -> bool {
        self.tracks.is_empty() && self.samples.is_empty()
    }

    /// The next turn whose first audio was sent, with when it plays at the phone.
    pub fn take_started(&mut self) -> Option<(u64, Instant)> {
        self.started.pop_front()
    }

    /// Hands the next due message to `send`, repeatedly, until the lead is reached.
    /// `send` returns the message's place in the outbound queue (`None`: dropped).
    pub fn poll(&mut self, now: Instant, mut send: impl FnMut(Send<'_>) -> Option<u64>) {
        loop {
            // A closed turn whose last frame has gone: its checkpoint follows at once.
            if let Some(track) = self.tracks.iter_mut().find(|t| !t.checkpointed)
                && track.end.is_some_and(|end| self.sent >= end)
            {
                track.checkpointed = true;
                let turn = track.turn;
                let due = self.play_end.unwrap_or(now) + self.checkpoint_timeout;
                let place = send(Send::Checkpoint { turn });
                self.pending.push_back(Pending { turn, due, place });
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
            let plays_at = now.max(self.play_end.unwrap_or(now));
            let position = self.sent;
            self.sent += FRAME_SAMPLES_8K as u64;
            self.play_end = Some(plays_at + FRAME);
            if let Some(track) = self
                .tracks
                .iter_mut()
                .find(|t| t.begin <= position && t.end.is_none_or(|end| position < end))
            {
                match track.played.last_mut() {
                    Some((start, samples))
                        if *start + Duration::from_micros(*samples * 125) == plays_at =>
                    {
                        *samples += FRAME_SAMPLES_8K as u64;
                    }
                    _ => {
                        if track.played.is_empty() {
                            self.started.push_back((track.turn, plays_at));
                        }
                        track.played.push((plays_at, FRAME_SAMPLES_8K as u64));
                    }
                }
            }
            send(Send::Audio {
                samples: &self.frame,
                lead,
            });
        }
    }

    /// Barge-in: drops everything queued (closing the open turn) and forgets what the
    /// phone had. Returns the turns whose audio was cut, with how much of each was heard.
    pub fn clear(&mut self, now: Instant) -> Vec<Cut> {
        let cut = self
            .tracks
            .drain(..)
            .map(|track| Cut {
                turn: track.turn,
                heard_ms: ms_of(track.heard_at(now)),
                sent_ms: ms_of(track.sent()),
            })
            .collect();
        self.pending.clear();
        self.started.clear();
        self.open = false;
        self.samples.clear();
        self.sent = self.enqueued;
        self.play_end = Some(now);
        cut
    }

    /// Removes a settled turn's track; returns the audio sent of it, ms.
    fn settle(&mut self, turn: u64) -> u64 {
        match self.tracks.iter().position(|t| t.turn == turn) {
            Some(index) => self
                .tracks
                .remove(index)
                .map_or(0, |track| ms_of(track.sent())),
            None => 0,
        }
    }

    /// `playedStream` for `name`: the turn it confirms, if one was waiting for it, and how
    /// much audio it had (ms).
    pub fn on_played(&mut self, name: &str) -> Option<(u64, u64)> {
        let turn = turn_of(name)?;
        let index = self.pending.iter().position(|p| p.turn == turn)?;
        self.pending.remove(index);
        Some((turn, self.settle(turn)))
    }

    /// Turns whose ack is overdue at `now`, given that the socket has taken the first
    /// `taken` messages of the outbound queue: a turn whose checkpoint was taken counts as
    /// [`Heard::Timeout`], one whose checkpoint was dropped as [`Heard::Unsent`]; one whose
    /// checkpoint is still queued waits (for the socket, or for [`Playout::end`]). Each turn
    /// is reported once, with the audio it had (ms).
    pub fn expire(&mut self, now: Instant, taken: u64, mut overdue: impl FnMut(u64, Heard, u64)) {
        while let Some(p) = self.pending.front() {
            if p.due > now {
                break;
            }
            let heard = match p.place {
                Some(place) if place <= taken => Heard::Timeout,
                // The queue is sent in order: later checkpoints are queued too.
                Some(_) => break,
                None => Heard::Unsent,
            };
            let turn = p.turn;
            self.pending.pop_front();
            let sent_ms = self.settle(turn);
            overdue(turn, heard, sent_ms);
        }
    }

    /// The stream ended: reports each turn that never reached the socket (audio still
    /// waiting here, or a checkpoint dropped or still queued, given `taken` as in
    /// [`Playout::expire`]). Turns whose checkpoint reached the socket and still wait for
    /// their ack are not reported.
    pub fn end(&mut self, taken: u64, mut unsent: impl FnMut(u64)) {
        for p in self.pending.drain(..) {
            if p.place.is_none_or(|place| place > taken) {
                unsent(p.turn);
            }
        }
        for track in self.tracks.drain(..).filter(|t| !t.checkpointed) {
            unsent(track.turn);
        }
        self.open = false;
        self.samples.clear();
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
        collect_queued(p, now, &mut 0, usize::MAX)
    }

    /// Polls `p` into an outbound queue whose last place is `queued` and that has room for
    /// `room` more messages.
    fn collect_queued(
        p: &mut Playout,
        now: Instant,
        queued: &mut u64,
        mut room: usize,
    ) -> (usize, Vec<u64>) {
        let (mut frames, mut checkpoints) = (0, Vec::new());
        p.poll(now, |s| {
            match s {
                Send::Audio { samples, .. } => {
                    assert_eq!(samples.len(), FRAME_SAMPLES_8K);
                    frames += 1;
                }
                Send::Checkpoint { turn } => checkpoints.push(turn),
            }
            if room == 0 {
                return None;
            }
            room -= 1;
            *queued += 1;
            Some(*queued)
        });
        (frames, checkpoints)
    }

    fn expired(p: &mut Playout, now: Instant, taken: u64) -> Vec<(u64, Heard)> {
        let mut out = Vec::new();
        p.expire(now, taken, |turn, heard, _| out.push((turn, heard)));
        out
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
        assert_eq!(p.on_played(&checkpoint_name(turn)), Some((turn, 80)));
        assert_eq!(p.on_played(&checkpoint_name(turn)), None, "acked once");
        assert!(!p.is_speaking(t0 + ms(80)));
    }

    #[test]
    fn an_unacked_checkpoint_times_out_after_its_audio_must_have_played() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(1_000));
        let turn = p.enqueue_turn(&[5; 1_600]); // 200 ms
        let mut queued = 0;
        collect_queued(&mut p, t0, &mut queued, usize::MAX);
        assert!(
            expired(&mut p, t0 + ms(1_100), queued).is_empty(),
            "not before play end (200 ms) + timeout (1 s)"
        );
        assert_eq!(
            expired(&mut p, t0 + ms(1_200), queued),
            [(turn, Heard::Timeout)]
        );
        assert!(
            expired(&mut p, t0 + ms(5_000), queued).is_empty(),
            "reported once"
        );
    }

    #[test]
    fn a_checkpoint_the_socket_never_took_is_not_heard() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(500));
        let first = p.enqueue_turn(&[5; 1_600]); // 10 frames + checkpoint: places 1..=11
        let second = p.enqueue_turn(&[5; 160]);
        let mut queued = 0;
        collect_queued(&mut p, t0, &mut queued, usize::MAX);
        collect_queued(&mut p, t0 + ms(200), &mut queued, usize::MAX);
        assert_eq!(queued, 13, "two turns of audio and their checkpoints");
        let late = t0 + ms(5_000);
        // The socket took the first turn's audio but not its checkpoint: nothing is heard,
        // and nothing is reported while the checkpoints wait in the queue.
        assert!(expired(&mut p, late, 10).is_empty());
        assert_eq!(p.awaiting_ack(), 2);
        // It takes the first checkpoint: that turn counts, the second still waits.
        assert_eq!(expired(&mut p, late, 11), [(first, Heard::Timeout)]);
        // The stream ends with the second one still queued: unsent.
        let mut unsent = Vec::new();
        p.end(12, |turn| unsent.push(turn));
        assert_eq!(unsent, [second]);
        assert_eq!(p.awaiting_ack(), 0);
    }

    #[test]
    fn a_checkpoint_dropped_at_a_full_queue_is_unsent_and_so_is_audio_never_sent() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(500));
        let dropped = p.enqueue_turn(&[5; 160]);
        let mut queued = 0;
        // Room for the frame, none for the checkpoint.
        collect_queued(&mut p, t0, &mut queued, 1);
        assert_eq!(
            expired(&mut p, t0 + ms(1_000), queued),
            [(dropped, Heard::Unsent)]
        );
        // A turn still waiting here when the stream ends, and one acked, are told apart.
        let acked = p.enqueue_turn(&[5; 160]);
        collect_queued(&mut p, t0 + ms(1_000), &mut queued, usize::MAX);
        assert_eq!(p.on_played(&checkpoint_name(acked)), Some((acked, 20)));
        let waiting = p.enqueue_turn(&[5; 8_000]);
        collect_queued(&mut p, t0 + ms(1_000), &mut queued, usize::MAX);
        let mut unsent = Vec::new();
        p.end(queued, |turn| unsent.push(turn));
        assert_eq!(unsent, [waiting]);
        assert!(!p.is_speaking(t0 + ms(5_000)));
    }

    #[test]
    fn a_checkpoint_taken_but_unacked_at_the_end_is_not_counted_unsent() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(2_000));
        p.enqueue_turn(&[5; 160]);
        let mut queued = 0;
        collect_queued(&mut p, t0, &mut queued, usize::MAX);
        let mut unsent = Vec::new();
        p.end(queued, |turn| unsent.push(turn));
        assert!(unsent.is_empty());
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
        let cut: Vec<u64> = p.clear(t0 + ms(10)).iter().map(|c| c.turn).collect();
        assert_eq!(cut, vec![first, second]);
        assert!(!p.is_speaking(t0 + ms(10)));
        assert_eq!(collect(&mut p, t0 + ms(40)), (0, vec![]));
        // A new turn after the clear plays from now.
        let third = p.enqueue_turn(&[5; 160]);
        assert_eq!(collect(&mut p, t0 + ms(40)), (1, vec![third]));
    }

    #[test]
    fn a_streamed_turn_plays_from_its_first_chunk_and_checkpoints_at_close() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(2_000));
        let turn = p.open_turn();
        assert!(p.push(&[7; 400])); // 50 ms: two whole frames go now, the rest waits
        assert_eq!(collect(&mut p, t0), (2, vec![]));
        assert_eq!(p.take_started(), Some((turn, t0)));
        assert_eq!(p.take_started(), None, "reported once");
        assert!(p.push(&[7; 80])); // completes the third frame
        assert_eq!(collect(&mut p, t0 + ms(10)), (1, vec![]));
        assert_eq!(
            collect(&mut p, t0 + ms(20)),
            (0, vec![]),
            "open: no checkpoint yet"
        );
        p.close_turn();
        assert_eq!(collect(&mut p, t0 + ms(20)), (0, vec![turn]));
        assert!(!p.push(&[7; 160]), "no turn open");
    }

    #[test]
    fn a_cut_knows_how_much_of_each_turn_the_phone_played() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(2_000));
        let first = p.enqueue_turn(&[5; 800]); // 100 ms
        let second = p.enqueue_turn(&[5; 8_000]); // 1 s
        collect(&mut p, t0); // 100 ms of the first, 100 ms of the second sent
        for t in (20..=300).step_by(20) {
            collect(&mut p, t0 + ms(t));
        }
        // At 250 ms the phone played all of the first turn and 150 ms of the second.
        let cut = p.clear(t0 + ms(250));
        assert_eq!(
            cut[0],
            Cut {
                turn: first,
                heard_ms: 100,
                sent_ms: 100
            }
        );
        assert_eq!(cut[1].turn, second);
        assert_eq!(cut[1].heard_ms, 150);
        assert!(cut[1].sent_ms >= 300, "sent up to the lead ahead");
    }

    #[test]
    fn a_turn_that_ran_dry_counts_only_what_played() {
        let t0 = Instant::now();
        let mut p = Playout::new(ms(200), ms(2_000));
        let turn = p.open_turn();
        p.push(&[5; 160]);
        collect(&mut p, t0); // plays 0..20 ms
        p.push(&[5; 160]);
        collect(&mut p, t0 + ms(100)); // the phone ran dry; plays 100..120 ms
        let cut = p.clear(t0 + ms(110));
        assert_eq!((cut[0].turn, cut[0].heard_ms), (turn, 30));
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
