//! The three clocks every request to a provider runs under: connect, first byte, idle.
//!
//! A provider that accepts a connection and then says nothing must cost a call a fallback
//! line, never a hang. Each adapter wraps its connect, its wait for the first byte of the
//! answer and every later read in [`Timeouts::guard`], which turns a late future into
//! [`ProviderError::Timeout`] naming the stage.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ProviderError, Stage};
use crate::setting::{InvalidSetting, invalid};

/// Longest a timeout may be set to: longer hides a dead provider from a live call.
const MAX_TIMEOUT_MS: u64 = 120_000;

/// How long each stage of a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS + (for WebSockets) the upgrade.
    pub connect: Duration,
    /// From the request sent to the first byte of the answer (an LLM's first token, a
    /// TTS's first audio).
    pub first_byte: Duration,
    /// Between two reads of a streaming answer once it has started.
    pub idle: Duration,
}

impl Default for Timeouts {
    /// 3 s to connect, 10 s to the first byte, 10 s between bytes: far beyond a healthy
    /// provider (tens to hundreds of ms), short enough that a caller hears the fallback
    /// line while still on the line.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// The timeout of `stage`.
    pub fn of(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Connect => self.connect,
            Stage::FirstByte => self.first_byte,
            Stage::Idle => self.idle,
            // A bounded body's deadline is the caller's own; the idle clock still runs.
            Stage::Body => self.idle,
        }
    }

    /// Runs `work` under `stage`'s timeout.
    pub async fn guard<T>(
        &self,
        provider: &'static str,
        stage: Stage,
        work: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let after = self.of(stage);
        match tokio::time::timeout(after, work).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Timeout {
                provider,
                stage,
                after,
            }),
        }
    }
}

/// The three timeouts in a provider's config section, in milliseconds; every key optional.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Connect timeout, ms (default 3000).
    pub connect_ms: Option<u64>,
    /// First-byte timeout, ms (default 10000).
    pub first_byte_ms: Option<u64>,
    /// Idle timeout, ms (default 10000).
    pub idle_ms: Option<u64>,
}

impl RawTimeouts {
    /// Checks each timeout is between 1 ms and 120 s. `keys` are the three settings' full
    /// names (`openai.connect_ms`, first byte, idle) for error messages.
    pub fn validate(&self, keys: [&'static str; 3]) -> Result<Timeouts, InvalidSetting> {
        let defaults = Timeouts::default();
        let pick = |key: &'static str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
            Some(ms) => Err(invalid(
                key,
                format!("{ms} is not between 1 and {MAX_TIMEOUT_MS} ms"),
            )),
        };
        let [connect, first_byte, idle] = keys;
        Ok(Timeouts {
            connect: pick(connect, self.connect_ms, defaults.connect)?,
            first_byte: pick(first_byte, self.first_byte_ms, defaults.first_byte)?,
            idle: pick(idle, self.idle_ms, defaults.idle)?,
        })
    }
}

impl From<&Timeouts> for RawTimeouts {
    fn from(t: &Timeouts) -> Self {
        Self {
            connect_ms: Some(t.connect.as_millis() as u64),
            first_byte_ms: Some(t.first_byte.as_millis() as u64),
            idle_ms: Some(t.idle.as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_stage_is_a_timeout_naming_it() {
        let timeouts = RawTimeouts {
            first_byte_ms: Some(50),
            ..RawTimeouts::default()
        }
        .validate(["c", "f", "i"])
        .unwrap();
        let late = timeouts
            .guard(
                "chat",
                Stage::FirstByte,
                std::future::pending::<Result<(), _>>(),
            )
            .await
            .unwrap_err();
        assert_eq!(late.to_string(), "chat: no first byte within 50ms");
        assert!(late.retriable());
        let quick = timeouts.guard("chat", Stage::Idle, async { Ok(7) }).await;
        assert_eq!(quick, Ok(7));
    }

    #[test]
    fn timeouts_validate_and_print_back() {
        let raw = RawTimeouts {
            first_byte_ms: Some(2_500),
            ..RawTimeouts::default()
        };
        const KEYS: [&str; 3] = ["o.connect_ms", "o.first_byte_ms", "o.idle_ms"];
        let t = raw.validate(KEYS).unwrap();
        assert_eq!(t.first_byte, Duration::from_millis(2_500));
        assert_eq!(t.connect, Duration::from_secs(3));
        assert_eq!(RawTimeouts::from(&t).validate(KEYS), Ok(t));
        let err = RawTimeouts {
            idle_ms: Some(0),
            ..RawTimeouts::default()
        }
        .validate(KEYS)
        .unwrap_err();
        assert_eq!(err.key, "o.idle_ms");
    }
}
