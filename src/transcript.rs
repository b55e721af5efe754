//! What was said on a call and how long each answer took: the shapes the live session
//! writes and the call record keeps.
//!
//! A leaf module: the session (which knows the turns) and the control plane (which stores
//! the record) both use these types, and neither may import the other. Plain data with
//! serde; no logic beyond naming. Never holds audio.

use serde::{Deserialize, Serialize};

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The voice agent.
    Agent,
    /// The person on the phone.
    Caller,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    /// Who spoke.
    pub speaker: Speaker,
    /// The agent's turn number, or the caller's own count of turns.
    pub turn: u64,
    /// What the agent meant to say; what speech recognition heard of the caller, or
    /// `[dtmf] 1` for key presses.
    pub text: String,
    /// The agent's text the caller actually heard (all of it unless interrupted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard_text: Option<String>,
    /// Start on the call's media clock, ms.
    pub start_ms: u64,
    /// End on the call's media clock, ms.
    pub end_ms: u64,
    /// The caller cut the agent's turn short (barge-in).
    #[serde(default)]
    pub interrupted: bool,
}

/// The stages of one agent turn, each in ms after the caller's speech ended (`None` when
/// the stage did not happen, or the turn answered no speech, such as a greeting).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnLatency {
    /// The agent's turn number.
    pub turn: u64,
    /// When the caller's speech ended, on the media clock (ms), if the turn answers speech.
    pub speech_end_ms: Option<u64>,
    /// The end of the caller's turn was decided.
    pub end_of_turn_ms: Option<f64>,
    /// Speech recognition gave its final result.
    pub stt_final_ms: Option<f64>,
    /// The agent decided its answer (an LLM's first token, a flow's decision).
    pub decided_ms: Option<f64>,
    /// The first audio came from text-to-speech.
    pub first_tts_audio_ms: Option<f64>,
    /// The first `playAudio` was handed to the socket.
    pub first_play_audio_ms: Option<f64>,
    /// The first audio played at the phone (playout clock).
    pub first_heard_ms: Option<f64>,
    /// Plivo's `playedStream` for the turn arrived.
    pub played_stream_ms: Option<f64>,
    /// The gateway's own share: the time spent in voxgate between the caller's speech end
    /// and the first audio heard, less the agent's and text-to-speech's own time and the
    /// VAD's hangover.
    pub gateway_ms: Option<f64>,
    /// The caller cut the turn short.
    #[serde(default)]
    pub interrupted: bool,
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HungUpBy {
    /// The agent said goodbye.
    Agent,
    /// The caller hung up (the stream ended from Plivo's side).
    Caller,
    /// voxgate ended it: the agent failed, the call ran too long, shutdown.
    Voxgate,
}

/// Everything the conversation adds to the call record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// Every turn, in order of start.
    pub transcript: Vec<TranscriptEntry>,
    /// Each agent turn's latency split.
    pub turns: Vec<TurnLatency>,
    /// What the agent collected (name, city, ...).
    pub slots: std::collections::BTreeMap<String, String>,
    /// Who ended the call, once it ended.
    pub hung_up_by: Option<HungUpBy>,
    /// What went wrong with the agent's providers, in order (at most
    /// [`MAX_AGENT_EVENTS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_events: Vec<AgentEvent>,
}

/// The most agent events a call record keeps.
pub const MAX_AGENT_EVENTS: usize = 100;

/// A provider failure the agent met, and what it did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// When, on the caller's media clock, ms.
    pub at_ms: u64,
    /// `stt`, `chat`, `tts` or `tool`.
    pub api: String,
    /// The provider (`deepgram`, `openai`, `elevenlabs`, `espeak`).
    pub provider: String,
    /// What failed (`timeout_first_byte`, `status`, `stream`, …).
    pub kind: String,
    /// What the agent did: `retried`, `fallback`, `goodbye`.
    pub outcome: String,
    /// The provider's message (never a key).
    pub message: String,
}
