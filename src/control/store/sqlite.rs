//! The embedded default store: one SQLite file holding the calls, the outbox and the
//! orphan callbacks.
//!
//! **Storage format** (`sqlite/schema.rs` has the DDL; `PRAGMA user_version` is its version):
//! - `calls`: one row per call, the [`CallRecord`] as JSON plus the columns that lists
//!   filter and sort on (`campaign_id`, `state`, `created_at` in microseconds) and
//!   `last_seq`, the seq of the call's newest event.
//! - `outbox`: one row per event per sink. `id INTEGER PRIMARY KEY AUTOINCREMENT`, so ids
//!   grow in the order events were stored and are never reused, not even after the newest
//!   row was acked and the file reopened. `status` is `pending` (waiting for `due_at`),
//!   `leased` (out for delivery until `lease_until`) or `dead`. An acked row is deleted.
//!   Indexes: `(sink, status, due_at)` finds due work, `(call_id, sink, id)` finds a
//!   call's earlier entries.
//! - `orphan_callbacks`: callbacks that matched no call, as JSON, for audit.
//!
//! **Invariants.** A call row and the outbox rows of its events are written in one
//! transaction; a claim is one `UPDATE … RETURNING` that leases, for each call, only its
//! earliest entry that is not dead, and only if it is due; entries are never deleted
//! except by an ack.
//!
//! **Crash behaviour.** The file uses the WAL journal with `synchronous = NORMAL`.
//! - The process dies (panic, kill, OOM) at any point: reopening the file shows every
//!   committed operation and nothing of the one that was running. Leases taken before the
//!   crash run out and their entries are claimed again (at-least-once; sinks dedupe by
//!   event id); nothing acked comes back, nothing unacked is lost.
//! - The machine loses power or the OS crashes: the file stays consistent, but the
//!   operations committed since the WAL was last synced to disk (at the latest
//!   checkpoint, by default every ~1000 pages, typically well under a second of work)
//!   may be rolled back, each one whole. A rolled-back state change loses its events with
//!   it (never one without the other) and the call shows its previous state until the
//!   next callback or reconcile moves it again; a rolled-back ack or claim means an event
//!   is delivered again. `synchronous = FULL` would close that window at the price of one
//!   fsync per write, which caps a typical disk at a few hundred writes per second.
//!
//! **Threads.** rusqlite blocks, so every operation runs on tokio's blocking pool
//! (`spawn_blocking`) and takes the one connection's `std::sync::Mutex` there; no lock is
//! held across an `.await` and no async worker thread ever waits on the database. If the
//! caller's future is dropped, the operation still runs to its end (commits or rolls back).
//! The [`Update`] closure runs inside the write transaction, under the lock. Methods need a
//! tokio runtime. Dropping the last clone closes the file (a final checkpoint) on the
//! dropping thread: do it at shutdown.

mod queries;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::clock::{SharedClock, SystemClock, micros, micros_after};
use super::{
    CallFilter, OrphanCallback, OutboxEntry, Page, SinkKind, Store, StoreError, Update, sink_set,
};
use crate::control::model::{CallEvent, CallRecord, EventType};

/// The SQLite [`Store`]. Cheap to clone (clones share the connection).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    conn: Mutex<Connection>,
    sinks: Vec<SinkKind>,
    clock: SharedClock,
    path: PathBuf,
}

/// Maps a rusqlite error to [`StoreError::Backend`], saying what was being done.
fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("sqlite {context}: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`, delivering to `sinks`, on the
    /// wall clock. Blocks while it opens and migrates the file: call it at startup (or
    /// from `spawn_blocking`).
    pub fn open(path: impl AsRef<Path>, sinks: &[SinkKind]) -> Result<Self, StoreError> {
        Self::open_with_clock(path, sinks, Arc::new(SystemClock))
    }

    /// Like [`SqliteStore::open`], reading the time from `clock`.
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        sinks: &[SinkKind],
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = schema::open(&path)?;
        Ok(Self {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                sinks: sink_set(sinks),
                clock,
                path,
            }),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The orphan callbacks recorded so far, oldest first.
    pub async fn orphan_callbacks(&self) -> Result<Vec<OrphanCallback>, StoreError> {
        self.run("orphan_callbacks", |conn, _| queries::orphans(conn))
            .await
    }

    /// Runs `op` on a blocking thread with the connection locked. A panic inside an
    /// earlier operation (an [`Update`] that panicked) rolled its transaction back while
    /// unwinding, so a poisoned lock guards a consistent connection and is taken over.
    async fn run<T, F>(&self, what: &'static str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Shared) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut conn = shared.conn.lock().unwrap_or_else(PoisonError::into_inner);
            op(&mut conn, &shared)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite {what}: store thread failed: {e}")))?
    }
}

impl Shared {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_call(
        &self,
        call: CallRecord,
        first: EventType,
    ) -> Result<CallEvent, StoreError> {
        self.run("create_call", move |conn, s| {
            queries::create_call(conn, &s.sinks, micros(s.now()), call, first)
        })
        .await
    }

    async fn get_call(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        let call_id = call_id.to_owned();
        self.run("get_call", move |conn, _| queries::get_call(conn, &call_id))
            .await
    }

    async fn list_calls(
        &self,
        filter: &CallFilter,
        page: &Page,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let (filter, page) = (filter.clone(), page.clone());
        self.run("list_calls", move |conn, _| {
            queries::list_calls(conn, &filter, &page)
        })
        .await
    }

    async fn update_call(
        &self,
        call_id: &str,
        update: Update,
    ) -> Result<Vec<CallEvent>, StoreError> {
        let call_id = call_id.to_owned();
        self.run("update_call", move |conn, s| {
            queries::update_call(conn, &s.sinks, s.now(), &call_id, update)
        })
        .await
    }

    async fn claim(
        &self,
        sink: SinkKind,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.run("claim", move |conn, s| {
            let now = micros(s.now());
            queries::claim(conn, sink, max, now, micros_after(now, lease))
        })
        .await
    }

    async fn ack(&self, sink: SinkKind, ids: &[u64]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.run("ack", move |conn, _| queries::ack(conn, sink, &ids))
            .await
    }

    async fn retry_later(
        &self,
        sink: SinkKind,
        id: u64,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.run("retry_later", move |conn, _| {
            queries::retry_later(conn, sink, id, micros(at), &error)
        })
        .await
    }

    async fn dead_letter(&self, sink: SinkKind, id: u64, error: &str) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.run("dead_letter", move |conn, _| {
            queries::dead_letter(conn, sink, id, &error)
        })
        .await
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.run("list_dead", move |conn, _| queries::list_dead(conn, limit))
            .await
    }

    async fn replay_dead(&self, sink: SinkKind, id: u64) -> Result<(), StoreError> {
        self.run("replay_dead", move |conn, s| {
            queries::replay_dead(conn, sink, id, micros(s.now()))
        })
        .await
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        self.run("pending", |conn, _| queries::pending(conn)).await
    }

    async fn record_orphan_callback(
        &self,
        kind: &str,
        fields: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (kind, fields) = (kind.to_owned(), fields.to_vec());
        self.run("record_orphan_callback", move |conn, s| {
            let orphan = OrphanCallback {
                kind,
                fields,
                received_at: s.now(),
            };
            queries::record_orphan(conn, &orphan)
        })
        .await
    }
}
