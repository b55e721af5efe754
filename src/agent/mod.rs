//! Voice agents: what answers the caller, each call's in a task of its own.
//!
//! An agent implements [`Agent`]: it says which rate it wants the caller's audio at and
//! runs until the call ends, talking to the call's session only through the [`seam`]'s
//! bounded channels (events and caller audio in; turns of audio, hang-up, slots out). The
//! session never waits on it, so an agent that is slow, stuck or panics costs the caller a
//! fallback line, never the media. [`Agents`] builds the agent a call's plan names.
//!
//! Never: touches the socket, blocks its task on I/O without a timeout, or holds a lock
//! across an await.

pub mod config;
pub mod echo;
pub mod seam;
pub mod flow;
pub mod turn;

use std::str::FromStr;
use std::sync::Arc;

use crate::audio::resample::Rate;
pub use seam::{AgentIo, AgentLink, CallInfo, CallerAudio, Command, Event, Input, Progress};
use turn::TurnConfig;

/// Something that answers a caller.
#[async_trait::async_trait]
pub trait Agent: Send + 'static {
    /// The rate the agent wants the caller's audio at (8 or 16 kHz), or `None` for none.
    fn caller_audio_rate(&self) -> Option<Rate>;
    /// Runs the call: reads `io` until it yields `None` (the call ended).
    async fn run(self: Box<Self>, io: AgentIo);
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

    /// The rate this agent takes the caller's audio at (decided before the stream joins
    /// the DSP pipeline, which makes 16 kHz frames only for calls that want them).
    pub const fn caller_audio_rate(self) -> Option<Rate> {
        match self {
            Self::Echo => Some(Rate::Hz8000),
        }
    }
}

/// Makes an agent for each call (an embedder's own agent, or a test's).
pub type MakeAgent = Arc<dyn Fn() -> Box<dyn Agent> + Send + Sync>;

/// Builds each call's agent, and holds what every call's agent shares.
pub struct Agents {
    fallback: Arc<[i16]>,
    custom: Option<MakeAgent>,
}

impl Default for Agents {
    fn default() -> Self {
        Self {
            fallback: fallback_tone(),
            custom: None,
        }
    }
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("custom", &self.custom.is_some())
            .finish_non_exhaustive()
    }
}

impl Agents {
    /// Every call runs the agent `make` builds, whatever its plan says (for embedding
    /// voxgate with an agent of one's own, and for tests).
    pub fn custom(make: MakeAgent) -> Self {
        Self {
            custom: Some(make),
            ..Self::default()
        }
    }

    /// A fresh agent of `kind` for one call (running `flow`, for a flow agent).
    pub fn build(&self, kind: AgentKind, _flow: Option<&str>) -> Box<dyn Agent> {
        if let Some(make) = &self.custom {
            return make();
        }
        match kind {
            AgentKind::Echo => Box::new(echo::EchoAgent::new(echo::MAX_UTTERANCE_MS)),
        }
    }

    /// The rate a call of `kind` takes the caller's audio at (decided before the stream
    /// joins the DSP pipeline, which makes 16 kHz frames only for calls that want them).
    pub fn caller_audio_rate(&self, kind: AgentKind) -> Option<Rate> {
        match &self.custom {
            Some(make) => make().caller_audio_rate(),
            None => kind.caller_audio_rate(),
        }
    }

    /// Turn-taking for a call of `kind` (running `flow`) until its agent says otherwise.
    pub fn turn_config(&self, _kind: AgentKind, _flow: Option<&str>) -> TurnConfig {
        TurnConfig::default()
    }

    /// What the caller hears when the agent fails (8 kHz), before voxgate hangs up.
    pub fn fallback_line(&self) -> Arc<[i16]> {
        Arc::clone(&self.fallback)
    }
}

/// Two short 440 Hz beeps (8 kHz): the fallback line when no speech can be made.
fn fallback_tone() -> Arc<[i16]> {
    let beep = |i: usize| {
        let t = i as f64 / 8_000.0;
        (6_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
    };
    let mut line: Vec<i16> = (0..1_600).map(beep).collect();
    line.extend(std::iter::repeat_n(0, 800));
    line.extend((0..1_600).map(beep));
    line.into()
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
