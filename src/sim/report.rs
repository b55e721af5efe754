//! What a simulated call reports: [`CallReport`] with its timeline, per-turn figures and
//! counts, a human [`Display`](std::fmt::Display), and [`write_wav`] for the heard audio.
//!
//! Owns: the report types and their presentation. The figures themselves are derived in
//! `analysis`; the call loop fills the rest. Never: runs anything or touches the network.
//!
//! Clocks: `tick` and `sim_ms` are on the simulator's clock (tick n starts at n·20 ms, t0 is
//! the first media tick, and a script at speed 10 still spans the same simulated ms);
//! `wall_ms` is real time since t0 from [`std::time::Instant`]. Events the clock makes (media
//! sent, audio heard, checkpoint played) carry their tick's nominal time; events from the
//! server carry their arrival, scaled by the speed. The two agree to within the clock's
//! lateness ([`ClockStats::max_late_ms`] × speed), which is also the accuracy of the
//! figures. The timeline is in the order things happened.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

/// One thing that happened during the call.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The tick being played when it happened.
    pub tick: u64,
    /// Milliseconds on the simulated clock since t0.
    pub sim_ms: f64,
    /// Real milliseconds since t0.
    pub wall_ms: f64,
    /// When it happened (not serialized; `wall_ms` carries it).
    #[serde(skip)]
    pub at: Instant,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The `start` message was queued.
    StartSent,
    /// A `media` message was queued (only with [`Detail::Full`]).
    MediaSent {
        /// Its `media.chunk`.
        chunk: u64,
    },
    /// A `dtmf` message was queued.
    DtmfSent {
        /// The key.
        digit: char,
    },
    /// A `playAudio` was queued on the phone (only with [`Detail::Full`]).
    PlayAudioReceived {
        /// Samples queued, at 8 kHz.
        samples: usize,
    },
    /// A `checkpoint` was received and its marker placed.
    CheckpointReceived {
        /// Its name.
        name: String,
    },
    /// A `clearAudio` emptied the phone.
    PhoneCleared {
        /// Agent audio dropped, ms.
        dropped_ms: f64,
        /// Checkpoints dropped with it (never acknowledged).
        dropped_checkpoints: Vec<String>,
    },
    /// `clearedAudio` was queued in reply.
    ClearedAudioSent,
    /// A `sendDTMF` was received (digits played into the call).
    SendDtmfReceived {
        /// The digits.
        digits: String,
    },
    /// The first agent audio of the call was heard.
    FirstAgentAudioHeard,
    /// An agent turn started playing.
    AgentTurnStarted {
        /// Turn number, from 1.
        turn: u64,
    },
    /// A checkpoint's audio finished playing and `playedStream` was queued.
    CheckpointPlayed {
        /// Its name.
        name: String,
    },
    /// A script step began.
    StepStarted {
        /// Its index in the script.
        index: usize,
        /// Its kind (`audio`, `silence`, …).
        kind: &'static str,
    },
    /// A waiting step gave up.
    WaitTimedOut {
        /// Its index in the script.
        index: usize,
    },
    /// The server sent something Plivo would not accept.
    ProtocolError {
        /// A fixed label.
        kind: String,
        /// What was wrong, with the start of the message.
        detail: String,
    },
    /// The send queue was full and a message was dropped (the server is not reading).
    SendQueueFull,
    /// The server closed the WebSocket.
    ServerClosed {
        /// Close code, if any.
        code: Option<u16>,
    },
    /// The simulator closed the WebSocket.
    StreamClosed,
}

/// How much a call records. Load runs use [`Detail::Summary`] to bound memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detail {
    /// Heard and sent audio, and one event per media / playAudio message.
    #[default]
    Full,
    /// No audio, no per-message events; figures and counts only.
    Summary,
}

/// Why the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Every script step ran.
    ScriptDone,
    /// A `Hangup` step.
    CallerHangup,
    /// The server closed the WebSocket first.
    ServerClosed,
    /// The configured longest call was reached.
    TimeLimit,
    /// The `<Stream streamTimeout>` ran out and Plivo stopped the stream.
    StreamTimeout,
    /// The server hung up through Plivo's REST API (`DELETE …/Call/{uuid}/` on the
    /// simulator's REST emulator).
    ApiHangup,
}

/// Who ended the call, as the caller saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HungUpBy {
    /// The simulated caller (script over, `hangup` step, or the longest call reached).
    Caller,
    /// The gateway closed the media WebSocket; Plivo ends the call (4010).
    Gateway,
    /// The gateway hung up through Plivo's REST API (4000, source `API Request`).
    GatewayRest,
    /// Plivo itself (`streamTimeout`).
    Plivo,
}

impl HungUpBy {
    /// Who ended a call that ended for `end`.
    pub fn from_end(end: EndReason) -> Self {
        match end {
            EndReason::ScriptDone | EndReason::CallerHangup | EndReason::TimeLimit => Self::Caller,
            EndReason::ServerClosed => Self::Gateway,
            EndReason::ApiHangup => Self::GatewayRest,
            EndReason::StreamTimeout => Self::Plivo,
        }
    }

    /// The snake_case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Gateway => "gateway",
            Self::GatewayRest => "gateway_rest",
            Self::Plivo => "plivo",
        }
    }
}

/// Something the server did wrong, on the simulated clock.
#[derive(Debug, Clone, Serialize)]
pub struct ProtocolError {
    /// Tick being played.
    pub tick: u64,
    /// Milliseconds on the simulated clock.
    pub sim_ms: f64,
    /// A fixed label (`malformed_json`, `binary_frame`, `wrong_stream_id`, …).
    pub kind: String,
    /// What was wrong, with the start of the offending message.
    pub detail: String,
}

/// Figures for one caller `Audio` step and the agent's reply to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnFigures {
    /// Index of the step in the script.
    pub step: usize,
    /// When the step started, ms.
    pub start_ms: f64,
    /// First caller sample above the speech threshold, ms.
    pub speech_onset_ms: Option<f64>,
    /// One past the last caller sample above the speech threshold, ms.
    pub speech_end_ms: Option<f64>,
    /// Start of the first agent turn heard after the speech ended (before the caller's next
    /// `Audio` step), ms.
    pub first_agent_audio_ms: Option<f64>,
    /// `first_agent_audio_ms − speech_end_ms`: the response latency the caller lived.
    pub response_latency_ms: Option<f64>,
    /// Speech end → the first `playAudio` of the reply arrived, ms.
    pub first_play_audio_latency_ms: Option<f64>,
    /// Speech end → the reply's first checkpoint was reached (`playedStream` sent), ms.
    pub played_stream_latency_ms: Option<f64>,
    /// Agent audio was playing between the step's start and the caller's speech onset.
    pub barge_in: bool,
    /// Barge-in only: speech onset → `clearAudio` received, ms.
    pub barge_in_to_clear_ms: Option<f64>,
    /// Barge-in only: speech onset → first tick with no agent audio, ms.
    pub barge_in_to_silence_ms: Option<f64>,
    /// Gaps in the agent's reply turns.
    pub reply_gaps: u32,
    /// Their total length, ms.
    pub reply_gap_ms: f64,
}

/// How an agent turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnEnd {
    /// Its checkpoint was reached (`playedStream` sent).
    Checkpoint,
    /// A `clearAudio` emptied the phone.
    Cleared,
    /// The caller started a new `Audio` step.
    CallerSpoke,
    /// The call ended.
    CallEnded,
}

/// One agent turn as the phone played it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentTurn {
    /// First tick with its audio, ms.
    pub start_ms: f64,
    /// End of its last audio sample, ms.
    pub audio_end_ms: f64,
    /// Why it ended.
    pub end: TurnEnd,
    /// Times the phone ran dry mid-turn and more audio came later in the turn.
    pub gaps: u32,
    /// Total silence in those gaps, ms.
    pub gap_ms: f64,
}

/// Message and event counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// WebSocket messages written to the server.
    pub messages_sent: u64,
    /// WebSocket messages received from the server (text and binary).
    pub messages_received: u64,
    /// `media` messages queued.
    pub media_sent: u64,
    /// `dtmf` messages queued.
    pub dtmf_sent: u64,
    /// `playAudio` messages received and played.
    pub play_audio_received: u64,
    /// `checkpoint` messages received.
    pub checkpoints_received: u64,
    /// `playedStream` messages queued.
    pub played_stream_sent: u64,
    /// `clearAudio` messages received.
    pub clear_audio_received: u64,
    /// Messages that broke the protocol.
    pub protocol_errors: u64,
    /// Messages dropped because the send queue was full.
    pub send_queue_full: u64,
}

/// Total gaps across all agent turns.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GapTotals {
    /// Number of gaps.
    pub count: u32,
    /// Their total length, ms.
    pub total_ms: f64,
}

/// How well the simulator kept its clock (real time).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClockStats {
    /// Worst lateness of a tick behind its deadline, real ms.
    pub max_late_ms: f64,
    /// Ticks that ran more than one tick period late.
    pub late_ticks: u64,
}

/// The outcome of one callback the simulator posted.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackResult {
    /// `Hangup`, `StartStream` or `StopStream`.
    pub event: String,
    /// The URL posted to.
    pub url: String,
    /// HTTP status, if a response came.
    pub status: Option<u16>,
    /// Transport error, if any.
    pub error: Option<String>,
}

/// Everything one simulated call observed.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// The call's `CallUUID`.
    pub call_uuid: String,
    /// The `streamId` the simulator chose.
    pub stream_id: String,
    /// The `<Stream>` URL as the XML gave it.
    pub stream_url: String,
    /// The URL actually dialled.
    pub connected_url: String,
    /// `contentType` from the XML.
    pub content_type: String,
    /// `bidirectional` from the XML.
    pub bidirectional: bool,
    /// `statusCallbackUrl` from the XML.
    pub status_callback_url: Option<String>,
    /// Simulation speed (1.0 = real time).
    pub speed: f64,
    /// Why the call ended.
    pub end: EndReason,
    /// Who ended the call.
    pub hung_up_by: HungUpBy,
    /// Script steps that never ran because the call ended first (the gateway hung up), as
    /// `index:kind`. Not an error.
    pub skipped_steps: Vec<String>,
    /// Ticks played.
    pub ticks: u64,
    /// Answer request round trip, real ms.
    pub answer_ms: f64,
    /// WebSocket connect, real ms.
    pub connect_ms: f64,
    /// Real ms from t0 to the end of the media.
    pub wall_ms: f64,
    /// Clock keeping.
    pub clock: ClockStats,
    /// What the caller heard: 8 kHz PCM16, 160 samples per tick from t0, silence where the
    /// phone was empty. Empty with [`Detail::Summary`]. Not serialized (see [`write_wav`]).
    #[serde(skip)]
    pub heard: Vec<i16>,
    /// What the caller sent, aligned the same way. Empty with [`Detail::Summary`].
    #[serde(skip)]
    pub sent: Vec<i16>,
    /// Events in order.
    pub timeline: Vec<Event>,
    /// Per caller turn.
    pub turns: Vec<TurnFigures>,
    /// Agent turns as heard.
    pub agent_turns: Vec<AgentTurn>,
    /// Gaps over the whole call.
    pub gaps: GapTotals,
    /// Counts.
    pub counts: Counts,
    /// Every protocol error, in order.
    pub protocol_errors: Vec<ProtocolError>,
    /// Callbacks posted, in order.
    pub callbacks: Vec<CallbackResult>,
}

impl CallReport {
    /// Simulated call length, ms.
    pub fn duration_ms(&self) -> f64 {
        super::script::tick_ms(self.ticks)
    }
}

/// Most events the human report lists.
const DISPLAY_EVENTS: usize = 60;

impl EventKind {
    /// Per-message events, left out of the human report's event list.
    fn is_per_message(&self) -> bool {
        matches!(
            self,
            Self::MediaSent { .. } | Self::PlayAudioReceived { .. } | Self::SendQueueFull
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StartSent => write!(f, "start sent"),
            Self::MediaSent { chunk } => write!(f, "media chunk {chunk} sent"),
            Self::DtmfSent { digit } => write!(f, "dtmf {digit} sent"),
            Self::PlayAudioReceived { samples } => {
                write!(f, "playAudio of {} ms", *samples as f64 / 8.0)
            }
            Self::CheckpointReceived { name } => write!(f, "checkpoint {name:?} received"),
            Self::PhoneCleared {
                dropped_ms,
                dropped_checkpoints,
            } => write!(
                f,
                "clearAudio: phone cleared, {dropped_ms:.0} ms dropped, checkpoints dropped {dropped_checkpoints:?}"
            ),
            Self::ClearedAudioSent => write!(f, "clearedAudio sent"),
            Self::SendDtmfReceived { digits } => write!(f, "sendDTMF {digits:?} received"),
            Self::FirstAgentAudioHeard => write!(f, "first agent audio heard"),
            Self::AgentTurnStarted { turn } => write!(f, "agent turn {turn} starts playing"),
            Self::CheckpointPlayed { name } => {
                write!(f, "checkpoint {name:?} played, playedStream sent")
            }
            Self::StepStarted { index, kind } => write!(f, "caller step {index} ({kind})"),
            Self::WaitTimedOut { index } => write!(f, "caller step {index} gave up waiting"),
            Self::ProtocolError { kind, .. } => write!(f, "protocol error: {kind}"),
            Self::SendQueueFull => write!(f, "send queue full, message dropped"),
            Self::ServerClosed { code } => write!(f, "server closed the stream (code {code:?})"),
            Self::StreamClosed => write!(f, "stream closed"),
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms"))
}

impl fmt::Display for CallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "call {}  stream {}", self.call_uuid, self.stream_id)?;
        writeln!(
            f,
            "  stream {} ({}, bidirectional={})",
            self.stream_url, self.content_type, self.bidirectional
        )?;
        writeln!(
            f,
            "  ended: {:?} after {:.1} s simulated ({:.1} s real, speed {}); answer {:.0} ms, connect {:.0} ms",
            self.end,
            self.duration_ms() / 1000.0,
            self.wall_ms / 1000.0,
            self.speed,
            self.answer_ms,
            self.connect_ms
        )?;
        write!(f, "  hung up by: {}", self.hung_up_by.as_str())?;
        if !self.skipped_steps.is_empty() {
            write!(
                f,
                "; {} script step(s) skipped: {}",
                self.skipped_steps.len(),
                self.skipped_steps.join(", ")
            )?;
        }
        writeln!(f)?;
        let c = &self.counts;
        writeln!(
            f,
            "  messages: sent {} (media {}, dtmf {}, playedStream {}), received {} (playAudio {}, checkpoint {}, clearAudio {})",
            c.messages_sent,
            c.media_sent,
            c.dtmf_sent,
            c.played_stream_sent,
            c.messages_received,
            c.play_audio_received,
            c.checkpoints_received,
            c.clear_audio_received
        )?;
        writeln!(
            f,
            "  agent turns {}, gaps {} ({:.0} ms), protocol errors {}, send queue full {}",
            self.agent_turns.len(),
            self.gaps.count,
            self.gaps.total_ms,
            c.protocol_errors,
            c.send_queue_full
        )?;
        for t in &self.turns {
            write!(
                f,
                "  turn (step {}): speech {}..{}, first agent audio {}, latency {}",
                t.step,
                ms(t.speech_onset_ms),
                ms(t.speech_end_ms),
                ms(t.first_agent_audio_ms),
                ms(t.response_latency_ms)
            )?;
            if t.barge_in {
                write!(
                    f,
                    ", barge-in → clear {} / silence {}",
                    ms(t.barge_in_to_clear_ms),
                    ms(t.barge_in_to_silence_ms)
                )?;
            }
            writeln!(f, ", gaps {} ({:.0} ms)", t.reply_gaps, t.reply_gap_ms)?;
        }
        let key: Vec<&Event> = self
            .timeline
            .iter()
            .filter(|e| !e.kind.is_per_message())
            .collect();
        if !key.is_empty() {
            writeln!(f, "  events (simulated ms):")?;
        }
        for e in key.iter().take(DISPLAY_EVENTS) {
            writeln!(f, "    {:>8.0}  {}", e.sim_ms, e.kind)?;
        }
        if key.len() > DISPLAY_EVENTS {
            writeln!(f, "    … {} more", key.len() - DISPLAY_EVENTS)?;
        }
        for e in self.protocol_errors.iter().take(10) {
            writeln!(
                f,
                "  protocol error at {:.0} ms: {}: {}",
                e.sim_ms, e.kind, e.detail
            )?;
        }
        for cb in &self.callbacks {
            let outcome = match (&cb.status, &cb.error) {
                (Some(s), _) => s.to_string(),
                (None, Some(e)) => e.clone(),
                (None, None) => "-".to_owned(),
            };
            writeln!(f, "  callback {} → {}: {}", cb.event, cb.url, outcome)?;
        }
        Ok(())
    }
}

/// Writes `samples` as an 8 kHz mono PCM16 WAV file (e.g. [`CallReport::heard`]).
pub fn write_wav(path: impl AsRef<Path>, samples: &[i16]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    let mut samples_writer = writer.get_i16_writer(samples.len() as u32);
    for &s in samples {
        samples_writer.write_sample(s);
    }
    samples_writer.flush()?;
    writer.finalize()
}
