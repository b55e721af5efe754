//! Operations routes: `/health` (the process is up), `/ready` (it takes new calls),
//! `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use crate::telemetry;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    dsp_workers: usize,
    calls: usize,
    streaming: usize,
}

pub(super) async fn health(State(state): State<Arc<AppState>>) -> Response {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        dsp_workers: state.pipeline.workers(),
        calls: state.sessions.active(),
        streaming: state.sessions.streaming(),
    })
    .into_response()
}

pub(super) async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.sessions.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "reason": "draining"})),
        )
            .into_response()
    } else {
        Json(serde_json::json!({"ready": true})).into_response()
    }
}

pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let stats = state.pipeline.stats();
    metrics::counter!(telemetry::PIPELINE_FRAMES).absolute(stats.frames_processed);
    metrics::counter!(telemetry::FRAMES_DROPPED, "stage" => "pipeline_out")
        .absolute(stats.frames_dropped);
    metrics::counter!(telemetry::FRAMES_DROPPED, "stage" => "malformed")
        .absolute(stats.frames_malformed);
    metrics::gauge!(telemetry::PIPELINE_QUEUE_DEPTH).set(stats.queued_frames as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
