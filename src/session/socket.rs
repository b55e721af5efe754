//! One media WebSocket: Plivo's text frames in, the agent's paced audio out.
//!
//! Layers, each knowing only the one below: the transport (any `Stream` of messages and a
//! `Sink` for them, so tests can use channels) → the wire codec (`plivo::stream`) → this
//! session → the DSP pipeline. The task never blocks: inbound frames go to the pipeline
//! through a try-only queue; outbound messages go through a bounded channel to a writer
//! task that closes the session when the peer stops reading for `write_timeout`.
//!
//! Every bad message is dropped and counted by kind; the session goes on. The stream ends
//! when the socket closes, on idle timeout, when another socket takes the call over, when
//! the call is hung up, or at shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use metrics::{Counter, counter, gauge, histogram};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::journal::Event;
use super::playout::{self, Heard, Playout, checkpoint_name};
use super::reorder::{Outcome, Reorder};
use super::{Attachment, Sessions};
use crate::agent::{Agent, AgentKind};
use crate::audio::frame::{FRAME_MS, FRAME_SAMPLES_8K};
use crate::audio::pipeline::{CallHandle, CallOptions, Pipeline, Pushed};
use crate::audio::resample::{Rate, Resampler};
use crate::audio::vad::VadEvent;
use crate::recording::clock::MediaClock;
use crate::recording::writer::{CallRecording, Recorder};
use crate::session::config::SessionConfig;
use crate::telemetry::{self, bad_message};
use crate::telephony::plivo::stream::{
    Inbound, MAX_MESSAGE_BYTES, Media, MediaFormat, Outbound, PlayMedia, Start, decode_payload,
    encode_payload, parse_inbound,
};

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
/// Largest media payload decoded, in bytes of audio (a 64 KiB message holds less).
const SCRATCH_BYTES: usize = MAX_MESSAGE_BYTES * 3 / 4;

/// Told when a call's media stream starts: `(call_id, Plivo's CallUUID)`. Must not block.
pub type StreamStarted = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What a session needs from the server.
#[derive(Clone)]
pub struct SessionDeps {
    /// The DSP pipeline.
    pub pipeline: Arc<Pipeline>,
    /// The registry the session detaches from when it ends.
    pub sessions: Arc<Sessions>,
    /// Session settings.
    pub config: SessionConfig,
    /// The agent each call gets.
    pub agent: AgentKind,
    /// Told when a stream starts (the control plane records `call.media_started`).
    pub on_stream_started: Option<StreamStarted>,
    /// Records the call (stereo WAV); `None` when recording is off or the call opted out.
    pub recorder: Option<Arc<Recorder>>,
}

struct StreamInfo {
    stream_id: String,
    format: MediaFormat,
    call: CallHandle,
    /// 8 k → 16 k for agent audio on an L16 16 kHz stream.
    upsampler: Option<Resampler>,
    /// The call's recording, if it is recorded.
    recording: Option<CallRecording>,
    /// Where the call is on the media timeline (places agent audio in the recording).
    clock: MediaClock,
}

/// Counter handles taken once per session: incrementing them is one atomic add.
struct Counters {
    frames_in: Counter,
    frames_out: Counter,
    dropped_in: Counter,
    reordered: Counter,
    late: Counter,
}

impl Counters {
    fn new() -> Self {
        Self {
            frames_in: counter!(telemetry::FRAMES_IN),
            frames_out: counter!(telemetry::FRAMES_OUT),
            dropped_in: counter!(telemetry::FRAMES_DROPPED, "stage" => "pipeline_in"),
            reordered: counter!(telemetry::CHUNKS_OUT_OF_ORDER, "outcome" => "reordered"),
            late: counter!(telemetry::CHUNKS_OUT_OF_ORDER, "outcome" => "late"),
        }
    }
}

struct Session {
    deps: SessionDeps,
    attachment: Attachment,
    stream: Option<StreamInfo>,
    reorder: Reorder,
    playout: Playout,
    agent: Box<dyn Agent>,
    out: mpsc::Sender<String>,
    scratch: Vec<u8>,
    pcm: Vec<i16>,
    wide: Vec<i16>,
    encoded: Vec<u8>,
    payload: String,
    last_media: Instant,
    /// When the caller's last utterance was declared ended, for turn latency.
    speech_ended_at: Vec<(u64, Instant)>,
    counters: Counters,
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
        let config = deps.config;
        Self {
            agent: deps.agent.build(),
            reorder: Reorder::new(config.reorder_window),
            playout: Playout::new(config.playout_lead, config.checkpoint_timeout),
            stream: None,
            deps,
            attachment,
            out,
            scratch: vec![0; SCRATCH_BYTES],
            pcm: vec![0; SCRATCH_BYTES / 2],
            wide: vec![0; 2 * FRAME_SAMPLES_8K],
            encoded: Vec::with_capacity(2 * 2 * FRAME_SAMPLES_8K),
            payload: String::with_capacity(1_024),
            last_media: Instant::now(),
            speech_ended_at: Vec::new(),
            counters: Counters::new(),
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
                _ = events_ready(self.stream.as_ref().map(|s| &s.call)) => self.on_events(Instant::now()),
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.on_tick(now);
                    if now.duration_since(self.last_media) > self.deps.config.idle_timeout {
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
        let pending = |s: &Self| {
            s.stream
                .as_ref()
                .filter(|stream| stream.recording.is_some())
                .map(|stream| stream.call.input_depth())
        };
        if pending(self).is_none() {
            return;
        }
        for _ in 0..20 {
            if pending(self) == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The worker may still be on the last frame it took.
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.drain_caller_audio();
    }

    fn finish(&mut self, reason: &'static str) {
        // Dropping the stream drops its recording: the writer finishes the file.
        if self.stream.take().is_some() {
            gauge!(telemetry::ACTIVE_CALLS).decrement(1.0);
        }
        counter!(telemetry::STREAMS_ENDED, "reason" => reason).increment(1);
        self.attachment
            .journal
            .record(Event::StreamEnded { reason });
        info!(reason, lost_chunks = self.reorder.lost(), "stream ended");
    }

    fn send(&self, message: &Outbound<'_>) {
        if self.out.try_send(message.to_json()).is_err() {
            counter!(telemetry::FRAMES_DROPPED, "stage" => "outbound").increment(1);
        }
    }

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
            Inbound::Media(media) => self.on_media(&media),
            Inbound::Start(start) => self.on_start(&start),
            Inbound::PlayedStream(played) => {
                if let Some(turn) = self.playout.on_played(&played.name) {
                    self.turn_heard(turn, Heard::Played);
                } else {
                    debug!(name = %played.name, "playedStream for no pending checkpoint");
                }
            }
            Inbound::ClearedAudio(_) => debug!("Plivo cleared its audio"),
            Inbound::Dtmf(dtmf) => {
                info!(digit = %dtmf.dtmf.digit, "dtmf");
                self.attachment.journal.record(Event::Dtmf {
                    digit: dtmf.dtmf.digit,
                });
            }
            Inbound::Stop(stop) => info!(reason = ?stop.reason, "Plivo sent stop"),
            Inbound::Unknown { event } => {
                bad_message("unknown_event");
                debug!(%event, "ignored an unknown event");
            }
        }
    }

    fn on_start(&mut self, start: &Start) {
        if self.stream.is_some() {
            bad_message("duplicate_start");
            return;
        }
        let format = match start.media_format() {
            Ok(format) => format,
            Err(error) => {
                bad_message(error.kind());
                warn!(%error, "cannot take this stream's audio");
                return;
            }
        };
        let call = match self.deps.pipeline.join(CallOptions {
            stt_16k: false,
            record: true,
        }) {
            Ok(call) => call,
            Err(error) => {
                warn!(%error, "the DSP pipeline refused the call");
                return;
            }
        };
        let upsampler = match format {
            MediaFormat::L16At16k => Resampler::new(Rate::Hz8000, Rate::Hz16000).ok(),
            _ => None,
        };
        tracing::Span::current().record("stream_id", start.start.stream_id.as_str());
        info!(?format, plivo_call = %start.start.call_id, took_over = self.attachment.took_over, "stream started");
        self.attachment.journal.record(Event::StreamStarted {
            stream_id: start.start.stream_id.clone(),
            took_over: self.attachment.took_over,
        });
        gauge!(telemetry::ACTIVE_CALLS).increment(1.0);
        if let Some(started) = &self.deps.on_stream_started {
            started(&self.attachment.call_id, &start.start.call_id);
        }
        self.last_media = Instant::now();
        let recording = self
            .deps
            .recorder
            .as_ref()
            .map(|recorder| recorder.start_call(&self.attachment.call_id));
        self.stream = Some(StreamInfo {
            stream_id: start.start.stream_id.clone(),
            format,
            call,
            upsampler,
            recording,
            clock: MediaClock::new(),
        });
    }

    fn on_media(&mut self, media: &Media<'_>) {
        let Some(stream) = self.stream.as_mut() else {
            bad_message("media_before_start");
            return;
        };
        if media.stream_id != stream.stream_id {
            bad_message("wrong_stream_id");
            return;
        }
        self.last_media = Instant::now();
        stream.clock.observe(media.media.timestamp, self.last_media);
        let stream = &*stream;
        let samples = match decode_payload(
            &media.media.payload,
            stream.format,
            &mut self.scratch,
            &mut self.pcm,
        ) {
            Ok(n) => n,
            Err(error) => {
                bad_message(error.kind());
                return;
            }
        };
        let rate = stream.format.sample_rate();
        let frame_len = (rate / 50) as usize;
        let pool = self.deps.pipeline.pool();
        let counters = &self.counters;
        let push = |frame| {
            counters.frames_in.increment(1);
            if stream.call.push(frame) == Pushed::DroppedOldest {
                counters.dropped_in.increment(1);
            }
        };
        if samples == frame_len {
            let mut frame = pool.get();
            frame.set(
                rate,
                &self.pcm[..samples],
                media.media.timestamp,
                media.media.chunk,
            );
            match self.reorder.push(frame, push) {
                Outcome::InOrder => {}
                Outcome::Held => counters.reordered.increment(1),
                Outcome::Late => counters.late.increment(1),
            }
        } else if samples > 0 {
            // Not one 20 ms frame: cut into frames (the last padded with silence).
            bad_message("irregular_frame_size");
            let mut push = push;
            self.reorder.flush(&mut push);
            for (i, piece) in self.pcm[..samples].chunks(frame_len).enumerate() {
                let mut frame = pool.get();
                let out = frame.fill(rate, frame_len);
                out[..piece.len()].copy_from_slice(piece);
                out[piece.len()..].fill(0);
                frame.timestamp_ms = media.media.timestamp + i as u64 * FRAME_MS;
                frame.chunk = media.media.chunk;
                push(frame);
            }
        }
        // Take the record tap's frames as they come, so a fast stream (the simulator's
        // --speed) never overflows its queue between ticks.
        self.drain_caller_audio();
    }

    fn on_events(&mut self, now: Instant) {
        self.drain_caller_audio();
        while let Some(event) = self.stream.as_ref().and_then(|s| s.call.pop_event()) {
            match event {
                VadEvent::SpeechStarted { onset_ms, .. } => {
                    self.attachment
                        .journal
                        .record(Event::SpeechStarted { onset_ms });
                    if self.playout.is_speaking(now) {
                        self.barge_in(now);
                    }
                }
                VadEvent::SpeechEnded { end_ms, .. } => {
                    self.attachment
                        .journal
                        .record(Event::SpeechEnded { end_ms });
                }
            }
            if let Some(audio) = self.agent.on_vad(event) {
                let turn = self.playout.enqueue_turn(&audio);
                self.speech_ended_at.push((turn, now));
                self.attachment.journal.record(Event::TurnQueued {
                    turn,
                    duration_ms: audio.len() as u64 / 8,
                });
            }
        }
        self.pump(now);
    }

    fn barge_in(&mut self, now: Instant) {
        let Some(stream) = &self.stream else { return };
        self.send(&Outbound::ClearAudio {
            stream_id: stream.stream_id.as_str().into(),
        });
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
        self.attachment
            .journal
            .record(Event::BargeIn { cut_turns: cut });
    }

    fn on_tick(&mut self, now: Instant) {
        self.drain_caller_audio();
        self.pump(now);
        let mut expired = Vec::new();
        self.playout.expire(now, |turn| expired.push(turn));
        for turn in expired {
            warn!(turn, "no playedStream for the turn: assuming it was heard");
            self.turn_heard(turn, Heard::Timeout);
        }
    }

    /// Hands the pipeline's caller frames (record tap) to the agent.
    fn drain_caller_audio(&mut self) {
        let Some(stream) = &self.stream else { return };
        while let Some(frame) = stream.call.pop_record() {
            if let Some(recording) = &stream.recording {
                recording.caller(frame.timestamp_ms, frame.samples());
            }
            self.agent
                .on_caller_audio(frame.timestamp_ms, frame.samples());
        }
    }

    /// Sends whatever playout says is due now.
    fn pump(&mut self, now: Instant) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let Self {
            playout,
            out,
            encoded,
            payload,
            wide,
            counters,
            attachment,
            ..
        } = self;
        playout.poll(now, |due| {
            let message = match due {
                playout::Send::Audio { samples, lead } => {
                    histogram!(telemetry::PLAYOUT_LEAD).record(lead.as_secs_f64());
                    if let Some(recording) = &stream.recording {
                        recording.agent(stream.clock.now_ms(now), samples);
                    }
                    let samples = match stream.upsampler.as_mut() {
                        Some(up) => match up.process(samples, wide) {
                            Ok(n) => &wide[..n],
                            Err(_) => return,
                        },
                        None => samples,
                    };
                    payload.clear();
                    encode_payload(samples, stream.format, encoded, payload);
                    counters.frames_out.increment(1);
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
                    attachment.journal.record(Event::TurnSent { turn });
                    Outbound::Checkpoint {
                        stream_id: stream.stream_id.as_str().into(),
                        name: checkpoint_name(turn).into(),
                    }
                    .to_json()
                }
            };
            if out.try_send(message).is_err() {
                counter!(telemetry::FRAMES_DROPPED, "stage" => "outbound").increment(1);
            }
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
        self.attachment
            .journal
            .record(Event::TurnHeard { turn, by });
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
