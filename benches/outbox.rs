//! End-to-end throughput of the embedded outbox: SQLite store, 1,000 calls, each created
//! and moved through four updates (ringing, answered, ended, recording ready: five
//! events), then every entry claimed and acked per sink in batches, as a deliverer does.
//! Measured with 1 sink and with 2 sinks, on a fresh file per iteration (opening it is not
//! timed), on a two-worker tokio runtime like `voxgate serve`'s.
//!
//! Two shapes: `sequential` (one task writes everything, then deliverers drain) and
//! `concurrent` (16 tasks write their calls while one deliverer per sink claims and acks
//! as entries appear). Criterion reports elements/s where an element is one event;
//! each sink receives every event, so deliveries = events × sinks. A summary line per case
//! prints events/s and deliveries/s from one extra run.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use tokio::runtime::Runtime;
use voxgate::control::model::{CallRecord, CallState, Direction, EventType};
use voxgate::control::store::{SinkKind, SqliteStore, Store};

const CALLS: usize = 1_000;
const EVENTS_PER_CALL: usize = 5;
const BATCH: usize = 256;
const LEASE: Duration = Duration::from_secs(30);
const WRITERS: usize = 16;

/// A fresh store file, removed (with its WAL) on drop.
struct Scratch {
    path: PathBuf,
    store: SqliteStore,
}

impl Scratch {
    fn new(sinks: &[SinkKind]) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "voxgate-bench-outbox-{}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let store = SqliteStore::open(&path, sinks).expect("open store");
        Self { path, store }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// One call's life: created, then four updates; five events.
async fn one_call(store: &SqliteStore, i: usize) {
    let id = format!("bench-{i:05}");
    let mut record = CallRecord::new(&id, Direction::Outbound, "+15550001", "+15550002");
    record.campaign_id = Some("bench".into());
    store
        .create_call(record, EventType::Initiated)
        .await
        .expect("create");
    for (state, event) in [
        (CallState::Ringing, EventType::Ringing),
        (CallState::InProgress, EventType::Answered),
        (CallState::Completed, EventType::Ended),
    ] {
        store
            .update_call(
                &id,
                Box::new(move |call| {
                    call.state.transition(state)?;
                    call.state = state;
                    Ok(vec![event])
                }),
            )
            .await
            .expect("update");
    }
    store
        .update_call(
            &id,
            Box::new(|call| {
                call.recording_url = Some(format!("file:///recordings/{}.wav", call.call_id));
                Ok(vec![EventType::RecordingReady])
            }),
        )
        .await
        .expect("update");
}

/// Claims and acks what is due for `sink`; returns how many entries it delivered.
async fn deliver_once(store: &SqliteStore, sink: SinkKind) -> usize {
    let batch = store.claim(sink, BATCH, LEASE).await.expect("claim");
    let ids: Vec<u64> = batch.iter().map(|entry| black_box(entry.id)).collect();
    store.ack(sink, &ids).await.expect("ack");
    ids.len()
}

async fn sequential(store: SqliteStore, sinks: &[SinkKind]) -> usize {
    for i in 0..CALLS {
        one_call(&store, i).await;
    }
    let mut delivered = 0;
    for &sink in sinks {
        loop {
            let n = deliver_once(&store, sink).await;
            if n == 0 {
                break;
            }
            delivered += n;
        }
    }
    delivered
}

async fn concurrent(store: SqliteStore, sinks: &[SinkKind]) -> usize {
    let writing = Arc::new(AtomicBool::new(true));
    let deliverers: Vec<_> = sinks
        .iter()
        .map(|&sink| {
            let (store, writing) = (store.clone(), Arc::clone(&writing));
            tokio::spawn(async move {
                let mut delivered = 0;
                loop {
                    let still_writing = writing.load(Ordering::Acquire);
                    let n = deliver_once(&store, sink).await;
                    delivered += n;
                    if n == 0 {
                        if !still_writing {
                            return delivered;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (w..CALLS).step_by(WRITERS) {
                    one_call(&store, i).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    writing.store(false, Ordering::Release);
    let mut delivered = 0;
    for deliverer in deliverers {
        delivered += deliverer.await.expect("deliverer");
    }
    delivered
}

/// Runs one round on a fresh file; returns the time it took.
fn round(runtime: &Runtime, sinks: &[SinkKind], shape: &str) -> Duration {
    let scratch = Scratch::new(sinks);
    let store = scratch.store.clone();
    let started = Instant::now();
    let delivered = runtime.block_on(async {
        match shape {
            "sequential" => sequential(store, sinks).await,
            _ => concurrent(store, sinks).await,
        }
    });
    let elapsed = started.elapsed();
    assert_eq!(delivered, CALLS * EVENTS_PER_CALL * sinks.len());
    elapsed
}

fn outbox(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let events = (CALLS * EVENTS_PER_CALL) as u64;
    let mut group = c.benchmark_group("outbox_sqlite_1000_calls");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(events));
    for shape in ["sequential", "concurrent"] {
        for sinks in [
            &[SinkKind::Backend][..],
            &[SinkKind::Queue, SinkKind::Backend],
        ] {
            let took = round(&runtime, sinks, shape);
            let secs = took.as_secs_f64();
            println!(
                "outbox sqlite {shape}, {} sink(s): {events} events, {} deliveries in {:.0} ms \
                 = {:.0} events/s, {:.0} deliveries/s",
                sinks.len(),
                events * sinks.len() as u64,
                secs * 1e3,
                events as f64 / secs,
                (events * sinks.len() as u64) as f64 / secs,
            );
            let id = BenchmarkId::new(shape, format!("{}_sinks", sinks.len()));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| round(&runtime, sinks, shape)).sum());
            });
        }
    }
    group.finish();
}

criterion_group!(benches, outbox);
criterion_main!(benches);
