//! The `[plivo]` configuration section: the account (auth id and tokens), whether
//! signatures are enforced, and the REST API's base URL.
//!
//! Tokens are secrets: they never appear in `Debug` output or in the file form printed at
//! start-up.

use serde::{Deserialize, Serialize};

use crate::setting::{InvalidSetting, invalid};

/// Plivo's REST API when nothing else is configured.
const DEFAULT_API_URL: &str = "https://api.plivo.com";

/// `[plivo]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlivo {
    /// Auth ID (`MA…`/`SA…`), for the REST API.
    pub auth_id: Option<String>,
    /// Auth token(s): signatures are checked against each; the first is used for REST.
    pub auth_tokens: Option<Vec<String>>,
    /// Check Plivo's V3 signatures (default: whenever an auth token is set).
    pub verify_signatures: Option<bool>,
    /// Plivo's REST API base URL (default `https://api.plivo.com`; tests point it elsewhere).
    pub api_url: Option<String>,
}

/// Plivo account settings.
#[derive(Clone, Default)]
pub struct PlivoConfig {
    /// Auth ID, for the REST API.
    pub auth_id: Option<String>,
    /// Auth tokens signatures are checked against.
    pub auth_tokens: Vec<String>,
    /// Whether signatures are enforced.
    pub verify_signatures: bool,
    /// Plivo's REST API base URL.
    pub api_url: String,
}

impl std::fmt::Debug for PlivoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlivoConfig")
            .field("auth_id", &self.auth_id)
            .field(
                "auth_tokens",
                &format_args!("[{} redacted]", self.auth_tokens.len()),
            )
            .field("verify_signatures", &self.verify_signatures)
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl RawPlivo {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<PlivoConfig, InvalidSetting> {
        let tokens: Vec<String> = self
            .auth_tokens
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect();
        let verify_signatures = match self.verify_signatures {
            Some(true) if tokens.is_empty() => {
                return Err(invalid(
                    "plivo.verify_signatures",
                    "is on but no plivo.auth_tokens are set",
                ));
            }
            Some(on) => on,
            None => !tokens.is_empty(),
        };
        let api_url = match self.api_url.filter(|u| !u.is_empty()) {
            None => DEFAULT_API_URL.to_owned(),
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                url.trim_end_matches('/').to_owned()
            }
            Some(url) => {
                return Err(invalid(
                    "plivo.api_url",
                    format!("{url:?} must start with https:// or http://"),
                ));
            }
        };
        Ok(PlivoConfig {
            auth_id: self.auth_id.filter(|id| !id.is_empty()),
            auth_tokens: tokens,
            verify_signatures,
            api_url,
        })
    }
}

/// The file's form, tokens left out: it is printed at start-up.
impl From<&PlivoConfig> for RawPlivo {
    fn from(config: &PlivoConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let PlivoConfig {
            auth_id,
            auth_tokens: _,
            verify_signatures,
            api_url,
        } = config;
        Self {
            auth_id: auth_id.clone(),
            auth_tokens: None,
            verify_signatures: Some(*verify_signatures),
            api_url: Some(api_url.clone()),
        }
    }
}
