//! The HTTP edge: the axum router and the server loop.
//!
//! [`app`] builds the router from shared state so tests can call it without a socket;
//! [`run`] serves it on a listener until the shutdown token is cancelled. Today it answers
//! `/health`; the Plivo routes join it as they are built.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audio::pipeline::Pipeline;
use crate::config::Config;

/// What every handler can reach.
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// The DSP pipeline every call's audio goes through.
    pub pipeline: Pipeline,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    dsp_workers: usize,
    active_calls: usize,
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        dsp_workers: state.pipeline.workers(),
        active_calls: state
            .pipeline
            .stats()
            .calls
            .load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// The router, without a socket.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::pipeline::PipelineConfig;
    use crate::config::{CliOverrides, Config};

    #[tokio::test]
    async fn health_answers_over_a_real_socket() {
        let config = Config::load(None, &Default::default(), CliOverrides::default()).unwrap();
        let pipeline = Pipeline::start(PipelineConfig {
            workers: 1,
            ..config.pipeline
        })
        .unwrap();
        let state = Arc::new(AppState { config, pipeline });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(run(listener, state, shutdown.clone()));

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        socket.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(
            reply.contains(r#""status":"ok""#) && reply.contains(r#""dsp_workers":1"#),
            "{reply}"
        );

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
