//! The one typed configuration, parsed once at start.
//!
//! Sources, lowest precedence first: built-in defaults, the TOML file (`--config`), the
//! environment (`VOXGATE_*`, and `PORT` for Cloud Run), then command-line flags. The file
//! is read into raw serde structs that deny unknown keys, merged with the overrides, then
//! [`RawConfig::validate`]d into typed values; startup fails loudly on anything wrong.
//! Library code never reads the environment: `main` hands it in as a map.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::audio::pipeline::PipelineConfig;
use crate::audio::vad::VadConfig;
use crate::recording::target::UploadTarget;

/// Where `serve` listens when nothing else is said.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// A configuration that cannot be used, and why.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file is not valid TOML or has an unknown key.
    #[error("config file: {0}")]
    File(#[from] toml::de::Error),
    /// One setting has a bad value.
    #[error("{key}: {reason}")]
    Invalid {
        /// The setting, as written in the file.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The file's shape: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `host:port` to listen on.
    pub listen: Option<String>,
    /// Public base URL Plivo reaches voxgate at (`https://…`).
    pub public_url: Option<String>,
    /// Folder for the database and recordings.
    pub data_dir: Option<PathBuf>,
    /// Audio pipeline settings.
    #[serde(default)]
    pub audio: RawAudio,
    /// Plivo account and signature settings.
    #[serde(default)]
    pub plivo: RawPlivo,
    /// Per-call session settings and server limits.
    #[serde(default)]
    pub session: RawSession,
    /// The control plane: API, call lifecycle, delivery.
    #[serde(default)]
    pub control: RawControl,
    /// Call recording.
    #[serde(default)]
    pub recording: RawRecording,
}

/// `[recording]` in the file.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecording {
    /// Record calls (default on); a call opts out with `record=false` on its answer URL.
    pub enabled: Option<bool>,
    /// Folder for recordings (default `{data_dir}/recordings`).
    pub dir: Option<PathBuf>,
    /// Samples per second per channel: 8000 or 16000.
    pub sample_rate: Option<u32>,
    /// What is published: `wav` or `opus` (Ogg/Opus).
    pub format: Option<String>,
    /// Where recordings are uploaded: `file:///abs/path`, `s3://bucket/prefix` or
    /// `gs://bucket/prefix`; none keeps them in `dir`.
    pub upload_url: Option<String>,
    /// Days the local copy is kept after upload; none keeps it.
    pub keep_local_days: Option<u32>,
    /// Upload attempts after the first fails.
    pub upload_retries: Option<u32>,
    /// Announce `{public_base_url}/{key}` (a CDN or the bucket's HTTPS address) instead
    /// of the `s3://`, `gs://` or `file://` URL.
    pub public_base_url: Option<String>,
}

/// `[control]` in the file.
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

/// `[plivo]` in the file.
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

/// `[session]` in the file.
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
}

/// `[audio]` in the file.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudio {
    /// DSP worker threads; 0 = one per core.
    pub workers: Option<usize>,
    /// Frames (20 ms each) a call may queue towards its worker.
    pub input_queue_frames: Option<usize>,
    /// Frames each output queue of a call holds.
    pub output_queue_frames: Option<usize>,
    /// webrtc-vad aggressiveness, 0 (least) to 3 (most).
    pub vad_mode: Option<u8>,
    /// Voiced time before speech is declared started, ms.
    pub vad_start_ms: Option<u32>,
    /// Unvoiced time before speech is declared ended, ms.
    pub vad_hangover_ms: Option<u32>,
}

/// Overrides from the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--no-verify-signatures` (local development only).
    pub no_verify_signatures: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address `serve` binds.
    pub listen: SocketAddr,
    /// Public base URL, without a trailing `/`; `None` until set.
    pub public_url: Option<String>,
    /// Folder for the database and recordings.
    pub data_dir: PathBuf,
    /// The audio pipeline.
    pub pipeline: PipelineConfig,
    /// Plivo account settings.
    pub plivo: PlivoConfig,
    /// Per-call session settings and limits.
    pub session: SessionConfig,
    /// The control plane.
    pub control: ControlConfig,
    /// Call recording.
    pub recording: RecordingConfig,
}

/// Recording settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Record calls unless a call opts out.
    pub enabled: bool,
    /// Folder recordings are written to.
    pub dir: PathBuf,
    /// Samples per second per channel.
    pub sample_rate: RecordingRate,
    /// What is published.
    pub format: RecordingFormat,
    /// Where recordings are uploaded; `None` keeps them in `dir`.
    pub upload_url: Option<UploadTarget>,
    /// Days the local copy is kept after upload; `None` keeps it.
    pub keep_local_days: Option<u32>,
    /// Upload attempts after the first fails.
    pub upload_retries: u32,
    /// Base of the announced recording URL, if not the store's own URL.
    pub public_base_url: Option<String>,
}

/// A recording's sample rate per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingRate {
    /// 8 kHz: the call's own rate.
    #[default]
    Hz8000,
    /// 16 kHz: both channels upsampled.
    Hz16000,
}

impl RecordingRate {
    /// Samples per second.
    pub const fn hz(self) -> u32 {
        match self {
            Self::Hz8000 => 8_000,
            Self::Hz16000 => 16_000,
        }
    }
}

/// The published recording's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordingFormat {
    /// The stereo WAV as written.
    #[default]
    Wav,
    /// Encoded to Ogg/Opus.
    Opus,
}

impl RecordingFormat {
    /// The name in the config file, which is also the published file's extension.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Opus => "opus",
        }
    }

    /// The published file's extension (`wav`, `opus`).
    pub const fn ext(self) -> &'static str {
        self.as_str()
    }
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
        }
    }
}

impl RawConfig {
    /// Parses a TOML file's text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Applies `VOXGATE_*` variables (and `PORT`) from `env`, then the CLI overrides.
    pub fn merge(
        mut self,
        env: &HashMap<String, String>,
        cli: CliOverrides,
    ) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            env.get(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        fn number<T: std::str::FromStr>(
            key: &'static str,
            value: Option<String>,
        ) -> Result<Option<T>, ConfigError> {
            value
                .map(|v| {
                    v.parse()
                        .map_err(|_| invalid(key, format!("{v:?} is not a number")))
                })
                .transpose()
        }
        if let Some(v) = get("VOXGATE_LISTEN") {
            self.listen = Some(v);
        } else if self.listen.is_none()
            && let Some(port) = get("PORT")
        {
            // Cloud Run and friends: listen on every interface at the given port.
            let port: u16 = port
                .parse()
                .map_err(|_| invalid("PORT", format!("{port:?} is not a port")))?;
            self.listen =
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).to_string());
        }
        if let Some(v) = get("VOXGATE_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("VOXGATE_DATA_DIR") {
            self.data_dir = Some(v.into());
        }
        let audio = &mut self.audio;
        audio.workers =
            number("VOXGATE_AUDIO_WORKERS", get("VOXGATE_AUDIO_WORKERS"))?.or(audio.workers);
        audio.vad_mode = number("VOXGATE_VAD_MODE", get("VOXGATE_VAD_MODE"))?.or(audio.vad_mode);
        audio.vad_start_ms =
            number("VOXGATE_VAD_START_MS", get("VOXGATE_VAD_START_MS"))?.or(audio.vad_start_ms);
        audio.vad_hangover_ms = number("VOXGATE_VAD_HANGOVER_MS", get("VOXGATE_VAD_HANGOVER_MS"))?
            .or(audio.vad_hangover_ms);

        if let Some(v) = get("VOXGATE_PLIVO_AUTH_ID").or_else(|| get("PLIVO_AUTH_ID")) {
            self.plivo.auth_id = Some(v);
        }
        if let Some(v) = get("VOXGATE_PLIVO_AUTH_TOKEN").or_else(|| get("PLIVO_AUTH_TOKEN")) {
            self.plivo.auth_tokens = Some(v.split(',').map(|t| t.trim().to_owned()).collect());
        }
        if let Some(v) = get("VOXGATE_PLIVO_API_URL") {
            self.plivo.api_url = Some(v);
        }
        if let Some(v) = get("VOXGATE_VERIFY_SIGNATURES") {
            let on = match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(invalid(
                        "VOXGATE_VERIFY_SIGNATURES",
                        format!("{v:?} is not true or false"),
                    ));
                }
            };
            self.plivo.verify_signatures = Some(on);
        }
        let session = &mut self.session;
        session.max_calls =
            number("VOXGATE_MAX_CALLS", get("VOXGATE_MAX_CALLS"))?.or(session.max_calls);
        session.playout_lead_ms =
            number("VOXGATE_PLAYOUT_LEAD_MS", get("VOXGATE_PLAYOUT_LEAD_MS"))?
                .or(session.playout_lead_ms);
        session.idle_timeout_secs = number(
            "VOXGATE_IDLE_TIMEOUT_SECS",
            get("VOXGATE_IDLE_TIMEOUT_SECS"),
        )?
        .or(session.idle_timeout_secs);
        session.drain_timeout_secs = number(
            "VOXGATE_DRAIN_TIMEOUT_SECS",
            get("VOXGATE_DRAIN_TIMEOUT_SECS"),
        )?
        .or(session.drain_timeout_secs);

        let control = &mut self.control;
        if let Some(v) = get("VOXGATE_API_TOKENS") {
            control.api_tokens = Some(v.split(',').map(|t| t.trim().to_owned()).collect());
        }
        if let Some(v) = get("VOXGATE_CALLER_ID") {
            control.caller_id = Some(v);
        }
        if let Some(v) = get("VOXGATE_STORE") {
            control.store = Some(v);
        }
        if let Some(v) = get("VOXGATE_REDIS_PREFIX") {
            control.redis_prefix = Some(v);
        }
        if let Some(v) = get("VOXGATE_REDIS_URL") {
            control.redis_url = Some(v);
        }
        if let Some(v) = get("VOXGATE_BACKEND_URL") {
            control.backend_url = Some(v);
        }
        if let Some(v) = get("VOXGATE_BACKEND_SECRET") {
            control.backend_secret = Some(v);
        }
        control.min_answered_secs = number(
            "VOXGATE_MIN_ANSWERED_SECS",
            get("VOXGATE_MIN_ANSWERED_SECS"),
        )?
        .or(control.min_answered_secs);

        let recording = &mut self.recording;
        if let Some(v) = get("VOXGATE_RECORDING_ENABLED") {
            recording.enabled = Some(match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(invalid(
                        "VOXGATE_RECORDING_ENABLED",
                        format!("{v:?} is not true or false"),
                    ));
                }
            });
        }
        if let Some(v) = get("VOXGATE_RECORDING_DIR") {
            recording.dir = Some(v.into());
        }
        recording.sample_rate = number(
            "VOXGATE_RECORDING_SAMPLE_RATE",
            get("VOXGATE_RECORDING_SAMPLE_RATE"),
        )?
        .or(recording.sample_rate);
        if let Some(v) = get("VOXGATE_RECORDING_FORMAT") {
            recording.format = Some(v);
        }
        if let Some(v) = get("VOXGATE_RECORDING_UPLOAD_URL") {
            recording.upload_url = Some(v);
        }
        recording.keep_local_days = number(
            "VOXGATE_RECORDING_KEEP_LOCAL_DAYS",
            get("VOXGATE_RECORDING_KEEP_LOCAL_DAYS"),
        )?
        .or(recording.keep_local_days);
        recording.upload_retries = number(
            "VOXGATE_RECORDING_UPLOAD_RETRIES",
            get("VOXGATE_RECORDING_UPLOAD_RETRIES"),
        )?
        .or(recording.upload_retries);
        if let Some(v) = get("VOXGATE_RECORDING_PUBLIC_BASE_URL") {
            recording.public_base_url = Some(v);
        }

        self.listen = cli.listen.or(self.listen);
        self.public_url = cli.public_url.or(self.public_url);
        self.data_dir = cli.data_dir.or(self.data_dir);
        if cli.no_verify_signatures {
            self.plivo.verify_signatures = Some(false);
        }
        Ok(self)
    }

    /// Checks every value and turns it into its typed form.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen = match self.listen {
            None => DEFAULT_LISTEN,
            Some(text) => text.parse().map_err(|_| {
                invalid(
                    "listen",
                    format!("{text:?} is not host:port (e.g. 127.0.0.1:8080)"),
                )
            })?,
        };
        let public_url = match self.public_url {
            None => None,
            Some(url) => {
                let url = url.trim_end_matches('/').to_owned();
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"))
                    .ok_or_else(|| {
                        invalid(
                            "public_url",
                            format!("{url:?} must start with https:// or http://"),
                        )
                    })?;
                if rest.is_empty() || rest.contains(['?', '#', ' ']) {
                    return Err(invalid(
                        "public_url",
                        format!("{url:?} must be a base URL: host and optional path"),
                    ));
                }
                Some(url)
            }
        };
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./data"));

        let audio = self.audio;
        let defaults = PipelineConfig::default();
        let vad_defaults = VadConfig::default();
        let queue = |key: &'static str, value: Option<usize>, default: usize| match value {
            Some(0) => Err(invalid(key, "must be at least 1")),
            Some(n) if n > 3_000 => Err(invalid(
                key,
                "more than a minute of frames is not a queue, it is a backlog",
            )),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let mut vad = vad_defaults;
        if let Some(ms) = audio.vad_start_ms {
            vad.start_ms = ms;
        }
        if let Some(ms) = audio.vad_hangover_ms {
            vad.hangover_ms = ms;
        }
        if let Some(mode) = audio.vad_mode {
            vad.mode = crate::audio::vad::VadMode::try_from(mode)
                .map_err(|_| invalid("audio.vad_mode", format!("{mode} is not 0, 1, 2 or 3")))?;
        }
        vad.validate()
            .map_err(|e| invalid("audio.vad_*", e.to_string()))?;
        let pipeline = PipelineConfig {
            workers: audio.workers.unwrap_or(defaults.workers),
            input_capacity: queue(
                "audio.input_queue_frames",
                audio.input_queue_frames,
                defaults.input_capacity,
            )?,
            output_capacity: queue(
                "audio.output_queue_frames",
                audio.output_queue_frames,
                defaults.output_capacity,
            )?,
            pool_capacity: defaults.pool_capacity,
            vad,
        };
        let tokens: Vec<String> = self
            .plivo
            .auth_tokens
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect();
        let verify_signatures = match self.plivo.verify_signatures {
            Some(true) if tokens.is_empty() => {
                return Err(invalid(
                    "plivo.verify_signatures",
                    "is on but no plivo.auth_tokens are set",
                ));
            }
            Some(on) => on,
            None => !tokens.is_empty(),
        };
        let api_url = match self.plivo.api_url.filter(|u| !u.is_empty()) {
            None => "https://api.plivo.com".to_owned(),
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
        let plivo = PlivoConfig {
            auth_id: self.plivo.auth_id.filter(|id| !id.is_empty()),
            auth_tokens: tokens,
            verify_signatures,
            api_url,
        };

        let raw = self.session;
        let d = SessionConfig::default();
        let ms = |key: &'static str, value: Option<u64>, default: Duration, max: u64| match value {
            Some(0) => Err(invalid(key, "must be more than 0")),
            Some(v) if v > max => Err(invalid(key, format!("must be at most {max}"))),
            Some(v) => Ok(Duration::from_millis(v)),
            None => Ok(default),
        };
        let session = SessionConfig {
            max_calls: match raw.max_calls {
                Some(0) => return Err(invalid("session.max_calls", "must be at least 1")),
                Some(n) => n,
                None => d.max_calls,
            },
            playout_lead: ms(
                "session.playout_lead_ms",
                raw.playout_lead_ms,
                d.playout_lead,
                5_000,
            )?,
            checkpoint_timeout: ms(
                "session.checkpoint_timeout_ms",
                raw.checkpoint_timeout_ms,
                d.checkpoint_timeout,
                60_000,
            )?,
            idle_timeout: ms(
                "session.idle_timeout_secs",
                raw.idle_timeout_secs.map(|s| s.saturating_mul(1000)),
                d.idle_timeout,
                3_600_000,
            )?,
            write_timeout: ms(
                "session.write_timeout_ms",
                raw.write_timeout_ms,
                d.write_timeout,
                60_000,
            )?,
            drain_timeout: ms(
                "session.drain_timeout_secs",
                raw.drain_timeout_secs.map(|s| s.saturating_mul(1000)),
                d.drain_timeout,
                3_600_000,
            )?,
            reorder_window: match raw.reorder_window_frames {
                Some(n) if n > 50 => {
                    return Err(invalid(
                        "session.reorder_window_frames",
                        "must be at most 50",
                    ));
                }
                Some(n) => n,
                None => d.reorder_window,
            },
        };
        let control = validate_control(self.control)?;
        let recording = validate_recording(self.recording, &data_dir)?;
        Ok(Config {
            listen,
            public_url,
            data_dir,
            pipeline,
            plivo,
            session,
            control,
            recording,
        })
    }
}

fn validate_recording(
    raw: RawRecording,
    data_dir: &std::path::Path,
) -> Result<RecordingConfig, ConfigError> {
    let dir = match raw.dir {
        Some(dir) if dir.as_os_str().is_empty() => {
            return Err(invalid("recording.dir", "must not be empty"));
        }
        Some(dir) => dir,
        None => data_dir.join("recordings"),
    };
    let sample_rate = match raw.sample_rate {
        None | Some(8_000) => RecordingRate::Hz8000,
        Some(16_000) => RecordingRate::Hz16000,
        Some(other) => {
            return Err(invalid(
                "recording.sample_rate",
                format!("{other} is not 8000 or 16000"),
            ));
        }
    };
    let format = match raw
        .format
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("wav") => RecordingFormat::Wav,
        Some("opus") => RecordingFormat::Opus,
        Some(other) => {
            return Err(invalid(
                "recording.format",
                format!("{other:?} is not \"wav\" or \"opus\""),
            ));
        }
    };
    let upload_url = match raw.upload_url.filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => Some(
            UploadTarget::parse(&url)
                .map_err(|e| invalid("recording.upload_url", e.to_string()))?,
        ),
    };
    let upload_retries = match raw.upload_retries {
        Some(n) if n > 100 => {
            return Err(invalid("recording.upload_retries", "must be at most 100"));
        }
        Some(n) => n,
        None => 5,
    };
    if raw.keep_local_days == Some(0) && upload_url.is_none() {
        return Err(invalid(
            "recording.keep_local_days",
            "0 with no upload_url would delete every recording",
        ));
    }
    let public_base_url = raw.public_base_url.filter(|u| !u.is_empty());
    if let Some(base) = &public_base_url
        && !(base.starts_with("http://") || base.starts_with("https://"))
    {
        return Err(invalid(
            "recording.public_base_url",
            format!("{base:?} is not an http:// or https:// URL"),
        ));
    }
    Ok(RecordingConfig {
        enabled: raw.enabled.unwrap_or(true),
        dir,
        sample_rate,
        format,
        upload_url,
        keep_local_days: raw.keep_local_days,
        upload_retries,
        public_base_url,
    })
}

fn validate_control(raw: RawControl) -> Result<ControlConfig, ConfigError> {
    let secs = |key: &'static str, value: Option<u64>, default: Duration| match value {
        Some(0) => Err(invalid(key, "must be more than 0")),
        Some(v) => Ok(Duration::from_secs(v)),
        None => Ok(default),
    };
    let url = |key: &'static str,
               value: Option<String>,
               schemes: &[&str]|
     -> Result<Option<String>, ConfigError> {
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
    };
    if let Some(id) = &raw.caller_id
        && !crate::control::lifecycle::valid_number(id)
    {
        return Err(invalid(
            "control.caller_id",
            format!("{id:?} is not an E.164 number or sip: URI"),
        ));
    }
    let d = ReconcileConfig::default();
    let backend_url = url(
        "control.backend_url",
        raw.backend_url,
        &["http://", "https://"],
    )?;
    let backend_secret = raw.backend_secret.unwrap_or_default();
    if backend_url.is_some() && backend_secret.is_empty() {
        return Err(invalid(
            "control.backend_secret",
            "is required with control.backend_url (it signs every update)",
        ));
    }
    let redis_url = url(
        "control.redis_url",
        raw.redis_url,
        &["redis://", "rediss://", "unix://"],
    )?;
    let store = match (raw.store.as_deref().unwrap_or("auto"), &redis_url) {
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
        api_tokens: raw
            .api_tokens
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect(),
        caller_id: raw.caller_id,
        min_answered_secs: raw
            .min_answered_secs
            .unwrap_or(crate::control::model::DEFAULT_MIN_ANSWERED_SECS),
        redis_url,
        store,
        redis_prefix: match raw.redis_prefix.filter(|p| !p.is_empty()) {
            None => crate::control::store::redis::DEFAULT_NAME.to_owned(),
            Some(p) if p.contains(['{', '}']) => {
                return Err(invalid(
                    "control.redis_prefix",
                    format!("{p:?} must not contain braces"),
                ));
            }
            Some(p) => p,
        },
        queue_stream: raw
            .queue_stream
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "voxgate:events".to_owned()),
        backend_url,
        backend_secret,
        reconcile: ReconcileConfig {
            initial_delay: secs(
                "control.reconcile_initial_delay_secs",
                raw.reconcile_initial_delay_secs,
                d.initial_delay,
            )?,
            interval: secs(
                "control.reconcile_interval_secs",
                raw.reconcile_interval_secs,
                d.interval,
            )?,
            request_timeout: secs(
                "control.reconcile_timeout_secs",
                raw.reconcile_timeout_secs,
                d.request_timeout,
            )?,
            retries: raw.reconcile_retries.unwrap_or(d.retries),
            error_tolerance: raw.reconcile_error_tolerance.unwrap_or(d.error_tolerance),
        },
        delivery_max_age: secs(
            "control.delivery_max_age_secs",
            raw.delivery_max_age_secs,
            Duration::from_secs(86_400),
        )?,
        delivery_retry_cap: secs(
            "control.delivery_retry_cap_secs",
            raw.delivery_retry_cap_secs,
            crate::retry::RetryPolicy::default().cap,
        )?,
    })
}

impl Config {
    /// Builds the configuration from a file's text (if any), the environment and the CLI.
    pub fn load(
        file: Option<&str>,
        env: &HashMap<String, String>,
        cli: CliOverrides,
    ) -> Result<Self, ConfigError> {
        let raw = match file {
            Some(text) => RawConfig::from_toml(text)?,
            None => RawConfig::default(),
        };
        raw.merge(env, cli)?.validate()
    }

    /// The effective configuration as TOML, for the start-up banner. Secrets are left out.
    pub fn to_toml(&self) -> String {
        let p = &self.pipeline;
        let s = &self.session;
        let c = &self.control;
        let raw = RawConfig {
            listen: Some(self.listen.to_string()),
            public_url: self.public_url.clone(),
            data_dir: Some(self.data_dir.clone()),
            audio: RawAudio {
                workers: Some(p.workers),
                input_queue_frames: Some(p.input_capacity),
                output_queue_frames: Some(p.output_capacity),
                vad_mode: Some(p.vad.mode.into()),
                vad_start_ms: Some(p.vad.start_ms),
                vad_hangover_ms: Some(p.vad.hangover_ms),
            },
            plivo: RawPlivo {
                auth_id: self.plivo.auth_id.clone(),
                // Never printed: the banner shows only whether tokens are set.
                auth_tokens: None,
                verify_signatures: Some(self.plivo.verify_signatures),
                api_url: Some(self.plivo.api_url.clone()),
            },
            session: RawSession {
                max_calls: Some(s.max_calls),
                playout_lead_ms: Some(s.playout_lead.as_millis() as u64),
                checkpoint_timeout_ms: Some(s.checkpoint_timeout.as_millis() as u64),
                idle_timeout_secs: Some(s.idle_timeout.as_secs()),
                write_timeout_ms: Some(s.write_timeout.as_millis() as u64),
                drain_timeout_secs: Some(s.drain_timeout.as_secs()),
                reorder_window_frames: Some(s.reorder_window),
            },
            control: RawControl {
                // Secrets (tokens, Redis credentials, the backend secret) are never printed.
                api_tokens: None,
                caller_id: c.caller_id.clone(),
                min_answered_secs: Some(c.min_answered_secs),
                redis_url: None,
                store: Some(c.store.as_str().to_owned()),
                redis_prefix: Some(c.redis_prefix.clone()),
                queue_stream: Some(c.queue_stream.clone()),
                backend_url: c.backend_url.clone(),
                backend_secret: None,
                reconcile_initial_delay_secs: Some(c.reconcile.initial_delay.as_secs()),
                reconcile_interval_secs: Some(c.reconcile.interval.as_secs()),
                reconcile_timeout_secs: Some(c.reconcile.request_timeout.as_secs()),
                reconcile_retries: Some(c.reconcile.retries),
                reconcile_error_tolerance: Some(c.reconcile.error_tolerance),
                delivery_max_age_secs: Some(c.delivery_max_age.as_secs()),
                delivery_retry_cap_secs: Some(c.delivery_retry_cap.as_secs()),
            },
            recording: RawRecording {
                enabled: Some(self.recording.enabled),
                dir: Some(self.recording.dir.clone()),
                sample_rate: Some(self.recording.sample_rate.hz()),
                format: Some(self.recording.format.as_str().to_owned()),
                upload_url: self.recording.upload_url.as_ref().map(ToString::to_string),
                keep_local_days: self.recording.keep_local_days,
                upload_retries: Some(self.recording.upload_retries),
                public_base_url: self.recording.public_base_url.clone(),
            },
        };
        toml::to_string(&raw).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_listen_on_localhost_8080() {
        let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.public_url.is_none());
    }

    #[test]
    fn port_means_every_interface_unless_listen_is_set() {
        let config =
            Config::load(None, &env(&[("PORT", "9000")]), CliOverrides::default()).unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        let both = env(&[("PORT", "9000"), ("VOXGATE_LISTEN", "127.0.0.1:7000")]);
        let config = Config::load(None, &both, CliOverrides::default()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7000".parse().unwrap());
        let file = Config::load(
            Some("listen = \"127.0.0.1:6000\""),
            &env(&[("PORT", "9000")]),
            CliOverrides::default(),
        );
        assert_eq!(file.unwrap().listen, "127.0.0.1:6000".parse().unwrap());
    }

    #[test]
    fn cli_beats_environment_beats_file() {
        let file = "public_url = \"https://file.example\"\n[audio]\nworkers = 3\n";
        let vars = env(&[
            ("VOXGATE_PUBLIC_URL", "https://env.example/"),
            ("VOXGATE_AUDIO_WORKERS", "5"),
        ]);
        let config = Config::load(Some(file), &vars, CliOverrides::default()).unwrap();
        assert_eq!(config.public_url.as_deref(), Some("https://env.example"));
        assert_eq!(config.pipeline.workers, 5);
        let cli = CliOverrides {
            public_url: Some("https://cli.example".into()),
            ..CliOverrides::default()
        };
        let config = Config::load(Some(file), &vars, cli).unwrap();
        assert_eq!(config.public_url.as_deref(), Some("https://cli.example"));
    }

    #[test]
    fn bad_values_fail_loudly_naming_the_key() {
        let cases = [
            ("listen = \"nowhere\"", "listen"),
            ("public_url = \"ftp://x\"", "public_url"),
            ("public_url = \"https://x/?a=b\"", "public_url"),
            (
                "[audio]\ninput_queue_frames = 0",
                "audio.input_queue_frames",
            ),
            ("[audio]\nvad_mode = 9", "audio.vad_mode"),
        ];
        for (file, key) in cases {
            let err = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap_err();
            assert!(err.to_string().starts_with(key), "{file:?}: {err}");
        }
        let err =
            Config::load(Some("listn = \"x\""), &env(&[]), CliOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err =
            Config::load(None, &env(&[("PORT", "http")]), CliOverrides::default()).unwrap_err();
        assert!(err.to_string().starts_with("PORT"), "{err}");
    }

    #[test]
    fn signatures_are_enforced_exactly_when_a_token_is_set() {
        let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
        assert!(!config.plivo.verify_signatures);
        let with_token = env(&[("PLIVO_AUTH_TOKEN", "tok-a, tok-b")]);
        let config = Config::load(None, &with_token, CliOverrides::default()).unwrap();
        assert!(config.plivo.verify_signatures);
        assert_eq!(config.plivo.auth_tokens, ["tok-a", "tok-b"]);
        assert!(!config.to_toml().contains("tok-a"), "tokens never printed");
        assert!(
            !format!("{config:?}").contains("tok-a"),
            "tokens never logged"
        );
        let cli = CliOverrides {
            no_verify_signatures: true,
            ..CliOverrides::default()
        };
        assert!(
            !Config::load(None, &with_token, cli)
                .unwrap()
                .plivo
                .verify_signatures
        );
        let err = Config::load(
            Some("[plivo]\nverify_signatures = true"),
            &env(&[]),
            CliOverrides::default(),
        );
        assert!(
            err.unwrap_err()
                .to_string()
                .starts_with("plivo.verify_signatures")
        );
    }

    #[test]
    fn session_limits_have_defaults_and_bounds() {
        let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
        assert_eq!(config.session.playout_lead, Duration::from_millis(200));
        assert_eq!(config.session.max_calls, 200);
        let file = "[session]\nmax_calls = 3\nplayout_lead_ms = 120\nidle_timeout_secs = 5";
        let config = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap();
        assert_eq!(config.session.max_calls, 3);
        assert_eq!(config.session.playout_lead, Duration::from_millis(120));
        assert_eq!(config.session.idle_timeout, Duration::from_secs(5));
        for bad in [
            "[session]\nmax_calls = 0",
            "[session]\nplayout_lead_ms = 0",
            "[session]\nplayout_lead_ms = 99999",
        ] {
            assert!(
                Config::load(Some(bad), &env(&[]), CliOverrides::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn control_settings_have_defaults_and_are_checked() {
        let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
        assert_eq!(config.control.min_answered_secs, 5);
        assert_eq!(config.control.reconcile, ReconcileConfig::default());
        assert!(config.control.redis_url.is_none() && config.control.backend_url.is_none());
        let vars = env(&[
            ("VOXGATE_API_TOKENS", "t1,t2"),
            ("VOXGATE_BACKEND_URL", "http://127.0.0.1:9000/"),
            ("VOXGATE_BACKEND_SECRET", "s3cret"),
            ("VOXGATE_REDIS_URL", "redis://127.0.0.1:6379"),
        ]);
        let config = Config::load(None, &vars, CliOverrides::default()).unwrap();
        assert_eq!(config.control.api_tokens, ["t1", "t2"]);
        assert_eq!(
            config.control.backend_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        let shown = format!("{}{:?}", config.to_toml(), config);
        assert!(
            !shown.contains("s3cret") && !shown.contains("t1"),
            "secrets never shown: {shown}"
        );
        for (file, key) in [
            (
                "[control]\nbackend_url = \"http://x\"",
                "control.backend_secret",
            ),
            ("[control]\nredis_url = \"http://x\"", "control.redis_url"),
            ("[control]\ncaller_id = \"abc\"", "control.caller_id"),
            (
                "[control]\nreconcile_interval_secs = 0",
                "control.reconcile_interval_secs",
            ),
        ] {
            let err = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap_err();
            assert!(err.to_string().starts_with(key), "{file}: {err}");
        }
    }

    #[test]
    fn recording_settings_have_defaults_and_are_checked() {
        let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
        let r = &config.recording;
        assert!(r.enabled);
        assert_eq!(r.dir, PathBuf::from("./data").join("recordings"));
        assert_eq!(r.sample_rate, RecordingRate::Hz8000);
        assert_eq!(r.format, RecordingFormat::Wav);
        assert_eq!(
            (r.upload_url.clone(), r.keep_local_days, r.upload_retries),
            (None, None, 5)
        );

        let vars = env(&[
            ("VOXGATE_DATA_DIR", "/srv/vox"),
            ("VOXGATE_RECORDING_ENABLED", "false"),
            ("VOXGATE_RECORDING_SAMPLE_RATE", "16000"),
            ("VOXGATE_RECORDING_FORMAT", "opus"),
            (
                "VOXGATE_RECORDING_UPLOAD_URL",
                "s3://calls-bucket/rec/2024/",
            ),
            ("VOXGATE_RECORDING_KEEP_LOCAL_DAYS", "7"),
            ("VOXGATE_RECORDING_UPLOAD_RETRIES", "2"),
            (
                "VOXGATE_RECORDING_PUBLIC_BASE_URL",
                "https://cdn.example/rec",
            ),
        ]);
        let config = Config::load(None, &vars, CliOverrides::default()).unwrap();
        let r = &config.recording;
        assert!(!r.enabled);
        assert_eq!(r.dir, PathBuf::from("/srv/vox/recordings"));
        assert_eq!(r.sample_rate.hz(), 16_000);
        assert_eq!(r.format, RecordingFormat::Opus);
        assert_eq!(
            r.upload_url,
            Some(UploadTarget::S3 {
                bucket: "calls-bucket".into(),
                prefix: "rec/2024".into()
            })
        );
        assert_eq!((r.keep_local_days, r.upload_retries), (Some(7), 2));
        assert_eq!(
            r.public_base_url.as_deref(),
            Some("https://cdn.example/rec")
        );

        let file = "[recording]\ndir = \"/var/rec\"\nupload_url = \"file:///mnt/rec\"\n";
        let config = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap();
        assert_eq!(config.recording.dir, PathBuf::from("/var/rec"));
        assert_eq!(
            config.recording.upload_url,
            Some(UploadTarget::File {
                dir: "/mnt/rec".into()
            })
        );

        for (file, key) in [
            (
                "[recording]\nsample_rate = 44100\n",
                "recording.sample_rate",
            ),
            ("[recording]\nformat = \"mp3\"\n", "recording.format"),
            (
                "[recording]\nupload_url = \"http://x/y\"\n",
                "recording.upload_url",
            ),
            (
                "[recording]\nupload_url = \"file://rel/path\"\n",
                "recording.upload_url",
            ),
            (
                "[recording]\nupload_url = \"s3://\"\n",
                "recording.upload_url",
            ),
            (
                "[recording]\nupload_url = \"s3://Bad_Bucket!\"\n",
                "recording.upload_url",
            ),
            (
                "[recording]\nupload_retries = 1000\n",
                "recording.upload_retries",
            ),
            (
                "[recording]\npublic_base_url = \"cdn.example\"\n",
                "recording.public_base_url",
            ),
            (
                "[recording]\nkeep_local_days = 0\n",
                "recording.keep_local_days",
            ),
        ] {
            match Config::load(Some(file), &env(&[]), CliOverrides::default()) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{file}"),
                other => panic!("{file}: expected an error naming {key}, got {other:?}"),
            }
        }
        let bad = env(&[("VOXGATE_RECORDING_ENABLED", "maybe")]);
        assert!(Config::load(None, &bad, CliOverrides::default()).is_err());
        assert!(
            Config::load(
                Some("[recording]\nbogus = 1\n"),
                &env(&[]),
                CliOverrides::default()
            )
            .is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn every_shipped_example_parses_and_round_trips() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let config = Config::load(Some(&text), &env(&[]), CliOverrides::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let again =
                Config::load(Some(&config.to_toml()), &env(&[]), CliOverrides::default()).unwrap();
            assert_eq!(again.to_toml(), config.to_toml());
            seen += 1;
        }
        assert!(seen >= 1);
    }
}
