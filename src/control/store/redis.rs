//! The shared store for several voxgate instances: call state in Redis hashes, the outbox
//! as one Redis Stream per sink with a consumer group, so any instance delivers any call's
//! events and a dead instance's in-flight events are taken over by another.
//!
//! **Key layout** (every key starts with the `{name}` hash tag, default `{voxgate}`, so
//! one store's keys share a cluster slot and its scripts stay atomic):
//! - `{name}:call:{call_id}`: hash `record` (the [`CallRecord`] as JSON), `state`, `seq`
//!   (the seq of the call's newest event). `{name}:calls` and `{name}:campaign:{id}`: sorted
//!   sets of call ids scored by creation time (µs), for listing.
//! - `{name}:outbox:{sink}`: the stream of that sink's entries, each `call` + `event`
//!   (JSON), with the explicit stream id `0-{entry id}`; entry ids come from the counter
//!   `{name}:seq`, so they only grow and are never reused. Its consumer group `deliverers`
//!   has one consumer per store instance; an entry is in the group's pending list (PEL)
//!   exactly while it is leased, under the instance that leased it (`XPENDING` shows who
//!   holds what). An acknowledged entry is `XACK`ed and `XDEL`eted.
//! - `{name}:e:{sink}:{id}`: the entry's delivery state: `st` (`p` pending, `l` leased,
//!   `d` dead), `t` (due time or lease end, µs), `a` (attempts), `err`, `c` (call id).
//! - `{name}:order:{sink}:{call_id}`: the call's entries that are neither acked nor dead,
//!   by id; its first is the call's **head**, the only entry of the call that may go out.
//!   `{name}:ready:{sink}`: every call's head, scored by its `t`: a claim takes the heads
//!   with `t ≤ now`, oldest id first. `{name}:dead`: dead letters of all sinks.
//!   `{name}:live`: how many entries are not done. `{name}:orphans`: a list of orphan
//!   callbacks (JSON). `{name}:lock:{call_id}`: held while one instance updates a call.
//!
//! **Why a consumer group and not `XREADGROUP` alone.** A group hands out a stream's
//! entries in stream order, but the outbox owes per-call order with retry times and dead
//! letters, so a claim picks the entries (from the ready set, in one script) and moves
//! them into its consumer's PEL with `XCLAIM … FORCE`. A lease that ran out (its instance
//! died or hung) makes the head due again; the next claim by any instance takes it over
//! with the same `XCLAIM`, which moves it from the dead consumer's PEL to its own. Lease
//! ends are kept in the store's clock, not in the PEL's idle time, so leases, retries and
//! dead letters follow exactly the [`Store`] contract the property tests check.
//!
//! **Transactions.** Creating a call, claiming, acking, retrying, dead-lettering and
//! replaying are each one Lua script. An update reads the call, runs the [`Update`] in
//! Rust, and writes the record plus its events in one script, under a per-call lock
//! (`SET NX PX`, [`LOCK_TTL`]) that the write script checks: two instances updating one
//! call take turns, and a writer whose lock ran out writes nothing.
//!
//! **Crash behaviour.** voxgate dying at any point loses nothing: every operation is one
//! script, so Redis holds all of it or none of it; a lease of the dead instance runs out
//! and its entries are claimed again (at-least-once; sinks dedupe by event id); a lock it
//! held expires after [`LOCK_TTL`]. Redis itself must persist (AOF `everysec` or better)
//! for the outbox to survive a Redis restart: that is the operator's choice, and voxgate
//! says so at start-up when persistence is off.

mod scripts;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use self::scripts::Scripts;
use super::clock::{SharedClock, SystemClock, micros, micros_after};
use super::{
    CallFilter, MAX_PAGE_LIMIT, OrphanCallback, OutboxEntry, Page, SinkKind, Store, StoreError,
    Update, apply_update, first_event, sink_set,
};
use crate::control::model::{CallEvent, CallRecord, EventType};

/// The default key name (keys start with `{voxgate}:`).
pub const DEFAULT_NAME: &str = "voxgate";

/// How long one instance may hold a call's update lock.
pub const LOCK_TTL: Duration = Duration::from_secs(10);

/// How long an update waits for another instance's lock on the same call.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// Bound on connecting and on each command.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The Redis [`Store`]. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    conn: ConnectionManager,
    prefix: String,
    consumer: String,
    sinks: Vec<SinkKind>,
    clock: SharedClock,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.shared.prefix)
            .field("consumer", &self.shared.consumer)
            .field("sinks", &self.shared.sinks)
            .finish_non_exhaustive()
    }
}

/// Maps a Redis error to [`StoreError::Backend`], saying what was being done.
fn db(context: &'static str) -> impl Fn(redis::RedisError) -> StoreError {
    move |e| StoreError::Backend(format!("redis {context}: {e}"))
}

fn json_error(context: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Backend(format!("redis {context}: bad stored JSON: {e}"))
}

impl RedisStore {
    /// Connects to the Redis at `url` and opens the store named `name` (keys start with
    /// `{name}:`), delivering to `sinks`, on the wall clock. Fails if Redis does not
    /// answer.
    pub async fn connect(url: &str, name: &str, sinks: &[SinkKind]) -> Result<Self, StoreError> {
        Self::connect_with_clock(url, name, sinks, Arc::new(SystemClock)).await
    }

    /// Like [`RedisStore::connect`], reading the time from `clock`.
    pub async fn connect_with_clock(
        url: &str,
        name: &str,
        sinks: &[SinkKind],
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        if name.is_empty() || name.contains(['{', '}']) {
            return Err(StoreError::Backend(format!(
                "redis store name {name:?} must be non-empty and free of braces"
            )));
        }
        let client = redis::Client::open(url).map_err(db("url"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(db("connect"))?;
        let store = Self {
            shared: Arc::new(Shared {
                conn,
                prefix: format!("{{{name}}}"),
                consumer: consumer_name(),
                sinks: sink_set(sinks),
                clock,
                scripts: Scripts::new(),
            }),
        };
        for &sink in &store.shared.sinks {
            store.create_group(sink).await?;
        }
        Ok(store)
    }

    /// This instance's consumer name in the outbox streams' consumer group.
    pub fn consumer(&self) -> &str {
        &self.shared.consumer
    }

    /// The key prefix (`{name}`).
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The orphan callbacks recorded so far, oldest first.
    pub async fn orphan_callbacks(&self) -> Result<Vec<OrphanCallback>, StoreError> {
        let raw: Vec<String> = self
            .conn()
            .lrange(self.key("orphans"), 0, -1)
            .await
            .map_err(db("orphan_callbacks"))?;
        raw.iter()
            .map(|s| serde_json::from_str(s).map_err(json_error("orphan_callbacks")))
            .collect()
    }

    /// Whether Redis persists writes (AOF or RDB snapshots); without it a Redis restart
    /// loses the outbox.
    pub async fn persistence(&self) -> Result<bool, StoreError> {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut self.conn())
            .await
            .map_err(db("info"))?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
                .unwrap_or("0")
                .to_owned()
        };
        let config: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query_async(&mut self.conn())
            .await
            .unwrap_or_default();
        let rdb = config.get(1).is_some_and(|s| !s.trim().is_empty());
        Ok(field("aof_enabled") == "1" || rdb)
    }

    fn conn(&self) -> ConnectionManager {
        self.shared.conn.clone()
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.shared.prefix)
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    async fn create_group(&self, sink: SinkKind) -> Result<(), StoreError> {
        let result: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key(&format!("outbox:{}", sink.as_str())))
            .arg("deliverers")
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match result {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other.map_err(db("create consumer group")),
        }
    }

    /// Takes the call's update lock, waiting up to [`LOCK_WAIT`] for another holder.
    async fn lock(&self, call_id: &str) -> Result<String, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let key = self.key(&format!("lock:{call_id}"));
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            let taken: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LOCK_TTL.as_millis() as u64)
                .query_async(&mut self.conn())
                .await
                .map_err(db("lock"))?;
            if taken.is_some() {
                return Ok(token);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Backend(format!(
                    "redis update_call: call {call_id} stayed locked by another instance"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    async fn unlock(&self, call_id: &str, token: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .shared
            .scripts
            .unlock
            .arg(&self.shared.prefix)
            .arg(call_id)
            .arg(token)
            .invoke_async(&mut self.conn())
            .await
            .map_err(db("unlock"))?;
        Ok(())
    }

    /// Reads the call (record and last seq).
    async fn read_call(&self, call_id: &str) -> Result<Option<(CallRecord, u64)>, StoreError> {
        let (record, seq): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.key(&format!("call:{call_id}")))
            .arg("record")
            .arg("seq")
            .query_async(&mut self.conn())
            .await
            .map_err(db("get_call"))?;
        match record {
            None => Ok(None),
            Some(json) => {
                let record = serde_json::from_str(&json).map_err(json_error("get_call"))?;
                Ok(Some((record, seq.unwrap_or(0))))
            }
        }
    }

    /// Runs `update` under the call's lock and writes its result.
    async fn locked_update(
        &self,
        call_id: &str,
        token: &str,
        update: Update,
    ) -> Result<Vec<CallEvent>, StoreError> {
        let (current, last_seq) = self
            .read_call(call_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(call_id.to_owned()))?;
        let now = self.now();
        let Some((record, events)) = apply_update(&current, last_seq, update, now)? else {
            return Ok(Vec::new());
        };
        let mut invocation = self.shared.scripts.update.prepare_invoke();
        invocation
            .arg(&self.shared.prefix)
            .arg(call_id)
            .arg(token)
            .arg(to_json(&record)?)
            .arg(record.state.as_str())
            .arg(last_seq + events.len() as u64)
            .arg(current.campaign_id.as_deref().unwrap_or(""))
            .arg(record.campaign_id.as_deref().unwrap_or(""))
            .arg(micros(record.created_at))
            .arg(micros(now));
        self.sink_args(&mut invocation);
        invocation.arg(events.len());
        for event in &events {
            invocation.arg(to_json(event)?);
        }
        let written: i64 = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(db("update_call"))?;
        if written == 0 {
            return Err(StoreError::Backend(format!(
                "redis update_call: the lock on call {call_id} ran out before the write"
            )));
        }
        Ok(events)
    }

    fn sink_args(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation.arg(self.shared.sinks.len());
        for sink in &self.shared.sinks {
            invocation.arg(sink.as_str());
        }
    }

    /// Runs an entry-state script that answers 1 (done) or 0 (no such entry).
    async fn entry_op(
        &self,
        what: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
        id: u64,
    ) -> Result<(), StoreError> {
        let done: i64 = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(db(what))?;
        if done == 1 {
            Ok(())
        } else {
            Err(StoreError::NoEntry(id))
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("redis: cannot encode JSON: {e}")))
}

/// `host:pid:random`, unique per store instance, readable in `XPENDING`.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "voxgate".to_owned());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &tag[..8])
}

/// One claimed or dead entry as the scripts return it.
fn entry(
    sink: SinkKind,
    id: u64,
    attempts: u32,
    has_error: bool,
    error: String,
    event: &str,
) -> Result<OutboxEntry, StoreError> {
    Ok(OutboxEntry {
        id,
        sink,
        event: serde_json::from_str(event).map_err(json_error("outbox entry"))?,
        attempts,
        last_error: has_error.then_some(error),
    })
}

#[async_trait]
impl Store for RedisStore {
    async fn create_call(
        &self,
        call: CallRecord,
        first: EventType,
    ) -> Result<CallEvent, StoreError> {
        let event = first_event(&call, first);
        let mut invocation = self.shared.scripts.create.prepare_invoke();
        invocation
            .arg(&self.shared.prefix)
            .arg(&call.call_id)
            .arg(to_json(&call)?)
            .arg(call.state.as_str())
            .arg(call.campaign_id.as_deref().unwrap_or(""))
            .arg(micros(call.created_at))
            .arg(micros(self.now()));
        self.sink_args(&mut invocation);
        invocation.arg(to_json(&event)?);
        let (stored, existing): (i64, String) = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(db("create_call"))?;
        if stored == 1 {
            Ok(event)
        } else {
            let existing = serde_json::from_str(&existing).map_err(json_error("create_call"))?;
            Err(StoreError::AlreadyExists(Box::new(existing)))
        }
    }

    async fn get_call(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        Ok(self.read_call(call_id).await?.map(|(record, _)| record))
    }

    async fn list_calls(
        &self,
        filter: &CallFilter,
        page: &Page,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let limit = page.limit.min(MAX_PAGE_LIMIT);
        let (after_score, after_id) = match &page.after {
            None => (String::new(), String::new()),
            Some(id) => {
                let score: Option<i64> = self
                    .conn()
                    .zscore(self.key("calls"), id)
                    .await
                    .map_err(db("list_calls"))?;
                let score = score.ok_or_else(|| StoreError::NotFound(id.clone()))?;
                (score.to_string(), id.clone())
            }
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match &filter.campaign_id {
            Some(campaign) => format!("campaign:{campaign}"),
            None => "calls".to_owned(),
        };
        let raw: Vec<String> = self
            .shared
            .scripts
            .list_calls
            .arg(&self.shared.prefix)
            .arg(index)
            .arg(after_score)
            .arg(after_id)
            .arg(filter.state.map_or("", |s| s.as_str()))
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(db("list_calls"))?;
        raw.iter()
            .map(|s| serde_json::from_str(s).map_err(json_error("list_calls")))
            .collect()
    }

    async fn update_call(
        &self,
        call_id: &str,
        update: Update,
    ) -> Result<Vec<CallEvent>, StoreError> {
        let token = self.lock(call_id).await?;
        let result = self.locked_update(call_id, &token, update).await;
        // A successful write released the lock in the same script; anything else
        // (refused, nothing to write, Redis error) releases it here.
        if !matches!(&result, Ok(events) if !events.is_empty()) {
            self.unlock(call_id, &token).await?;
        }
        result
    }

    async fn claim(
        &self,
        sink: SinkKind,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = micros(self.now());
        let claimed: Vec<(u64, u32, i64, String, String)> = self
            .shared
            .scripts
            .claim
            .arg(&self.shared.prefix)
            .arg(sink.as_str())
            .arg(now)
            .arg(micros_after(now, lease))
            .arg(max)
            .arg(&self.shared.consumer)
            .invoke_async(&mut self.conn())
            .await
            .map_err(db("claim"))?;
        claimed
            .into_iter()
            .map(|(id, attempts, has_error, error, event)| {
                entry(sink, id, attempts, has_error == 1, error, &event)
            })
            .collect()
    }

    async fn ack(&self, sink: SinkKind, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut invocation = self.shared.scripts.ack.prepare_invoke();
        invocation
            .arg(&self.shared.prefix)
            .arg(sink.as_str())
            .arg(ids.len())
            .arg(ids);
        let _: i64 = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(db("ack"))?;
        Ok(())
    }

    async fn retry_later(
        &self,
        sink: SinkKind,
        id: u64,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut invocation = self.shared.scripts.retry_later.prepare_invoke();
        invocation
            .arg(&self.shared.prefix)
            .arg(sink.as_str())
            .arg(id)
            .arg(micros(at))
            .arg(error);
        self.entry_op("retry_later", &invocation, id).await
    }

    async fn dead_letter(&self, sink: SinkKind, id: u64, error: &str) -> Result<(), StoreError> {
        let mut invocation = self.shared.scripts.dead_letter.prepare_invoke();
        invocation
            .arg(&self.shared.prefix)
            .arg(sink.as_str())
            .arg(id)
            .arg(error);
        self.entry_op("dead_letter", &invocation, id).await
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let dead: Vec<(String, u64, u32, i64, String, String)> = self
            .shared
            .scripts
            .list_dead
            .arg(&self.shared.prefix)
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await
            .map_err(db("list_dead"))?;
        dead.into_iter()
            .map(|(sink, id, attempts, has_error, error, event)| {
                let sink = SinkKind::parse(&sink).ok_or_else(|| {
                    StoreError::Backend(format!("redis list_dead: unknown sink {sink:?}"))
                })?;
                entry(sink, id, attempts, has_error == 1, error, &event)
            })
            .collect()
    }

    async fn replay_dead(&self, sink: SinkKind, id: u64) -> Result<(), StoreError> {
        let mut invocation = self.shared.scripts.replay_dead.prepare_invoke();
        invocation
            .arg(&self.shared.prefix)
            .arg(sink.as_str())
            .arg(id)
            .arg(micros(self.now()));
        self.entry_op("replay_dead", &invocation, id).await
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        let live: Option<i64> = self
            .conn()
            .get(self.key("live"))
            .await
            .map_err(db("pending"))?;
        Ok(usize::try_from(live.unwrap_or(0)).unwrap_or(0))
    }

    async fn record_orphan_callback(
        &self,
        kind: &str,
        fields: &[(String, String)],
    ) -> Result<(), StoreError> {
        let orphan = OrphanCallback {
            kind: kind.to_owned(),
            fields: fields.to_vec(),
            received_at: self.now(),
        };
        let _: i64 = self
            .conn()
            .rpush(self.key("orphans"), to_json(&orphan)?)
            .await
            .map_err(db("record_orphan_callback"))?;
        Ok(())
    }
}
