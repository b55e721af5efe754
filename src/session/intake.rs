//! Media intake: the caller's side of one stream, from Plivo's `start` to 20 ms frames in
//! the DSP pipeline and out of its record tap.
//!
//! Owns the started stream ([`MediaStream`]: stream id, codec, the pipeline call, the
//! recording, the media clock), the call slot a `start` takes in the registry, decoding
//! (base64 → µ-law or L16 → PCM16) into scratch buffers sized once for the stream at
//! `start`, the reorder window, cutting payloads that are not one 20 ms frame, the push
//! into the pipeline's try-only queue, and the record tap (caller channel). Before `start`
//! an intake holds no buffers: a socket that never starts costs next to nothing.
//!
//! Budget per `media` message: no allocation (frames come from the pipeline's pool, the
//! scratch buffers are reused), no lock, no syscall. Every bad message is dropped and
//! counted by kind; the stream goes on. Never: awaits, writes to the socket, or talks to
//! the agent — caller frames leave through the callback given to
//! [`Intake::drain_caller_audio`].

use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, counter, gauge};
use tracing::{info, warn};

use super::clock::MediaClock;
use super::journal::Event;
use super::reorder::{Outcome, Reorder};
use super::socket::{SessionDeps, StreamStarted};
use super::{Attachment, Refused, Sessions};
use crate::audio::frame::FRAME_MS;
use crate::audio::pipeline::{CallHandle, CallOptions, Pipeline, Pushed};
use crate::ids::StreamId;
use crate::recording::writer::{CallRecording, Recorder};
use crate::telemetry::{self, bad_message};
use crate::telephony::plivo::stream::{Media, MediaFormat, Start, decode_payload};

/// Most audio one `media` payload may carry (Plivo sends 20 ms); longer is dropped and
/// counted `payload_too_large`. The scratch buffers are sized for it at `start`.
pub(super) const MAX_PAYLOAD_MS: usize = 1_000;

/// A started stream: what both sides of the call need to know about it.
pub(super) struct MediaStream {
    /// Plivo's stream id (every outbound message names it).
    pub(super) stream_id: StreamId,
    /// The codec and rate, both ways.
    pub(super) format: MediaFormat,
    /// The call in the DSP pipeline: frames in; VAD events and the record tap out.
    pub(super) call: CallHandle,
    /// The call's recording, if it is recorded.
    pub(super) recording: Option<CallRecording>,
    /// Where the call is on the media timeline (places agent audio in the recording).
    pub(super) clock: MediaClock,
    /// Plivo's id for the call leg (`start.callId`), for a REST hang-up.
    pub(super) call_uuid: String,
}

/// Counter handles taken once per session: incrementing them is one atomic add.
struct Counters {
    frames_in: Counter,
    dropped_in: Counter,
    reordered: Counter,
    late: Counter,
    resync: Counter,
}

impl Counters {
    fn new() -> Self {
        Self {
            frames_in: counter!(telemetry::FRAMES_IN),
            dropped_in: counter!(telemetry::FRAMES_DROPPED, "stage" => "pipeline_in"),
            reordered: counter!(telemetry::CHUNKS_OUT_OF_ORDER, "outcome" => "reordered"),
            late: counter!(telemetry::CHUNKS_OUT_OF_ORDER, "outcome" => "late"),
            resync: counter!(telemetry::CHUNKS_OUT_OF_ORDER, "outcome" => "resync"),
        }
    }
}

/// What became of a `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Started {
    /// The stream started in this format.
    Stream(MediaFormat),
    /// A duplicate or unusable `start`: dropped and counted; the socket goes on.
    Dropped,
    /// The registry has no call slot for it: the socket must close.
    Refused(Refused),
}

/// The caller's side of one media socket.
pub(super) struct Intake {
    pipeline: Arc<Pipeline>,
    sessions: Arc<Sessions>,
    recorder: Option<Arc<Recorder>>,
    on_stream_started: Option<Arc<dyn StreamStarted>>,
    stream: Option<MediaStream>,
    /// A `start` came in a codec voxgate cannot take: later media is counted as such.
    unsupported: bool,
    reorder: Reorder,
    scratch: Vec<u8>,
    pcm: Vec<i16>,
    last_media: Instant,
    counters: Counters,
}

impl Intake {
    /// An intake waiting for `start` (the buffers come with it).
    pub(super) fn new(deps: &SessionDeps) -> Self {
        Self {
            pipeline: Arc::clone(&deps.pipeline),
            sessions: Arc::clone(&deps.sessions),
            recorder: deps.recorder.clone(),
            on_stream_started: deps.on_stream_started.clone(),
            stream: None,
            unsupported: false,
            reorder: Reorder::new(deps.config.reorder_window),
            scratch: Vec::new(),
            pcm: Vec::new(),
            last_media: Instant::now(),
            counters: Counters::new(),
        }
    }

    /// The started stream (`None` before `start`, or when the pipeline refused the call).
    pub(super) fn stream(&self) -> Option<&MediaStream> {
        self.stream.as_ref()
    }

    /// When the last `media` (or the `start`) arrived, for the idle timeout.
    pub(super) fn last_media(&self) -> Instant {
        self.last_media
    }

    /// Chunks that never arrived, by the reorder window's count.
    pub(super) fn lost_chunks(&self) -> u64 {
        self.reorder.lost()
    }

    /// Times the chunk numbering jumped and was followed from a new base.
    pub(super) fn resyncs(&self) -> u64 {
        self.reorder.resyncs()
    }

    /// Plivo's `start`: takes the call's slot in the registry, joins the pipeline, sizes
    /// the scratch buffers for the stream, starts the recording and the media clock.
    /// `stt_16k` asks the pipeline for 16 kHz frames (an agent that takes wideband audio).
    pub(super) fn on_start(
        &mut self,
        start: &Start,
        attachment: &Attachment,
        stt_16k: bool,
    ) -> Started {
        if self.stream.is_some() {
            bad_message("duplicate_start");
            return Started::Dropped;
        }
        let format = match start.media_format() {
            Ok(format) => format,
            Err(error) => {
                bad_message(error.kind());
                warn!(%error, "cannot take this stream's audio");
                self.unsupported = true;
                return Started::Dropped;
            }
        };
        if let Err(refused) = self
            .sessions
            .start(&attachment.call_id, attachment.generation)
        {
            counter!(telemetry::CALLS_REFUSED, "reason" => refused.kind()).increment(1);
            warn!(
                reason = refused.kind(),
                "no call slot for the stream: closing it"
            );
            return Started::Refused(refused);
        }
        let call = match self.pipeline.join(CallOptions {
            stt_16k,
            record: true,
        }) {
            Ok(call) => call,
            Err(error) => {
                warn!(%error, "the DSP pipeline refused the call");
                return Started::Dropped;
            }
        };
        let samples = format.sample_rate() as usize * MAX_PAYLOAD_MS / 1_000;
        self.scratch = vec![0; samples * format.bytes_per_sample()];
        self.pcm = vec![0; samples];
        self.unsupported = false;
        let stream_id = StreamId::new(&start.start.stream_id);
        let plan = &attachment.plan;
        let recorder = self.recorder.as_ref().filter(|_| plan.record);
        tracing::Span::current().record("stream_id", stream_id.as_str());
        info!(?format, plivo_call = %start.start.call_id, took_over = attachment.took_over,
            agent = plan.agent.as_str(), flow_name = ?plan.flow_name, recorded = recorder.is_some(),
            "stream started");
        attachment.journal.record(Event::StreamStarted {
            stream_id: stream_id.clone(),
            took_over: attachment.took_over,
            agent: plan.agent.as_str(),
            flow_name: plan.flow_name.clone(),
            recorded: recorder.is_some(),
        });
        gauge!(telemetry::ACTIVE_CALLS).increment(1.0);
        if let Some(started) = &self.on_stream_started {
            started.stream_started(&attachment.call_id, &start.start.call_id);
        }
        self.last_media = Instant::now();
        let recording = recorder.map(|recorder| recorder.start_call(attachment.call_id.as_str()));
        self.stream = Some(MediaStream {
            stream_id,
            format,
            call,
            recording,
            clock: MediaClock::new(),
            call_uuid: start.start.call_id.clone(),
        });
        Started::Stream(format)
    }

    /// Plivo's `media`: decodes the payload and pushes it to the pipeline in 20 ms frames,
    /// in chunk order.
    pub(super) fn on_media(&mut self, media: &Media<'_>) {
        let Some(stream) = self.stream.as_mut() else {
            bad_message(if self.unsupported {
                "unsupported_format"
            } else {
                "media_before_start"
            });
            return;
        };
        if media.stream_id != stream.stream_id.as_str() {
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
        let pool = self.pipeline.pool();
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
                Outcome::Resync { distance, ahead } => {
                    counters.resync.increment(1);
                    // Logged once per call: a peer sending stray numbers cannot flood the log.
                    if self.reorder.resyncs() == 1 {
                        warn!(
                            distance,
                            ahead, "media chunk numbering jumped: resynchronised"
                        );
                    }
                }
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
    }

    /// Takes the pipeline's caller frames (record tap): each goes to the recording's caller
    /// channel, then to `caller_audio` with its media timestamp.
    pub(super) fn drain_caller_audio(&self, mut caller_audio: impl FnMut(u64, &[i16])) {
        let Some(stream) = &self.stream else { return };
        while let Some(frame) = stream.call.pop_record() {
            if let Some(recording) = &stream.recording {
                recording.caller(frame.timestamp_ms, frame.samples());
            }
            caller_audio(frame.timestamp_ms, frame.samples());
        }
    }

    /// Takes the pipeline's 16 kHz caller frames (for an agent that asked for them), each
    /// to `caller_audio` with its media timestamp.
    pub(super) fn drain_wideband_audio(&self, mut caller_audio: impl FnMut(u64, &[i16])) {
        let Some(stream) = &self.stream else { return };
        while let Some(frame) = stream.call.pop_stt() {
            caller_audio(frame.timestamp_ms, frame.samples());
        }
    }

    /// Caller frames still queued for the DSP worker, when the call is recorded (the end
    /// of the stream waits for them so the recording ends where the call did).
    pub(super) fn recorded_frames_queued(&self) -> Option<usize> {
        self.stream
            .as_ref()
            .filter(|stream| stream.recording.is_some())
            .map(|stream| stream.call.input_depth())
    }

    /// Ends the stream. Dropping it drops its recording: the writer finishes the file.
    pub(super) fn close(&mut self) {
        if self.stream.take().is_some() {
            gauge!(telemetry::ACTIVE_CALLS).decrement(1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine as _;

    use super::*;
    use crate::ids::CallId;
    use crate::session::config::SessionConfig;
    use crate::telephony::plivo::stream::{Inbound, parse_inbound};

    fn deps() -> SessionDeps {
        crate::session::socket::tests::deps(SessionConfig::default())
    }

    #[test]
    fn a_payload_that_is_not_one_frame_is_cut_into_frames_on_the_media_timeline() {
        let deps = deps();
        let attachment = deps
            .sessions
            .attach(&CallId::parse("cut").unwrap())
            .unwrap();
        let mut intake = Intake::new(&deps);
        let start = r#"{"event":"start","start":{"callId":"c","streamId":"s","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}}}"#;
        let Ok(Inbound::Start(start)) = parse_inbound(start) else {
            panic!("a start message")
        };
        assert_eq!(
            intake.on_start(&start, &attachment, false),
            Started::Stream(MediaFormat::MuLaw8k)
        );
        assert_eq!(
            intake.on_start(&start, &attachment, false),
            Started::Dropped,
            "duplicate"
        );

        // 50 ms of loud µ-law: two whole frames and a half one, padded with silence.
        let payload = base64::engine::general_purpose::STANDARD.encode([0x00; 400]);
        let media = format!(
            r#"{{"event":"media","streamId":"s","media":{{"timestamp":"1000","chunk":7,"payload":"{payload}"}}}}"#
        );
        let Ok(Inbound::Media(media)) = parse_inbound(&media) else {
            panic!("a media message")
        };
        intake.on_media(&media);

        let mut frames: Vec<(u64, Vec<i16>)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while frames.len() < 3 && Instant::now() < deadline {
            intake.drain_caller_audio(|timestamp_ms, samples| {
                frames.push((timestamp_ms, samples.to_vec()))
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        let timestamps: Vec<u64> = frames.iter().map(|(t, _)| *t).collect();
        assert_eq!(timestamps, [1_000, 1_020, 1_040]);
        assert!(frames.iter().all(|(_, samples)| samples.len() == 160));
        let (_, last) = &frames[2];
        assert!(last[..80].iter().all(|&s| s != 0), "the caller's audio");
        assert!(last[80..].iter().all(|&s| s == 0), "padded with silence");
        intake.close();
        assert!(intake.stream().is_none());
    }

    fn start_in(encoding: &str, rate: u32) -> Start {
        let text = format!(
            r#"{{"event":"start","start":{{"callId":"c","streamId":"s","mediaFormat":{{"encoding":"{encoding}","sampleRate":{rate}}}}}}}"#
        );
        match parse_inbound(&text) {
            Ok(Inbound::Start(start)) => start,
            other => panic!("a start message: {other:?}"),
        }
    }

    #[test]
    fn buffers_come_with_start_sized_for_the_stream() {
        let deps = deps();
        let base64 = base64::engine::general_purpose::STANDARD;
        for (encoding, rate, format) in [
            ("audio/x-mulaw", 8_000, MediaFormat::MuLaw8k),
            ("audio/x-l16", 16_000, MediaFormat::L16At16k),
        ] {
            let attachment = deps
                .sessions
                .attach(&CallId::parse(encoding).unwrap())
                .unwrap();
            let mut intake = Intake::new(&deps);
            assert_eq!((intake.scratch.capacity(), intake.pcm.capacity()), (0, 0));
            intake.on_start(&start_in(encoding, rate), &attachment, false);
            let samples = rate as usize * MAX_PAYLOAD_MS / 1_000;
            assert_eq!(intake.pcm.len(), samples);
            assert_eq!(intake.scratch.len(), samples * format.bytes_per_sample());
            // The longest payload decodes; one frame more does not.
            let longest = base64.encode(vec![0x55; intake.scratch.len()]);
            let (scratch, pcm) = (&mut intake.scratch, &mut intake.pcm);
            assert_eq!(decode_payload(&longest, format, scratch, pcm), Ok(samples));
            let over = base64.encode(vec![0x55; scratch.len() + 160 * format.bytes_per_sample()]);
            assert_eq!(
                decode_payload(&over, format, scratch, pcm).map_err(|e| e.kind()),
                Err("payload_too_large")
            );
            intake.close();
        }
    }

    #[test]
    fn after_an_unsupported_codec_no_buffers_are_taken() {
        let deps = deps();
        let attachment = deps
            .sessions
            .attach(&CallId::parse("alaw").unwrap())
            .unwrap();
        let mut intake = Intake::new(&deps);
        assert_eq!(
            intake.on_start(&start_in("audio/x-alaw", 8_000), &attachment, false),
            Started::Dropped
        );
        assert!(intake.unsupported);
        assert!(intake.stream().is_none());
        assert_eq!(intake.scratch.capacity(), 0);
    }
}
