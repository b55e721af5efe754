//! The WebSocket half of Plivo's side: the writer task that numbers and sends Plivo's
//! messages, the reader task that feeds what the server sends into the phone, and the state
//! the two share with the clock.
//!
//! Owns: message framing (every message is a [`crate::telephony::plivo::stream`] type,
//! never hand-built JSON), `sequenceNumber` (from 1, one per message sent, assigned by the
//! writer so it is strictly increasing on the wire), reacting to `playAudio`, `checkpoint`,
//! `clearAudio` and `sendDTMF`, and recording protocol errors.
//!
//! Invariants: the [`Shared`] lock is a std mutex held only for short synchronous work,
//! never across an `.await`; nothing here ever blocks the clock: replies are queued with
//! `try_send` and a full queue is counted, not waited on. Never: panics on server input.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::telephony::plivo::stream::{
    ClearedAudio, Dtmf, DtmfBody, Inbound, Media, MediaBody, MediaFormat, MediaFormatWire,
    Outbound, PlayedStream, Start, StartBody, parse_outbound,
};

use super::analysis::Trace;
use super::phone::Phone;
use super::report::{Counts, Detail, Event, EventKind, ProtocolError};
use super::script::tick_ms;
use crate::telephony::plivo::stream::is_dtmf_key;

/// The client WebSocket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Messages the send queue holds: 20 s of media at one message per tick.
pub(crate) const SEND_QUEUE: usize = 1024;

/// Largest `playAudio` payload Plivo takes, in base64 characters (reference §2.2).
const MAX_PLAY_PAYLOAD: usize = 16 * 1024;

/// Longest piece of a bad message quoted in a protocol error.
const QUOTE_CHARS: usize = 120;

/// A message for the writer. Sequence numbers are added when it is written.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// `start`.
    Start {
        call_id: String,
        account_id: String,
        format: MediaFormat,
        /// `<Stream extraHeaders>`, echoed at the top level as Plivo does.
        extra_headers: Option<String>,
    },
    /// `media`.
    Media {
        timestamp: u64,
        chunk: u64,
        payload: String,
    },
    /// `dtmf`.
    Dtmf { digit: char, timestamp: u64 },
    /// `playedStream`.
    Played { name: String },
    /// `clearedAudio`.
    Cleared,
    /// Close the socket.
    Close,
}

/// State the clock, the reader and the report share.
pub(crate) struct Shared {
    pub t0: Instant,
    pub speed: f64,
    pub detail: Detail,
    pub stream_id: String,
    pub format: MediaFormat,
    /// The tick being played.
    pub tick: u64,
    pub phone: Phone,
    /// The simulator has started closing; a close from the server is its reply.
    pub closing: bool,
    /// The server closed (or the socket failed) first.
    pub server_closed: bool,
    pub timeline: Vec<Event>,
    pub counts: Counts,
    pub protocol_errors: Vec<ProtocolError>,
    pub trace: Trace,
    pub heard: Vec<i16>,
    pub sent: Vec<i16>,
}

impl Shared {
    /// Fresh state for a stream that starts at `t0`.
    pub fn new(
        t0: Instant,
        speed: f64,
        detail: Detail,
        stream_id: String,
        format: MediaFormat,
    ) -> Self {
        Self {
            t0,
            speed,
            detail,
            stream_id,
            format,
            tick: 0,
            phone: Phone::new(),
            closing: false,
            server_closed: false,
            timeline: Vec::new(),
            counts: Counts::default(),
            protocol_errors: Vec::new(),
            trace: Trace::default(),
            heard: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Simulated ms since t0, now.
    pub fn sim_now(&self, at: Instant) -> f64 {
        at.duration_since(self.t0).as_secs_f64() * 1000.0 * self.speed
    }

    /// Records an event on the current tick's start (the clock's own events).
    pub fn at_tick(&mut self, kind: EventKind) {
        let at = Instant::now();
        let sim_ms = tick_ms(self.tick);
        self.push(at, sim_ms, kind);
    }

    /// Records an event at the current instant (events from the server).
    pub fn now(&mut self, kind: EventKind) {
        let at = Instant::now();
        let sim_ms = self.sim_now(at);
        self.push(at, sim_ms, kind);
    }

    fn push(&mut self, at: Instant, sim_ms: f64, kind: EventKind) {
        let wall_ms = at.duration_since(self.t0).as_secs_f64() * 1000.0;
        self.timeline.push(Event {
            tick: self.tick,
            sim_ms,
            wall_ms,
            at,
            kind,
        });
    }

    /// Records a protocol error (also on the timeline).
    pub fn protocol_error(&mut self, kind: &str, detail: String) {
        let sim_ms = self.sim_now(Instant::now());
        self.counts.protocol_errors += 1;
        self.protocol_errors.push(ProtocolError {
            tick: self.tick,
            sim_ms,
            kind: kind.to_owned(),
            detail: detail.clone(),
        });
        self.now(EventKind::ProtocolError {
            kind: kind.to_owned(),
            detail,
        });
    }

    /// Queues a message without waiting; a full queue is counted.
    pub fn send(&mut self, tx: &mpsc::Sender<Outgoing>, message: Outgoing) -> bool {
        match tx.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counts.send_queue_full += 1;
                self.now(EventKind::SendQueueFull);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Locks the shared state; a panic elsewhere never makes the data unusable here.
pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends queued messages in order, numbering them, until [`Outgoing::Close`] or a send
/// fails; counts the messages written in `written` (readable even if the task is aborted).
pub(crate) async fn writer(
    mut sink: SplitSink<Socket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    stream_id: String,
    written: Arc<AtomicU64>,
) {
    let mut sequence = 0u64;
    while let Some(message) = rx.recv().await {
        let Some(text) = encode(message, sequence + 1, &stream_id) else {
            break;
        };
        if sink.send(Message::text(text)).await.is_err() {
            return;
        }
        sequence += 1;
        written.store(sequence, Ordering::Relaxed);
    }
    // Sends a close frame and flushes it.
    let _ = sink.close().await;
}

/// The JSON text of `message` numbered `sequence`; `None` for [`Outgoing::Close`].
fn encode(message: Outgoing, sequence: u64, stream_id: &str) -> Option<String> {
    let sequence_number = Some(sequence);
    let stream_id = stream_id.to_owned();
    let inbound = match message {
        Outgoing::Start {
            call_id,
            account_id,
            format,
            extra_headers,
        } => Inbound::Start(Start {
            sequence_number,
            start: StartBody {
                call_id,
                stream_id,
                account_id,
                tracks: vec!["inbound".to_owned()],
                media_format: MediaFormatWire {
                    encoding: format.content_type().to_owned(),
                    sample_rate: u64::from(format.sample_rate()),
                },
            },
            extra_headers,
        }),
        Outgoing::Media {
            timestamp,
            chunk,
            payload,
        } => Inbound::Media(Media {
            sequence_number,
            stream_id: Cow::Owned(stream_id),
            media: MediaBody {
                track: Cow::Borrowed("inbound"),
                timestamp,
                chunk,
                payload: Cow::Owned(payload),
            },
        }),
        Outgoing::Dtmf { digit, timestamp } => Inbound::Dtmf(Dtmf {
            sequence_number,
            stream_id,
            dtmf: DtmfBody {
                digit: digit.to_string(),
                track: "inbound".to_owned(),
                timestamp,
            },
        }),
        Outgoing::Played { name } => Inbound::PlayedStream(PlayedStream {
            sequence_number,
            stream_id,
            name,
        }),
        Outgoing::Cleared => Inbound::ClearedAudio(ClearedAudio {
            sequence_number,
            stream_id,
        }),
        Outgoing::Close => return None,
    };
    // These plain structs always serialize.
    serde_json::to_string(&inbound).ok()
}

/// Reads the server's messages into the phone until the socket closes.
pub(crate) async fn reader(
    mut stream: SplitStream<Socket>,
    shared: Arc<Mutex<Shared>>,
    tx: mpsc::Sender<Outgoing>,
) {
    while let Some(message) = stream.next().await {
        let mut s = lock(&shared);
        match message {
            Ok(Message::Text(text)) => {
                s.counts.messages_received += 1;
                handle_text(&mut s, text.as_str(), &tx);
            }
            Ok(Message::Binary(bytes)) => {
                s.counts.messages_received += 1;
                s.protocol_error(
                    "binary_frame",
                    format!(
                        "{} byte binary frame (Plivo takes JSON text only)",
                        bytes.len()
                    ),
                );
            }
            Ok(Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                if s.closing {
                    s.now(EventKind::StreamClosed);
                } else {
                    s.server_closed = true;
                    s.now(EventKind::ServerClosed { code });
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if !s.closing {
                    s.server_closed = true;
                    s.protocol_error("socket_error", e.to_string());
                }
                return;
            }
        }
    }
    let mut s = lock(&shared);
    if !s.closing {
        s.server_closed = true;
        s.now(EventKind::ServerClosed { code: None });
    }
}

fn handle_text(s: &mut Shared, text: &str, tx: &mpsc::Sender<Outgoing>) {
    let message = match parse_outbound(text) {
        Ok(message) => message,
        Err(e) => {
            s.protocol_error(e.kind(), format!("{e}: {}", quote(text)));
            return;
        }
    };
    match message {
        Outbound::PlayAudio { media, stream_id } => {
            check_stream(s, "playAudio", &stream_id);
            if MediaFormat::from_plivo(&media.content_type, media.sample_rate) != Some(s.format) {
                let want = s.format;
                s.protocol_error(
                    "format_mismatch",
                    format!(
                        "playAudio is {} at {} Hz; the stream is {} at {} Hz",
                        media.content_type,
                        media.sample_rate,
                        want.content_type(),
                        want.sample_rate()
                    ),
                );
            }
            if media.payload.len() > MAX_PLAY_PAYLOAD {
                s.protocol_error(
                    "payload_too_large",
                    format!(
                        "playAudio payload of {} base64 characters (Plivo's limit is {MAX_PLAY_PAYLOAD})",
                        media.payload.len()
                    ),
                );
            }
            if s.phone.is_idle() {
                let at = s.sim_now(Instant::now());
                s.trace.play_starts.push(at);
            }
            match s
                .phone
                .play_payload(&media.content_type, media.sample_rate, &media.payload)
            {
                Ok(samples) => {
                    s.counts.play_audio_received += 1;
                    if s.detail == Detail::Full {
                        s.now(EventKind::PlayAudioReceived { samples });
                    }
                }
                Err(e) => s.protocol_error("bad_play_audio", e.to_string()),
            }
        }
        Outbound::Checkpoint { stream_id, name } => {
            check_stream(s, "checkpoint", &stream_id);
            s.phone.checkpoint(&name);
            s.counts.checkpoints_received += 1;
            s.now(EventKind::CheckpointReceived {
                name: name.into_owned(),
            });
        }
        Outbound::ClearAudio { stream_id } => {
            check_stream(s, "clearAudio", &stream_id);
            let cleared = s.phone.clear();
            s.counts.clear_audio_received += 1;
            let sim_ms = s.sim_now(Instant::now());
            let next_tick = s.tick + 1;
            s.trace.clears.push((next_tick, sim_ms));
            s.now(EventKind::PhoneCleared {
                dropped_ms: cleared.samples as f64 / 8.0,
                dropped_checkpoints: cleared.checkpoints,
            });
            if s.send(tx, Outgoing::Cleared) {
                s.now(EventKind::ClearedAudioSent);
            }
        }
        Outbound::SendDtmf { dtmf } => {
            if dtmf.is_empty() || !dtmf.chars().all(is_dtmf_key) {
                s.protocol_error("bad_send_dtmf", format!("sendDTMF digits {dtmf:?}"));
            } else {
                s.now(EventKind::SendDtmfReceived {
                    digits: dtmf.into_owned(),
                });
            }
        }
    }
}

fn check_stream(s: &mut Shared, event: &str, stream_id: &str) {
    if stream_id != s.stream_id {
        let want = s.stream_id.clone();
        s.protocol_error(
            "wrong_stream_id",
            format!("{event} for stream {stream_id:?}, this stream is {want:?}"),
        );
    }
}

fn quote(text: &str) -> String {
    let mut out: String = text.chars().take(QUOTE_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
