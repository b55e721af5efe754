//! `voxgate simulate` and `voxgate load`: flags, script building, printing.
//!
//! Owns: the clap argument structs and turning them into a [`SimConfig`] / [`LoadConfig`].
//! The only place in `sim` that reads files named on the command line, reads the
//! environment (through clap's `env`) or uses `anyhow`. Never: holds simulation logic.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::config::{AnswerMethod, SimConfig};
use super::load::{LoadConfig, run_load};
use super::report::write_wav;
use super::script::{self, CallerStep};

/// How long the caller waits for the agent's reply after the last turn.
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// Flags shared by `simulate` and `load`.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// voxgate's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Caller audio: an 8 kHz mono PCM16 .wav or a raw .ulaw file. Repeat for several turns.
    #[arg(long = "audio", value_name = "FILE")]
    pub audio: Vec<PathBuf>,
    /// Silence between turns, ms.
    #[arg(long, default_value_t = 1500)]
    pub pause_ms: u64,
    /// Simulation speed (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Sign every request with this Plivo auth token (V3).
    #[arg(long, env = "PLIVO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Keys to press after the audio turns (0-9, *, #, A-D).
    #[arg(long)]
    pub dtmf: Option<String>,
    /// Fetch the answer URL with GET instead of POST.
    #[arg(long)]
    pub get: bool,
}

/// `voxgate simulate`: one call.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The call.
    #[command(flatten)]
    pub call: CallArgs,
    /// Save what the caller heard (8 kHz mono WAV).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `voxgate load`: many concurrent calls on this machine.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Each call.
    #[command(flatten)]
    pub call: CallArgs,
    /// Number of concurrent calls.
    #[arg(long, default_value_t = 10)]
    pub calls: usize,
    /// Spread the call starts over this many ms.
    #[arg(long, default_value_t = 0)]
    pub ramp_ms: u64,
    /// Stop calls still running after this many seconds (default: the longest call + 30 s).
    #[arg(long)]
    pub deadline_secs: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CallArgs {
    /// The script: each audio file, separated by `--pause-ms` of silence, then the DTMF keys,
    /// then a wait (up to 10 s) for the agent's reply to finish playing.
    pub fn script(&self) -> anyhow::Result<Vec<CallerStep>> {
        if self.audio.is_empty() && self.dtmf.is_none() {
            anyhow::bail!("give at least one --audio FILE or --dtmf DIGITS");
        }
        let mut steps = Vec::new();
        for (i, path) in self.audio.iter().enumerate() {
            if i > 0 {
                steps.push(CallerStep::Silence(Duration::from_millis(self.pause_ms)));
            }
            steps.push(script::audio_step(path)?);
        }
        if let Some(digits) = &self.dtmf {
            steps.push(CallerStep::Dtmf(digits.clone()));
        }
        steps.push(CallerStep::UntilAgentSilent {
            timeout: REPLY_WAIT,
        });
        script::validate(&steps)?;
        Ok(steps)
    }

    /// The call's settings.
    pub fn config(&self) -> anyhow::Result<SimConfig> {
        let mut cfg = SimConfig::new(self.server.clone(), self.script()?);
        cfg.speed = self.speed;
        cfg.auth_token = self.auth_token.clone().filter(|t| !t.is_empty());
        if self.get {
            cfg.answer_method = AnswerMethod::Get;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs one call and prints its report (JSON with `--json`); saves the heard audio with
/// `--out`.
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let cfg = args.call.config()?;
    let report = super::run_call(cfg)
        .await
        .context("simulated call failed")?;
    if let Some(path) = &args.out {
        write_wav(path, &report.heard)
            .with_context(|| format!("writing heard audio to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
        if let Some(path) = &args.out {
            println!("  heard audio saved to {}", path.display());
        }
    }
    Ok(())
}

/// Runs a load and prints its report (JSON with `--json`).
pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let cfg = args.call.config()?;
    let mut load = LoadConfig::new(cfg, args.calls)?.with_ramp(Duration::from_millis(args.ramp_ms));
    if let Some(secs) = args.deadline_secs {
        load = load.with_deadline(Duration::from_secs(secs));
    }
    let report = run_load(load).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
