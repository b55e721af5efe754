//! The SQLite store's statements: plain blocking functions over one connection, called
//! by `SqliteStore` on a blocking thread with the connection's lock held.
//!
//! Every write that must be atomic runs in one `BEGIN IMMEDIATE` transaction (dropping
//! the transaction on an error path rolls it back); single statements are atomic by
//! themselves. Statements are prepared once per connection (`prepare_cached`).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::de::DeserializeOwned;

use super::db;
use crate::control::model::{CallEvent, CallRecord, EventType};
use crate::control::store::clock::micros;
use crate::control::store::{
    CallFilter, MAX_PAGE_LIMIT, OrphanCallback, OutboxEntry, Page, SinkKind, StoreError, Update,
    apply_update, first_event,
};

/// Clamps a count or id into SQLite's integer range.
fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

fn decode<T: DeserializeOwned>(what: impl std::fmt::Display, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("sqlite: corrupt {what}: {e}")))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("sqlite: cannot encode {what}: {e}")))
}

/// The stored record and last event seq of `call_id`.
fn read_call(conn: &Connection, call_id: &str) -> Result<Option<(CallRecord, u64)>, StoreError> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT record, last_seq FROM calls WHERE call_id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([call_id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(db("read call"))?;
    row.map(|(json, last_seq)| {
        let record = decode(format_args!("call {call_id}"), &json)?;
        Ok((record, u64::try_from(last_seq).unwrap_or(0)))
    })
    .transpose()
}

/// Writes `record` (insert or replace) with its indexed columns.
fn write_call(conn: &Connection, record: &CallRecord, last_seq: u64) -> Result<(), StoreError> {
    let json = encode("call", record)?;
    conn.prepare_cached(
        "INSERT INTO calls (call_id, campaign_id, state, created_at, last_seq, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (call_id) DO UPDATE SET campaign_id = ?2, state = ?3, created_at = ?4,
             last_seq = ?5, record = ?6",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            record.call_id,
            record.campaign_id,
            record.state.as_str(),
            micros(record.created_at),
            int(last_seq),
            json
        ])
    })
    .map_err(db("write call"))?;
    Ok(())
}

/// One outbox entry per sink for each event, due at `now`.
fn enqueue(
    conn: &Connection,
    sinks: &[SinkKind],
    events: &[CallEvent],
    now: i64,
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO outbox (call_id, sink, seq, event, status, due_at, attempts)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, 0)",
        )
        .map_err(db("prepare enqueue"))?;
    for event in events {
        let json = encode("event", event)?;
        for sink in sinks {
            stmt.execute(params![
                event.call_id,
                sink.as_str(),
                int(event.seq),
                json,
                now
            ])
            .map_err(db("enqueue"))?;
        }
    }
    Ok(())
}

pub(super) fn create_call(
    conn: &mut Connection,
    sinks: &[SinkKind],
    now: i64,
    call: CallRecord,
    first: EventType,
) -> Result<CallEvent, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("begin create_call"))?;
    if let Some((existing, _)) = read_call(&tx, &call.call_id)? {
        return Err(StoreError::AlreadyExists(Box::new(existing)));
    }
    let event = first_event(&call, first);
    write_call(&tx, &call, 1)?;
    enqueue(&tx, sinks, std::slice::from_ref(&event), now)?;
    tx.commit().map_err(db("commit create_call"))?;
    Ok(event)
}

pub(super) fn get_call(conn: &Connection, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
    Ok(read_call(conn, call_id)?.map(|(record, _)| record))
}

pub(super) fn list_calls(
    conn: &Connection,
    filter: &CallFilter,
    page: &Page,
) -> Result<Vec<CallRecord>, StoreError> {
    let mut sql = String::from("SELECT record FROM calls WHERE 1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(campaign) = &filter.campaign_id {
        sql.push_str(" AND campaign_id = ?");
        args.push(Value::Text(campaign.clone()));
    }
    if let Some(state) = filter.state {
        sql.push_str(" AND state = ?");
        args.push(Value::Text(state.as_str().to_owned()));
    }
    if let Some(after) = &page.after {
        let created: Option<i64> = conn
            .prepare_cached("SELECT created_at FROM calls WHERE call_id = ?1")
            .and_then(|mut stmt| stmt.query_row([after], |row| row.get(0)).optional())
            .map_err(db("read cursor"))?;
        let created = created.ok_or_else(|| StoreError::NotFound(after.clone()))?;
        sql.push_str(" AND (created_at, call_id) > (?, ?)");
        args.push(Value::Integer(created));
        args.push(Value::Text(after.clone()));
    }
    sql.push_str(" ORDER BY created_at, call_id LIMIT ?");
    args.push(Value::Integer(int(page.limit.min(MAX_PAGE_LIMIT))));
    let rows: Vec<String> = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params_from_iter(args), |row| row.get(0))?
                .collect()
        })
        .map_err(db("list calls"))?;
    rows.iter().map(|json| decode("call", json)).collect()
}

pub(super) fn update_call(
    conn: &mut Connection,
    sinks: &[SinkKind],
    now: chrono::DateTime<chrono::Utc>,
    call_id: &str,
    update: Update,
) -> Result<Vec<CallEvent>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("begin update_call"))?;
    let (current, last_seq) =
        read_call(&tx, call_id)?.ok_or_else(|| StoreError::NotFound(call_id.to_owned()))?;
    let Some((record, events)) = apply_update(&current, last_seq, update, now)? else {
        return Ok(Vec::new());
    };
    write_call(&tx, &record, last_seq + events.len() as u64)?;
    enqueue(&tx, sinks, &events, micros(now))?;
    tx.commit().map_err(db("commit update_call"))?;
    Ok(events)
}

/// One statement: picks the due entries that are the earliest undone entry of their call
/// for this sink (the `NOT EXISTS`), oldest first, and leases them. The `IN (…)` subquery
/// is not correlated with the outer `UPDATE`, so SQLite evaluates it once, before any row
/// changes. `RETURNING` has no order: the caller sorts.
///
/// Due pending and due leased rows are two `UNION ALL` arms rather than one `OR` so each
/// is a range of the `(sink, status, due_at)` index: a claim costs in proportion to the
/// rows that are due, not to the backlog waiting for its retry time (with an `OR`, SQLite
/// scans every row of the sink).
const CLAIM: &str = "
UPDATE outbox
SET status = 'leased', lease_until = ?3, attempts = MIN(attempts + 1, 4294967295)
WHERE id IN (
    SELECT d.id FROM (
        SELECT id, call_id FROM outbox
        WHERE sink = ?1 AND status = 'pending' AND due_at <= ?2
        UNION ALL
        SELECT id, call_id FROM outbox
        WHERE sink = ?1 AND status = 'leased' AND lease_until <= ?2
    ) AS d
    WHERE NOT EXISTS (
        SELECT 1 FROM outbox AS e
        WHERE e.call_id = d.call_id AND e.sink = ?1 AND e.id < d.id
          AND e.status <> 'dead')
    ORDER BY d.id
    LIMIT ?4)
RETURNING id, event, attempts, last_error";

/// An outbox row (`id, event, attempts, last_error`) before its event is decoded.
struct RawEntry {
    id: i64,
    event: String,
    attempts: i64,
    last_error: Option<String>,
}

impl RawEntry {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            event: row.get(1)?,
            attempts: row.get(2)?,
            last_error: row.get(3)?,
        })
    }

    fn into_entry(self, sink: SinkKind) -> Result<OutboxEntry, StoreError> {
        Ok(OutboxEntry {
            id: u64::try_from(self.id)
                .map_err(|_| StoreError::Backend(format!("sqlite: bad entry id {}", self.id)))?,
            sink,
            event: decode(format_args!("event of entry {}", self.id), &self.event)?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            last_error: self.last_error,
        })
    }
}

pub(super) fn claim(
    conn: &Connection,
    sink: SinkKind,
    max: usize,
    now: i64,
    lease_until: i64,
) -> Result<Vec<OutboxEntry>, StoreError> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut rows: Vec<RawEntry> = conn
        .prepare_cached(CLAIM)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![sink.as_str(), now, lease_until, int(max)],
                RawEntry::read,
            )?
            .collect()
        })
        .map_err(db("claim"))?;
    rows.sort_unstable_by_key(|row| row.id);
    rows.into_iter().map(|row| row.into_entry(sink)).collect()
}

pub(super) fn ack(conn: &Connection, sink: SinkKind, ids: &[u64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids = encode("ids", &ids)?;
    conn.prepare_cached(
        "DELETE FROM outbox WHERE sink = ?1 AND id IN (SELECT value FROM json_each(?2))",
    )
    .and_then(|mut stmt| stmt.execute(params![sink.as_str(), ids]))
    .map_err(db("ack"))?;
    Ok(())
}

/// Runs a one-row outbox `UPDATE` whose `?1` is the id and `?2` the sink;
/// [`StoreError::NoEntry`] if no row matched.
fn update_entry(
    conn: &Connection,
    what: &'static str,
    sql: &str,
    id: u64,
    sink: SinkKind,
    more: &[&dyn rusqlite::ToSql],
) -> Result<(), StoreError> {
    let Ok(key) = i64::try_from(id) else {
        return Err(StoreError::NoEntry(id));
    };
    let sink = sink.as_str();
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&key, &sink];
    args.extend_from_slice(more);
    let changed = conn
        .prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(args.as_slice()))
        .map_err(db(what))?;
    if changed == 0 {
        return Err(StoreError::NoEntry(id));
    }
    Ok(())
}

pub(super) fn retry_later(
    conn: &Connection,
    sink: SinkKind,
    id: u64,
    at: i64,
    error: &str,
) -> Result<(), StoreError> {
    update_entry(
        conn,
        "retry_later",
        "UPDATE outbox SET status = 'pending', due_at = ?3, lease_until = NULL, last_error = ?4
         WHERE id = ?1 AND sink = ?2 AND status <> 'dead'",
        id,
        sink,
        &[&at, &error],
    )
}

pub(super) fn dead_letter(
    conn: &Connection,
    sink: SinkKind,
    id: u64,
    error: &str,
) -> Result<(), StoreError> {
    update_entry(
        conn,
        "dead_letter",
        "UPDATE outbox SET status = 'dead', lease_until = NULL, last_error = ?3
         WHERE id = ?1 AND sink = ?2",
        id,
        sink,
        &[&error],
    )
}

pub(super) fn replay_dead(
    conn: &Connection,
    sink: SinkKind,
    id: u64,
    now: i64,
) -> Result<(), StoreError> {
    update_entry(
        conn,
        "replay_dead",
        "UPDATE outbox SET status = 'pending', due_at = ?3, attempts = 0
         WHERE id = ?1 AND sink = ?2 AND status = 'dead'",
        id,
        sink,
        &[&now],
    )
}

pub(super) fn list_dead(conn: &Connection, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
    let rows: Vec<(String, RawEntry)> = conn
        .prepare_cached(
            "SELECT id, event, attempts, last_error, sink FROM outbox
             WHERE status = 'dead' ORDER BY id LIMIT ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_map([int(limit)], |row| Ok((row.get(4)?, RawEntry::read(row)?)))?
                .collect()
        })
        .map_err(db("list dead letters"))?;
    rows.into_iter()
        .map(|(sink, raw)| {
            let sink = SinkKind::parse(&sink)
                .ok_or_else(|| StoreError::Backend(format!("sqlite: unknown sink {sink:?}")))?;
            raw.into_entry(sink)
        })
        .collect()
}

pub(super) fn pending(conn: &Connection) -> Result<usize, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM outbox WHERE status <> 'dead'")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(db("count pending"))?;
    Ok(usize::try_from(count).unwrap_or(0))
}

pub(super) fn record_orphan(conn: &Connection, orphan: &OrphanCallback) -> Result<(), StoreError> {
    let fields = encode("callback fields", &orphan.fields)?;
    let received_at = encode("time", &orphan.received_at)?;
    conn.prepare_cached(
        "INSERT INTO orphan_callbacks (received_at, kind, fields) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut stmt| stmt.execute(params![received_at, orphan.kind, fields]))
    .map_err(db("record orphan callback"))?;
    Ok(())
}

pub(super) fn orphans(conn: &Connection) -> Result<Vec<OrphanCallback>, StoreError> {
    let rows: Vec<(String, String, String)> = conn
        .prepare_cached("SELECT kind, fields, received_at FROM orphan_callbacks ORDER BY id")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect()
        })
        .map_err(db("list orphan callbacks"))?;
    rows.into_iter()
        .map(|(kind, fields, received_at)| {
            Ok(OrphanCallback {
                kind,
                fields: decode("callback fields", &fields)?,
                received_at: decode("time", &received_at)?,
            })
        })
        .collect()
}
