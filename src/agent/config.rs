//! The `[agent]` configuration section: which agent answers calls that choose none.
//!
//! Names are [`AgentKind`]'s own ([`AgentKind::as_str`]), so the file, the environment and
//! a call's `agent` on `POST /v1/calls` all parse the same way.

use serde::{Deserialize, Serialize};

use super::AgentKind;
use crate::setting::{InvalidSetting, invalid};

/// `[agent]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// The agent for calls that name none (default `echo`).
    pub default: Option<String>,
}

/// Agent settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentConfig {
    /// The agent for calls that name none.
    pub default: AgentKind,
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
        Ok(AgentConfig { default })
    }
}

/// The file's form of validated settings.
impl From<&AgentConfig> for RawAgent {
    fn from(config: &AgentConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let AgentConfig { default } = *config;
        Self {
            default: Some(default.as_str().to_owned()),
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
            let raw = RawAgent::from(&AgentConfig { default: kind });
            assert_eq!(raw.validate(), Ok(AgentConfig { default: kind }));
        }
        assert_eq!(" Echo ".parse::<AgentKind>(), Ok(AgentKind::Echo));
    }

    #[test]
    fn an_unknown_agent_names_the_key_and_the_known_agents() {
        let err = RawAgent {
            default: Some("parrot".into()),
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.key, "agent.default");
        assert_eq!(err.reason, "\"parrot\" is not a known agent (known: echo)");
    }
}
