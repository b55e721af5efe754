//! The voxgate command line: `voxgate serve`, `voxgate simulate`, `voxgate load`.
//!
//! `main` only parses flags, loads the configuration (file + environment + flags), sets up
//! tracing, binds and hands over to the library; every decision lives in the library.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use voxgate::config::{CliOverrides, Config};
use voxgate::server::Server;

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
    voxgate::logs::init(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    );
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    let server = Server::start(config, shutdown.clone()).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        dsp_workers = server.state().pipeline.workers(),
        "voxgate is serving"
    );
    tokio::spawn(stop_on_signal(shutdown));
    server.run(listener).await?;
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
