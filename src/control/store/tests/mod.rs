//! Tests of the store contract: every documented behaviour on every store
//! (`contract`), what only the SQLite file owes (`sqlite`: reopen, crash image, schema,
//! threads), what only the Redis store owes (`redis`: several instances), and random
//! operation sequences against the model (`props`).
//!
//! The Redis tests use the real server at `VOXGATE_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), each under a store name of its own that is deleted after.

mod contract;
mod props;
mod redis;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::{ManualClock, MemoryStore, RedisStore, SinkKind, SqliteStore, Store, Update};
use crate::control::model::{CallRecord, CallState, Direction, EventType, Transition};

/// Both sinks, as `voxgate serve` configures them.
const BOTH: [SinkKind; 2] = [SinkKind::Queue, SinkKind::Backend];

/// A scratch directory removed on drop (no `tempfile` dependency for one helper).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "voxgate-store-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies the database file `db` and its WAL as they are on disk right now, while the
/// store keeps them open: the image a `kill -9` leaves (SQLite rebuilds the shared-memory
/// index on open, as after a real crash).
fn crash_image(db: &Path, into: &Path) {
    std::fs::copy(db, into).expect("copy db");
    let wal = db.with_extension("db-wal");
    if wal.exists() {
        std::fs::copy(&wal, into.with_extension("db-wal")).expect("copy wal");
    }
}

/// The tests' epoch: every clock starts here.
fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("valid time") // 2026-01-01T00:00:00Z
}

/// A fresh outbound call created at the clock's time.
fn call(id: &str, clock: &ManualClock) -> CallRecord {
    let mut record = CallRecord::new(id, Direction::Outbound, "+15550001", "+15550002");
    record.created_at = super::Clock::now(clock);
    record.updated_at = record.created_at;
    record
}

/// The update a callback makes: moves the state through the state machine and names the
/// event the move reports.
fn to_state(next: CallState) -> Update {
    Box::new(move |record| match record.state.transition(next)? {
        Transition::Changed => {
            record.state = next;
            Ok(EventType::for_state(next).into_iter().collect())
        }
        Transition::Unchanged => Ok(Vec::new()),
    })
}

/// A careless update that sets the state without asking the state machine: the store
/// must refuse what the machine forbids.
fn force_state(next: CallState) -> Update {
    Box::new(move |record| {
        record.state = next;
        Ok(EventType::for_state(next).into_iter().collect())
    })
}

/// The Redis the tests use.
fn redis_url() -> String {
    std::env::var("VOXGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A store name of its own in the test Redis; its keys are deleted on drop.
struct RedisScratch(String);

impl RedisScratch {
    fn new(tag: &str) -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("vgtest-{tag}-{}", &unique[..12]))
    }

    async fn open(&self, sinks: &[SinkKind], clock: &ManualClock) -> RedisStore {
        RedisStore::connect_with_clock(&redis_url(), &self.0, sinks, Arc::new(clock.clone()))
            .await
            .expect("connect to the test Redis (is redis-server running?)")
    }
}

impl Drop for RedisScratch {
    fn drop(&mut self) {
        let Ok(client) = ::redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{{{}}}:*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: ::redis::RedisResult<()> = ::redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A store under test, its clock, and what holds its data (a directory, a Redis name).
struct Fixture {
    store: Box<dyn Store>,
    clock: ManualClock,
    _dir: Option<TempDir>,
    _redis: Option<RedisScratch>,
}

impl Fixture {
    fn memory(sinks: &[SinkKind]) -> Self {
        let clock = ManualClock::new(start());
        Self {
            store: Box::new(MemoryStore::with_clock(sinks, Arc::new(clock.clone()))),
            clock,
            _dir: None,
            _redis: None,
        }
    }

    async fn redis(sinks: &[SinkKind]) -> Self {
        let clock = ManualClock::new(start());
        let scratch = RedisScratch::new("contract");
        let store = scratch.open(sinks, &clock).await;
        Self {
            store: Box::new(store),
            clock,
            _dir: None,
            _redis: Some(scratch),
        }
    }

    fn sqlite(sinks: &[SinkKind]) -> Self {
        let clock = ManualClock::new(start());
        let dir = TempDir::new("contract");
        let store = SqliteStore::open_with_clock(
            dir.path().join("voxgate.db"),
            sinks,
            Arc::new(clock.clone()),
        )
        .expect("open sqlite store");
        Self {
            store: Box::new(store),
            clock,
            _dir: Some(dir),
            _redis: None,
        }
    }

    fn advance_secs(&self, secs: u64) {
        self.clock.advance(std::time::Duration::from_secs(secs));
    }

    fn now(&self) -> DateTime<Utc> {
        super::Clock::now(&self.clock)
    }
}
