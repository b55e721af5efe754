//! What can go wrong talking to a hosted provider, and the secret every request carries.
//!
//! [`ProviderError`] is the one error of the provider boundary: each variant says which
//! stage failed and [`ProviderError::retriable`] says whether trying again could help (the
//! timing of a retry is [`crate::retry`]'s). Messages quote the provider's own error text
//! (trimmed), never a request header, so a key cannot leak through an error.
//!
//! [`ApiKey`] holds a key: it prints as `ApiKey(***)` in `Debug` and has no `Display`, so
//! it cannot reach a log line, a metric or a response by formatting.

use std::time::Duration;

/// The most of a provider's error body an error message quotes.
const MAX_QUOTED: usize = 300;

/// Which part of a request ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening the connection (TCP, TLS, WebSocket upgrade).
    Connect,
    /// Waiting for the first byte of the answer.
    FirstByte,
    /// Waiting for the next byte of a streaming answer.
    Idle,
    /// Waiting for the whole of a bounded answer (a trickling body).
    Body,
}

impl Stage {
    /// What did not come in time, for messages.
    const fn waited_for(self) -> &'static str {
        match self {
            Self::Connect => "no connection",
            Self::FirstByte => "no first byte",
            Self::Idle => "nothing more",
            Self::Body => "no complete answer",
        }
    }

    /// A fixed label for metrics and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstByte => "first_byte",
            Self::Idle => "idle",
            Self::Body => "body",
        }
    }
}

/// Why a provider request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The connection could not be made (refused, DNS, TLS, reset before an answer).
    #[error("{provider}: cannot connect: {reason}")]
    Connect {
        /// The provider.
        provider: &'static str,
        /// What the transport said.
        reason: String,
    },
    /// A stage took longer than its timeout.
    #[error("{provider}: {} within {after:?}", stage.waited_for())]
    Timeout {
        /// The provider.
        provider: &'static str,
        /// The stage.
        stage: Stage,
        /// The timeout.
        after: Duration,
    },
    /// The provider answered with an HTTP error (or refused the WebSocket upgrade).
    #[error("{provider}: HTTP {status}: {message}")]
    Status {
        /// The provider.
        provider: &'static str,
        /// The status code.
        status: u16,
        /// The provider's message (from its error body), trimmed.
        message: String,
        /// Its `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The provider reported an error inside a stream (an SSE `error` object, a close
    /// frame with a reason, an error message).
    #[error("{provider}: {message}")]
    Stream {
        /// The provider.
        provider: &'static str,
        /// The provider's message, trimmed.
        message: String,
    },
    /// The provider sent something that is not its protocol.
    #[error("{provider}: protocol error: {reason}")]
    Protocol {
        /// The provider.
        provider: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The connection ended before the answer was complete.
    #[error("{provider}: connection closed before the answer was complete")]
    Closed {
        /// The provider.
        provider: &'static str,
    },
    /// The request is not one this provider can make (bad configuration, empty input).
    #[error("{provider}: {reason}")]
    Invalid {
        /// The provider.
        provider: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl ProviderError {
    /// Whether trying again might succeed: transport failures, timeouts, 408, 409, 429
    /// and 5xx. A 4xx is the request's fault (or the key's) and would fail again.
    pub fn retriable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Closed { .. } => true,
            Self::Status { status, .. } => {
                matches!(status, 408 | 409 | 429) || (500..=599).contains(status)
            }
            Self::Stream { .. } | Self::Protocol { .. } | Self::Invalid { .. } => false,
        }
    }

    /// The provider that failed.
    pub fn provider(&self) -> &'static str {
        match self {
            Self::Connect { provider, .. }
            | Self::Timeout { provider, .. }
            | Self::Status { provider, .. }
            | Self::Stream { provider, .. }
            | Self::Protocol { provider, .. }
            | Self::Closed { provider }
            | Self::Invalid { provider, .. } => provider,
        }
    }

    /// A fixed label for the `kind` of metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout { stage, .. } => match stage {
                Stage::Connect => "timeout_connect",
                Stage::FirstByte => "timeout_first_byte",
                Stage::Idle => "timeout_idle",
                Stage::Body => "timeout_body",
            },
            Self::Status { .. } => "status",
            Self::Stream { .. } => "stream",
            Self::Protocol { .. } => "protocol",
            Self::Closed { .. } => "closed",
            Self::Invalid { .. } => "invalid",
        }
    }

    /// A protocol error.
    pub fn protocol(provider: &'static str, reason: impl Into<String>) -> Self {
        Self::Protocol {
            provider,
            reason: quote(&reason.into()),
        }
    }

    /// An error the provider reported in a stream.
    pub fn stream(provider: &'static str, message: impl Into<String>) -> Self {
        Self::Stream {
            provider,
            message: quote(&message.into()),
        }
    }

    /// An HTTP error answer with the provider's body, whose message is taken from the usual
    /// JSON shapes (`{"error":{"message"}}`, `{"err_msg"}`, `{"message"}`,
    /// `{"detail":{"message"}}`) or else quoted as text.
    pub fn status(
        provider: &'static str,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Self {
        Self::Status {
            provider,
            status,
            message: error_message(body),
            retry_after,
        }
    }
}

impl ProviderError {
    /// This error with every appearance of `key` in its text replaced by `***`: some
    /// servers (proxies, self-hosted) quote the key they refused in their error body.
    pub fn without_key(self, key: Option<&ApiKey>) -> Self {
        let Some(key) = key else { return self };
        let clean = |text: String| redact(&text, key);
        match self {
            Self::Connect { provider, reason } => Self::Connect {
                provider,
                reason: clean(reason),
            },
            Self::Status {
                provider,
                status,
                message,
                retry_after,
            } => Self::Status {
                provider,
                status,
                message: clean(message),
                retry_after,
            },
            Self::Stream { provider, message } => Self::Stream {
                provider,
                message: clean(message),
            },
            Self::Protocol { provider, reason } => Self::Protocol {
                provider,
                reason: clean(reason),
            },
            Self::Invalid { provider, reason } => Self::Invalid {
                provider,
                reason: clean(reason),
            },
            other @ (Self::Timeout { .. } | Self::Closed { .. }) => other,
        }
    }
}

/// `text` with `key`, and any 8 or more of its leading characters (a quoted prefix, as in
/// `sk-abc1…`), replaced by `***`.
pub fn redact(text: &str, key: &ApiKey) -> String {
    let key = key.expose();
    let mut out = text.replace(key, "***");
    let chars: Vec<char> = key.chars().collect();
    for len in (8..chars.len()).rev() {
        let prefix: String = chars[..len].iter().collect();
        if out.contains(&prefix) {
            out = out.replace(&prefix, "***");
        }
    }
    out
}

/// The message in a provider's error body.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let candidates = [
            value.pointer("/error/message"),
            value.pointer("/err_msg"),
            value.pointer("/message"),
            value.pointer("/detail/message"),
            value.pointer("/detail"),
            value.pointer("/error"),
        ];
        if let Some(text) = candidates.into_iter().flatten().find_map(|v| v.as_str()) {
            return quote(text);
        }
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        "(no message)".to_owned()
    } else {
        quote(&text)
    }
}

/// `text` on one line, at most [`MAX_QUOTED`] characters.
fn quote(text: &str) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTED)
        .collect();
    if text.trim().chars().count() > MAX_QUOTED {
        format!("{one_line}…")
    } else {
        one_line
    }
}

/// A provider's API key. It never prints: `Debug` shows `ApiKey(***)` and there is no
/// `Display`; only [`ApiKey::expose`] reads it, where a request is built.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key, if `key` is not blank.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into().trim().to_owned();
        (!key.is_empty()).then_some(Self(key))
    }

    /// The key itself, for a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_never_prints() {
        let key = ApiKey::new(" sk-secret-123 ").unwrap();
        assert_eq!(key.expose(), "sk-secret-123");
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(ApiKey::new("  "), None);
    }

    #[test]
    fn a_quoted_key_is_redacted_whole_or_in_part() {
        let key = ApiKey::new("sk-proj-4d1f0e9a7c55").unwrap();
        let error = ProviderError::status(
            "openai",
            401,
            br#"{"error":{"message":"Incorrect API key provided: sk-proj-4d1f0e9a7c55. Or was it sk-proj-4d1f...?"}}"#,
            None,
        )
        .without_key(Some(&key));
        let text = format!("{error} {error:?}");
        assert!(!text.contains("4d1f0e9a"), "{text}");
        assert!(text.contains("Incorrect API key provided: ***"), "{text}");
        assert_eq!(redact("short sk-", &key), "short sk-");
    }

    #[test]
    fn error_bodies_give_the_providers_message() {
        let openai =
            br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#;
        assert_eq!(error_message(openai), "Incorrect API key provided");
        let deepgram =
            br#"{"err_code":"INVALID_AUTH","err_msg":"Invalid credentials.","request_id":"x"}"#;
        assert_eq!(error_message(deepgram), "Invalid credentials.");
        let elevenlabs = br#"{"detail":{"status":"quota_exceeded","message":"Quota exceeded"}}"#;
        assert_eq!(error_message(elevenlabs), "Quota exceeded");
        assert_eq!(error_message(b"bad\ngateway"), "bad gateway");
        assert_eq!(error_message(b""), "(no message)");
        let long = "x".repeat(1000);
        assert_eq!(
            error_message(long.as_bytes()).chars().count(),
            MAX_QUOTED + 1
        );
    }

    #[test]
    fn only_transient_failures_are_retriable() {
        let status = |status| ProviderError::status("p", status, b"", None);
        assert!(status(429).retriable());
        assert!(status(503).retriable());
        assert!(!status(401).retriable());
        assert!(!status(400).retriable());
        assert!(
            ProviderError::Timeout {
                provider: "p",
                stage: Stage::FirstByte,
                after: Duration::from_secs(1)
            }
            .retriable()
        );
        assert!(!ProviderError::stream("p", "quota").retriable());
    }
}
