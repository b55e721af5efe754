//! Voice agents: what answers the caller.
//!
//! An agent sees the caller's 8 kHz audio and the VAD's turn boundaries and answers with
//! turns of 8 kHz audio for playout. It runs inside the call's session task, so a method
//! must return quickly and never block; an agent that calls out to STT/LLM/TTS providers
//! does that work in its own task and hands finished audio back.

pub mod config;
pub mod echo;
pub mod flow;
pub mod turn;

use std::str::FromStr;

use crate::audio::vad::VadEvent;

/// Something that answers a caller.
pub trait Agent: Send {
    /// A 20 ms frame of caller audio (8 kHz), stamped on the caller's media clock.
    fn on_caller_audio(&mut self, timestamp_ms: u64, samples: &[i16]);
    /// A VAD turn boundary; returns a turn of 8 kHz audio to play, if the agent answers now.
    fn on_vad(&mut self, event: VadEvent) -> Option<Vec<i16>>;
}

/// The agents voxgate ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentKind {
    /// Plays each caller utterance back when it ends.
    #[default]
    Echo,
}

impl AgentKind {
    /// Every agent, in the order error messages list them.
    pub const ALL: [Self; 1] = [Self::Echo];

    /// The agent's name in the config file and on `POST /v1/calls`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
        }
    }

    /// The known names, comma-separated, for error messages.
    pub fn known_names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// A fresh agent of this kind for one call.
    pub fn build(self) -> Box<dyn Agent> {
        match self {
            Self::Echo => Box::new(echo::EchoAgent::new(echo::MAX_UTTERANCE_MS)),
        }
    }
}

/// A name that is not one of [`AgentKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a known agent (known: {known})", known = AgentKind::known_names())]
pub struct UnknownAgent {
    /// The name given.
    pub name: String,
}

impl FromStr for AgentKind {
    type Err = UnknownAgent;

    /// An agent by its name ([`AgentKind::as_str`]), ignoring case and surrounding space.
    fn from_str(name: &str) -> Result<Self, UnknownAgent> {
        let wanted = name.trim();
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownAgent {
                name: name.to_owned(),
            })
    }
}
