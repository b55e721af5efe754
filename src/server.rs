//! `voxgate serve` as one library call: the control plane, the recording publisher and
//! its retention sweep, the HTTP edge, and the order they stop in.
//!
//! It exists so the binary and the integration tests run the same wiring: a recording
//! that ends in a test goes through the same handoff, upload and `call.recording_ready`
//! as in production. It never reads the environment or installs signal handlers; the
//! binary does that and cancels the shutdown token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::service::ControlService;
use crate::http::{self, AppState};
use crate::recording::publish::Publisher;
use crate::recording::publish_config::PublishConfig;
use crate::recording::retention;

/// How long shutdown waits for the uploads of the calls that just ended.
const PUBLISH_DRAIN: Duration = Duration::from_secs(60);
/// How long shutdown waits for the delivery batch in flight.
const DELIVERY_DRAIN: Duration = Duration::from_secs(15);

/// A started server, not yet serving.
pub struct Server {
    state: Arc<AppState>,
    publisher: Arc<Publisher>,
    retention: Option<JoinHandle<()>>,
    delivery: JoinHandle<()>,
    shutdown: CancellationToken,
}

impl Server {
    /// Starts the control plane (store, sinks, delivery), the recording publisher and
    /// retention sweep, and the server state (DSP pipeline, recording writer). Everything
    /// stops when `shutdown` is cancelled and [`Server::run`] returns.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let control = ControlService::start(
            &config.control,
            &config.plivo,
            &config.data_dir,
            shutdown.child_token(),
        )
        .await
        .context("starting the control plane")?;
        // Finished recordings are encoded, uploaded and announced by the publisher; the
        // retention sweep deletes published local copies past `keep_local_days`.
        let publish = PublishConfig::from_recording(&config.recording);
        let publisher = Arc::new(
            Publisher::new(&publish, control.plane.clone())
                .context("setting up recording upload")?,
        );
        let retention = retention::spawn_for(&publish, shutdown.child_token());
        let state = Arc::new(
            AppState::new(config)
                .context("starting the DSP pipeline and the recording writer")?
                .with_control(control.plane, control.deliverer)
                .on_recording_finished(publisher.handoff().context("recording publisher")?),
        );
        Ok(Self {
            state,
            publisher,
            retention,
            delivery: control.task,
            shutdown,
        })
    }

    /// What the handlers share (the control plane, the recorder, live calls).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves on `listener` until the shutdown token is cancelled, then stops in order:
    /// live calls drain, the recordings of the calls that just ended are uploaded and
    /// announced, then event delivery finishes its batch (each step bounded).
    pub async fn run(self, listener: TcpListener) -> anyhow::Result<()> {
        http::run(listener, self.state, self.shutdown).await?;
        if tokio::time::timeout(PUBLISH_DRAIN, self.publisher.drain())
            .await
            .is_err()
        {
            tracing::warn!("recording uploads still running at exit: their files stay local");
        }
        drop(self.retention);
        let _ = tokio::time::timeout(DELIVERY_DRAIN, self.delivery).await;
        Ok(())
    }
}
