//! What only the SQLite file owes: everything survives a restart and a crash image, ids
//! are never reused, the schema is versioned, and many tasks can share the store.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::*;
use crate::control::store::StoreError;

const LEASE: Duration = Duration::from_secs(30);

fn open(path: &Path, clock: &ManualClock) -> SqliteStore {
    SqliteStore::open_with_clock(path, &BOTH, Arc::new(clock.clone())).expect("open store")
}

/// Calls, dead letters and the pending count: the durable state, compared across a
/// restart.
async fn durable_state(store: &SqliteStore) -> String {
    let calls = store
        .list_calls(
            &Default::default(),
            &crate::control::store::Page {
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    let dead = store.list_dead(100).await.unwrap();
    let pending = store.pending().await.unwrap();
    format!("{calls:?}\n{dead:?}\n{pending}")
}

#[tokio::test]
async fn reopen_keeps_everything_and_never_reuses_ids() {
    let dir = TempDir::new("reopen");
    let path = dir.path().join("voxgate.db");
    let clock = ManualClock::new(start());
    let store = open(&path, &clock);
    for id in ["a", "b"] {
        store
            .create_call(call(id, &clock), EventType::Initiated)
            .await
            .unwrap();
        store
            .update_call(id, to_state(CallState::Ringing))
            .await
            .unwrap();
    }
    let q = SinkKind::Queue;
    let leased = store.claim(q, 1, LEASE).await.unwrap(); // a:1, leased across the restart
    let b = store.claim(q, 10, LEASE).await.unwrap(); // b:1
    store.dead_letter(q, b[0].id, "400").await.unwrap();
    let b2 = store.claim(q, 10, LEASE).await.unwrap(); // b:2, the newest entry
    store.ack(q, &[b2[0].id]).await.unwrap();
    store
        .record_orphan_callback("hangup", &[("CallUUID".into(), "x".into())])
        .await
        .unwrap();
    let before = durable_state(&store).await;
    let orphans = store.orphan_callbacks().await.unwrap();
    drop(store);

    let store = open(&path, &clock);
    assert_eq!(durable_state(&store).await, before);
    assert_eq!(store.orphan_callbacks().await.unwrap(), orphans);
    assert!(
        store.claim(q, 10, LEASE).await.unwrap().is_empty(),
        "a:1 is still leased; b:1 is dead"
    );
    clock.advance(LEASE);
    let again = store.claim(q, 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (leased[0].id, 2));
    store
        .create_call(call("c", &clock), EventType::Initiated)
        .await
        .unwrap();
    let c = store.claim(q, 10, LEASE).await.unwrap();
    assert_eq!(c[0].event.event_id, "c:1");
    assert!(
        c[0].id > b2[0].id,
        "the acked newest id is not handed out again"
    );
}

#[tokio::test]
async fn a_crash_image_shows_every_committed_change() {
    let dir = TempDir::new("crash");
    let path = dir.path().join("voxgate.db");
    let clock = ManualClock::new(start());
    let store = open(&path, &clock);
    for i in 0..20 {
        let id = format!("c{i}");
        store
            .create_call(call(&id, &clock), EventType::Initiated)
            .await
            .unwrap();
        store
            .update_call(&id, to_state(CallState::InProgress))
            .await
            .unwrap();
    }
    let claimed = store.claim(SinkKind::Backend, 5, LEASE).await.unwrap();
    let acked: Vec<u64> = claimed.iter().map(|e| e.id).collect();
    store.ack(SinkKind::Backend, &acked).await.unwrap();
    let wal = path.with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0,
        "the image must include an unmerged WAL"
    );
    let image = dir.path().join("image.db");
    crash_image(&path, &image);
    let before = durable_state(&store).await;

    let recovered = open(&image, &clock);
    assert_eq!(durable_state(&recovered).await, before);
    assert_eq!(recovered.pending().await.unwrap(), 80 - 5);
}

#[tokio::test]
async fn the_file_is_wal_and_versioned_and_newer_schemas_are_refused() {
    let dir = TempDir::new("schema");
    let path = dir.path().join("voxgate.db");
    let clock = ManualClock::new(start());
    drop(open(&path, &clock));
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1);
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    match SqliteStore::open(&path, &BOTH) {
        Err(StoreError::Backend(message)) => assert!(message.contains("99"), "{message}"),
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_panicking_update_rolls_back_and_the_store_goes_on() {
    let dir = TempDir::new("panic");
    let clock = ManualClock::new(start());
    let store = open(&dir.path().join("voxgate.db"), &clock);
    store
        .create_call(call("c1", &clock), EventType::Initiated)
        .await
        .unwrap();
    let result = store
        .update_call(
            "c1",
            Box::new(|record| {
                record.state = CallState::Ringing;
                panic!("bug in an update");
            }),
        )
        .await;
    assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
    let stored = store.get_call("c1").await.unwrap().unwrap();
    assert_eq!(stored.state, CallState::Initiated);
    let events = store
        .update_call("c1", to_state(CallState::Ringing))
        .await
        .unwrap();
    assert_eq!(events[0].seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_store() {
    let dir = TempDir::new("tasks");
    let store = SqliteStore::open(dir.path().join("voxgate.db"), &[SinkKind::Queue]).unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let id = format!("t{t}-{i}");
                    let record = CallRecord::new(&id, Direction::Inbound, "+1", "+2");
                    store
                        .create_call(record, EventType::Initiated)
                        .await
                        .unwrap();
                    store
                        .update_call(&id, to_state(CallState::Ringing))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.pending().await.unwrap(), 400);
    let mut delivered = 0;
    loop {
        let batch = store.claim(SinkKind::Queue, 64, LEASE).await.unwrap();
        if batch.is_empty() {
            break;
        }
        delivered += batch.len();
        let ids: Vec<u64> = batch.iter().map(|e| e.id).collect();
        store.ack(SinkKind::Queue, &ids).await.unwrap();
    }
    assert_eq!(delivered, 400);
    assert_eq!(store.pending().await.unwrap(), 0);
}
