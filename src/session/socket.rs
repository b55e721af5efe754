//! The transport of one media WebSocket: the socket's messages in, the writer loop out,
//! and the one select loop that drives the call.
//!
//! Layers, each knowing only the one below: the transport (any `Stream` of messages and a
//! `Sink` for them, so tests can use channels) → the wire codec (`plivo::stream`) → the
//! call's two sides: `intake` (the caller's audio into the DSP pipeline) and the
//! `conversation` (the agent, barge-in, paced playout). The
//! loop waits on cancellation, the writer's failure, the socket, the pipeline's VAD events
//! and a 20 ms tick, and hands each to the side it concerns.
//!
//! Owns: the outbound queue (bounded; the conversation only `try_send`s into it) and the
//! writer task that closes the session when the peer stops reading for `write_timeout`;
//! parsing and dispatching text frames; the ways a stream ends (socket closed, idle
//! timeout, taken over by another socket, hung up, shutdown) and the `stream ended`
//! metric, journal event and log line. Never: decodes audio, talks to the agent, or
//! awaits anything but the socket, the writer and the timers.
//!
//! Every bad message is dropped and counted by kind; the session goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use metrics::counter;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::config::SessionConfig;
use super::conversation::Conversation;
use super::intake::Intake;
use super::journal::Event;
use super::{Attachment, Sessions};
use crate::audio::frame::FRAME_MS;
use crate::audio::pipeline::{CallHandle, Pipeline};
use crate::ids::CallId;
use crate::recording::writer::Recorder;
use crate::telemetry::{self, bad_message};
use crate::telephony::plivo::stream::{Inbound, parse_inbound};

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
}

/// Outbound messages queued towards the writer before the session counts them dropped.
const OUTBOUND_QUEUE: usize = 256;

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
}

/// One media socket's session: the transport around the caller's side and the agent's.
struct Session {
    deps: SessionDeps,
    attachment: Attachment,
    intake: Intake,
    conversation: Conversation,
}

/// Runs one media socket to its end. `incoming` yields the socket's messages; `sink`
/// takes text frames to send.
pub async fn run<In, Out, E>(incoming: In, sink: Out, attachment: Attachment, deps: SessionDeps)
where
    In: Stream<Item = Result<WsMessage, E>> + Unpin + Send,
    Out: Sink<String> + Unpin + Send + 'static,
{
    let span = info_span!("call", call_id = %attachment.call_id, stream_id = tracing::field::Empty);
    async move {
        let (out, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let writer_failed = CancellationToken::new();
        let writer = tokio::spawn(write_loop(
            sink,
            rx,
            deps.config.write_timeout,
            writer_failed.clone(),
        ));
        let call_id = attachment.call_id.clone();
        let generation = attachment.generation;
        let sessions = Arc::clone(&deps.sessions);
        let mut session = Session::new(attachment, deps, out);
        let reason = session.serve(incoming, &writer_failed).await;
        session.settle_caller_audio().await;
        session.finish(reason);
        drop(session); // closes the outbound channel: the writer flushes and closes
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        sessions.detach(&call_id, generation);
    }
    .instrument(span)
    .await
}

/// Sends queued text frames; a send that takes longer than `timeout` ends the session.
async fn write_loop<Out: Sink<String> + Unpin>(
    mut sink: Out,
    mut rx: mpsc::Receiver<String>,
    timeout: Duration,
    failed: CancellationToken,
) {
    while let Some(text) = rx.recv().await {
        match tokio::time::timeout(timeout, sink.send(text)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                warn!("peer stopped reading: closing the stream");
                failed.cancel();
                return;
            }
        }
    }
    let _ = tokio::time::timeout(timeout, sink.close()).await;
}

impl Session {
    fn new(attachment: Attachment, deps: SessionDeps, out: mpsc::Sender<String>) -> Self {
        Self {
            intake: Intake::new(&deps),
            conversation: Conversation::new(&deps, &attachment, out),
            deps,
            attachment,
        }
    }

    async fn serve<In, E>(
        &mut self,
        mut incoming: In,
        writer_failed: &CancellationToken,
    ) -> &'static str
    where
        In: Stream<Item = Result<WsMessage, E>> + Unpin,
    {
        let cancel = self.attachment.cancel.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(FRAME_MS));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    return if self.deps.sessions.is_draining() { "shutdown" } else { "taken_over_or_hung_up" };
                }
                _ = writer_failed.cancelled() => return "write_timeout",
                message = incoming.next() => match message {
                    Some(Ok(WsMessage::Text(text))) => self.on_text(text.as_str()),
                    Some(Ok(WsMessage::Binary(_))) => bad_message("binary_frame"),
                    Some(Ok(WsMessage::Other)) => {}
                    Some(Ok(WsMessage::Close)) | Some(Err(_)) | None => return "closed",
                },
                _ = events_ready(self.intake.stream().map(|s| &s.call)) => self.on_events(Instant::now()),
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.on_tick(now);
                    if now.duration_since(self.intake.last_media()) > self.deps.config.idle_timeout {
                        info!(idle = ?self.deps.config.idle_timeout, "no media: closing the stream");
                        return "idle_timeout";
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

    fn finish(&mut self, reason: &'static str) {
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
    }

    /// One text frame: parsed, then handed to the side it concerns.
    fn on_text(&mut self, text: &str) {
        let message = match parse_inbound(text) {
            Ok(message) => message,
            Err(error) => {
                bad_message(error.kind());
                debug!(%error, "dropped a bad message");
                return;
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
                if let Some(format) = self.intake.on_start(&start, &self.attachment) {
                    self.conversation.on_stream_started(format);
                }
            }
            Inbound::PlayedStream(played) => self.conversation.on_played(&played.name),
            Inbound::ClearedAudio(_) => debug!("Plivo cleared its audio"),
            Inbound::Dtmf(dtmf) => self.conversation.on_dtmf(dtmf.dtmf.digit),
            Inbound::Stop(stop) => info!(reason = ?stop.reason, "Plivo sent stop"),
            Inbound::Unknown { event } => {
                bad_message("unknown_event");
                debug!(%event, "ignored an unknown event");
            }
        }
    }

    fn on_events(&mut self, now: Instant) {
        self.take_caller_audio();
        if let Some(stream) = self.intake.stream() {
            self.conversation.on_vad_events(stream, now);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        self.take_caller_audio();
        self.conversation.on_tick(self.intake.stream(), now);
    }

    /// Hands the pipeline's caller frames (record tap) to the recording and the agent.
    fn take_caller_audio(&mut self) {
        let conversation = &mut self.conversation;
        self.intake.drain_caller_audio(|timestamp_ms, samples| {
            conversation.on_caller_audio(timestamp_ms, samples)
        });
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
mod tests;
