//! Why a simulated call could not run: [`SimError`].
//!
//! A call that ran, even badly (protocol errors, gaps, a server that hung up), is a
//! [`super::CallReport`], not an error. These are the calls that never got to stream, or
//! were set up wrongly. Never: carries a protocol error from the server (those go in the
//! report) or a secret (the auth token is never part of a message).

use thiserror::Error;

use crate::telephony::plivo::answer::AnswerError;

use super::script::ScriptError;

/// Why a simulated call failed.
#[derive(Debug, Error)]
pub enum SimError {
    /// A setting makes no sense.
    #[error("invalid simulator setting: {0}")]
    Config(String),
    /// The script could not be used.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// A URL is not on a loopback address and the run is loopback-only.
    #[error("{0} is not a loopback address (load runs stay on this machine)")]
    NotLoopback(String),
    /// The answer request failed in transport.
    #[error("answer request to {url} failed: {source}")]
    Answer {
        /// The answer URL.
        url: String,
        /// What reqwest found.
        source: reqwest::Error,
    },
    /// The answer URL replied with a non-2xx status (Plivo: hangup 7011).
    #[error("answer URL replied {status}: {body}")]
    AnswerStatus {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was not `<Stream>` XML Plivo would accept (Plivo: hangup 8011).
    #[error("answer XML rejected: {source}; body: {body}")]
    AnswerXml {
        /// What was wrong.
        source: AnswerError,
        /// The start of the body.
        body: String,
    },
    /// The server answered with `<Hangup>`.
    #[error("call refused by the server (<Hangup reason={reason:?}>)")]
    Refused {
        /// The `reason` attribute, if any.
        reason: Option<String>,
    },
    /// The `<Stream>` has a `contentType` other than the one expected, or none Plivo takes.
    #[error("stream contentType {got:?}: {why}")]
    ContentType {
        /// The `contentType` as given (`None` when absent).
        got: Option<String>,
        /// What was expected.
        why: String,
    },
    /// The stream URL is not a WebSocket URL the simulator can dial.
    #[error("stream URL {url:?}: {why}")]
    StreamUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The WebSocket connect or upgrade failed.
    #[error("WebSocket connect to {url} failed: {source}")]
    Connect {
        /// The URL dialled.
        url: String,
        /// What tungstenite found.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// A network step took longer than its limit.
    #[error("{stage} timed out")]
    Timeout {
        /// `answer` or `connect`.
        stage: &'static str,
    },
}

impl SimError {
    /// A fixed label, for load reports and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Script(_) => "script",
            Self::NotLoopback(_) => "not_loopback",
            Self::Answer { .. } => "answer_transport",
            Self::AnswerStatus { .. } => "answer_status",
            Self::AnswerXml { .. } => "answer_xml",
            Self::Refused { .. } => "refused",
            Self::ContentType { .. } => "content_type",
            Self::StreamUrl { .. } => "stream_url",
            Self::Connect { .. } => "connect",
            Self::Timeout { stage: "answer" } => "answer_timeout",
            Self::Timeout { .. } => "connect_timeout",
        }
    }
}
