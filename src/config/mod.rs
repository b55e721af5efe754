//! The one typed configuration, assembled once at start from the sections the modules own.
//!
//! Each module defines, defaults and validates its own section beside the code that uses
//! it: `[audio]` in [`crate::audio::config`], `[plivo]` in
//! [`crate::telephony::plivo::config`], `[session]` in [`crate::session::config`],
//! `[control]` in [`crate::control::config`], `[recording]` in [`crate::recording::config`],
//! `[agent]` in [`crate::agent::config`], `[espeak]` in
//! [`crate::providers::espeak::config`], `[pocketsphinx]` in
//! [`crate::providers::pocketsphinx::config`], `[openai]` in
//! [`crate::providers::openai::config`], `[deepgram]` in
//! [`crate::providers::deepgram::config`], `[elevenlabs]` in
//! [`crate::providers::elevenlabs::config`], `[http]` in [`crate::server::config`]. This module
//! only assembles them and owns the top-level keys (`listen`, `public_url`, `data_dir`).
//!
//! Sources, lowest precedence first: built-in defaults, the TOML file (`--config`), the
//! environment (`env.rs`: `VOXGATE_*`, `PORT`, `PLIVO_AUTH_*`, the providers' usual
//! `OPENAI_API_KEY`-style variables), then command-line flags.
//! The file is read into the sections' raw serde structs, which refuse unknown keys; the
//! environment is laid over it, the flags over both; then each section validates its
//! values into typed ones, once. Start-up fails loudly on anything wrong, naming the key.
//! Library code never reads the environment: `main` hands it in as a map.
//!
//! Adding a setting: one field in its section's raw struct (with its check in the
//! section's `validate` and its value in the section's file form), and one line in
//! `VARS` in `env.rs` if the environment may set it. Nothing here changes.

mod env;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::agent::config::{AgentConfig, RawAgent};
use crate::audio::config::RawAudio;
use crate::audio::pipeline::PipelineConfig;
use crate::control::config::{ControlConfig, RawControl};
use crate::providers::deepgram::{DeepgramConfig, RawDeepgram};
use crate::providers::elevenlabs::{ElevenLabsConfig, RawElevenLabs};
use crate::providers::espeak::{EspeakConfig, RawEspeak};
use crate::providers::openai::{OpenAiConfig, RawOpenAi};
use crate::providers::pocketsphinx::config::{PocketsphinxConfig, RawPocketsphinx};
use crate::recording::config::{RawRecording, RecordingConfig};
use crate::server::config::{HttpConfig, RawHttp};
use crate::session::config::{RawSession, SessionConfig};
use crate::setting::{InvalidSetting, invalid};
use crate::telephony::plivo::config::{PlivoConfig, RawPlivo};

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
        /// The setting, as written in the file, or the environment variable it came from.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<InvalidSetting> for ConfigError {
    fn from(InvalidSetting { key, reason }: InvalidSetting) -> Self {
        Self::Invalid { key, reason }
    }
}

/// The file's shape: the top-level keys and each module's raw section, every key
/// optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// `host:port` to listen on.
    listen: Option<String>,
    /// Public base URL Plivo reaches voxgate at (`https://…`).
    public_url: Option<String>,
    /// Folder for the database and recordings.
    data_dir: Option<PathBuf>,
    #[serde(default)]
    audio: RawAudio,
    #[serde(default)]
    plivo: RawPlivo,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    recording: RawRecording,
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    espeak: RawEspeak,
    #[serde(default)]
    pocketsphinx: RawPocketsphinx,
    #[serde(default)]
    openai: RawOpenAi,
    #[serde(default)]
    deepgram: RawDeepgram,
    #[serde(default)]
    elevenlabs: RawElevenLabs,
    #[serde(default)]
    http: RawHttp,
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
    /// Which agent answers calls.
    pub agent: AgentConfig,
    /// Offline speech (espeak-ng).
    pub espeak: EspeakConfig,
    /// Offline speech recognition.
    pub pocketsphinx: PocketsphinxConfig,
    /// An OpenAI-compatible server (chat, speech, transcription).
    pub openai: OpenAiConfig,
    /// Deepgram (live and batch speech recognition).
    pub deepgram: DeepgramConfig,
    /// ElevenLabs (streaming speech).
    pub elevenlabs: ElevenLabsConfig,
    /// The bounds of every HTTP connection.
    pub http: HttpConfig,
}

impl Config {
    /// Builds the configuration from a file's text (if any), the environment and the CLI.
    pub fn load(
        file: Option<&str>,
        env: &HashMap<String, String>,
        cli: CliOverrides,
    ) -> Result<Self, ConfigError> {
        // The file alone first, so its mistakes are reported with their line and column.
        let file = match file {
            Some(text) => toml::from_str(text)?,
            None => RawConfig::default(),
        };
        let mut raw = env::lay_over(file, env)?;
        raw.apply(cli);
        raw.validate()
    }

    /// The effective configuration as TOML, for the start-up banner: each section's file
    /// form of its validated values. Secrets are left out.
    pub fn to_toml(&self) -> String {
        // Destructured so a new section cannot be left out of the banner.
        let Self {
            listen,
            public_url,
            data_dir,
            pipeline,
            plivo,
            session,
            control,
            recording,
            agent,
            espeak,
            pocketsphinx,
            openai,
            deepgram,
            elevenlabs,
            http,
        } = self;
        let raw = RawConfig {
            listen: Some(listen.to_string()),
            public_url: public_url.clone(),
            data_dir: Some(data_dir.clone()),
            audio: pipeline.into(),
            plivo: plivo.into(),
            session: session.into(),
            control: control.into(),
            recording: recording.into(),
            agent: agent.into(),
            espeak: espeak.into(),
            pocketsphinx: pocketsphinx.into(),
            openai: openai.into(),
            deepgram: deepgram.into(),
            elevenlabs: elevenlabs.into(),
            http: http.into(),
        };
        toml::to_string(&raw).unwrap_or_default()
    }
}

impl RawConfig {
    /// Applies the command-line flags.
    fn apply(&mut self, cli: CliOverrides) {
        let CliOverrides {
            listen,
            public_url,
            data_dir,
            no_verify_signatures,
        } = cli;
        self.listen = listen.or(self.listen.take());
        self.public_url = public_url.or(self.public_url.take());
        self.data_dir = data_dir.or(self.data_dir.take());
        if no_verify_signatures {
            self.plivo.verify_signatures = Some(false);
        }
    }

    /// Checks the top-level keys, then has each section check its own.
    fn validate(self) -> Result<Config, ConfigError> {
        let listen = match self.listen {
            None => DEFAULT_LISTEN,
            Some(text) => text.parse().map_err(|_| {
                invalid(
                    "listen",
                    format!("{text:?} is not host:port (e.g. 127.0.0.1:8080)"),
                )
            })?,
        };
        let public_url = self.public_url.map(base_url).transpose()?;
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        Ok(Config {
            listen,
            public_url,
            pipeline: self.audio.validate()?,
            plivo: self.plivo.validate()?,
            session: self.session.validate()?,
            control: self.control.validate()?,
            recording: self.recording.validate(&data_dir)?,
            agent: self.agent.validate()?,
            espeak: self.espeak.validate()?,
            pocketsphinx: self.pocketsphinx.validate()?,
            openai: self.openai.validate()?,
            deepgram: self.deepgram.validate()?,
            elevenlabs: self.elevenlabs.validate()?,
            http: self.http.validate()?,
            data_dir,
        })
    }
}

/// `public_url`: `http(s)://host[/path]`, returned without its trailing `/`.
fn base_url(url: String) -> Result<String, InvalidSetting> {
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
    Ok(url)
}

#[cfg(test)]
mod tests;
