//! `voxgate simulate` and `voxgate load`: flags, script building, printing.
//!
//! Owns: the clap argument structs and turning them into a [`SimConfig`] / [`LoadConfig`].
//! The only place in `sim` that reads files named on the command line, reads the
//! environment (through clap's `env`) or uses `anyhow`. Never: holds simulation logic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::config::{AnswerMethod, SimConfig};
use super::load::{LoadConfig, run_load};
use super::plivo_rest::FakePlivo;
use super::record::{self, ApiToken};
use super::report::{CallReport, write_wav};
use super::script::{self, CallerStep};
use super::{script_file, table};

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
    /// A TOML caller script (wait_agent, say, dtmf, silence_ms, wait_hangup, hangup steps);
    /// replaces --audio/--dtmf. See examples/sim/demo.toml.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["audio", "dtmf"])]
    pub script: Option<PathBuf>,
    /// Bearer token of voxgate's control API: after each call, read its record
    /// (GET /v1/calls/{id}) for the server's per-turn latency split.
    #[arg(long, env = "VOXGATE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Run Plivo's REST API emulator on this loopback address (e.g. 127.0.0.1:8089) for the
    /// account MASIMULATOR000000001 and --auth-token, so voxgate (plivo.api_url pointing
    /// here) can hang calls up with DELETE .../Call/{uuid}/.
    #[arg(long, value_name = "ADDR")]
    pub plivo_rest: Option<SocketAddr>,
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
    /// The script: the `--script` file, or each audio file, separated by `--pause-ms` of
    /// silence, then the DTMF keys, then a wait (up to 10 s) for the agent's reply to finish
    /// playing.
    pub fn script(&self) -> anyhow::Result<Vec<CallerStep>> {
        if let Some(path) = &self.script {
            let steps = script_file::load_script(path)
                .with_context(|| format!("caller script {}", path.display()))?;
            script::validate(&steps)?;
            return Ok(steps);
        }
        if self.audio.is_empty() && self.dtmf.is_none() {
            anyhow::bail!("give at least one --audio FILE or --dtmf DIGITS, or a --script FILE");
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

    /// The control API token, if one was given.
    pub fn api_token(&self) -> Option<ApiToken> {
        self.api_token.clone().and_then(ApiToken::new)
    }

    /// Starts the REST emulator when `--plivo-rest` asks for it and hooks `cfg`'s calls to
    /// it. The emulator runs until the returned value is dropped.
    pub async fn start_plivo_rest(&self, cfg: &mut SimConfig) -> anyhow::Result<Option<FakePlivo>> {
        let Some(addr) = self.plivo_rest else {
            return Ok(None);
        };
        if !addr.ip().is_loopback() {
            anyhow::bail!("--plivo-rest must be a loopback address, not {addr}");
        }
        let token = cfg
            .auth_token
            .clone()
            .context("--plivo-rest needs --auth-token (the emulator checks Basic auth)")?;
        let fake = FakePlivo::start_on(addr, &cfg.account_id, &token)
            .await
            .with_context(|| format!("starting the Plivo REST emulator on {addr}"))?;
        cfg.plivo_rest = Some(fake.calls_handle());
        Ok(Some(fake))
    }
}

/// Runs one call and prints its report (JSON with `--json`); saves the heard audio with
/// `--out`.
///
/// With `--api-token`, the call's record is read after the call and its per-turn split is
/// printed (`server_record` in JSON); without, the wire-side per-turn table.
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let mut cfg = args.call.config()?;
    let _emulator = args.call.start_plivo_rest(&mut cfg).await?;
    let server = cfg.server.clone();
    let report = super::run_call(cfg)
        .await
        .context("simulated call failed")?;
    if let Some(path) = &args.out {
        write_wav(path, &report.heard)
            .with_context(|| format!("writing heard audio to {}", path.display()))?;
    }
    let record = match args.call.api_token() {
        Some(token) => Some(read_record(&server, &token, &report).await),
        None => None,
    };
    if args.json {
        let mut json = serde_json::to_value(&report)?;
        if let (Some(record), Some(object)) = (&record, json.as_object_mut()) {
            let (key, value) = match record {
                Ok(r) => ("server_record", serde_json::to_value(r)?),
                Err(e) => ("server_record_error", e.clone().into()),
            };
            object.insert(key.to_owned(), value);
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{report}");
        if let Some(path) = &args.out {
            println!("  heard audio saved to {}", path.display());
        }
        match &record {
            Some(Ok(r)) => print!("{}", table::server_table(r, &report)),
            Some(Err(e)) => {
                println!("call record not read: {e}");
                print!("{}", table::wire_table(&report));
            }
            None => print!("{}", table::wire_table(&report)),
        }
    }
    Ok(())
}

/// The call's record from the control API, or why not (as text: it never fails the run).
async fn read_record(
    server: &str,
    token: &ApiToken,
    report: &CallReport,
) -> Result<record::ServerRecord, String> {
    let client = super::call::http_client().map_err(|e| e.to_string())?;
    record::fetch_record(
        &client,
        server,
        token,
        &report.call_uuid,
        record::FETCH_WINDOW,
    )
    .await
    .map_err(|e| e.to_string())
}

/// Runs a load and prints its report (JSON with `--json`); with `--api-token` it reads every
/// call's record and summarises the server's stages.
pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let mut cfg = args.call.config()?;
    let _emulator = args.call.start_plivo_rest(&mut cfg).await?;
    let mut load = LoadConfig::new(cfg, args.calls)?.with_ramp(Duration::from_millis(args.ramp_ms));
    if let Some(secs) = args.deadline_secs {
        load = load.with_deadline(Duration::from_secs(secs));
    }
    if let Some(token) = args.call.api_token() {
        load = load.with_records(token);
    }
    let report = run_load(load).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
