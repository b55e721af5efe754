//! The SQLite file's schema, its settings and its migrations.
//!
//! `PRAGMA user_version` holds the schema version. Opening a file creates the schema
//! (version 0 → 1) in one transaction, accepts the current version, and refuses a newer
//! one, so an older voxgate never writes to a file it does not understand. A future
//! migration adds an arm that moves version N to N+1, also in one transaction.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::db;
use crate::control::store::StoreError;

/// The schema version this code writes.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Times are microseconds since the Unix epoch (`clock::micros`); JSON is serde's form of
/// the model types. `id` is `AUTOINCREMENT` so ids are never reused, even after the
/// newest entry was acked (deleted) and the file reopened.
const SCHEMA_V1: &str = "
CREATE TABLE calls (
    call_id     TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    record      TEXT NOT NULL
);
CREATE INDEX calls_by_created  ON calls (created_at, call_id);
CREATE INDEX calls_by_campaign ON calls (campaign_id, created_at, call_id);
CREATE INDEX calls_by_state    ON calls (state, created_at, call_id);

CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id     TEXT NOT NULL,
    sink        TEXT NOT NULL CHECK (sink IN ('queue', 'backend')),
    seq         INTEGER NOT NULL,
    event       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'dead')),
    due_at      INTEGER NOT NULL,
    lease_until INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX outbox_due  ON outbox (sink, status, due_at);
CREATE INDEX outbox_call ON outbox (call_id, sink, id);

CREATE TABLE orphan_callbacks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    kind        TEXT NOT NULL,
    fields      TEXT NOT NULL
);
";

/// Opens (creating if needed) the file at `path`: WAL journal, `synchronous = NORMAL`,
/// schema at [`SCHEMA_VERSION`].
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path).map_err(db("open"))?;
    // Another process (an operator's sqlite3 shell) may hold the lock for a moment.
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(db("set busy_timeout"))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(db("set journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "sqlite {}: cannot use WAL journal (got {mode}); the store needs a file",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db("set synchronous"))?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("begin migration"))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db("read user_version"))?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA_V1).map_err(db("create schema"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(db("set user_version"))?;
        }
        SCHEMA_VERSION => {}
        other => {
            return Err(StoreError::Backend(format!(
                "sqlite {}: schema version {other}, this voxgate knows {SCHEMA_VERSION}",
                path.display()
            )));
        }
    }
    tx.commit().map_err(db("commit migration"))
}
