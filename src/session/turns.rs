//! The book of a call's turns: the live transcript and each agent turn's latency split.
//!
//! The conversation tells it what happens as it happens (the caller's speech bounds, what
//! speech recognition heard, the end-of-turn decision, a key press; an agent turn opened,
//! its first audio, its first `playAudio`, when the phone started playing it, and how it
//! ended: heard, cut by barge-in, never sent). When a turn settles the book writes its
//! [`TranscriptEntry`] and, for agent turns, its [`TurnLatency`] (also into the
//! `voxgate_turn_stage_seconds` histograms).
//!
//! Stages are measured on the process's monotonic clock from the moment the caller's speech
//! ended, which the media clock places: the VAD declares the end a hangover later, and that
//! hangover is not the gateway's own time. Never: touches the socket or the agent, or does
//! anything per frame.

use std::time::{Duration, Instant};

use metrics::histogram;

use crate::agent::turn::{WordTime, heard_text};
use crate::telemetry;
use crate::transcript::{ConversationRecord, Speaker, TranscriptEntry, TurnLatency};

/// An agent turn decided within this long of the end of the caller's turn answers it.
const ANSWER_WINDOW: Duration = Duration::from_secs(5);
/// Caller turns the book keeps per call (later ones are counted, not kept).
const MAX_ENTRIES: usize = 2_000;

/// The caller's turn an agent turn answers.
#[derive(Debug, Clone, Copy)]
struct Answered {
    speech_end_ms: u64,
    /// When the speech ended, on the monotonic clock.
    speech_end_at: Instant,
    /// When the VAD's end event reached the session.
    vad_end_at: Option<Instant>,
    /// When the end of turn was decided.
    end_of_turn_at: Instant,
    /// When speech recognition's final result arrived.
    stt_final_at: Option<Instant>,
}

/// An agent turn until it settles.
#[derive(Debug)]
struct AgentTurn {
    turn: u64,
    playout_turn: u64,
    text: String,
    words: Vec<WordTime>,
    decided: Instant,
    /// When the agent asked its providers (the time from there to `decided` is theirs).
    asked: Option<Instant>,
    answered: Option<Answered>,
    first_tts: Option<Instant>,
    first_play: Option<Instant>,
    /// When its first audio played at the phone, and where that is on the media clock.
    first_heard: Option<(Instant, u64)>,
    /// Audio queued for it, ms (for what-was-heard without word timings).
    queued_ms: u64,
}

/// How an agent turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settled {
    /// Heard to the end (`playedStream`, or assumed after its timeout).
    Heard {
        /// Audio heard, ms.
        heard_ms: u64,
        /// By `playedStream`.
        acked: bool,
    },
    /// Cut by barge-in after `heard_ms`.
    Cut {
        /// Audio heard, ms.
        heard_ms: u64,
    },
    /// Never reached the phone.
    Unsent,
}

/// The caller's side of the turn in progress.
#[derive(Debug, Default)]
struct CallerSide {
    onset_ms: Option<u64>,
    end_ms: Option<u64>,
    vad_end_at: Option<Instant>,
    count: u64,
}

/// A call's turns.
#[derive(Debug)]
pub(super) struct Book {
    record: ConversationRecord,
    agent: Vec<AgentTurn>,
    caller: CallerSide,
    /// The caller's latest ended turn, not yet answered.
    answering: Option<Answered>,
    hangover: Duration,
    dropped: u64,
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        to.duration_since(from).as_secs_f64() * 1e3
    } else {
        -(from.duration_since(to).as_secs_f64() * 1e3)
    }
}

impl Book {
    /// An empty book; `hangover` is the VAD's, taken out of the gateway's share.
    pub(super) fn new(hangover: Duration) -> Self {
        Self {
            record: ConversationRecord::default(),
            agent: Vec::new(),
            caller: CallerSide::default(),
            answering: None,
            hangover,
            dropped: 0,
        }
    }

    /// The record so far.
    pub(super) fn record(&self) -> &ConversationRecord {
        &self.record
    }

    /// The record, to change what is not about turns (slots, who hung up).
    pub(super) fn record_mut(&mut self) -> &mut ConversationRecord {
        &mut self.record
    }

    fn push_entry(&mut self, entry: TranscriptEntry) {
        if self.record.transcript.len() >= MAX_ENTRIES {
            self.dropped += 1;
            return;
        }
        // Entries arrive nearly in order; keep them sorted by start.
        let at = self
            .record
            .transcript
            .partition_point(|e| e.start_ms <= entry.start_ms);
        self.record.transcript.insert(at, entry);
    }

    /// The VAD heard the caller start at `onset_ms`.
    pub(super) fn speech_started(&mut self, onset_ms: u64) {
        if self.caller.onset_ms.is_none() || self.caller.end_ms.is_some() {
            self.caller.onset_ms = Some(onset_ms);
            self.caller.end_ms = None;
        }
    }

    /// The VAD heard the caller stop at `end_ms`; its event arrived at `now`.
    pub(super) fn speech_ended(&mut self, end_ms: u64, now: Instant) {
        self.caller.end_ms = Some(end_ms);
        self.caller.vad_end_at = Some(now);
    }

    /// The caller's turn is over: its speech ended at `speech_end_ms` (`speech_end_at` on
    /// the monotonic clock).
    pub(super) fn end_of_turn(&mut self, speech_end_ms: u64, speech_end_at: Instant, now: Instant) {
        self.answering = Some(Answered {
            speech_end_ms,
            speech_end_at,
            vad_end_at: self.caller.vad_end_at,
            end_of_turn_at: now,
            stt_final_at: None,
        });
    }

    /// Speech recognition's result for the caller; a final one is a caller entry.
    pub(super) fn caller_text(&mut self, text: &str, is_final: bool, now_ms: u64, now: Instant) {
        if !is_final || text.trim().is_empty() {
            return;
        }
        if let Some(answering) = &mut self.answering
            && answering.stt_final_at.is_none()
        {
            answering.stt_final_at = Some(now);
        }
        self.caller.count += 1;
        let start_ms = self.caller.onset_ms.unwrap_or(now_ms);
        let entry = TranscriptEntry {
            speaker: Speaker::Caller,
            turn: self.caller.count,
            text: text.trim().to_owned(),
            heard_text: None,
            start_ms,
            end_ms: self.caller.end_ms.unwrap_or(now_ms).max(start_ms),
            interrupted: false,
        };
        self.push_entry(entry);
    }

    /// The caller pressed `digit` at `at_ms`.
    pub(super) fn dtmf(&mut self, digit: char, at_ms: u64) {
        self.caller.count += 1;
        let entry = TranscriptEntry {
            speaker: Speaker::Caller,
            turn: self.caller.count,
            text: format!("[dtmf] {digit}"),
            heard_text: None,
            start_ms: at_ms,
            end_ms: at_ms,
            interrupted: false,
        };
        self.push_entry(entry);
    }

    /// The agent opened `turn`, played as `playout_turn`. It answers the caller's last
    /// ended turn, if it was decided after it.
    pub(super) fn opened(
        &mut self,
        turn: u64,
        playout_turn: u64,
        text: String,
        decided: Instant,
        asked: Option<Instant>,
    ) {
        // A turn decided long after the caller's turn ended answers a timer (a reprompt, a
        // silence follow-up), not the caller.
        let answered = self.answering.take_if(|answered| {
            decided >= answered.end_of_turn_at
                && decided.duration_since(answered.end_of_turn_at) < ANSWER_WINDOW
        });
        self.agent.push(AgentTurn {
            turn,
            playout_turn,
            text,
            words: Vec::new(),
            decided,
            asked,
            answered,
            first_tts: None,
            first_play: None,
            first_heard: None,
            queued_ms: 0,
        });
    }

    fn find(&mut self, playout_turn: u64) -> Option<&mut AgentTurn> {
        self.agent
            .iter_mut()
            .find(|t| t.playout_turn == playout_turn)
    }

    /// Word timings for the agent's `turn`.
    pub(super) fn words(&mut self, turn: u64, words: Vec<WordTime>) {
        if let Some(t) = self.agent.iter_mut().find(|t| t.turn == turn) {
            t.words = words;
        }
    }

    /// `turn`'s text is now `text` (a streamed answer grew).
    pub(super) fn text(&mut self, turn: u64, text: String) {
        if let Some(t) = self.agent.iter_mut().find(|t| t.turn == turn) {
            t.text = text;
        }
    }

    /// `ms` more audio arrived for `playout_turn` at `now`.
    pub(super) fn audio(&mut self, playout_turn: u64, ms: u64, now: Instant) {
        if let Some(t) = self.find(playout_turn) {
            t.first_tts.get_or_insert(now);
            t.queued_ms += ms;
        }
    }

    /// The first `playAudio` of `playout_turn` went to the socket at `now`.
    pub(super) fn first_play(&mut self, playout_turn: u64, now: Instant) {
        if let Some(t) = self.find(playout_turn) {
            t.first_play.get_or_insert(now);
        }
    }

    /// `playout_turn`'s first audio plays at the phone at `at` (`at_ms` on the media
    /// clock). Returns the agent's turn.
    pub(super) fn started(&mut self, playout_turn: u64, at: Instant, at_ms: u64) -> Option<u64> {
        let t = self.find(playout_turn)?;
        t.first_heard.get_or_insert((at, at_ms));
        Some(t.turn)
    }

    /// `playout_turn` settled at `now` (`now_ms` on the media clock): writes its entry and
    /// latency. Returns the agent's turn and the text the caller heard.
    pub(super) fn settle(
        &mut self,
        playout_turn: u64,
        settled: Settled,
        now: Instant,
        now_ms: u64,
    ) -> Option<(u64, String)> {
        let index = self
            .agent
            .iter()
            .position(|t| t.playout_turn == playout_turn)?;
        let t = self.agent.remove(index);
        let (heard_ms, interrupted) = match settled {
            Settled::Heard { heard_ms, .. } => (heard_ms, false),
            Settled::Cut { heard_ms } => (heard_ms, true),
            Settled::Unsent => (0, false),
        };
        let heard = match settled {
            Settled::Heard { .. } => t.text.clone(),
            Settled::Unsent => String::new(),
            Settled::Cut { heard_ms } => {
                let total = t.queued_ms.max(heard_ms);
                let words = (!t.words.is_empty()).then_some(&t.words[..]);
                heard_text(&t.text, words, heard_ms, total)
            }
        };
        let start_ms = t.first_heard.map_or(now_ms, |(_, at_ms)| at_ms);
        self.push_entry(TranscriptEntry {
            speaker: Speaker::Agent,
            turn: t.turn,
            text: t.text.clone(),
            heard_text: Some(heard.clone()),
            start_ms,
            end_ms: start_ms + heard_ms,
            interrupted,
        });
        let latency = self.latency(&t, settled, now, interrupted);
        for (stage, value) in [
            ("end_of_turn", latency.end_of_turn_ms),
            ("stt_final", latency.stt_final_ms),
            ("decided", latency.decided_ms),
            ("first_tts_audio", latency.first_tts_audio_ms),
            ("first_play_audio", latency.first_play_audio_ms),
            ("first_heard", latency.first_heard_ms),
            ("played_stream", latency.played_stream_ms),
            ("gateway", latency.gateway_ms),
        ] {
            if let Some(ms) = value.filter(|ms| *ms >= 0.0) {
                histogram!(telemetry::TURN_STAGE, "stage" => stage).record(ms / 1e3);
            }
        }
        self.record.turns.push(latency);
        Some((t.turn, heard))
    }

    fn latency(
        &self,
        t: &AgentTurn,
        settled: Settled,
        now: Instant,
        interrupted: bool,
    ) -> TurnLatency {
        let base = t.answered.map(|a| a.speech_end_at);
        let since = |at: Option<Instant>| base.zip(at).map(|(b, a)| ms_between(b, a));
        let first_heard = t.first_heard.map(|(at, _)| at);
        let played = matches!(settled, Settled::Heard { acked: true, .. }).then_some(now);
        // The gateway's own time: the pipeline's VAD latency beyond the hangover, the
        // end-of-turn decision, the agent's reaction (not its providers' time: speech
        // recognition's final words, the model's first token, text-to-speech), and from the
        // first audio to the phone.
        let gateway = first_heard.zip(t.first_tts).map(|(heard, tts)| {
            let mut ms = ms_between(tts, heard);
            if let Some(a) = t.answered {
                ms += match t.asked {
                    Some(asked) => {
                        // It had what it needed at the end of turn, or at the final words.
                        let ready = a
                            .stt_final_at
                            .map_or(a.end_of_turn_at, |f| f.max(a.end_of_turn_at));
                        ms_between(ready, asked).max(0.0)
                    }
                    None => ms_between(a.end_of_turn_at, t.decided).max(0.0),
                };
                if let Some(vad) = a.vad_end_at {
                    ms += ms_between(vad, a.end_of_turn_at).max(0.0);
                    let vad_latency =
                        ms_between(a.speech_end_at, vad) - self.hangover.as_secs_f64() * 1e3;
                    ms += vad_latency.max(0.0);
                }
            }
            ms
        });
        TurnLatency {
            turn: t.turn,
            speech_end_ms: t.answered.map(|a| a.speech_end_ms),
            end_of_turn_ms: since(t.answered.map(|a| a.end_of_turn_at)),
            stt_final_ms: since(t.answered.and_then(|a| a.stt_final_at)),
            decided_ms: since(Some(t.decided)),
            first_tts_audio_ms: since(t.first_tts),
            first_play_audio_ms: since(t.first_play),
            first_heard_ms: since(first_heard),
            played_stream_ms: since(played),
            gateway_ms: gateway,
            interrupted,
        }
    }

    /// Audio queued for `playout_turn` so far, ms.
    pub(super) fn queued_ms(&self, playout_turn: u64) -> u64 {
        self.agent
            .iter()
            .find(|t| t.playout_turn == playout_turn)
            .map_or(0, |t| t.queued_ms)
    }

    /// Turns still open in the book (not yet settled).
    pub(super) fn open_turns(&self) -> impl Iterator<Item = u64> + '_ {
        self.agent.iter().map(|t| t.playout_turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_answered_turn_splits_its_latency_and_the_gateway_share_leaves_out_tts_and_hangover() {
        let t0 = Instant::now();
        let mut book = Book::new(ms(400));
        book.speech_started(1_000);
        // Speech ended at t0 (media 2000); the VAD said so 405 ms later.
        book.speech_ended(2_000, t0 + ms(405));
        book.end_of_turn(2_000, t0, t0 + ms(406));
        book.caller_text("yes", true, 2_406, t0 + ms(406));
        book.opened(1, 1, "Great, which city?".into(), t0 + ms(407), None);
        book.audio(1, 500, t0 + ms(457)); // text-to-speech took 50 ms
        book.first_play(1, t0 + ms(458));
        assert_eq!(book.started(1, t0 + ms(458), 2_458), Some(1));
        let (turn, heard) = book
            .settle(
                1,
                Settled::Heard {
                    heard_ms: 500,
                    acked: true,
                },
                t0 + ms(1_000),
                3_000,
            )
            .unwrap();
        assert_eq!((turn, heard.as_str()), (1, "Great, which city?"));
        let latency = &book.record().turns[0];
        assert_eq!(latency.speech_end_ms, Some(2_000));
        let near = |v: Option<f64>, want: f64| (v.unwrap() - want).abs() < 0.5;
        assert!(near(latency.end_of_turn_ms, 406.0));
        assert!(near(latency.decided_ms, 407.0));
        assert!(near(latency.first_tts_audio_ms, 457.0));
        assert!(near(latency.first_heard_ms, 458.0));
        assert!(near(latency.played_stream_ms, 1_000.0));
        // 5 ms VAD beyond the hangover + 1 eot + 1 decision + 1 to the phone.
        assert!(near(latency.gateway_ms, 8.0), "{:?}", latency.gateway_ms);
        let transcript = &book.record().transcript;
        assert_eq!(transcript.len(), 2);
        assert_eq!(transcript[0].speaker, Speaker::Caller);
        assert_eq!(
            (transcript[0].start_ms, transcript[0].end_ms),
            (1_000, 2_000)
        );
        assert_eq!(transcript[1].speaker, Speaker::Agent);
        assert_eq!(
            (transcript[1].start_ms, transcript[1].end_ms),
            (2_458, 2_958)
        );
    }

    #[test]
    fn a_cut_turn_keeps_only_what_was_heard() {
        let t0 = Instant::now();
        let mut book = Book::new(ms(400));
        book.opened(1, 1, "one two three four".into(), t0, None);
        book.audio(1, 1_000, t0);
        book.started(1, t0, 0);
        let (_, heard) = book
            .settle(1, Settled::Cut { heard_ms: 500 }, t0 + ms(500), 500)
            .unwrap();
        // Half the audio: every word begun by the ninth of 18 characters.
        assert_eq!(heard, "one two three");
        let entry = &book.record().transcript[0];
        assert!(entry.interrupted);
        assert_eq!(entry.heard_text.as_deref(), Some("one two three"));
        assert!(
            book.record().turns[0].speech_end_ms.is_none(),
            "a greeting answers no speech"
        );
    }

    #[test]
    fn key_presses_are_caller_entries() {
        let mut book = Book::new(ms(400));
        book.dtmf('1', 3_000);
        assert_eq!(book.record().transcript[0].text, "[dtmf] 1");
    }
}
