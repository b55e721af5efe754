//! How one simulated call is set up: [`SimConfig`] and its parts.
//!
//! Owns: the settings and their defaults, and the check that they make sense
//! ([`SimConfig::validate`]). Never: reads the environment or files (the CLI does).

use std::time::Duration;

use crate::telephony::plivo::stream::MediaFormat;

use super::error::SimError;
use super::plivo_rest::PlivoCalls;
use super::report::Detail;
use super::script::{self, CallerStep};

/// Fastest simulation speed accepted (500× real time is a 40 µs tick).
pub const MAX_SPEED: f64 = 500.0;

/// How Plivo fetches the answer URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerMethod {
    /// Form-encoded POST (Plivo's default).
    #[default]
    Post,
    /// GET with the fields in the query string.
    Get,
}

/// Where the simulator dials the `<Stream>` URL and posts stream status callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamConnect {
    /// `ws://` URLs as given; `wss://` URLs through the server (the simulator has no TLS).
    #[default]
    Auto,
    /// Exactly as given.
    AsGiven,
    /// Always through the server: scheme, host and port replaced by the server's, path and
    /// query kept (a TLS-terminating proxy in front of voxgate does the same).
    ViaServer,
}

/// Time limits. Durations of the call itself are on the simulated clock; network limits
/// are real time.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// Answer request, real time (Plivo allows about 15 s).
    pub answer: Duration,
    /// WebSocket connect and upgrade, real time.
    pub connect: Duration,
    /// Each callback request, real time.
    pub callback: Duration,
    /// Waiting for the server's close reply after the simulator closes, real time.
    pub close: Duration,
    /// Longest call, simulated time.
    pub max_call: Duration,
    /// Longest `UntilAgentHeard` wait, simulated time.
    pub agent_heard: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            answer: Duration::from_secs(15),
            connect: Duration::from_secs(5),
            callback: Duration::from_secs(5),
            close: Duration::from_secs(1),
            max_call: Duration::from_secs(600),
            agent_heard: Duration::from_secs(30),
        }
    }
}

/// One simulated call.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The voxgate server's base URL, e.g. `http://127.0.0.1:8080` (no trailing slash needed).
    pub server: String,
    /// Answer URL path on the server.
    pub answer_path: String,
    /// Hangup URL path on the server.
    pub hangup_path: String,
    /// How the answer URL is fetched.
    pub answer_method: AnswerMethod,
    /// Auth token to sign every request with (V3); unsigned when `None`.
    pub auth_token: Option<String>,
    /// The account's auth id sent as `accountId` / `ParentAuthID`.
    pub account_id: String,
    /// The call's `CallUUID`.
    pub call_uuid: String,
    /// Caller number (`From`).
    pub from: String,
    /// Called number (`To`).
    pub to: String,
    /// What the caller does.
    pub script: Vec<CallerStep>,
    /// 1.0 = real time; 10.0 plays a 2 s script in 0.2 s.
    pub speed: f64,
    /// The `contentType` the `<Stream>` must have; any supported one when `None`.
    pub expect_content_type: Option<MediaFormat>,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Post the hangup and stream status callbacks.
    pub post_callbacks: bool,
    /// Where to dial the stream.
    pub stream_connect: StreamConnect,
    /// How much to record.
    pub detail: Detail,
    /// Refuse any URL (server, stream, callback) that is not on a loopback address.
    pub loopback_only: bool,
    /// The REST emulator this call appears on as a live call, so the server can hang it up
    /// with `DELETE …/Call/{uuid}/`; `None`: no emulator.
    pub plivo_rest: Option<PlivoCalls>,
}

impl SimConfig {
    /// A call to `server` running `script`, with a fresh random `CallUUID` and defaults for
    /// the rest.
    pub fn new(server: impl Into<String>, script: Vec<CallerStep>) -> Self {
        Self {
            server: server.into(),
            answer_path: "/plivo/answer".to_owned(),
            hangup_path: "/plivo/hangup".to_owned(),
            answer_method: AnswerMethod::Post,
            auth_token: None,
            account_id: "MASIMULATOR000000001".to_owned(),
            call_uuid: uuid::Uuid::new_v4().to_string(),
            from: "14155550100".to_owned(),
            to: "14155550199".to_owned(),
            script,
            speed: 1.0,
            expect_content_type: None,
            timeouts: Timeouts::default(),
            post_callbacks: true,
            stream_connect: StreamConnect::Auto,
            detail: Detail::Full,
            loopback_only: false,
            plivo_rest: None,
        }
    }

    /// Checks the settings: speed, script, server URL.
    pub fn validate(&self) -> Result<(), SimError> {
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= MAX_SPEED) {
            return Err(SimError::Config(format!(
                "speed must be above 0 and at most {MAX_SPEED}, not {}",
                self.speed
            )));
        }
        script::validate(&self.script)?;
        let url = self.server_url()?;
        if self.loopback_only {
            super::callbacks::require_loopback(&url)?;
        }
        Ok(())
    }

    /// The server base URL, parsed.
    pub(crate) fn server_url(&self) -> Result<reqwest::Url, SimError> {
        let url = reqwest::Url::parse(&self.server)
            .map_err(|e| SimError::Config(format!("server URL {:?}: {e}", self.server)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SimError::Config(format!(
                "server URL {:?} must be http:// or https://",
                self.server
            )));
        }
        Ok(url)
    }

    /// `{server}{path}`.
    pub(crate) fn server_path(&self, path: &str) -> String {
        format!("{}{}", self.server.trim_end_matches('/'), path)
    }
}
