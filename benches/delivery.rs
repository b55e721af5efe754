//! Throughput of durable delivery end to end: 1,000 call lifecycles (no audio) through the
//! real store, the real [`Deliverer`] and the real [`BackendSink`] to a backend on
//! loopback, as `voxgate serve` wires them.
//!
//! Each call goes create → ringing → answered → media_started → ended through the control
//! plane's own functions (five events); [`CONCURRENT`] calls are in progress at once. The
//! clock runs from the first create to the moment the last event was acknowledged by the
//! backend *and* acked in the store (the outbox is empty). The backend checks nothing and
//! answers 200 at once, so the figure is voxgate's cost: store writes, claims, acks, JSON,
//! HMAC and one HTTP request per event (per batch of a call's due events, when the sink
//! batches).
//!
//! `cargo bench --bench delivery` prints events/s per store, median of [`ROUNDS`] rounds,
//! each on a fresh store. Under `cargo test` (no `--bench`) it runs one small round, so CI
//! checks it still works. A store is one line in [`main`]: [`measure`] takes any
//! `Arc<dyn Store>`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use voxgate::config::{CliOverrides, Config};
use voxgate::control::deliver::{Deliverer, DelivererConfig};
use voxgate::control::lifecycle::Observation;
use voxgate::control::model::{CallRecord, Direction, EventType};
use voxgate::control::plane::ControlPlane;
use voxgate::control::sinks::{BackendSink, Sink};
use voxgate::control::store::{RedisStore, SinkKind, SqliteStore, Store};
use voxgate::ids::CallId;
use voxgate::retry::RetryPolicy;

const CALLS: usize = 1_000;
const EVENTS_PER_CALL: usize = 5;
/// Calls in progress at once.
const CONCURRENT: usize = 50;
const ROUNDS: usize = 5;
const SECRET: &str = "bench-secret";

/// A backend that counts the distinct event ids it acknowledged.
#[derive(Default)]
struct Counter {
    seen: Mutex<HashSet<String>>,
    requests: AtomicU64,
    target: usize,
    done: Notify,
}

async fn updates(State(counter): State<Arc<Counter>>, body: Bytes) -> StatusCode {
    let Ok(updates) = serde_json::from_slice::<Vec<serde_json::Value>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    counter.requests.fetch_add(1, Ordering::Relaxed);
    let mut seen = counter.seen.lock().unwrap();
    for update in updates {
        if let Some(id) = update["event_id"].as_str() {
            seen.insert(id.to_owned());
        }
    }
    if seen.len() >= counter.target {
        counter.done.notify_one();
    }
    StatusCode::OK
}

/// One round's figures.
struct Round {
    /// First create → last lifecycle stored.
    stored: Duration,
    /// First create → every event acknowledged by the backend and acked in the store.
    delivered: Duration,
    requests: u64,
}

/// One call's life through the control plane.
async fn one_call(plane: &ControlPlane, deliverer: &Deliverer, i: usize, run: &str) {
    let id = format!("bench-{run}-{i:05}");
    let uuid = format!("uuid-{run}-{i:05}");
    let mut record = CallRecord::new(&id, Direction::Outbound, "+14155550100", "+14155550199");
    record.campaign_id = Some("bench".into());
    plane
        .store()
        .create_call(record, EventType::Initiated)
        .await
        .expect("create");
    deliverer.notify();
    let status = |s: &str| Observation {
        status: Some(s.into()),
        call_uuid: Some(uuid.clone()),
        ..Observation::default()
    };
    plane.observe(&id, status("ringing")).await.expect("ring");
    plane
        .observe(&id, status("in-progress"))
        .await
        .expect("answer");
    plane
        .on_media_started(&CallId::parse(&id).expect("call id"), Some(uuid.clone()))
        .await
        .expect("media");
    let ended = Observation {
        duration_secs: Some(30),
        hangup_cause: Some("NORMAL_CLEARING".into()),
        ..status("completed")
    };
    plane.observe(&id, ended).await.expect("hangup");
}

/// Runs `calls` lifecycles through `store` to a fresh loopback backend.
async fn measure(store: Arc<dyn Store>, calls: usize) -> Round {
    let counter = Arc::new(Counter {
        target: calls * EVENTS_PER_CALL,
        ..Counter::default()
    });
    let app = axum::Router::new()
        .route("/api/calls/external-updates", post(updates))
        .with_state(Arc::clone(&counter));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let shutdown = CancellationToken::new();
    let sink: Arc<dyn Sink> =
        Arc::new(BackendSink::new(&url, SECRET, Duration::from_secs(10)).expect("sink"));
    let (deliverer, task) = Deliverer::spawn(
        Arc::clone(&store),
        vec![sink],
        RetryPolicy::default(),
        DelivererConfig::default(),
        shutdown.clone(),
    );
    let config = Config::load(None, &Default::default(), CliOverrides::default()).unwrap();
    let wake = {
        let deliverer = deliverer.clone();
        Arc::new(move || deliverer.notify())
    };
    let plane = Arc::new(ControlPlane::new(
        Arc::clone(&store),
        None,
        config.control,
        wake,
    ));
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENT.min(calls))
        .map(|w| {
            let (plane, deliverer, run) = (Arc::clone(&plane), deliverer.clone(), run.clone());
            tokio::spawn(async move {
                for i in (w..calls).step_by(CONCURRENT) {
                    one_call(&plane, &deliverer, i, &run).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("call task");
    }
    let stored = started.elapsed();
    let all_seen = counter.done.notified();
    if counter.seen.lock().unwrap().len() < counter.target {
        tokio::time::timeout(Duration::from_secs(120), all_seen)
            .await
            .expect("every event reaches the backend within 2 min");
    }
    while store.pending().await.expect("pending") > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let delivered = started.elapsed();
    shutdown.cancel();
    task.await.expect("deliverer");
    server.abort();
    Round {
        stored,
        delivered,
        requests: counter.requests.load(Ordering::Relaxed),
    }
}

/// A fresh SQLite file, removed (with its WAL) on drop.
struct SqliteFile(PathBuf);

impl SqliteFile {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!(
            "voxgate-bench-delivery-{}.db",
            uuid::Uuid::new_v4().simple()
        )))
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.0.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Runs `rounds` rounds of `calls` lifecycles on stores made by `open`; prints the median.
fn report(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    rounds: usize,
    calls: usize,
    mut open: impl FnMut() -> Arc<dyn Store>,
) {
    let events = (calls * EVENTS_PER_CALL) as f64;
    let mut results: Vec<Round> = (0..rounds)
        .map(|_| runtime.block_on(measure(open(), calls)))
        .collect();
    results.sort_by_key(|r| r.delivered);
    for r in &results {
        println!(
            "  {name}: stored in {:.0} ms, delivered in {:.0} ms ({} requests)",
            r.stored.as_secs_f64() * 1e3,
            r.delivered.as_secs_f64() * 1e3,
            r.requests
        );
    }
    let median = &results[results.len() / 2];
    println!(
        "delivery {name}: {calls} call lifecycles, {events} events → backend: median {:.0} ms \
         = {:.0} events/s (best {:.0}, worst {:.0}); {:.1} events per request",
        median.delivered.as_secs_f64() * 1e3,
        events / median.delivered.as_secs_f64(),
        events / results[0].delivered.as_secs_f64(),
        events / results[results.len() - 1].delivered.as_secs_f64(),
        events / median.requests.max(1) as f64,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this as a test.
    let bench = std::env::args().any(|a| a == "--bench");
    let (rounds, calls) = if bench { (ROUNDS, CALLS) } else { (1, 20) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut files = Vec::new();
    report(&runtime, "sqlite", rounds, calls, || {
        let file = SqliteFile::new();
        let store = SqliteStore::open(&file.0, &[SinkKind::Backend]).expect("open");
        files.push(file);
        Arc::new(store)
    });
    // The Redis store at VOXGATE_TEST_REDIS_URL (default the local one), a fresh name per
    // round, deleted afterwards.
    let url = std::env::var("VOXGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut names = Vec::new();
    report(&runtime, "redis", rounds, calls, || {
        let name = format!(
            "vgbench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let store = runtime
            .block_on(RedisStore::connect(&url, &name, &[SinkKind::Backend]))
            .expect("connect to Redis (is redis-server running?)");
        names.push(name);
        Arc::new(store)
    });
    if let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
        for name in names {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{{{name}}}:*"))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }
}
