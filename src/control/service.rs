//! Starting the control plane from the configuration: the store, the sinks, the Plivo
//! client and the deliverer, wired together.
//!
//! Embedded default: a SQLite file in the data directory; with a Redis URL (or
//! `store = "redis"`) the shared Redis store instead, so several instances share calls and
//! outbox. The queue sink runs when a Redis URL is set, the backend sink when a backend URL is set; with neither, events stay in
//! the outbox (nothing is lost, nothing is sent) and start-up says so.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{ControlConfig, StoreMode};
use super::deliver::{Deliverer, DelivererConfig};
use super::plane::ControlPlane;
use super::reconcile::Reconciler;
use super::sinks::{BackendSink, QueueSink, Sink};
use super::store::{RedisStore, SinkKind, SqliteStore, Store};
use crate::retry::RetryPolicy;
use crate::telephony::plivo::config::PlivoConfig;
use crate::telephony::plivo::rest::{PlivoApi, PlivoRest, RestConfig};

/// A shared Plivo REST client.
type Client = Arc<dyn PlivoApi>;

/// How long the backend sink waits for one request.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the control plane could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("opening the call store: {0}")]
    Store(String),
    /// A sink could not be built.
    #[error("setting up the {0} sink: {1}")]
    Sink(&'static str, String),
    /// The Plivo client could not be built.
    #[error("setting up the Plivo client: {0}")]
    Plivo(String),
}

/// The running control plane.
pub struct ControlService {
    /// The front the API and callbacks use.
    pub plane: Arc<ControlPlane>,
    /// Wakes delivery.
    pub deliverer: Deliverer,
    /// Ends when delivery has stopped (after `shutdown`).
    pub task: JoinHandle<()>,
    /// The reconcile loop (with a Plivo account), until `shutdown`.
    pub reconcile: Option<JoinHandle<()>>,
}

impl ControlService {
    /// Opens the store (SQLite under `data_dir`, or Redis), builds the sinks and the Plivo
    /// client (when `account` has an auth id and token), and starts delivery until `shutdown`.
    pub async fn start(
        control: &ControlConfig,
        account: &PlivoConfig,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        if let Some(url) = &control.redis_url {
            let sink = QueueSink::new(url, control.queue_stream.clone())
                .map_err(|e| StartError::Sink("queue", e.to_string()))?;
            sinks.push(Arc::new(sink));
        }
        if let Some(url) = &control.backend_url {
            let sink = BackendSink::new(url, control.backend_secret.as_bytes(), BACKEND_TIMEOUT)
                .map_err(|e| StartError::Sink("backend", e.to_string()))?;
            sinks.push(Arc::new(sink));
        }
        if sinks.is_empty() {
            warn!(
                "no redis_url and no backend_url: call events are kept in the outbox but sent nowhere"
            );
        }
        let kinds: Vec<SinkKind> = sinks.iter().map(|s| s.kind()).collect();
        let (store, where_): (Arc<dyn Store>, String) = match (control.store, &control.redis_url) {
            (StoreMode::Redis, Some(url)) => {
                let store = RedisStore::connect(url, &control.redis_prefix, &kinds)
                    .await
                    .map_err(|e| StartError::Store(e.to_string()))?;
                if !store.persistence().await.unwrap_or(true) {
                    warn!(
                        "Redis persists nothing (no AOF, no snapshots): a Redis restart would lose \
                         the outbox; turn on appendonly for durable delivery"
                    );
                }
                let where_ = format!("redis {}* (consumer {})", store.prefix(), store.consumer());
                (Arc::new(store), where_)
            }
            _ => {
                let path = data_dir.join("voxgate.db");
                let store = SqliteStore::open(&path, &kinds)
                    .map_err(|e| StartError::Store(format!("{}: {e}", path.display())))?;
                (Arc::new(store), path.display().to_string())
            }
        };
        // Two clients: calls and hangups with the defaults, reconcile with its own
        // request timeout and retries.
        let (plivo, reconcile_plivo): (Option<Client>, Option<Client>) =
            match (&account.auth_id, account.auth_tokens.first()) {
                (Some(id), Some(token)) => {
                    let mut rest_config = RestConfig::new(id.clone(), token.clone());
                    rest_config.base_url = account.api_url.clone();
                    let mut reconcile_config = rest_config.clone();
                    reconcile_config.request_timeout = control.reconcile.request_timeout;
                    reconcile_config.retry = reconcile_config
                        .retry
                        .with_retries(control.reconcile.retries);
                    let rest = PlivoRest::new(rest_config)
                        .map_err(|e| StartError::Plivo(e.to_string()))?;
                    let reconcile = PlivoRest::new(reconcile_config)
                        .map_err(|e| StartError::Plivo(e.to_string()))?;
                    (Some(Arc::new(rest)), Some(Arc::new(reconcile)))
                }
                _ => {
                    info!("no Plivo auth id/token: outbound calls and reconcile are off");
                    (None, None)
                }
            };
        let policy = RetryPolicy {
            max_age: Some(control.delivery_max_age),
            cap: control.delivery_retry_cap,
            ..RetryPolicy::default()
        };
        let (deliverer, task) = Deliverer::spawn(
            Arc::clone(&store),
            sinks,
            policy,
            DelivererConfig::default(),
            shutdown.clone(),
        );
        let wake = {
            let deliverer = deliverer.clone();
            Arc::new(move || deliverer.notify())
        };
        let plane = Arc::new(ControlPlane::new(
            Arc::clone(&store),
            plivo,
            control.clone(),
            wake,
        ));
        let reconcile = reconcile_plivo.map(|plivo| {
            Reconciler::spawn(
                Arc::clone(&plane),
                store,
                plivo,
                control.reconcile,
                shutdown,
            )
        });
        info!(store = %where_, sinks = ?kinds, "control plane started");
        Ok(Self {
            plane,
            deliverer,
            task,
            reconcile,
        })
    }
}
