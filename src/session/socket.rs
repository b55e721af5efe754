//! The transport of one media WebSocket: the socket's messages in, the `writer` out,
//! and the one select loop that drives the call.
//!
//! Layers, each knowing only the one below: the transport (any `Stream` of messages and a
//! `Sink` for them, so tests can use channels) → the wire codec (`plivo::stream`) → the
//! call's two sides: `intake` (the caller's audio into the DSP pipeline) and the
//! `conversation` (the agent, barge-in, paced playout; it exists from `start` on). The
//! loop waits on cancellation, the writer's stall, the socket, the pipeline's VAD events
//! and — before `start` — the start deadline, after it a 20 ms tick, and hands each to the
//! side it concerns.
//!
//! Owns: parsing and dispatching text frames; the ways a stream ends (socket closed, no
//! valid `start` within `start_timeout`, no call slot at `start`, idle timeout, the peer
//! stopped reading, a message the transport could not read, taken over by another socket,
//! hung up, shutdown) and the `stream ended` metric, journal event and log line. Never:
//! decodes audio, talks to the agent, or awaits anything but the socket, the writer and
//! the timers.
//!
//! Every bad message is dropped and counted by kind; the session goes on. A message the
//! transport could not read (over its size cap, or a text frame that is not UTF-8) ends
//! it, with the RFC 6455 close code for the reason.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use futures_util::{Sink, Stream, StreamExt};
use metrics::counter;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span};

use super::config::SessionConfig;
use super::conversation::Conversation;
pub use super::conversation::{ConversationRecords, HangUpCall};
use super::intake::{Intake, Started};
use super::journal::Event;
use super::writer::{self, Outbox};
use super::{Attachment, Sessions};
use crate::agent::Agents;
use crate::audio::frame::FRAME_MS;
use crate::audio::pipeline::{CallHandle, Pipeline};
use crate::audio::resample::Rate;
use crate::ids::CallId;
use crate::recording::writer::Recorder;
use crate::telemetry::{self, bad_message};
use crate::telephony::plivo::stream::{Inbound, parse_inbound};

pub use super::writer::{CloseCode, WsOut};

/// A WebSocket message, as the transport gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum WsMessage {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame (Plivo never sends one).
    Binary(usize),
    /// The peer closed.
    Close,
    /// Ping, pong: nothing to do.
    Other,
    /// A message the transport could not read: the socket cannot go on.
    Unreadable(Unreadable),
}

/// Why the transport could not read a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Over the transport's own cap on one message (or frame).
    TooLarge,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
}

impl Unreadable {
    /// The `bad_messages` kind, which is also the `streams_ended` reason.
    pub const fn kind(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::InvalidUtf8 => "invalid_utf8",
        }
    }

    /// The close code RFC 6455 has for it.
    pub const fn close_code(self) -> CloseCode {
        match self {
            Self::TooLarge => CloseCode::TooBig,
            Self::InvalidUtf8 => CloseCode::InvalidPayload,
        }
    }
}

/// Why a stream ended: a fixed label, and the close code owed to the peer, if any.
#[derive(Debug, Clone, Copy)]
struct End {
    reason: &'static str,
    code: Option<CloseCode>,
}

impl End {
    const fn because(reason: &'static str) -> Self {
        Self { reason, code: None }
    }
}

/// Told when a call's media stream starts (the server wires it to the control plane,
/// which records `call.media_started`). Called on the session task: it must not block.
pub trait StreamStarted: Send + Sync {
    /// `call_id`'s media stream started; `call_uuid` is Plivo's id for the call leg.
    fn stream_started(&self, call_id: &CallId, call_uuid: &str);
}

/// What a session needs from the server.
#[derive(Clone)]
pub struct SessionDeps {
    /// The DSP pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The registry the session detaches from when it ends.
    pub sessions: Arc<Sessions>,
    /// Session settings.
    pub config: SessionConfig,
    /// Told when a stream starts; `None` without a control plane.
    pub on_stream_started: Option<Arc<dyn StreamStarted>>,
    /// Records calls (stereo WAV) whose plan says so; `None` when recording is off.
    pub recorder: Option<Arc<Recorder>>,
    /// Builds each call's agent.
    pub agents: Arc<Agents>,
    /// Hangs a call up through Plivo's REST API when voxgate's side ends it; `None`
    /// without Plivo credentials (closing the stream then ends the call).
    pub on_hang_up: Option<Arc<dyn HangUpCall>>,
    /// Keeps each call's transcript, turns and slots on its record; `None` without a
    /// control plane.
    pub records: Option<Arc<dyn ConversationRecords>>,
}

/// One media socket's session: the transport around the caller's side and the agent's.
struct Session {
    deps: SessionDeps,
    attachment: Attachment,
    intake: Intake,
    /// The agent's side, from `start` on.
    conversation: Option<Conversation>,
    outbox: Outbox,
}

/// Runs one media socket to its end. `incoming` yields the socket's messages; `sink`
/// takes the frames to send.
pub async fn run<In, Out, E>(incoming: In, sink: Out, attachment: Attachment, deps: SessionDeps)
where
    In: Stream<Item = Result<WsMessage, E>> + Unpin + Send,
    Out: Sink<WsOut> + Unpin + Send + 'static,
{
    let span = info_span!("call", call_id = %attachment.call_id, stream_id = tracing::field::Empty);
    async move {
        let stalled = CancellationToken::new();
        let (outbox, writer) = writer::spawn(sink, deps.config.write_timeout, stalled.clone());
        let call_id = attachment.call_id.clone();
        let generation = attachment.generation;
        let sessions = Arc::clone(&deps.sessions);
        let mut session = Session::new(attachment, deps, outbox);
        let end = session.serve(incoming, &stalled).await;
        session.settle_caller_audio().await;
        session.finish(end); // closes the outbound queue: the writer flushes and closes
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        sessions.detach(&call_id, generation);
    }
    .instrument(span)
    .await
}

impl Session {
    fn new(attachment: Attachment, deps: SessionDeps, outbox: Outbox) -> Self {
        Self {
            intake: Intake::new(&deps),
            conversation: None,
            outbox,
            deps,
            attachment,
        }
    }

    async fn serve<In, E>(&mut self, mut incoming: In, writer_stalled: &CancellationToken) -> End
    where
        In: Stream<Item = Result<WsMessage, E>> + Unpin,
    {
        let cancel = self.attachment.cancel.clone();
        let start_deadline = tokio::time::sleep(self.deps.config.start_timeout);
        tokio::pin!(start_deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(FRAME_MS));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let started = self.intake.stream().is_some();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    return End::because(if self.deps.sessions.is_draining() { "shutdown" } else { "taken_over_or_hung_up" });
                }
                _ = writer_stalled.cancelled() => return End::because("write_timeout"),
                message = incoming.next() => match message {
                    Some(Ok(WsMessage::Text(text))) => {
                        if let ControlFlow::Break(end) = self.on_text(text.as_str()) {
                            return end;
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => bad_message("binary_frame"),
                    Some(Ok(WsMessage::Other)) => {}
                    Some(Ok(WsMessage::Unreadable(unreadable))) => {
                        bad_message(unreadable.kind());
                        info!(kind = unreadable.kind(), "a message the transport could not read: closing the stream");
                        return End { reason: unreadable.kind(), code: Some(unreadable.close_code()) };
                    }
                    Some(Ok(WsMessage::Close)) | Some(Err(_)) | None => return End::because("closed"),
                },
                _ = events_ready(self.intake.stream().map(|s| &s.call)) => self.on_events(Instant::now()),
                command = agent_command(self.conversation.as_mut()) => {
                    if let (Some(stream), Some(conversation)) = (self.intake.stream(), &mut self.conversation) {
                        conversation.on_command(command, stream, Instant::now(), &mut self.outbox);
                    }
                }
                // Before `start` nothing ticks: a socket that never starts costs no wake-ups.
                _ = &mut start_deadline, if !started => {
                    info!(start_timeout = ?self.deps.config.start_timeout, "no valid start: closing the socket");
                    return End::because("start_timeout");
                }
                _ = tick.tick(), if started => {
                    let now = Instant::now();
                    if let Some(ending) = self.on_tick(now) {
                        return End::because(ending.reason());
                    }
                    if now.duration_since(self.intake.last_media()) > self.deps.config.idle_timeout {
                        info!(idle = ?self.deps.config.idle_timeout, "no media: closing the stream");
                        return End::because("idle_timeout");
                    }
                }
            }
        }
    }

    /// At the end of the stream: lets the DSP worker finish the caller frames still queued
    /// (at most 100 ms), then takes them, so the recording ends where the call did.
    async fn settle_caller_audio(&mut self) {
        if self.intake.recorded_frames_queued().is_none() {
            return;
        }
        for _ in 0..20 {
            if self.intake.recorded_frames_queued() == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The worker may still be on the last frame it took.
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.take_caller_audio();
    }

    /// Settles the turns that never reached the socket, ends the stream, counts and logs
    /// why, and closes the outbound queue (with the close code owed, if any).
    fn finish(mut self, end: End) {
        if let Some(conversation) = &mut self.conversation {
            let now_ms = self
                .intake
                .stream()
                .map_or(0, |stream| stream.clock.now_ms(Instant::now()));
            conversation.end(&self.outbox, end.reason, now_ms);
        }
        let reason = end.reason;
        self.intake.close();
        counter!(telemetry::STREAMS_ENDED, "reason" => reason).increment(1);
        self.attachment
            .journal
            .record(Event::StreamEnded { reason });
        info!(
            reason,
            lost_chunks = self.intake.lost_chunks(),
            resyncs = self.intake.resyncs(),
            "stream ended"
        );
        self.outbox.close(end.code);
    }

    /// One text frame: parsed, then handed to the side it concerns. Breaks when the
    /// stream must end.
    fn on_text(&mut self, text: &str) -> ControlFlow<End> {
        let message = match parse_inbound(text) {
            Ok(message) => message,
            Err(error) => {
                bad_message(error.kind());
                debug!(%error, "dropped a bad message");
                return ControlFlow::Continue(());
            }
        };
        match message {
            Inbound::Media(media) => {
                self.attachment.pulse.beat(Instant::now());
                self.intake.on_media(&media);
                // Take the record tap's frames as they come, so a fast stream (the
                // simulator's --speed) never overflows its queue between ticks.
                self.take_caller_audio();
            }
            Inbound::Start(start) => {
                let plan = &self.attachment.plan;
                let wideband =
                    self.deps.agents.caller_audio_rate(plan.agent) == Some(Rate::Hz16000);
                match self.intake.on_start(&start, &self.attachment, wideband) {
                    Started::Stream(format) => {
                        let hangover =
                            Duration::from_millis(u64::from(self.deps.pipeline.vad().hangover_ms));
                        self.conversation = Some(Conversation::new(
                            &self.deps,
                            &self.attachment,
                            format,
                            hangover,
                        ));
                    }
                    Started::Dropped => {}
                    Started::Refused(refused) => {
                        return ControlFlow::Break(End::because(refused.kind()));
                    }
                }
            }
            Inbound::PlayedStream(played) => match (self.intake.stream(), &mut self.conversation) {
                (Some(stream), Some(conversation)) => {
                    conversation.on_played(&played.name, stream, Instant::now())
                }
                _ => debug!(name = %played.name, "playedStream before start"),
            },
            Inbound::ClearedAudio(_) => debug!("Plivo cleared its audio"),
            Inbound::Dtmf(dtmf) => match (self.intake.stream(), &mut self.conversation) {
                (Some(stream), Some(conversation)) => {
                    conversation.on_dtmf(dtmf.dtmf.digit, stream, Instant::now())
                }
                _ => bad_message("dtmf_before_start"),
            },
            Inbound::Stop(stop) => info!(reason = ?stop.reason, "Plivo sent stop"),
            Inbound::Unknown { event } => {
                bad_message("unknown_event");
                debug!(%event, "ignored an unknown event");
            }
        }
        ControlFlow::Continue(())
    }

    fn on_events(&mut self, now: Instant) {
        self.take_caller_audio();
        if let (Some(stream), Some(conversation)) = (self.intake.stream(), &mut self.conversation) {
            conversation.on_vad_events(stream, now, &mut self.outbox);
        }
    }

    fn on_tick(&mut self, now: Instant) -> Option<super::conversation::Ending> {
        self.take_caller_audio();
        match (self.intake.stream(), &mut self.conversation) {
            (Some(stream), Some(conversation)) => {
                conversation.on_tick(stream, now, &mut self.outbox)
            }
            _ => None,
        }
    }

    /// Hands the pipeline's caller frames (record tap) to the recording and the agent.
    fn take_caller_audio(&mut self) {
        let Some(conversation) = &mut self.conversation else {
            return;
        };
        self.intake.drain_caller_audio(|timestamp_ms, samples| {
            conversation.on_caller_audio(timestamp_ms, Rate::Hz8000, samples)
        });
        if conversation.caller_audio_rate() == Some(Rate::Hz16000) {
            self.intake.drain_wideband_audio(|timestamp_ms, samples| {
                conversation.on_caller_audio(timestamp_ms, Rate::Hz16000, samples)
            });
        }
    }
}

/// The agent's next command (never, before `start` or without an agent).
async fn agent_command(conversation: Option<&mut Conversation>) -> crate::agent::Command {
    match conversation {
        Some(conversation) => conversation.agent_command().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the call's pipeline has a VAD event (never, before `start`).
async fn events_ready(call: Option<&CallHandle>) {
    match call {
        Some(call) => call.events_ready().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
pub(super) mod tests;
