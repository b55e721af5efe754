//! The conversation: what the caller says reaches the agent, what the agent says reaches
//! the caller.
//!
//! Owns the session's end of the agent seam ([`AgentLink`]: events and caller audio in,
//! commands out, never awaited), turn-taking ([`TurnTaking`]: the end of the caller's turn,
//! barge-in), streaming playout (a turn plays from its first chunk; agent audio at any rate
//! is brought to 8 kHz, paced, encoded for the stream, one `checkpoint` per turn), the agent
//! channel of the recording (placed by the media clock), the book of turns (transcript and
//! latency split, published to the call record as turns settle), the agent's hang-up, and
//! what happens when the agent fails: it panicked, returned or stopped reading its inbox →
//! a fallback line, then a clean hang-up, counted.
//!
//! Budget per 20 ms of audio: caller frames go to the agent by value (no allocation);
//! agent audio reuses buffers sized once; the one allocation is the outbound JSON `String`
//! the socket writer takes. No lock, no await. Never: touches the socket except through the
//! bounded outbound queue ([`Outbox`]), awaits the agent, or reads the stream's media (it
//! gets the started [`MediaStream`] from the intake).

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, counter, histogram};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Attachment;
use super::agent_audio::AgentAudio;
use super::intake::MediaStream;
use super::journal::{Event as Journaled, Journal};
use super::playout::{self, Heard, Playout, checkpoint_name};
use super::socket::SessionDeps;
use super::turns::{Book, Settled};
use super::writer::Outbox;
use crate::agent::seam::{Health, Progress};
use crate::agent::turn::{Decision, TurnTaking};
use crate::agent::{AgentLink, CallInfo, Command, Event};
use crate::audio::frame::FRAME_SAMPLES_8K;
use crate::audio::resample::{Rate, Resampler};
use crate::audio::vad::VadEvent;
use crate::ids::CallId;
use crate::telemetry;
use crate::telephony::plivo::stream::{MediaFormat, Outbound, PlayMedia, encode_payload};
use crate::transcript::{ConversationRecord, HungUpBy};

/// An agent that leaves its events unread this long is stalled.
pub(super) const AGENT_STALL_AFTER: Duration = Duration::from_secs(3);
/// After a hang-up is asked for, the stream ends once what is queued was heard, or after
/// this long at most.
const HANGUP_WAIT: Duration = Duration::from_secs(30);

/// Told when voxgate's side ends a call, so Plivo hangs up through its REST API (the
/// server wires it to the control plane). Called on the session task: must not block.
pub trait HangUpCall: Send + Sync {
    /// Hang up `call_id` (Plivo's leg `call_uuid`).
    fn hang_up(&self, call_id: &CallId, call_uuid: &str);
}

/// Keeps a call's conversation on its record (the server wires it to the control plane).
pub trait ConversationRecords: Send + Sync {
    /// A channel the session publishes `call_id`'s latest conversation record on; the
    /// receiver writes it to the store, the latest value winning.
    fn open(&self, call_id: &CallId) -> watch::Sender<ConversationRecord>;
}

/// Why the conversation wants the stream to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The agent hung up and its goodbye was heard.
    AgentHungUp,
    /// The agent failed; the fallback line was heard.
    AgentFailed,
}

impl Ending {
    /// The `streams_ended` reason.
    pub(super) const fn reason(self) -> &'static str {
        match self {
            Self::AgentHungUp => "agent_hangup",
            Self::AgentFailed => "agent_failed",
        }
    }
}

#[derive(Debug)]
struct HangUp {
    reason: String,
    by: HungUpBy,
    since: Instant,
}

/// The agent's side of one media socket.
pub(super) struct Conversation {
    link: Option<AgentLink>,
    policy: TurnTaking,
    playout: Playout,
    speech: AgentAudio,
    book: Book,
    journal: Arc<Journal>,
    /// The agent's open turn and the playout turn it plays as.
    open: Option<(u64, u64)>,
    hangup: Option<HangUp>,
    fallback: Arc<[i16]>,
    records: Option<watch::Sender<ConversationRecord>>,
    on_hang_up: Option<Arc<dyn HangUpCall>>,
    call_id: CallId,
    /// 8 k → 16 k for agent audio on an L16 16 kHz stream.
    upsampler: Option<Resampler>,
    wide: Vec<i16>,
    encoded: Vec<u8>,
    payload: String,
    frames_out: Counter,
}

impl Conversation {
    /// The call's agent, started for a stream that started in `format` (the agent's audio
    /// is encoded for it).
    pub(super) fn new(
        deps: &SessionDeps,
        attachment: &Attachment,
        format: MediaFormat,
        hangover: Duration,
    ) -> Self {
        let upsampler = match format {
            MediaFormat::L16At16k => Resampler::new(Rate::Hz8000, Rate::Hz16000).ok(),
            _ => None,
        };
        let plan = &attachment.plan;
        let info = CallInfo {
            call_id: plan.call_id.clone(),
            direction: plan.direction,
            from: plan.from.clone(),
            to: plan.to.clone(),
            flow: plan.flow_name.clone(),
            campaign: plan.campaign.clone(),
            metadata: plan.metadata.clone(),
        };
        let flow = plan.flow_name.as_deref();
        let agent = deps.agents.build(plan.agent, flow);
        let turn_config = deps.agents.turn_config(plan.agent, flow);
        Self {
            link: Some(AgentLink::spawn(agent, info, AGENT_STALL_AFTER)),
            policy: TurnTaking::new(turn_config),
            playout: Playout::new(deps.config.playout_lead, deps.config.checkpoint_timeout),
            speech: AgentAudio::default(),
            book: Book::new(hangover),
            journal: Arc::clone(&attachment.journal),
            open: None,
            hangup: None,
            fallback: deps.agents.fallback_line(),
            records: deps.records.as_ref().map(|r| r.open(&plan.call_id)),
            on_hang_up: deps.on_hang_up.clone(),
            call_id: plan.call_id.clone(),
            upsampler,
            wide: vec![0; 2 * FRAME_SAMPLES_8K],
            encoded: Vec::with_capacity(2 * 2 * FRAME_SAMPLES_8K),
            payload: String::with_capacity(1_024),
            frames_out: counter!(telemetry::FRAMES_OUT),
        }
    }

    /// The rate the agent wants caller audio at.
    pub(super) fn caller_audio_rate(&self) -> Option<Rate> {
        self.link.as_ref().and_then(AgentLink::caller_audio_rate)
    }

    /// A 20 ms caller frame at `rate` and its media timestamp, for the agent.
    pub(super) fn on_caller_audio(&mut self, timestamp_ms: u64, rate: Rate, samples: &[i16]) {
        if let Some(link) = &mut self.link {
            link.hear(timestamp_ms, rate, samples);
        }
    }

    /// The agent's next command (for the session's select loop); pends while there is no
    /// agent.
    pub(super) async fn agent_command(&mut self) -> Command {
        match &mut self.link {
            Some(link) => link.command().await,
            None => std::future::pending().await,
        }
    }

    /// The pipeline has VAD events: each is journaled, booked, told to the agent and run
    /// through turn-taking.
    pub(super) fn on_vad_events(&mut self, stream: &MediaStream, now: Instant, out: &mut Outbox) {
        while let Some(event) = stream.call.pop_event() {
            let now_ms = stream.clock.now_ms(now);
            self.policy
                .set_agent_audible(self.playout.is_audible(now), now_ms);
            self.policy.voiced(stream.call.voiced_until_ms());
            let decision = match event {
                VadEvent::SpeechStarted { onset_ms, .. } => {
                    self.journal.record(Journaled::SpeechStarted { onset_ms });
                    self.book.speech_started(onset_ms);
                    self.tell(Event::SpeechStarted { onset_ms });
                    self.policy.speech_started(onset_ms, now_ms)
                }
                VadEvent::SpeechEnded { end_ms, .. } => {
                    self.journal.record(Journaled::SpeechEnded { end_ms });
                    self.book.speech_ended(end_ms, now);
                    self.tell(Event::SpeechEnded { end_ms });
                    self.policy.speech_ended(end_ms, now_ms)
                }
            };
            self.decide(decision, stream, now, out);
        }
        self.pump(stream, now, out);
    }

    /// Every 20 ms: turn-taking's timers, what playout says is due, turns whose
    /// `playedStream` never came, the agent's health and a hang-up in progress. Returns why
    /// the stream must end, if it must.
    pub(super) fn on_tick(
        &mut self,
        stream: &MediaStream,
        now: Instant,
        out: &mut Outbox,
    ) -> Option<Ending> {
        let now_ms = stream.clock.now_ms(now);
        self.policy
            .set_agent_audible(self.playout.is_audible(now), now_ms);
        self.policy.voiced(stream.call.voiced_until_ms());
        let decision = self.policy.poll(now_ms);
        self.decide(decision, stream, now, out);
        self.pump(stream, now, out);
        let mut overdue = Vec::new();
        self.playout
            .expire(now, out.taken(), |turn, heard, sent_ms| {
                overdue.push((turn, heard, sent_ms))
            });
        for (turn, heard, sent_ms) in overdue {
            if heard == Heard::Timeout {
                warn!(turn, "no playedStream for the turn: assuming it was heard");
            }
            self.turn_heard(turn, heard, sent_ms, stream, now);
        }
        if let Some(link) = &mut self.link {
            let health = link.health(now);
            if health != Health::Running && self.hangup.is_none() {
                self.agent_failed(health, stream, now, out);
            }
        }
        self.hang_up_when_heard(stream, now)
    }

    /// The stream ended: each turn that never reached the socket is counted unsent, the
    /// agent is told, and the record says who ended the call.
    pub(super) fn end(&mut self, out: &Outbox, reason: &'static str, now_ms: u64) {
        let mut unsent = Vec::new();
        self.playout.end(out.taken(), |turn| unsent.push(turn));
        if !unsent.is_empty() {
            info!(turns = ?unsent, "the stream ended before these turns reached the socket");
        }
        let now = Instant::now();
        for turn in unsent {
            counter!(telemetry::TURNS, "heard" => "unsent").increment(1);
            self.journal.record(Journaled::TurnUnsent { turn });
            self.settle(turn, Settled::Unsent, now, now_ms);
        }
        let open: Vec<u64> = self.book.open_turns().collect();
        for turn in open {
            self.settle(turn, Settled::Unsent, now, now_ms);
        }
        self.tell(Event::Ending);
        let by = match (&self.hangup, reason) {
            (Some(hangup), _) => hangup.by,
            (None, "shutdown") => HungUpBy::Voxgate,
            _ => HungUpBy::Caller,
        };
        self.book.record_mut().hung_up_by = Some(by);
        self.publish();
    }

    /// Plivo's `playedStream`: the phone played up to the checkpoint `name`.
    pub(super) fn on_played(&mut self, name: &str, stream: &MediaStream, now: Instant) {
        match self.playout.on_played(name) {
            Some((turn, sent_ms)) => self.turn_heard(turn, Heard::Played, sent_ms, stream, now),
            None => debug!(%name, "playedStream for no pending checkpoint"),
        }
    }

    /// The caller pressed `digit`.
    pub(super) fn on_dtmf(&mut self, digit: String, stream: &MediaStream, now: Instant) {
        info!(%digit, "dtmf");
        let at_ms = stream.clock.now_ms(now);
        if let Some(key) = digit.chars().next() {
            self.book.dtmf(key, at_ms);
            self.tell(Event::Dtmf { digit: key, at_ms });
            self.publish();
        }
        self.journal.record(Journaled::Dtmf { digit });
    }

    /// One command from the agent.
    pub(super) fn on_command(
        &mut self,
        command: Command,
        stream: &MediaStream,
        now: Instant,
        out: &mut Outbox,
    ) {
        match command {
            Command::OpenTurn {
                turn,
                text,
                decided,
                asked,
            } => {
                if self
                    .hangup
                    .as_ref()
                    .is_some_and(|h| h.by == HungUpBy::Voxgate)
                {
                    return;
                }
                self.close_open_turn();
                let playout_turn = self.playout.open_turn();
                self.open = Some((turn, playout_turn));
                self.book.opened(turn, playout_turn, text, decided, asked);
            }
            Command::Audio {
                turn,
                rate,
                samples,
            } => match self.open {
                Some((open, playout_turn)) if open == turn => {
                    let Self {
                        speech, playout, ..
                    } = self;
                    let mut pushed = 0;
                    let converted = speech.push(rate, &samples, |s| {
                        pushed += s.len();
                        playout.push(s);
                    });
                    if converted.is_err() {
                        counter!(telemetry::AGENT_AUDIO_DROPPED, "reason" => "resample")
                            .increment(1);
                    }
                    self.book.audio(playout_turn, pushed as u64 / 8, now);
                    self.pump(stream, now, out);
                }
                _ => counter!(telemetry::AGENT_AUDIO_DROPPED, "reason" => "no_open_turn")
                    .increment(1),
            },
            Command::Words { turn, words } => self.book.words(turn, words),
            Command::TurnText { turn, text } => self.book.text(turn, text),
            Command::CloseTurn { turn } => {
                if self.open.is_some_and(|(open, _)| open == turn) {
                    self.close_open_turn();
                    self.pump(stream, now, out);
                }
            }
            Command::Clear => {
                if self.playout.is_speaking(now) || self.open.is_some() {
                    self.clear(stream, now, out);
                }
            }
            Command::HangUp { reason } => {
                if self.hangup.is_none() {
                    info!(%reason, "the agent hangs up once its last turn is heard");
                    self.journal.record(Journaled::HangUp {
                        by: "agent",
                        reason: reason.clone(),
                    });
                    self.hangup = Some(HangUp {
                        reason,
                        by: HungUpBy::Agent,
                        since: now,
                    });
                    self.close_open_turn();
                }
            }
            Command::ProviderFailed {
                api,
                provider,
                kind,
                outcome,
                message,
            } => {
                let events = &mut self.book.record_mut().agent_events;
                if events.len() < crate::transcript::MAX_AGENT_EVENTS {
                    events.push(crate::transcript::AgentEvent {
                        at_ms: stream.clock.now_ms(now),
                        api: api.to_owned(),
                        provider: provider.to_owned(),
                        kind: kind.to_owned(),
                        outcome: outcome.to_owned(),
                        message,
                    });
                    self.publish();
                }
            }
            Command::SetSlot { name, value } => {
                debug!(%name, "slot set");
                self.book.record_mut().slots.insert(name, value);
                self.publish();
            }
            Command::CallerText { text, is_final, at } => {
                let now_ms = stream.clock.now_ms(now);
                // The STT stage ends when the agent had the words, not when it told us.
                self.book.caller_text(&text, is_final, now_ms, at.min(now));
                let decision = self.policy.transcript(&text, is_final, now_ms);
                self.decide(decision, stream, now, out);
                if is_final {
                    self.publish();
                }
            }
            Command::TurnTaking(config) => self.policy = TurnTaking::new(config),
        }
    }

    fn tell(&mut self, event: Event) {
        if let Some(link) = &mut self.link {
            link.tell(event);
        }
    }

    fn publish(&self) {
        if let Some(records) = &self.records {
            records.send_replace(self.book.record().clone());
        }
    }

    /// Ends the agent's open turn: the resampler's tail, padding, then its checkpoint.
    fn close_open_turn(&mut self) {
        let Some((turn, playout_turn)) = self.open.take() else {
            return;
        };
        let Self {
            speech, playout, ..
        } = self;
        let mut pushed = 0;
        if speech
            .finish(|s| {
                pushed += s.len();
                playout.push(s);
            })
            .is_err()
        {
            counter!(telemetry::AGENT_AUDIO_DROPPED, "reason" => "resample").increment(1);
        }
        self.playout.close_turn();
        self.book
            .audio(playout_turn, pushed as u64 / 8, Instant::now());
        self.journal.record(Journaled::TurnQueued {
            turn: playout_turn,
            duration_ms: self.book.queued_ms(playout_turn),
        });
        debug!(turn, playout_turn, "agent turn closed");
    }

    /// Acts on a turn-taking decision.
    fn decide(
        &mut self,
        decision: Option<Decision>,
        stream: &MediaStream,
        now: Instant,
        out: &mut Outbox,
    ) {
        match decision {
            None => {}
            Some(Decision::BargeIn { onset_ms })
                if self.hangup.is_none() && self.playout.is_speaking(now) =>
            {
                self.clear(stream, now, out);
                counter!(telemetry::BARGE_INS).increment(1);
                self.tell(Event::BargeIn { onset_ms });
            }
            Some(Decision::BargeIn { .. }) => {}
            Some(Decision::EndOfTurn {
                speech_end_ms,
                text,
            }) => {
                let now_ms = stream.clock.now_ms(now);
                let ago = Duration::from_millis(now_ms.saturating_sub(speech_end_ms));
                let speech_end_at = now.checked_sub(ago).unwrap_or(now);
                self.book.end_of_turn(speech_end_ms, speech_end_at, now);
                self.tell(Event::EndOfTurn {
                    speech_end_ms,
                    text,
                });
            }
        }
    }

    /// Clears the phone's audio and everything queued: each cut turn keeps what was heard.
    fn clear(&mut self, stream: &MediaStream, now: Instant, out: &mut Outbox) {
        out.send(
            Outbound::ClearAudio {
                stream_id: stream.stream_id.as_str().into(),
            }
            .to_json(),
        );
        let now_ms = stream.clock.now_ms(now);
        if let Some(recording) = &stream.recording {
            recording.clear(now_ms);
        }
        self.open = None;
        let _ = self.speech.finish(|_| {});
        let cut = self.playout.clear(now);
        let mut cut_turns = Vec::with_capacity(cut.len());
        for c in cut {
            cut_turns.push(c.turn);
            counter!(telemetry::TURNS, "heard" => "cleared").increment(1);
            self.settle(
                c.turn,
                Settled::Cut {
                    heard_ms: c.heard_ms,
                },
                now,
                now_ms,
            );
        }
        info!(?cut_turns, "cleared the agent's audio");
        // Stamped with the decision's instant: the agent may hear of the cut (and cancel
        // its providers) before this line runs.
        self.journal
            .record_at(now, Journaled::BargeIn { cut_turns });
    }

    /// Settles `turn` in the book and tells the agent how it ended.
    fn settle(&mut self, turn: u64, settled: Settled, now: Instant, now_ms: u64) {
        let Some((agent_turn, heard_text)) = self.book.settle(turn, settled, now, now_ms) else {
            return;
        };
        let progress = match settled {
            Settled::Heard { heard_ms, .. } => Progress::Heard {
                turn: agent_turn,
                heard_ms,
            },
            Settled::Cut { heard_ms } => Progress::Cut {
                turn: agent_turn,
                heard_ms,
                heard_text,
            },
            Settled::Unsent => Progress::Unsent { turn: agent_turn },
        };
        if let Some(latency) = self.book.record().turns.last()
            && let Some(ms) = latency.played_stream_ms
        {
            histogram!(telemetry::TURN_HEARD_LATENCY).record(ms / 1e3);
        }
        self.tell(Event::Playout(progress));
        self.publish();
    }

    /// Sends whatever playout says is due now, and tells the agent which turns started
    /// playing.
    fn pump(&mut self, stream: &MediaStream, now: Instant, out: &mut Outbox) {
        let Self {
            playout,
            upsampler,
            encoded,
            payload,
            wide,
            frames_out,
            journal,
            ..
        } = self;
        playout.poll(now, |due| {
            let message = match due {
                playout::Send::Audio { samples, lead } => {
                    histogram!(telemetry::PLAYOUT_LEAD).record(lead.as_secs_f64());
                    if let Some(recording) = &stream.recording {
                        recording.agent(stream.clock.now_ms(now), samples);
                    }
                    let samples = match upsampler.as_mut() {
                        Some(up) => match up.process(samples, wide) {
                            Ok(n) => &wide[..n],
                            Err(_) => return None,
                        },
                        None => samples,
                    };
                    payload.clear();
                    encode_payload(samples, stream.format, encoded, payload);
                    frames_out.increment(1);
                    Outbound::PlayAudio {
                        media: PlayMedia {
                            content_type: stream.format.content_type().into(),
                            sample_rate: stream.format.sample_rate(),
                            payload: payload.as_str().into(),
                        },
                        stream_id: stream.stream_id.as_str().into(),
                    }
                    .to_json()
                }
                playout::Send::Checkpoint { turn } => {
                    journal.record(Journaled::TurnSent { turn });
                    Outbound::Checkpoint {
                        stream_id: stream.stream_id.as_str().into(),
                        name: checkpoint_name(turn).into(),
                    }
                    .to_json()
                }
            };
            out.send(message)
        });
        while let Some((turn, plays_at)) = self.playout.take_started() {
            let ahead = plays_at.saturating_duration_since(now).as_millis() as u64;
            let at_ms = stream.clock.now_ms(now) + ahead;
            self.book.first_play(turn, now);
            if let Some(agent_turn) = self.book.started(turn, plays_at, at_ms) {
                self.tell(Event::Playout(Progress::Started {
                    turn: agent_turn,
                    at_ms,
                }));
            }
        }
    }

    fn turn_heard(
        &mut self,
        turn: u64,
        heard: Heard,
        sent_ms: u64,
        stream: &MediaStream,
        now: Instant,
    ) {
        let by: &'static str = heard.into();
        counter!(telemetry::TURNS, "heard" => by).increment(1);
        self.journal.record(match heard {
            Heard::Unsent => Journaled::TurnUnsent { turn },
            _ => Journaled::TurnHeard { turn, by },
        });
        let settled = match heard {
            Heard::Unsent => Settled::Unsent,
            Heard::Played => Settled::Heard {
                heard_ms: sent_ms,
                acked: true,
            },
            Heard::Timeout => Settled::Heard {
                heard_ms: sent_ms,
                acked: false,
            },
        };
        self.settle(turn, settled, now, stream.clock.now_ms(now));
    }

    /// The agent panicked, returned or stalled: it is dropped, the caller hears the
    /// fallback line, and the call is hung up once it was heard.
    fn agent_failed(
        &mut self,
        health: Health,
        stream: &MediaStream,
        now: Instant,
        out: &mut Outbox,
    ) {
        let how = health.as_str();
        warn!(
            how,
            "the agent failed: playing the fallback line, then hanging up"
        );
        counter!(telemetry::AGENT_FAILURES, "how" => how).increment(1);
        self.link = None;
        self.close_open_turn();
        self.journal.record(Journaled::HangUp {
            by: "voxgate",
            reason: format!("agent {how}"),
        });
        let playout_turn = self.playout.open_turn();
        self.book
            .opened(0, playout_turn, "[fallback line]".to_owned(), now, None);
        self.playout.push(&self.fallback);
        self.book
            .audio(playout_turn, self.fallback.len() as u64 / 8, now);
        self.playout.close_turn();
        self.journal.record(Journaled::TurnQueued {
            turn: playout_turn,
            duration_ms: self.fallback.len() as u64 / 8,
        });
        self.hangup = Some(HangUp {
            reason: format!("agent {how}"),
            by: HungUpBy::Voxgate,
            since: now,
        });
        self.pump(stream, now, out);
    }

    /// A hang-up asked for: once everything queued was heard (or after [`HANGUP_WAIT`]),
    /// Plivo is told through its REST API (when configured) and the stream ends.
    fn hang_up_when_heard(&mut self, stream: &MediaStream, now: Instant) -> Option<Ending> {
        let hangup = self.hangup.as_ref()?;
        let waited = now.duration_since(hangup.since);
        if !(self.open.is_none() && self.playout.is_idle()) && waited < HANGUP_WAIT {
            return None;
        }
        let (ending, by) = match hangup.by {
            HungUpBy::Agent => (Ending::AgentHungUp, "agent"),
            _ => (Ending::AgentFailed, "voxgate"),
        };
        info!(reason = %hangup.reason, by, "hanging up");
        counter!(telemetry::HANGUPS, "by" => by).increment(1);
        if let Some(hang_up) = &self.on_hang_up {
            hang_up.hang_up(&self.call_id, stream.call_uuid.as_str());
        }
        Some(ending)
    }
}
