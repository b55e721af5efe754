//! The HTTP edge: the axum routes and how their errors map to responses, nothing else.
//!
//! [`app`] builds the router from an [`AppState`] so tests can call it without a socket.
//! The state is a plain struct of what the handlers reach; `crate::server` builds it,
//! serves the router and owns start-up and the shutdown order. Nothing here starts a
//! thread, a task that outlives its request, or a listener.

mod api;
mod openapi;
mod ops;
mod plan;
mod plivo;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::agent::{AgentKind, Agents};
use crate::audio::pipeline::Pipeline;
use crate::control::deliver::Deliverer;
use crate::control::plane::ControlPlane;
use crate::recording::writer::Recorder;
use crate::session::Sessions;
use crate::session::socket::{ConversationRecords, HangUpCall, SessionDeps, StreamStarted};
use crate::telephony::plivo::seen::SeenOnce;
use crate::telephony::plivo::signature::Verifier;

/// Bodies larger than this are refused (Plivo's forms are a few KiB).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach (built by `crate::server`).
pub struct AppState {
    /// The base URL Plivo reaches voxgate at, without a trailing `/`; `None` uses
    /// `http://{Host}`.
    pub public_url: Option<String>,
    /// Bearer tokens the `/v1` API accepts.
    pub api_tokens: Vec<String>,
    /// The DSP pipeline every call's audio goes through.
    pub pipeline: Arc<Pipeline>,
    /// Live calls.
    pub sessions: Arc<Sessions>,
    /// Records calls (the writer thread); `None` when `recording.enabled` is off.
    pub recorder: Option<Arc<Recorder>>,
    /// Told when a call's media starts; `None` without a control plane.
    pub on_stream_started: Option<Arc<dyn StreamStarted>>,
    /// Builds each call's agent.
    pub agents: Arc<Agents>,
    /// Hangs calls up through Plivo's REST API when voxgate's side ends them; `None`
    /// without a control plane with Plivo credentials.
    pub on_hang_up: Option<Arc<dyn HangUpCall>>,
    /// Keeps each call's conversation on its record; `None` without a control plane.
    pub records: Option<Arc<dyn ConversationRecords>>,
    /// Checks Plivo's signatures; `None` when they are not enforced.
    pub verifier: Option<Verifier>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Plivo callbacks seen, for idempotency.
    pub callbacks: SeenOnce,
    /// Signature nonces of WebSocket upgrades already used (a replay is refused).
    pub upgrade_nonces: SeenOnce,
    /// The agent of calls that choose none.
    pub default_agent: AgentKind,
    /// The control plane (`/v1`, call lifecycle); `None` when it is not running.
    pub control: Option<Arc<ControlPlane>>,
    /// Wakes event delivery; `None` without a control plane.
    pub deliverer: Option<Deliverer>,
}

impl AppState {
    /// Wakes event delivery (after a dead letter was replayed).
    pub fn wake_deliverer(&self) {
        if let Some(deliverer) = &self.deliverer {
            deliverer.notify();
        }
    }

    /// What a media session gets.
    fn session_deps(&self) -> SessionDeps {
        SessionDeps {
            pipeline: Arc::clone(&self.pipeline),
            sessions: Arc::clone(&self.sessions),
            config: *self.sessions.config(),
            on_stream_started: self.on_stream_started.clone(),
            recorder: self.recorder.clone(),
            agents: Arc::clone(&self.agents),
            on_hang_up: self.on_hang_up.clone(),
            records: self.records.clone(),
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

#[cfg(test)]
mod tests;
