//! The HTTP edge: the axum router, shared state and the server loop.
//!
//! [`app`] builds the router from shared state so tests can call it without a socket;
//! [`run`] serves it until the shutdown token is cancelled, then drains: `/ready` turns
//! 503 and the answer URL refuses new calls, live calls go on up to the drain timeout
//! (callbacks are still served meanwhile), the rest are closed, and only then does the
//! listener stop.

mod api;
mod openapi;
mod ops;
mod plivo;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::AgentKind;
use crate::audio::pipeline::Pipeline;
use crate::config::Config;
use crate::control::deliver::Deliverer;
use crate::control::plane::ControlPlane;
use crate::recording::writer::{Recorder, RecordingFinished};
use crate::session::Sessions;
use crate::session::socket::{SessionDeps, StreamStarted};
use crate::telephony::plivo::signature::Verifier;

pub use plivo::CallbackLog;

/// Bodies larger than this are refused (Plivo's forms are a few KiB).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach.
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// The DSP pipeline every call's audio goes through.
    pub pipeline: Arc<Pipeline>,
    /// Live calls.
    pub sessions: Arc<Sessions>,
    /// Checks Plivo's signatures; `None` when they are not enforced.
    pub verifier: Option<Verifier>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Plivo callbacks seen, for idempotency.
    pub callbacks: CallbackLog,
    /// The agent new calls get.
    pub agent: AgentKind,
    /// The control plane (`/v1`, call lifecycle), once attached.
    pub control: Option<Arc<ControlPlane>>,
    /// Records calls (the writer thread); `None` when `recording.enabled` is off.
    pub recorder: Option<Arc<Recorder>>,
    deliverer: Option<Deliverer>,
}

/// Why the server state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The DSP pipeline did not start.
    #[error(transparent)]
    Pipeline(#[from] crate::audio::pipeline::PipelineError),
    /// The recording writer did not start.
    #[error(transparent)]
    Recorder(#[from] crate::recording::writer::RecorderError),
}

impl AppState {
    /// Builds the state: starts the DSP pipeline, the recording writer and the metrics
    /// recorder.
    pub fn new(config: Config) -> Result<Self, StateError> {
        let pipeline = Arc::new(Pipeline::start(config.pipeline)?);
        let recorder = match config.recording.enabled {
            true => Some(Arc::new(Recorder::start(&config.recording)?)),
            false => None,
        };
        let sessions = Arc::new(Sessions::new(config.session));
        let verifier = config
            .plivo
            .verify_signatures
            .then(|| Verifier::new(config.plivo.auth_tokens.clone()));
        if verifier.is_none() {
            tracing::warn!(
                "no Plivo auth token configured (or verification off): signatures are NOT checked"
            );
        }
        Ok(Self {
            config,
            pipeline,
            sessions,
            verifier,
            metrics: crate::telemetry::install(),
            callbacks: CallbackLog::default(),
            agent: AgentKind::default(),
            control: None,
            recorder,
            deliverer: None,
        })
    }

    /// Sets who gets each finished recording (the publisher: encode, upload, announce).
    /// Without it, finished recordings stay in `recording.dir`. Runs on the writer thread:
    /// it must not block.
    pub fn on_recording_finished(self, handoff: RecordingFinished) -> Self {
        if let Some(recorder) = &self.recorder {
            recorder.set_on_finished(handoff);
        }
        self
    }

    /// Attaches a running control plane: `/v1` answers and call lifecycles are recorded.
    pub fn with_control(mut self, control: Arc<ControlPlane>, deliverer: Deliverer) -> Self {
        self.control = Some(control);
        self.deliverer = Some(deliverer);
        self
    }

    /// Wakes event delivery (after a dead letter was replayed).
    pub fn wake_deliverer(&self) {
        if let Some(deliverer) = &self.deliverer {
            deliverer.notify();
        }
    }

    fn session_deps(&self) -> SessionDeps {
        let on_stream_started: Option<StreamStarted> = self.control.as_ref().map(|control| {
            let control = Arc::clone(control);
            Arc::new(move |call_id: &str, call_uuid: &str| {
                let (control, call_id, call_uuid) = (
                    Arc::clone(&control),
                    call_id.to_owned(),
                    call_uuid.to_owned(),
                );
                tokio::spawn(async move {
                    if let Err(error) = control.on_media_started(&call_id, Some(call_uuid)).await {
                        tracing::warn!(%call_id, %error, "could not record the media start");
                    }
                });
            }) as StreamStarted
        });
        SessionDeps {
            pipeline: Arc::clone(&self.pipeline),
            sessions: Arc::clone(&self.sessions),
            config: self.config.session,
            agent: self.agent,
            on_stream_started,
            recorder: self.recorder.clone(),
        }
    }
}

/// The router, without a socket.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/plivo/answer", get(plivo::answer).post(plivo::answer))
        .route("/plivo/stream", get(plivo::stream))
        .route("/plivo/hangup", post(plivo::hangup))
        .route("/plivo/ring", post(plivo::ring))
        .route("/plivo/stream-status", post(plivo::stream_status))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(api::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` is cancelled, then drains live calls.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stop_listening = CancellationToken::new();
    let mut server = {
        let stop = stop_listening.clone();
        tokio::spawn(
            axum::serve(listener, app(Arc::clone(&state)))
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .into_future(),
        )
    };
    if let Some(recorder) = &state.recorder {
        // Recordings a crash left behind: repaired and handed off like finished ones.
        recorder.recover_left_behind();
    }
    tokio::select! {
        _ = shutdown.cancelled() => {}
        result = &mut server => return flatten(result),
    }
    let live = state.sessions.streaming();
    tracing::info!(live, drain = ?state.config.session.drain_timeout, "draining live calls");
    let forced = state
        .sessions
        .drain(state.config.session.drain_timeout)
        .await;
    if forced > 0 {
        tracing::warn!(forced, "drain timeout: closed the calls still live");
        metrics::counter!(crate::telemetry::STREAMS_ENDED, "reason" => "forced_at_shutdown")
            .increment(forced as u64);
    }
    if let Some(recorder) = state.recorder.clone() {
        // Sessions have ended: let the writer finish their files before the process exits.
        let _ =
            tokio::task::spawn_blocking(move || recorder.shutdown(Duration::from_secs(10))).await;
    }
    stop_listening.cancel();
    flatten(server.await)
}

fn flatten(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    result.unwrap_or_else(|join| Err(std::io::Error::other(join)))
}

#[cfg(test)]
mod tests;
