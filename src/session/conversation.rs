//! The conversation: what the caller says reaches the agent, what the agent says reaches
//! the caller.
//!
//! Owns the agent bridge (caller audio and VAD events in, turns out), barge-in (caller
//! speech while the agent is heard clears the phone's audio and the agent's pending turns),
//! the playout pump with outbound encoding (8 k → 16 k for L16 streams, µ-law or L16,
//! base64, `playAudio` and one `checkpoint` per turn), the agent channel of the recording
//! (placed by the media clock), and each turn's heard / latency metrics and journal events.
//! A conversation exists once the stream started: a socket that never sends `start` costs
//! no agent and no playout.
//!
//! Budget per 20 ms of agent audio: encoding reuses buffers sized once; the one allocation
//! is the outbound JSON `String` the socket writer takes. No lock, no await.
//! Never: touches the socket except through the bounded outbound queue ([`Outbox`]; full:
//! the message is dropped and counted), awaits, or reads the stream's media (it gets the
//! started [`MediaStream`] from the intake).

use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, counter, histogram};
use tracing::{debug, info, warn};

use super::Attachment;
use super::intake::MediaStream;
use super::journal::{Event, Journal};
use super::playout::{self, Heard, Playout, checkpoint_name};
use super::socket::SessionDeps;
use super::writer::Outbox;
use crate::agent::Agent;
use crate::audio::frame::FRAME_SAMPLES_8K;
use crate::audio::resample::{Rate, Resampler};
use crate::audio::vad::VadEvent;
use crate::telemetry;
use crate::telephony::plivo::stream::{MediaFormat, Outbound, PlayMedia, encode_payload};

/// The agent's side of one media socket.
pub(super) struct Conversation {
    agent: Box<dyn Agent>,
    playout: Playout,
    journal: Arc<Journal>,
    /// 8 k → 16 k for agent audio on an L16 16 kHz stream.
    upsampler: Option<Resampler>,
    wide: Vec<i16>,
    encoded: Vec<u8>,
    payload: String,
    /// When the caller's last utterance was declared ended, for turn latency.
    speech_ended_at: Vec<(u64, Instant)>,
    frames_out: Counter,
}

impl Conversation {
    /// The call's agent, for a stream that started in `format` (the agent's audio is
    /// encoded for it).
    pub(super) fn new(deps: &SessionDeps, attachment: &Attachment, format: MediaFormat) -> Self {
        let upsampler = match format {
            MediaFormat::L16At16k => Resampler::new(Rate::Hz8000, Rate::Hz16000).ok(),
            _ => None,
        };
        Self {
            agent: attachment.plan.agent.build(),
            playout: Playout::new(deps.config.playout_lead, deps.config.checkpoint_timeout),
            journal: Arc::clone(&attachment.journal),
            upsampler,
            wide: vec![0; 2 * FRAME_SAMPLES_8K],
            encoded: Vec::with_capacity(2 * 2 * FRAME_SAMPLES_8K),
            payload: String::with_capacity(1_024),
            speech_ended_at: Vec::new(),
            frames_out: counter!(telemetry::FRAMES_OUT),
        }
    }

    /// A 20 ms caller frame (8 kHz, record tap) at its media timestamp.
    pub(super) fn on_caller_audio(&mut self, timestamp_ms: u64, samples: &[i16]) {
        self.agent.on_caller_audio(timestamp_ms, samples);
    }

    /// The pipeline has VAD events: each is journaled and handed to the agent; speech that
    /// starts while the agent is heard barges in; a turn the agent answers is queued.
    pub(super) fn on_vad_events(&mut self, stream: &MediaStream, now: Instant, out: &mut Outbox) {
        while let Some(event) = stream.call.pop_event() {
            match event {
                VadEvent::SpeechStarted { onset_ms, .. } => {
                    self.journal.record(Event::SpeechStarted { onset_ms });
                    if self.playout.is_speaking(now) {
                        self.barge_in(stream, now, out);
                    }
                }
                VadEvent::SpeechEnded { end_ms, .. } => {
                    self.journal.record(Event::SpeechEnded { end_ms });
                }
            }
            if let Some(audio) = self.agent.on_vad(event) {
                let turn = self.playout.enqueue_turn(&audio);
                self.speech_ended_at.push((turn, now));
                self.journal.record(Event::TurnQueued {
                    turn,
                    duration_ms: audio.len() as u64 / 8,
                });
            }
        }
        self.pump(stream, now, out);
    }

    /// Every 20 ms: sends what is due, and settles turns whose `playedStream` never came:
    /// heard if their checkpoint reached the socket, unsent if it was dropped.
    pub(super) fn on_tick(&mut self, stream: &MediaStream, now: Instant, out: &mut Outbox) {
        self.pump(stream, now, out);
        let mut overdue = Vec::new();
        self.playout
            .expire(now, out.taken(), |turn, heard| overdue.push((turn, heard)));
        for (turn, heard) in overdue {
            if heard == Heard::Timeout {
                warn!(turn, "no playedStream for the turn: assuming it was heard");
            }
            self.turn_heard(turn, heard);
        }
    }

    /// The stream ended: each turn that never reached the socket is counted unsent.
    pub(super) fn end(&mut self, out: &Outbox) {
        let mut unsent = Vec::new();
        self.playout.end(out.taken(), |turn| unsent.push(turn));
        if !unsent.is_empty() {
            info!(turns = ?unsent, "the stream ended before these turns reached the socket");
        }
        for turn in unsent {
            self.turn_heard(turn, Heard::Unsent);
        }
    }

    /// Plivo's `playedStream`: the phone played up to the checkpoint `name`.
    pub(super) fn on_played(&mut self, name: &str) {
        if let Some(turn) = self.playout.on_played(name) {
            self.turn_heard(turn, Heard::Played);
        } else {
            debug!(%name, "playedStream for no pending checkpoint");
        }
    }

    /// The caller pressed `digit`.
    pub(super) fn on_dtmf(&mut self, digit: String) {
        info!(%digit, "dtmf");
        self.journal.record(Event::Dtmf { digit });
    }

    fn barge_in(&mut self, stream: &MediaStream, now: Instant, out: &mut Outbox) {
        out.send(
            Outbound::ClearAudio {
                stream_id: stream.stream_id.as_str().into(),
            }
            .to_json(),
        );
        if let Some(recording) = &stream.recording {
            recording.clear(stream.clock.now_ms(now));
        }
        let cut = self.playout.clear(now);
        for turn in &cut {
            counter!(telemetry::TURNS, "heard" => "cleared").increment(1);
            self.speech_ended_at.retain(|(t, _)| t != turn);
        }
        counter!(telemetry::BARGE_INS).increment(1);
        info!(cut_turns = ?cut, "barge-in: cleared the agent's audio");
        self.journal.record(Event::BargeIn { cut_turns: cut });
    }

    /// Sends whatever playout says is due now.
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
                    journal.record(Event::TurnSent { turn });
                    Outbound::Checkpoint {
                        stream_id: stream.stream_id.as_str().into(),
                        name: checkpoint_name(turn).into(),
                    }
                    .to_json()
                }
            };
            out.send(message)
        });
    }

    fn turn_heard(&mut self, turn: u64, heard: Heard) {
        let by: &'static str = heard.into();
        counter!(telemetry::TURNS, "heard" => by).increment(1);
        if let Some(index) = self.speech_ended_at.iter().position(|(t, _)| *t == turn) {
            let (_, ended) = self.speech_ended_at.swap_remove(index);
            if heard == Heard::Played {
                histogram!(telemetry::TURN_HEARD_LATENCY).record(ended.elapsed().as_secs_f64());
            }
        }
        self.journal.record(match heard {
            Heard::Unsent => Event::TurnUnsent { turn },
            _ => Event::TurnHeard { turn, by },
        });
    }
}
