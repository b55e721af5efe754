//! The `[agent]` configuration section: which agent answers calls that choose none, and
//! where scripted flows and LLM agent profiles are loaded from.
//!
//! Names are [`AgentKind`]'s own ([`AgentKind::as_str`]), so the file, the environment and
//! a call's `agent` on `POST /v1/calls` all parse the same way.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::AgentKind;
use crate::setting::{InvalidSetting, invalid};

/// `[agent]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// The agent for calls that name none (default `flow`: the shipped demo flow).
    pub default: Option<String>,
    /// A folder of flow files (`*.toml`), loaded beside the shipped `demo` flow.
    pub flows_dir: Option<PathBuf>,
    /// A folder of LLM agent profiles (`*.toml`).
    pub profiles_dir: Option<PathBuf>,
}

/// Agent settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentConfig {
    /// The agent for calls that name none.
    pub default: AgentKind,
    /// A folder of flow files; `None` offers only the shipped `demo` flow.
    pub flows_dir: Option<PathBuf>,
    /// A folder of LLM agent profiles; `None` loads none.
    pub profiles_dir: Option<PathBuf>,
}

impl RawAgent {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<AgentConfig, InvalidSetting> {
        let default = match self.default.as_deref().filter(|name| !name.is_empty()) {
            None => AgentKind::default(),
            Some(name) => name
                .parse()
                .map_err(|e: super::UnknownAgent| invalid("agent.default", e.to_string()))?,
        };
        let folder = |dir: Option<PathBuf>| dir.filter(|d| !d.as_os_str().is_empty());
        Ok(AgentConfig {
            default,
            flows_dir: folder(self.flows_dir),
            profiles_dir: folder(self.profiles_dir),
        })
    }
}

/// The file's form of validated settings.
impl From<&AgentConfig> for RawAgent {
    fn from(config: &AgentConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let AgentConfig {
            default,
            flows_dir,
            profiles_dir,
        } = config;
        Self {
            default: Some(default.as_str().to_owned()),
            flows_dir: flows_dir.clone(),
            profiles_dir: profiles_dir.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_agent() {
        for kind in AgentKind::ALL {
            assert_eq!(kind.as_str().parse::<AgentKind>(), Ok(kind));
            let config = AgentConfig {
                default: kind,
                flows_dir: Some("/etc/voxgate/flows".into()),
                profiles_dir: Some("/etc/voxgate/agents".into()),
            };
            assert_eq!(RawAgent::from(&config).validate(), Ok(config));
        }
        assert_eq!(" Echo ".parse::<AgentKind>(), Ok(AgentKind::Echo));
    }

    #[test]
    fn an_unknown_agent_names_the_key_and_the_known_agents() {
        let err = RawAgent {
            default: Some("parrot".into()),
            ..RawAgent::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.key, "agent.default");
        assert_eq!(
            err.reason,
            "\"parrot\" is not a known agent (known: echo, flow, llm)"
        );
    }
}
