//! The voxgate command line: `voxgate serve`, `voxgate simulate`, `voxgate load`.
//!
//! `main` only parses flags, loads the configuration (file + environment + flags), sets up
//! tracing, binds and hands over to the library; every decision lives in the library.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use voxgate::config::{CliOverrides, Config};
use voxgate::control::service::ControlService;
use voxgate::http::{self, AppState};

#[derive(Parser)]
#[command(
    name = "voxgate",
    version,
    about = "Real-time voice media gateway for Plivo voice agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "VOXGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (default: $PORT on 0.0.0.0, else 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Public base URL Plivo reaches voxgate at.
        #[arg(long)]
        public_url: Option<String>,
        /// Folder for the database and recordings (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Do not check Plivo's signatures (local development only).
        #[arg(long)]
        no_verify_signatures: bool,
    },
    /// Play Plivo's side of one call against a running voxgate and report what the caller heard.
    Simulate(voxgate::sim::cli::SimulateArgs),
    /// Run many simulated calls at once against a running voxgate (loopback only).
    Load(voxgate::sim::cli::LoadArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            public_url,
            data_dir,
            no_verify_signatures,
        } => {
            let text = match &config {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading config file {}", path.display()))?,
                ),
                None => None,
            };
            let env: HashMap<String, String> = std::env::vars().collect();
            let cli = CliOverrides {
                listen,
                public_url,
                data_dir,
                no_verify_signatures,
            };
            let config =
                Config::load(text.as_deref(), &env, cli).context("invalid configuration")?;
            serve(config).await
        }
        Command::Simulate(args) => voxgate::sim::cli::simulate(args).await,
        Command::Load(args) => voxgate::sim::cli::load(args).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    println!(
        "voxgate {} configuration:\n{}",
        env!("CARGO_PKG_VERSION"),
        config.to_toml()
    );
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    let control = ControlService::start(&config, shutdown.child_token())
        .await
        .context("starting the control plane")?;
    // Finished recordings are encoded, uploaded and announced by the publisher; the
    // retention sweep deletes published local copies past `keep_local_days`.
    let publish =
        voxgate::recording::publish_config::PublishConfig::from_recording(&config.recording);
    let publisher = Arc::new(
        voxgate::recording::publish::Publisher::new(&publish, control.plane.clone())
            .context("setting up recording upload")?,
    );
    let retention = voxgate::recording::retention::spawn_for(&publish, shutdown.child_token());
    let state = Arc::new(
        AppState::new(config)
            .context("starting the DSP pipeline and the recording writer")?
            .with_control(control.plane, control.deliverer)
            .on_recording_finished(publisher.handoff().context("recording publisher")?),
    );
    tracing::info!(
        listen = %listener.local_addr()?,
        dsp_workers = state.pipeline.workers(),
        "voxgate is serving"
    );
    tokio::spawn(stop_on_signal(shutdown.clone()));
    http::run(listener, state, shutdown).await?;
    // Recordings of the calls that just ended are uploaded and announced before delivery
    // stops (bounded: a stuck upload must not hold the exit forever).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), publisher.drain()).await;
    drop(retention);
    // Delivery stops with the shutdown token; let the batch in flight finish.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), control.task).await;
    tracing::info!("voxgate stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    shutdown.cancel();
}
