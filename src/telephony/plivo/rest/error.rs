//! What can go wrong talking to Plivo's REST API, and the first half of the retry split:
//! whether an outcome is worth retrying ([`RestError::is_retriable`]). When to retry is the
//! business of [`crate::retry`].
//!
//! Errors hold strings, not `reqwest::Error`s, so they are `Clone` + `PartialEq` (a mock
//! `PlivoApi` can hand them out) and never carry a request with its `Authorization` header.

use std::time::Duration;

use reqwest::StatusCode;
use thiserror::Error;

/// Longest piece of a response body quoted in an error.
const QUOTE_CHARS: usize = 200;

/// A failed Plivo REST request. `kind()` is a fixed label for metrics and logs.
///
/// 404 is not here: each method says what "not found" means for it (`Ok(None)` for a
/// live call or CDR, [`super::HangupOutcome::AlreadyGone`] for a hangup), except Make
/// Call, where it is a [`RestError::BadRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RestError {
    /// 401: Plivo rejected the auth id / auth token. Fix the configuration.
    #[error("Plivo rejected the credentials (401): {message}")]
    Unauthorized {
        /// Plivo's `error` text.
        message: String,
    },
    /// 403: the account may not do this now (e.g. the concurrent-call limit, hangup cause
    /// 5030, or a subaccount without the permission).
    #[error("Plivo refused the request (403): {message}")]
    Forbidden {
        /// Plivo's `error` text.
        message: String,
    },
    /// 429: Plivo's rate limit. It refused before acting, so any request may be retried.
    #[error("Plivo rate limit (429), retry after {retry_after:?}: {message}")]
    RateLimited {
        /// The `Retry-After` Plivo sent, if any.
        retry_after: Option<Duration>,
        /// Plivo's `error` text.
        message: String,
    },
    /// 5xx: Plivo failed; whether it acted first is unknown.
    #[error("Plivo server error ({status}): {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// Plivo's `error` text, or the start of the body.
        message: String,
    },
    /// Any other 4xx (400 bad or missing parameter, 404 for Make Call, 405, …).
    #[error("Plivo rejected the request ({status}): {message}")]
    BadRequest {
        /// The HTTP status.
        status: u16,
        /// Plivo's `error` text (a string, or a JSON object of per-field messages).
        message: String,
    },
    /// A status Plivo does not document for this request (1xx, 3xx — redirects are not
    /// followed — or a 2xx other than the expected ones where it matters).
    #[error("unexpected HTTP status {status} from Plivo: {message}")]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        message: String,
    },
    /// No complete response within the request timeout. The request may have reached
    /// Plivo and been acted on.
    #[error("Plivo request timed out")]
    Timeout,
    /// The connection could not be made (DNS, TCP, TLS): the request never left, so it
    /// provably did not reach Plivo.
    #[error("could not connect to Plivo: {message}")]
    Connect {
        /// The transport's error.
        message: String,
    },
    /// The connection failed after it was made (reset, closed mid-response): the request
    /// may have reached Plivo.
    #[error("connection to Plivo failed: {message}")]
    Network {
        /// The transport's error.
        message: String,
    },
    /// A success status with a body that is not the documented JSON (or is too large).
    #[error("could not decode Plivo's response: {message}")]
    Decode {
        /// What did not parse.
        message: String,
    },
    /// The call or request uuid is empty or has characters other than `[A-Za-z0-9-]`.
    /// Refused locally, never sent: `DELETE .../Call//` would hang up every call on the
    /// account.
    #[error("invalid Plivo uuid {uuid:?}: must be 1-64 characters of [A-Za-z0-9-]")]
    InvalidCallUuid {
        /// The rejected value (at most 64 characters of it).
        uuid: String,
    },
}

impl RestError {
    /// A fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server",
            Self::BadRequest { .. } => "bad_request",
            Self::UnexpectedStatus { .. } => "unexpected_status",
            Self::Timeout => "timeout",
            Self::Connect { .. } => "connect",
            Self::Network { .. } => "network",
            Self::Decode { .. } => "decode",
            Self::InvalidCallUuid { .. } => "invalid_call_uuid",
        }
    }

    /// Whether sending the same request again could succeed and is safe.
    ///
    /// Idempotent requests (GET, DELETE) retry on 429, 5xx, timeouts and transport
    /// failures. A non-idempotent one (Make Call's POST) retries only when the request
    /// provably did not reach Plivo, or Plivo refused it before acting: connect errors and
    /// 429. Never on a timeout, a 5xx or a broken connection, where Plivo may already be
    /// ringing the callee and a second POST would ring them twice.
    /// Nothing else is retriable: auth, 4xx and decode errors repeat identically.
    pub fn is_retriable(&self, method_is_idempotent: bool) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Connect { .. } => true,
            Self::Server { .. } | Self::Timeout | Self::Network { .. } => method_is_idempotent,
            Self::Unauthorized { .. }
            | Self::Forbidden { .. }
            | Self::BadRequest { .. }
            | Self::UnexpectedStatus { .. }
            | Self::Decode { .. }
            | Self::InvalidCallUuid { .. } => false,
        }
    }

    /// The `Retry-After` of a 429, if Plivo sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Maps a transport error. A connect error wins over a timeout: a connect timeout
    /// still means nothing was sent.
    pub(super) fn from_transport(error: &reqwest::Error) -> Self {
        let message = error_chain(error);
        if error.is_connect() {
            Self::Connect { message }
        } else if error.is_timeout() {
            Self::Timeout
        } else {
            Self::Network { message }
        }
    }

    /// Maps an unsuccessful status (not 2xx; 404 only when the caller does not handle it).
    pub(super) fn from_status(
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Self {
        let message = error_message(body);
        let code = status.as_u16();
        match code {
            401 => Self::Unauthorized { message },
            403 => Self::Forbidden { message },
            429 => Self::RateLimited {
                retry_after,
                message,
            },
            500..=599 => Self::Server {
                status: code,
                message,
            },
            400..=499 => Self::BadRequest {
                status: code,
                message,
            },
            _ => Self::UnexpectedStatus {
                status: code,
                message,
            },
        }
    }
}

/// The human part of an error body: Plivo's `error` (a string, or per-field messages as
/// compact JSON), else `message`, else the start of the body as text.
pub(super) fn error_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        for key in ["error", "message"] {
            match map.get(key) {
                Some(serde_json::Value::String(text)) => return quote(text),
                Some(serde_json::Value::Null) | None => {}
                Some(other) => return quote(&other.to_string()),
            }
        }
    }
    quote(String::from_utf8_lossy(body).trim())
}

/// At most [`QUOTE_CHARS`] characters of `text`.
pub(super) fn quote(text: &str) -> String {
    text.chars().take(QUOTE_CHARS).collect()
}

/// `error` and its sources, joined: reqwest's top-level message alone ("error sending
/// request") says nothing.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    quote(&text)
}

/// An invalid [`super::RestConfig`]: `PlivoRest::new` refuses to build.
#[derive(Debug, Error)]
pub enum BuildError {
    /// `base_url` is not an absolute http(s) URL without query or fragment.
    #[error("invalid Plivo base URL {url:?}: {why}")]
    BaseUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// `auth_id` is empty or not `[A-Za-z0-9]` (it goes into every path).
    #[error("invalid Plivo auth id: must be non-empty ASCII letters and digits")]
    AuthId,
    /// `auth_token` is empty.
    #[error("Plivo auth token is empty")]
    AuthToken,
    /// The HTTP client could not be built (TLS backend).
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    /// The retry timing would retry in a tight loop or never.
    #[error("Plivo REST retries: {0}")]
    Retry(#[from] crate::retry::RetryPolicyError),
}
