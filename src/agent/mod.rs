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
pub mod flow;
pub mod flow_agent;
pub mod llm;
pub mod seam;
pub mod turn;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use crate::audio::resample::Rate;
use crate::providers::espeak::{Espeak, EspeakConfig, TtsError};
use crate::providers::pocketsphinx::{PocketsphinxConfig, Recognizers};
use config::AgentConfig;
use flow::{Flow, Flows};
use llm::LlmSetup;
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
    Echo,
    /// Runs a scripted flow (the call's `flow_name`, else `demo`) with offline speech.
    #[default]
    Flow,
    /// Talks through hosted speech and a chat model, as an agent profile says (the call's
    /// `flow_name` names the profile, else the first by name).
    Llm,
}

impl AgentKind {
    /// Every agent, in the order error messages list them.
    pub const ALL: [Self; 3] = [Self::Echo, Self::Flow, Self::Llm];

    /// The agent's name in the config file and on `POST /v1/calls`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Flow => "flow",
            Self::Llm => "llm",
        }
    }

    /// The known names, comma-separated, for error messages.
    pub fn known_names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

/// Makes an agent for each call (an embedder's own agent, or a test's).
pub type MakeAgent = Arc<dyn Fn() -> Box<dyn Agent> + Send + Sync>;

/// The flow a call runs when it names none.
pub const DEFAULT_FLOW: &str = "demo";

/// Builds each call's agent, and holds what every call's agent shares: the flows, the
/// offline text-to-speech and speech recognition.
pub struct Agents {
    fallback: Arc<[i16]>,
    custom: Option<MakeAgent>,
    flows: Arc<Flows>,
    tts: Option<Espeak>,
    stt: Option<Recognizers>,
    /// Each LLM agent profile's providers, by name.
    llm: BTreeMap<String, Arc<LlmSetup>>,
    /// The rate LLM agents hear the caller at (the `[deepgram]` encoding's).
    llm_rate: Rate,
}

impl Default for Agents {
    /// Echo only: no flows can run (no text-to-speech).
    fn default() -> Self {
        Self {
            fallback: fallback_tone(),
            custom: None,
            // The shipped demo flow is checked by its tests: it always loads.
            flows: Arc::new(Flows::load(None).expect("the shipped demo flow validates")),
            tts: None,
            stt: None,
            llm: BTreeMap::new(),
            llm_rate: Rate::Hz8000,
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

/// Why the agents could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// A flow file is not a valid flow.
    #[error(transparent)]
    Flow(#[from] flow::FlowError),
    /// Flows are the default agent but espeak-ng cannot speak.
    #[error(
        "the default agent runs flows, which speak with espeak-ng, and it could not start: {0} (install espeak-ng-data, or set agent.default = \"echo\")"
    )]
    NoSpeech(TtsError),
    /// An agent profile file is not valid.
    #[error(transparent)]
    Profile(#[from] llm::profile::ProfileError),
    /// A profile's providers cannot be built (a key is missing).
    #[error(transparent)]
    Setup(#[from] llm::setup::SetupError),
    /// LLM agents are the default but no profile is loaded.
    #[error("agent.default is llm but no agent profile is loaded (set agent.profiles_dir)")]
    NoProfiles,
}

impl Agents {
    /// Loads the flows (the shipped `demo` and `config.flows_dir`'s; one that does not
    /// validate stops start-up) and starts espeak-ng and, when enabled, pocketsphinx.
    /// Without speech recognition flows run on key presses alone.
    /// Loads the LLM agent profiles (`config.profiles_dir`) and builds their providers
    /// from `hosted`; a profile whose provider has no key stops start-up.
    pub fn start(
        config: &AgentConfig,
        espeak: &EspeakConfig,
        pocketsphinx: &PocketsphinxConfig,
        hosted: &llm::setup::Hosted,
    ) -> Result<Self, AgentsError> {
        let flows = Flows::load(config.flows_dir.as_deref())?;
        let profiles = llm::Profiles::load(config.profiles_dir.as_deref())?;
        if profiles.is_empty() && config.default == AgentKind::Llm {
            return Err(AgentsError::NoProfiles);
        }
        let tts = match Espeak::start(espeak) {
            Ok(tts) => Some(tts),
            Err(error) if config.default == AgentKind::Flow => {
                return Err(AgentsError::NoSpeech(error));
            }
            Err(error) => {
                tracing::warn!(%error, "espeak-ng could not start: calls asking for a flow get the echo agent");
                None
            }
        };
        let stt = if pocketsphinx.enabled {
            Recognizers::start(pocketsphinx)
                .inspect_err(|error| {
                    tracing::warn!(%error, "pocketsphinx could not start: flows hear key presses only")
                })
                .ok()
        } else {
            None
        };
        let llm = llm::setup::build(&profiles, hosted, tts.as_ref())?;
        Ok(Self {
            fallback: fallback_tone(),
            custom: None,
            flows: Arc::new(flows),
            tts,
            stt,
            llm,
            llm_rate: hosted.deepgram.audio.rate(),
        })
    }

    /// The LLM profile a call of `kind` runs, if it runs one (`name`, else the first; an
    /// unknown name runs the first, with a warning).
    fn profile(&self, kind: AgentKind, name: Option<&str>) -> Option<Arc<LlmSetup>> {
        if kind != AgentKind::Llm {
            return None;
        }
        let first = || self.llm.values().next().cloned();
        match name {
            Some(name) => self.llm.get(name).cloned().or_else(|| {
                tracing::warn!(profile = name, "no such agent profile: running the first");
                first()
            }),
            None => first(),
        }
    }

    /// The flow a call of `kind` runs, if it runs one (`flow`, else [`DEFAULT_FLOW`]; an
    /// unknown name runs the default, with a warning).
    fn flow(&self, kind: AgentKind, flow: Option<&str>) -> Option<Arc<Flow>> {
        if kind != AgentKind::Flow && flow.is_none() {
            return None;
        }
        let name = flow.unwrap_or(DEFAULT_FLOW);
        self.flows.get(name).or_else(|| {
            tracing::warn!(flow = name, "no such flow: running the default");
            self.flows.get(DEFAULT_FLOW)
        })
    }

    /// Every call runs the agent `make` builds, whatever its plan says (for embedding
    /// voxgate with an agent of one's own, and for tests).
    pub fn custom(make: MakeAgent) -> Self {
        Self {
            custom: Some(make),
            ..Self::default()
        }
    }

    /// A fresh agent of `kind` for one call (running `flow`, for a flow agent).
    pub fn build(&self, kind: AgentKind, flow: Option<&str>) -> Box<dyn Agent> {
        if let Some(make) = &self.custom {
            return make();
        }
        if let Some(setup) = self.profile(kind, flow) {
            return Box::new(llm::LlmAgent::new(setup));
        }
        let kind = if kind == AgentKind::Llm {
            tracing::warn!("no agent profile is loaded: the call runs a flow");
            AgentKind::Flow
        } else {
            kind
        };
        if kind == AgentKind::Flow
            && let (Some(flow), Some(tts)) = (self.flow(kind, flow), &self.tts)
        {
            return Box::new(flow_agent::FlowAgent::new(
                flow,
                tts.clone(),
                self.stt.clone(),
            ));
        }
        Box::new(echo::EchoAgent::new(echo::MAX_UTTERANCE_MS))
    }

    /// The rate a call of `kind` takes the caller's audio at (decided before the stream
    /// joins the DSP pipeline, which makes 16 kHz frames only for calls that want them).
    pub fn caller_audio_rate(&self, kind: AgentKind) -> Option<Rate> {
        match &self.custom {
            Some(make) => make().caller_audio_rate(),
            None if kind == AgentKind::Llm && !self.llm.is_empty() => Some(self.llm_rate),
            None => Some(Rate::Hz8000),
        }
    }

    /// Turn-taking for a call of `kind` (running `flow`) until its agent says otherwise.
    pub fn turn_config(&self, kind: AgentKind, flow: Option<&str>) -> TurnConfig {
        if let Some(setup) = self.profile(kind, flow) {
            return TurnConfig {
                interruption: setup.profile.interruption,
                ..TurnConfig::default()
            };
        }
        match self.flow(kind, flow) {
            Some(flow) if kind == AgentKind::Flow => TurnConfig {
                interruption: flow.interruption(),
                ..TurnConfig::default()
            },
            _ => TurnConfig::default(),
        }
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
