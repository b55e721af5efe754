//! The `[session]` configuration section: per-call timing (playout lead, checkpoint grace,
//! start, idle and write timeouts, reorder window) and the server's limits (calls at once,
//! sockets waiting for `start`, drain time on shutdown).
//!
//! Values are checked once here, at start; the session code takes them as they are.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::setting::{InvalidSetting, invalid};

/// `[session]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// Calls served at once; beyond it the answer URL refuses (busy).
    pub max_calls: Option<usize>,
    /// How far ahead of real time agent audio is sent, ms.
    pub playout_lead_ms: Option<u64>,
    /// How long to wait for `playedStream` after a turn's audio should have played, ms.
    pub checkpoint_timeout_ms: Option<u64>,
    /// No media for this long closes the stream, seconds.
    pub idle_timeout_secs: Option<u64>,
    /// A socket that does not take a message for this long is closed, ms.
    pub write_timeout_ms: Option<u64>,
    /// On shutdown, how long live calls may go on before they are closed, seconds.
    pub drain_timeout_secs: Option<u64>,
    /// Out-of-order media chunks held back to restore their order.
    pub reorder_window_frames: Option<usize>,
    /// A second socket for a call takes over only when the first has delivered no media
    /// for this long (Plivo reconnecting), ms.
    pub takeover_after_ms: Option<u64>,
    /// A media socket that has not sent a valid `start` this long is closed, ms.
    pub start_timeout_ms: Option<u64>,
    /// Media sockets for calls the answer URL never admitted that may wait for `start` at once.
    pub max_pending_sockets: Option<usize>,
}

/// Per-call session settings and server limits.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Calls served at once.
    pub max_calls: usize,
    /// How far ahead of real time agent audio is sent.
    pub playout_lead: Duration,
    /// Grace for `playedStream` after a turn should have played.
    pub checkpoint_timeout: Duration,
    /// No media for this long closes the stream.
    pub idle_timeout: Duration,
    /// A socket that does not take a message for this long is closed.
    pub write_timeout: Duration,
    /// How long live calls may go on after a shutdown signal.
    pub drain_timeout: Duration,
    /// Out-of-order media chunks held back to restore their order.
    pub reorder_window: usize,
    /// A second socket takes a call over only after the first delivered no media this long.
    pub takeover_after: Duration,
    /// A media socket that has not sent a valid `start` this long is closed.
    pub start_timeout: Duration,
    /// Media sockets for calls the answer URL never admitted that may wait for `start` at
    /// once; they take no call slot until `start`.
    pub max_pending_sockets: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_calls: 200,
            playout_lead: Duration::from_millis(200),
            checkpoint_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            reorder_window: 4,
            takeover_after: Duration::from_secs(1),
            start_timeout: Duration::from_secs(5),
            max_pending_sockets: 100,
        }
    }
}

impl RawSession {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<SessionConfig, InvalidSetting> {
        let d = SessionConfig::default();
        Ok(SessionConfig {
            max_calls: match self.max_calls {
                Some(0) => return Err(invalid("session.max_calls", "must be at least 1")),
                Some(n) => n,
                None => d.max_calls,
            },
            playout_lead: millis(
                "session.playout_lead_ms",
                self.playout_lead_ms,
                d.playout_lead,
                5_000,
            )?,
            checkpoint_timeout: millis(
                "session.checkpoint_timeout_ms",
                self.checkpoint_timeout_ms,
                d.checkpoint_timeout,
                60_000,
            )?,
            idle_timeout: millis(
                "session.idle_timeout_secs",
                self.idle_timeout_secs.map(|s| s.saturating_mul(1000)),
                d.idle_timeout,
                3_600_000,
            )?,
            write_timeout: millis(
                "session.write_timeout_ms",
                self.write_timeout_ms,
                d.write_timeout,
                60_000,
            )?,
            drain_timeout: millis(
                "session.drain_timeout_secs",
                self.drain_timeout_secs.map(|s| s.saturating_mul(1000)),
                d.drain_timeout,
                3_600_000,
            )?,
            reorder_window: match self.reorder_window_frames {
                Some(n) if n > 50 => {
                    return Err(invalid(
                        "session.reorder_window_frames",
                        "must be at most 50",
                    ));
                }
                Some(n) => n,
                None => d.reorder_window,
            },
            takeover_after: millis(
                "session.takeover_after_ms",
                self.takeover_after_ms,
                d.takeover_after,
                60_000,
            )?,
            start_timeout: millis(
                "session.start_timeout_ms",
                self.start_timeout_ms,
                d.start_timeout,
                600_000,
            )?,
            max_pending_sockets: match self.max_pending_sockets {
                Some(0) => {
                    return Err(invalid("session.max_pending_sockets", "must be at least 1"));
                }
                Some(n) => n,
                None => d.max_pending_sockets,
            },
        })
    }
}

/// The file's form of validated settings.
impl From<&SessionConfig> for RawSession {
    fn from(config: &SessionConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let SessionConfig {
            max_calls,
            playout_lead,
            checkpoint_timeout,
            idle_timeout,
            write_timeout,
            drain_timeout,
            reorder_window,
            takeover_after,
            start_timeout,
            max_pending_sockets,
        } = *config;
        Self {
            max_calls: Some(max_calls),
            playout_lead_ms: Some(playout_lead.as_millis() as u64),
            checkpoint_timeout_ms: Some(checkpoint_timeout.as_millis() as u64),
            idle_timeout_secs: Some(idle_timeout.as_secs()),
            write_timeout_ms: Some(write_timeout.as_millis() as u64),
            drain_timeout_secs: Some(drain_timeout.as_secs()),
            reorder_window_frames: Some(reorder_window),
            takeover_after_ms: Some(takeover_after.as_millis() as u64),
            start_timeout_ms: Some(start_timeout.as_millis() as u64),
            max_pending_sockets: Some(max_pending_sockets),
        }
    }
}

/// A duration in ms: more than 0, at most `max`.
fn millis(
    key: &'static str,
    value: Option<u64>,
    default: Duration,
    max: u64,
) -> Result<Duration, InvalidSetting> {
    match value {
        Some(0) => Err(invalid(key, "must be more than 0")),
        Some(v) if v > max => Err(invalid(key, format!("must be at most {max}"))),
        Some(v) => Ok(Duration::from_millis(v)),
        None => Ok(default),
    }
}
