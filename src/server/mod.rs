//! `voxgate serve` as one library call, and the composition root: the only module that
//! knows every other one. It builds the parts, wires them together, and owns the order
//! they start and stop in.
//!
//! Start-up ([`Server::start`]): the data directory; the control plane (store, sinks,
//! delivery, reconcile); the recording publisher and its retention sweep; the DSP
//! pipeline; the recording writer, handing finished files to the publisher; the call
//! registry with the default agent; the signature verifier and the metrics recorder; the
//! HTTP state. [`Server::run`] then listens, and recovers the recordings a crash left
//! behind (they are published like finished ones).
//!
//! Shutdown, when the token is cancelled (the binary cancels it on SIGTERM or Ctrl-C):
//!
//! 1. Stop admitting: `/ready` turns 503 and the answer URL refuses new calls; event
//!    delivery and reconcile see the token too (delivery finishes the batch in flight).
//! 2. Live calls go on up to `session.drain_timeout` (callbacks are still served), then
//!    the rest are closed and counted.
//! 3. The recording writer finishes the calls' files (at most 10 s).
//! 4. The listener stops.
//! 5. The recordings of the calls that just ended are uploaded and announced (at most
//!    60 s; what is left stays local and is recovered at the next start).
//! 6. Event delivery's last batch is awaited (at most 15 s); undelivered events stay in
//!    the outbox.
//!
//! It never reads the environment or installs signal handlers; the binary does that.
//! Tests run the same wiring: [`Server::start`] is exactly `voxgate serve`, and
//! [`Server::start_without_control`] is the media edge alone (no store, no publisher).

pub mod config;
mod connections;
mod seams;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audio::pipeline::Pipeline;
use crate::config::Config;
use crate::control::deliver::Deliverer;
use crate::control::plane::ControlPlane;
use crate::control::service::ControlService;
use crate::http::{self, AppState};
use crate::recording::publish::Publisher;
use crate::recording::publish_config::PublishConfig;
use crate::recording::retention;
use crate::recording::writer::{Recorder, RecordingFinished};
use crate::session::Sessions;
use crate::telephony::plivo::seen::SeenOnce;
use crate::telephony::plivo::signature::Verifier;
use config::HttpConfig;

/// Callback keys and upgrade nonces remembered (each, about 10 MB at most; at 100 new
/// calls a minute, hours of calls).
const SEEN_MEMORY: usize = 100_000;
/// How long shutdown waits for the recording writer to finish the calls' files.
const RECORDER_DRAIN: Duration = Duration::from_secs(10);
/// How long shutdown waits for the uploads of the calls that just ended.
const PUBLISH_DRAIN: Duration = Duration::from_secs(60);
/// How long shutdown waits for the delivery batch in flight.
const DELIVERY_DRAIN: Duration = Duration::from_secs(15);

/// A started server, not yet serving.
pub struct Server {
    state: Arc<AppState>,
    http: HttpConfig,
    recorder: Option<Arc<Recorder>>,
    drain_timeout: Duration,
    after_calls: Option<AfterCalls>,
    shutdown: CancellationToken,
}

/// What the media side and the HTTP state get from a running control plane.
struct ControlWiring {
    plane: Arc<ControlPlane>,
    deliverer: Deliverer,
    /// Takes each finished recording (the publisher's).
    handoff: RecordingFinished,
}

/// What runs on after the calls: publishing recordings and delivering events.
struct AfterCalls {
    publisher: Arc<Publisher>,
    retention: Option<JoinHandle<()>>,
    delivery: JoinHandle<()>,
}

impl Server {
    /// Starts everything `voxgate serve` runs (see the module doc for the order).
    /// Everything stops when `shutdown` is cancelled and [`Server::run`] returns.
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
        let wiring = ControlWiring {
            plane: control.plane,
            deliverer: control.deliverer,
            handoff: publisher.handoff().context("recording publisher")?,
        };
        let mut server = Self::assemble(config, shutdown, Some(wiring))?;
        server.after_calls = Some(AfterCalls {
            publisher,
            retention,
            delivery: control.task,
        });
        Ok(server)
    }

    /// Starts the media edge alone: Plivo's routes, the DSP pipeline, the recording
    /// writer (finished files stay in `recording.dir`) and the call registry; no control
    /// plane (`/v1` answers `503 control_disabled`). For tests and benches of the media path.
    pub fn start_without_control(
        config: Config,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Self::assemble(config, shutdown, None)
    }

    /// Builds the media side and the HTTP state, wired to the control plane if given.
    fn assemble(
        config: Config,
        shutdown: CancellationToken,
        control: Option<ControlWiring>,
    ) -> anyhow::Result<Self> {
        let pipeline =
            Arc::new(Pipeline::start(config.pipeline).context("starting the DSP pipeline")?);
        let recorder = if config.recording.enabled {
            let recorder =
                Recorder::start(&config.recording).context("starting the recording writer")?;
            Some(Arc::new(recorder))
        } else {
            None
        };
        if let (Some(recorder), Some(control)) = (&recorder, &control) {
            // Runs on the writer thread: the publisher's handoff never blocks.
            recorder.set_on_finished(Arc::clone(&control.handoff));
        }
        // The agent of calls that choose none, chosen here only.
        let default_agent = config.agent.default;
        let hosted = crate::agent::llm::setup::Hosted {
            openai: config.openai.clone(),
            deepgram: config.deepgram.clone(),
            elevenlabs: config.elevenlabs.clone(),
        };
        let agents = crate::agent::Agents::start(
            &config.agent,
            &config.espeak,
            &config.pocketsphinx,
            &hosted,
        )
        .context("starting the agents")?;
        let verifier = config
            .plivo
            .verify_signatures
            .then(|| Verifier::new(config.plivo.auth_tokens.clone()));
        if verifier.is_none() {
            tracing::warn!(
                "no Plivo auth token configured (or verification off): signatures are NOT checked"
            );
        }
        let state = AppState {
            public_url: config.public_url,
            api_tokens: config.control.api_tokens,
            pipeline,
            sessions: Arc::new(Sessions::new(config.session, default_agent)),
            recorder: recorder.clone(),
            on_stream_started: control
                .as_ref()
                .map(|control| seams::media_started(Arc::clone(&control.plane))),
            agents: Arc::new(agents),
            on_hang_up: control
                .as_ref()
                .map(|control| seams::hang_up(Arc::clone(&control.plane))),
            records: control
                .as_ref()
                .map(|control| seams::conversation_records(Arc::clone(&control.plane))),
            verifier,
            metrics: crate::telemetry::install(),
            callbacks: SeenOnce::new(SEEN_MEMORY),
            upgrade_nonces: SeenOnce::new(SEEN_MEMORY),
            default_agent,
            deliverer: control.as_ref().map(|control| control.deliverer.clone()),
            control: control.map(|control| control.plane),
        };
        Ok(Self {
            state: Arc::new(state),
            http: config.http,
            recorder,
            drain_timeout: config.session.drain_timeout,
            after_calls: None,
            shutdown,
        })
    }

    /// What the handlers share (the control plane, the recorder, live calls).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves on `listener` until the shutdown token is cancelled, then stops in the
    /// order the module doc gives, each step bounded.
    pub async fn run(self, listener: TcpListener) -> anyhow::Result<()> {
        let stop_listening = CancellationToken::new();
        let mut serving = tokio::spawn(connections::serve(
            listener,
            http::app(Arc::clone(&self.state)),
            self.http,
            stop_listening.clone(),
        ));
        if let Some(recorder) = &self.recorder {
            // Recordings a crash left behind: repaired and handed off like finished ones.
            recorder.recover_left_behind();
        }
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            result = &mut serving => return Ok(result??),
        }
        self.drain_calls().await;
        if let Some(recorder) = self.recorder.clone() {
            // Sessions have ended: let the writer finish their files before the process exits.
            let _ = tokio::task::spawn_blocking(move || recorder.shutdown(RECORDER_DRAIN)).await;
        }
        stop_listening.cancel();
        serving.await??;
        if let Some(after_calls) = self.after_calls {
            after_calls.drain().await;
        }
        Ok(())
    }

    /// Lets live calls go on up to the drain timeout, then closes the rest.
    async fn drain_calls(&self) {
        let sessions = &self.state.sessions;
        tracing::info!(live = sessions.streaming(), drain = ?self.drain_timeout, "draining live calls");
        let forced = sessions.drain(self.drain_timeout).await;
        if forced > 0 {
            tracing::warn!(forced, "drain timeout: closed the calls still live");
            metrics::counter!(crate::telemetry::STREAMS_ENDED, "reason" => "forced_at_shutdown")
                .increment(forced as u64);
        }
    }
}

impl AfterCalls {
    /// Publishes the recordings of the calls that just ended, then waits for delivery.
    async fn drain(self) {
        if tokio::time::timeout(PUBLISH_DRAIN, self.publisher.drain())
            .await
            .is_err()
        {
            tracing::warn!("recording uploads still running at exit: their files stay local");
        }
        drop(self.retention);
        let _ = tokio::time::timeout(DELIVERY_DRAIN, self.delivery).await;
    }
}
