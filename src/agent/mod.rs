//! Voice agents: what answers the caller.
//!
//! An agent sees the caller's 8 kHz audio and the VAD's turn boundaries and answers with
//! turns of 8 kHz audio for playout. It runs inside the call's session task, so a method
//! must return quickly and never block; an agent that calls out to STT/LLM/TTS providers
//! does that work in its own task and hands finished audio back.

pub mod echo;

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
    /// Every kind, in the order their names are listed to users.
    pub const ALL: [Self; 1] = [Self::Echo];

    /// The kind's name (what `POST /v1/calls` takes as `agent`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Echo => "echo",
        }
    }

    /// The kind named `name` (exact, lowercase), if voxgate ships one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The known names, comma-separated, for error messages.
    pub fn known_names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// A fresh agent of this kind for one call.
    pub fn build(self) -> Box<dyn Agent> {
        match self {
            Self::Echo => Box::new(echo::EchoAgent::new(echo::MAX_UTTERANCE_MS)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_name() {
        for kind in AgentKind::ALL {
            assert_eq!(AgentKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(AgentKind::parse("Echo"), None);
        assert_eq!(AgentKind::parse("llm"), None);
        assert_eq!(AgentKind::known_names(), "echo");
    }
}
