//! The `[control]` configuration section: the `/v1` API's tokens, the call lifecycle
//! (default caller id, answered seconds for `completed`), where call state and the outbox
//! live (SQLite or Redis), the sinks (queue stream, backend), reconcile timing and
//! delivery's give-up age and backoff cap.
//!
//! Secrets (API tokens, the Redis URL's credentials, the backend's HMAC secret) never
//! appear in `Debug` output or in the file form printed at start-up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lifecycle::valid_number;
use super::model::DEFAULT_MIN_ANSWERED_SECS;
use super::store::redis::DEFAULT_NAME;
use crate::setting::{InvalidSetting, invalid};

/// The Redis Stream events go to when none is configured.
const DEFAULT_QUEUE_STREAM: &str = "voxgate:events";
/// An undelivered event becomes a dead letter after this long, unless configured.
const DEFAULT_DELIVERY_MAX_AGE: Duration = Duration::from_secs(86_400);

/// `[control]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Bearer tokens accepted by `/v1` (prefer `VOXGATE_API_TOKENS`).
    pub api_tokens: Option<Vec<String>>,
    /// Default caller id for outbound calls.
    pub caller_id: Option<String>,
    /// Answered seconds for a call to count as completed.
    pub min_answered_secs: Option<u64>,
    /// Redis URL: with it, call state and the outbox live in Redis and the queue sink is on.
    pub redis_url: Option<String>,
    /// Where call state and the outbox live: `auto` (Redis when `redis_url` is set, else
    /// SQLite), `sqlite` or `redis`.
    pub store: Option<String>,
    /// The Redis store's name: its keys start with `{name}:` (default `voxgate`).
    pub redis_prefix: Option<String>,
    /// Redis Stream the queue sink appends events to.
    pub queue_stream: Option<String>,
    /// Backend base URL: with it, the backend sink is on.
    pub backend_url: Option<String>,
    /// Secret for the backend's HMAC-SHA256 signature header (prefer the environment).
    pub backend_secret: Option<String>,
    /// Reconcile: first check after this many seconds.
    pub reconcile_initial_delay_secs: Option<u64>,
    /// Reconcile: check every this many seconds.
    pub reconcile_interval_secs: Option<u64>,
    /// Reconcile: Plivo request timeout, seconds.
    pub reconcile_timeout_secs: Option<u64>,
    /// Reconcile: retries per request.
    pub reconcile_retries: Option<u32>,
    /// Reconcile: consecutive errors tolerated before a call is given up on.
    pub reconcile_error_tolerance: Option<u32>,
    /// Delivery: give up (dead letter) on an event this old, seconds.
    pub delivery_max_age_secs: Option<u64>,
    /// Delivery: longest wait between two tries of one event, seconds (the backoff cap;
    /// after a sink outage, the worst lag before delivery resumes).
    pub delivery_retry_cap_secs: Option<u64>,
}

/// The control plane's settings.
#[derive(Clone)]
pub struct ControlConfig {
    /// Bearer tokens accepted by `/v1`; with none, `/v1` answers 401 to everyone.
    pub api_tokens: Vec<String>,
    /// Default caller id for outbound calls.
    pub caller_id: Option<String>,
    /// Answered seconds for `completed` (default 5).
    pub min_answered_secs: u64,
    /// Redis URL, when Redis holds state and the queue sink is on.
    pub redis_url: Option<String>,
    /// Where call state and the outbox live.
    pub store: StoreMode,
    /// The Redis store's name (keys start with `{name}:`).
    pub redis_prefix: String,
    /// Redis Stream for events.
    pub queue_stream: String,
    /// Backend base URL, when the backend sink is on.
    pub backend_url: Option<String>,
    /// HMAC secret for the backend.
    pub backend_secret: String,
    /// Reconcile timing and tolerance.
    pub reconcile: ReconcileConfig,
    /// Give up on an event this old.
    pub delivery_max_age: Duration,
    /// Longest wait between two tries of one event (default 5 min).
    pub delivery_retry_cap: Duration,
}

impl std::fmt::Debug for ControlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConfig")
            .field(
                "api_tokens",
                &format_args!("[{} redacted]", self.api_tokens.len()),
            )
            .field("caller_id", &self.caller_id)
            .field("min_answered_secs", &self.min_answered_secs)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[set]"))
            .field("store", &self.store)
            .field("redis_prefix", &self.redis_prefix)
            .field("queue_stream", &self.queue_stream)
            .field("backend_url", &self.backend_url)
            .field("reconcile", &self.reconcile)
            .field("delivery_max_age", &self.delivery_max_age)
            .field("delivery_retry_cap", &self.delivery_retry_cap)
            .finish()
    }
}

/// Where call state and the outbox live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// A SQLite file in the data directory (the embedded default; one instance).
    Sqlite,
    /// Redis hashes and streams at `redis_url` (several instances share it).
    Redis,
}

impl StoreMode {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Redis => "redis",
        }
    }
}

/// When and how hard reconcile asks Plivo about calls whose callbacks are late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// First check this long after the call was placed.
    pub initial_delay: Duration,
    /// Then every this long.
    pub interval: Duration,
    /// Per request.
    pub request_timeout: Duration,
    /// Retries per request.
    pub retries: u32,
    /// Consecutive errors before giving up on a call.
    pub error_tolerance: u32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(20),
            interval: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            retries: 3,
            error_tolerance: 6,
        }
    }
}

impl RawControl {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<ControlConfig, InvalidSetting> {
        if let Some(id) = &self.caller_id
            && !valid_number(id)
        {
            return Err(invalid(
                "control.caller_id",
                format!("{id:?} is not an E.164 number or sip: URI"),
            ));
        }
        let d = ReconcileConfig::default();
        let backend_url = url(
            "control.backend_url",
            self.backend_url,
            &["http://", "https://"],
        )?;
        let backend_secret = self.backend_secret.unwrap_or_default();
        if backend_url.is_some() && backend_secret.is_empty() {
            return Err(invalid(
                "control.backend_secret",
                "is required with control.backend_url (it signs every update)",
            ));
        }
        let redis_url = url(
            "control.redis_url",
            self.redis_url,
            &["redis://", "rediss://", "unix://"],
        )?;
        let store = match (self.store.as_deref().unwrap_or("auto"), &redis_url) {
            ("auto", Some(_)) | ("redis", Some(_)) => StoreMode::Redis,
            ("auto", None) | ("sqlite", _) => StoreMode::Sqlite,
            ("redis", None) => {
                return Err(invalid(
                    "control.store",
                    "\"redis\" needs control.redis_url",
                ));
            }
            (other, _) => {
                return Err(invalid(
                    "control.store",
                    format!("{other:?} is not one of \"auto\", \"sqlite\", \"redis\""),
                ));
            }
        };
        Ok(ControlConfig {
            api_tokens: self
                .api_tokens
                .unwrap_or_default()
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect(),
            caller_id: self.caller_id,
            min_answered_secs: self.min_answered_secs.unwrap_or(DEFAULT_MIN_ANSWERED_SECS),
            redis_url,
            store,
            redis_prefix: match self.redis_prefix.filter(|p| !p.is_empty()) {
                None => DEFAULT_NAME.to_owned(),
                Some(p) if p.contains(['{', '}']) => {
                    return Err(invalid(
                        "control.redis_prefix",
                        format!("{p:?} must not contain braces"),
                    ));
                }
                Some(p) => p,
            },
            queue_stream: self
                .queue_stream
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_QUEUE_STREAM.to_owned()),
            backend_url,
            backend_secret,
            reconcile: ReconcileConfig {
                initial_delay: secs(
                    "control.reconcile_initial_delay_secs",
                    self.reconcile_initial_delay_secs,
                    d.initial_delay,
                )?,
                interval: secs(
                    "control.reconcile_interval_secs",
                    self.reconcile_interval_secs,
                    d.interval,
                )?,
                request_timeout: secs(
                    "control.reconcile_timeout_secs",
                    self.reconcile_timeout_secs,
                    d.request_timeout,
                )?,
                retries: self.reconcile_retries.unwrap_or(d.retries),
                error_tolerance: self.reconcile_error_tolerance.unwrap_or(d.error_tolerance),
            },
            delivery_max_age: secs(
                "control.delivery_max_age_secs",
                self.delivery_max_age_secs,
                DEFAULT_DELIVERY_MAX_AGE,
            )?,
            delivery_retry_cap: secs(
                "control.delivery_retry_cap_secs",
                self.delivery_retry_cap_secs,
                crate::retry::RetryPolicy::default().cap,
            )?,
        })
    }
}

/// The file's form, secrets left out: it is printed at start-up.
impl From<&ControlConfig> for RawControl {
    fn from(config: &ControlConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let ControlConfig {
            api_tokens: _,
            caller_id,
            min_answered_secs,
            redis_url: _,
            store,
            redis_prefix,
            queue_stream,
            backend_url,
            backend_secret: _,
            reconcile,
            delivery_max_age,
            delivery_retry_cap,
        } = config;
        Self {
            api_tokens: None,
            caller_id: caller_id.clone(),
            min_answered_secs: Some(*min_answered_secs),
            redis_url: None,
            store: Some(store.as_str().to_owned()),
            redis_prefix: Some(redis_prefix.clone()),
            queue_stream: Some(queue_stream.clone()),
            backend_url: backend_url.clone(),
            backend_secret: None,
            reconcile_initial_delay_secs: Some(reconcile.initial_delay.as_secs()),
            reconcile_interval_secs: Some(reconcile.interval.as_secs()),
            reconcile_timeout_secs: Some(reconcile.request_timeout.as_secs()),
            reconcile_retries: Some(reconcile.retries),
            reconcile_error_tolerance: Some(reconcile.error_tolerance),
            delivery_max_age_secs: Some(delivery_max_age.as_secs()),
            delivery_retry_cap_secs: Some(delivery_retry_cap.as_secs()),
        }
    }
}

/// A duration in whole seconds, more than 0.
fn secs(
    key: &'static str,
    value: Option<u64>,
    default: Duration,
) -> Result<Duration, InvalidSetting> {
    match value {
        Some(0) => Err(invalid(key, "must be more than 0")),
        Some(v) => Ok(Duration::from_secs(v)),
        None => Ok(default),
    }
}

/// A URL with one of `schemes`, without its trailing `/`; empty means none.
fn url(
    key: &'static str,
    value: Option<String>,
    schemes: &[&str],
) -> Result<Option<String>, InvalidSetting> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if schemes.iter().any(|s| v.starts_with(s)) => {
            Ok(Some(v.trim_end_matches('/').to_owned()))
        }
        Some(v) => Err(invalid(
            key,
            format!("{v:?} must start with {}", schemes.join(" or ")),
        )),
    }
}
