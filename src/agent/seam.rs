//! The seam between a call's session and its agent: the agent runs in its own task and the
//! two talk only through bounded channels.
//!
//! Into the agent go [`Event`]s (call started, VAD speech start/end, the end of the
//! caller's turn, DTMF, playout progress, barge-in, call ending) and, on a channel of its
//! own, the caller's audio ([`CallerAudio`], at the rate the agent asked for, stamped on the
//! media clock). Out of it come [`Command`]s: open a turn (with its text), audio chunks at
//! any of the audio core's rates, close the turn, clear, hang up, set a slot, what speech
//! recognition heard.
//!
//! The session's side ([`AgentLink`]) only ever `try_send`s: a full audio channel drops the
//! frame (counted), a full event channel means the agent is not keeping up. It never awaits
//! the agent: it reads commands in its select loop, and [`AgentLink::health`] tells it when
//! the agent panicked, returned or stopped reading its inbox, so the call goes on with a
//! fallback line instead of hanging. The agent's side ([`AgentIo`]) may await: backpressure
//! on a slow agent stays in the agent's task.
//!
//! Never: allocates per caller frame (a frame travels by value in the channel's reused
//! blocks), blocks, or lets the agent touch the socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use metrics::{Counter, counter};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;

use super::Agent;
use super::turn::TurnConfig;
pub use super::turn::WordTime;
use crate::audio::resample::Rate;
use crate::ids::{CallId, Direction};
use crate::telemetry;

/// Caller frames the audio channel holds (2 s at 20 ms).
pub const AUDIO_CAPACITY: usize = 100;
/// Events the event channel holds.
pub const EVENT_CAPACITY: usize = 64;
/// Commands the agent may have in flight to the session.
pub const COMMAND_CAPACITY: usize = 256;
/// Most samples in one caller frame (20 ms at 16 kHz).
pub const MAX_FRAME_SAMPLES: usize = 320;

/// What the agent knows of its call when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInfo {
    /// The call.
    pub call_id: CallId,
    /// Which way it goes.
    pub direction: Direction,
    /// Caller id.
    pub from: String,
    /// Destination.
    pub to: String,
    /// The flow the call asked for, if any.
    pub flow: Option<String>,
    /// The backend's campaign, if any.
    pub campaign: Option<String>,
    /// The backend's free-form data for the call (`null` when none).
    pub metadata: serde_json::Value,
}

/// 20 ms of the caller's audio, by value (no allocation per frame).
#[derive(Clone)]
pub struct CallerAudio {
    /// Its start on the caller's media clock, ms.
    pub at_ms: u64,
    /// Its sample rate (8 or 16 kHz).
    pub rate: Rate,
    len: usize,
    samples: [i16; MAX_FRAME_SAMPLES],
}

impl CallerAudio {
    /// A frame of `samples` (at most [`MAX_FRAME_SAMPLES`]; more are cut).
    pub fn new(at_ms: u64, rate: Rate, samples: &[i16]) -> Self {
        let len = samples.len().min(MAX_FRAME_SAMPLES);
        let mut frame = Self {
            at_ms,
            rate,
            len,
            samples: [0; MAX_FRAME_SAMPLES],
        };
        frame.samples[..len].copy_from_slice(&samples[..len]);
        frame
    }

    /// The samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples[..self.len]
    }
}

impl std::fmt::Debug for CallerAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerAudio")
            .field("at_ms", &self.at_ms)
            .field("rate", &self.rate)
            .field("len", &self.len)
            .finish()
    }
}

/// How far an agent turn got at the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The turn's first audio plays at the phone at `at_ms` on the media clock.
    Started {
        /// The agent's turn.
        turn: u64,
        /// Media clock, ms.
        at_ms: u64,
    },
    /// The phone played the whole turn (`heard_ms` of audio).
    Heard {
        /// The agent's turn.
        turn: u64,
        /// Audio heard, ms.
        heard_ms: u64,
    },
    /// The caller barged in: the phone played `heard_ms` of the turn, the rest was cleared.
    Cut {
        /// The agent's turn.
        turn: u64,
        /// Audio heard before the cut, ms.
        heard_ms: u64,
        /// The turn's text the caller heard.
        heard_text: String,
    },
    /// The turn never reached the phone (the stream ended first).
    Unsent {
        /// The agent's turn.
        turn: u64,
    },
}

/// Something that happened on the call, for the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The media stream started: always the first event.
    Started(CallInfo),
    /// The VAD heard the caller start speaking (onset on the media clock).
    SpeechStarted {
        /// Media clock, ms.
        onset_ms: u64,
    },
    /// The VAD heard the caller stop speaking.
    SpeechEnded {
        /// Media clock, ms.
        end_ms: u64,
    },
    /// The caller's turn is over (by the call's end-of-turn policy): answer now.
    EndOfTurn {
        /// When the caller's speech ended, media clock, ms.
        speech_end_ms: u64,
        /// What speech recognition heard, when the policy waited for it.
        text: Option<String>,
    },
    /// The caller spoke over the agent: its audio was cleared; stop what is in flight.
    BargeIn {
        /// The speech's onset, media clock, ms.
        onset_ms: u64,
    },
    /// The caller pressed a key.
    Dtmf {
        /// The key (`0-9`, `*`, `#`, `A-D`).
        digit: char,
        /// Media clock, ms.
        at_ms: u64,
    },
    /// Playout progress of one of the agent's turns.
    Playout(Progress),
    /// The call is ending: no more events follow.
    Ending,
}

/// What the agent tells the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A new agent turn begins (closing any open one). Its audio follows.
    OpenTurn {
        /// The turn (from [`AgentIo::next_turn`]: increasing).
        turn: u64,
        /// What it says, for the transcript.
        text: String,
        /// When the agent decided to say it (for the latency split).
        decided: Instant,
        /// When the agent asked its providers for it (an LLM request), if it did: the time
        /// from there to `decided` is theirs, not the gateway's.
        asked: Option<Instant>,
    },
    /// Audio of the open turn, at any of the audio core's rates (the session resamples).
    Audio {
        /// The turn.
        turn: u64,
        /// The rate of `samples`.
        rate: Rate,
        /// Mono PCM16.
        samples: Arc<[i16]>,
    },
    /// The turn's whole text so far, replacing what [`Command::OpenTurn`] said: a streamed
    /// answer's text grows while it is spoken. Word timings are offsets into it.
    TurnText {
        /// The turn.
        turn: u64,
        /// Its text.
        text: String,
    },
    /// Word timings of the turn's text (from text-to-speech), for what-was-heard.
    Words {
        /// The turn.
        turn: u64,
        /// The words, in order.
        words: Vec<WordTime>,
    },
    /// The turn's audio is complete.
    CloseTurn {
        /// The turn.
        turn: u64,
    },
    /// Drop every queued agent audio and clear the phone's.
    Clear,
    /// End the call once what is queued has been heard.
    HangUp {
        /// Why (for the log and the record).
        reason: String,
    },
    /// Keep a value on the call record.
    SetSlot {
        /// Slot name.
        name: String,
        /// Its value.
        value: String,
    },
    /// Turn-taking for the rest of the call (a flow's interruption strategy).
    TurnTaking(TurnConfig),
    /// A provider failed; kept on the call record.
    ProviderFailed {
        /// `stt`, `chat`, `tts` or `tool`.
        api: &'static str,
        /// The provider.
        provider: &'static str,
        /// What failed.
        kind: &'static str,
        /// What the agent did: `retried`, `fallback`, `goodbye`.
        outcome: &'static str,
        /// The provider's message.
        message: String,
    },
    /// What speech recognition heard of the caller (for the transcript and turn-taking).
    CallerText {
        /// The words.
        text: String,
        /// A final result (else interim).
        is_final: bool,
        /// When the agent got it from speech recognition (the latency split's STT stage).
        at: Instant,
    },
}

/// The agent's end is gone: the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the call's session is gone")]
pub struct SessionGone;

/// What the agent receives next.
// A caller frame travels by value: boxing it would allocate once per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Input {
    /// An event.
    Event(Event),
    /// A caller frame.
    Audio(CallerAudio),
}

/// The agent's side of the seam.
pub struct AgentIo {
    events: mpsc::Receiver<Event>,
    audio: mpsc::Receiver<CallerAudio>,
    commands: mpsc::Sender<Command>,
    consumed: Arc<AtomicU64>,
    next_turn: u64,
}

impl AgentIo {
    /// The next input, events first; `None` once the call ended.
    pub async fn next(&mut self) -> Option<Input> {
        let input = tokio::select! {
            biased;
            event = self.events.recv() => Input::Event(event?),
            Some(audio) = self.audio.recv() => Input::Audio(audio),
        };
        if let Input::Event(_) = input {
            self.consumed.fetch_add(1, Ordering::Relaxed);
        }
        Some(input)
    }

    /// Sends a command; waits while the session's queue is full.
    pub async fn send(&self, command: Command) -> Result<(), SessionGone> {
        self.commands.send(command).await.map_err(|_| SessionGone)
    }

    /// A fresh turn number.
    pub fn next_turn(&mut self) -> u64 {
        self.next_turn += 1;
        self.next_turn
    }

    /// Says a whole turn of audio: open, one chunk, close. Returns the turn.
    pub async fn say(
        &mut self,
        text: &str,
        rate: Rate,
        samples: Arc<[i16]>,
    ) -> Result<u64, SessionGone> {
        let turn = self.next_turn();
        self.send(Command::OpenTurn {
            turn,
            text: text.to_owned(),
            decided: Instant::now(),
            asked: None,
        })
        .await?;
        self.send(Command::Audio {
            turn,
            rate,
            samples,
        })
        .await?;
        self.send(Command::CloseTurn { turn }).await?;
        Ok(turn)
    }
}

/// The agent's state as the session sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Reading its inbox.
    Running,
    /// Has left events unread for longer than the stall timeout.
    Stalled,
    /// Panicked.
    Panicked,
    /// Returned.
    Finished,
}

impl Health {
    /// A fixed label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stalled => "stalled",
            Self::Panicked => "panicked",
            Self::Finished => "finished",
        }
    }
}

/// The session's side of the seam: try-only in, commands out.
pub struct AgentLink {
    events: mpsc::Sender<Event>,
    audio: mpsc::Sender<CallerAudio>,
    commands: mpsc::Receiver<Command>,
    consumed: Arc<AtomicU64>,
    told: u64,
    /// Since when the agent has had unread events and read none.
    waiting_since: Option<(Instant, u64)>,
    stall_after: Duration,
    rate: Option<Rate>,
    task: JoinHandle<()>,
    finished: Option<Health>,
    audio_dropped: Counter,
    events_dropped: Counter,
}

impl AgentLink {
    /// Starts `agent` in a task of its own for one call. It receives
    /// [`Event::Started`] with `info` first. An agent that leaves events unread for
    /// `stall_after` counts as stalled.
    pub fn spawn(agent: Box<dyn Agent>, info: CallInfo, stall_after: Duration) -> Self {
        let (event_tx, event_rx) = mpsc::channel(EVENT_CAPACITY);
        let (audio_tx, audio_rx) = mpsc::channel(AUDIO_CAPACITY);
        let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let consumed = Arc::new(AtomicU64::new(0));
        let rate = agent.caller_audio_rate();
        let io = AgentIo {
            events: event_rx,
            audio: audio_rx,
            commands: command_tx,
            consumed: Arc::clone(&consumed),
            next_turn: 0,
        };
        let task = tokio::spawn(agent.run(io));
        let mut link = Self {
            events: event_tx,
            audio: audio_tx,
            commands: command_rx,
            consumed,
            told: 0,
            waiting_since: None,
            stall_after,
            rate,
            task,
            finished: None,
            audio_dropped: counter!(telemetry::AGENT_INPUT_DROPPED, "kind" => "audio"),
            events_dropped: counter!(telemetry::AGENT_INPUT_DROPPED, "kind" => "event"),
        };
        link.tell(Event::Started(info));
        link
    }

    /// The rate the agent wants the caller's audio at (`None`: no audio).
    pub fn caller_audio_rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Hands the agent an event, never waiting: false (and counted) when its inbox is full.
    pub fn tell(&mut self, event: Event) -> bool {
        match self.events.try_send(event) {
            Ok(()) => {
                self.told += 1;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.events_dropped.increment(1);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Hands the agent a caller frame, if it wants audio at this rate; a full channel drops
    /// the frame (counted).
    pub fn hear(&mut self, at_ms: u64, rate: Rate, samples: &[i16]) {
        if self.rate != Some(rate) {
            return;
        }
        if let Err(TrySendError::Full(_)) =
            self.audio.try_send(CallerAudio::new(at_ms, rate, samples))
        {
            self.audio_dropped.increment(1);
        }
    }

    /// The agent's next command (cancel-safe, for a select loop); pends forever once the
    /// agent is gone (see [`AgentLink::health`]).
    pub async fn command(&mut self) -> Command {
        match self.commands.recv().await {
            Some(command) => command,
            None => std::future::pending().await,
        }
    }

    /// The agent's next command, if one is waiting.
    pub fn try_command(&mut self) -> Option<Command> {
        self.commands.try_recv().ok()
    }

    /// Whether the agent is still working at `now`. Once not [`Health::Running`] it stays so.
    pub fn health(&mut self, now: Instant) -> Health {
        if let Some(health) = self.finished {
            return health;
        }
        if self.task.is_finished() {
            let health = match (&mut self.task).now_or_never() {
                Some(Err(error)) if error.is_panic() => Health::Panicked,
                _ => Health::Finished,
            };
            self.finished = Some(health);
            return health;
        }
        let consumed = self.consumed.load(Ordering::Relaxed);
        if consumed >= self.told {
            self.waiting_since = None;
            return Health::Running;
        }
        match self.waiting_since {
            Some((_, seen)) if seen != consumed => self.waiting_since = Some((now, consumed)),
            Some((since, _)) if now.duration_since(since) >= self.stall_after => {
                self.task.abort();
                self.finished = Some(Health::Stalled);
                return Health::Stalled;
            }
            Some(_) => {}
            None => self.waiting_since = Some((now, consumed)),
        }
        Health::Running
    }
}

impl Drop for AgentLink {
    /// The call is over: the agent's inbox closes, and a task still running is stopped.
    fn drop(&mut self) {
        self.task.abort();
    }
}
