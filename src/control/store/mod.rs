//! Call state and the outbox, behind one trait so the embedded SQLite store, the Redis
//! store and the in-memory model obey the same contract (and property tests can check it).
//!
//! Contract:
//! - **One transaction.** A call's new state and the events it produces are stored
//!   together ([`Store::create_call`], [`Store::update_call`]): never one without the other.
//! - **Outbox.** Every event gets one outbox entry per configured sink (given to the
//!   store when it is opened). Entry ids only grow.
//!   [`Store::claim`] leases entries that are due, oldest first, and never hands out an
//!   entry while an earlier entry of the same call for the same sink is not yet done (per
//!   call order). An entry whose lease runs out is claimable again (a crashed deliverer's
//!   work is picked up). [`Store::ack`] deletes (or marks done) only after the sink
//!   acknowledged: delivery is at-least-once, and the event id is the idempotency key.
//! - **Retries and dead letters.** [`Store::retry_later`] puts an entry back with a due
//!   time; [`Store::dead_letter`] parks it (it no longer blocks its call's later entries)
//!   until [`Store::replay_dead`] puts it back.
//! - **Durable.** After a crash and restart nothing acknowledged comes back and nothing
//!   unacknowledged is lost.
//!
//! The details every store implements alike (the property tests hold them to it):
//! - **Attempts.** Each claim counts as one delivery attempt ([`OutboxEntry::attempts`]
//!   includes the claim that returned it), so an event that crashes its deliverer still
//!   runs out of attempts; [`Store::replay_dead`] starts the count again.
//! - **Per-call order.** A call's entries for a sink wait while the earliest of them that
//!   is neither acknowledged nor dead is leased or waiting for its retry time.
//! - **Idempotent acks.** Acking an id that is not in the outbox (already acked, or another
//!   sink's) does nothing: after a lease ran out two deliverers may both ack.
//! - **The store guards the state machine.** Whatever an [`Update`] does, the store refuses
//!   a state change the machine forbids ([`StoreError::Transition`]) and keeps `call_id`;
//!   an update that changes nothing and names no event writes nothing (replayed callbacks
//!   cost no write and no event).
//! - **Time** comes from the store's [`Clock`]; due times and leases are compared in whole
//!   microseconds ([`clock::micros`]).
//!
//! Files: [`clock`] (time, drivable in tests), [`memory`] (the reference model),
//! [`sqlite`] (the embedded default: storage format and crash behaviour are in its doc),
//! [`redis`] (shared by several instances: key layout and crash behaviour in its doc).

pub mod clock;
pub mod memory;
pub mod redis;
pub mod sqlite;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use sqlite::SqliteStore;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::model::{CallEvent, CallRecord, CallState, EventType, TransitionError};

/// Where events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// The Redis queue (`call_job:{call_id}` hash and the events stream).
    Queue,
    /// The backend's HTTP endpoint.
    Backend,
}

impl SinkKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Backend => "backend",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "queue" => Some(Self::Queue),
            "backend" => Some(Self::Backend),
            _ => None,
        }
    }
}

/// The most calls one [`Store::list_calls`] page returns, whatever [`Page::limit`] asks.
pub const MAX_PAGE_LIMIT: usize = 1_000;

/// One outbox entry: an event on its way to one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The entry's id, increasing in the order events were stored.
    pub id: u64,
    /// Its sink.
    pub sink: SinkKind,
    /// The event.
    pub event: CallEvent,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// Which calls to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Only this campaign.
    pub campaign_id: Option<String>,
    /// Only calls in this state.
    pub state: Option<CallState>,
}

/// A page of a listing: `limit` items after the item with this cursor (exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Continue after this `call_id` (ordered by creation, then id).
    pub after: Option<String>,
    /// At most this many (the store caps it at [`MAX_PAGE_LIMIT`]).
    pub limit: usize,
}

/// A callback that matched no call, kept for audit ([`Store::record_orphan_callback`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanCallback {
    /// What kind of callback (`hangup`, `ring`, `stream`, …).
    pub kind: String,
    /// Its fields, as received.
    pub fields: Vec<(String, String)>,
    /// When the store recorded it.
    pub received_at: DateTime<Utc>,
}

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// `create_call` for a `call_id` already known; carries the existing record.
    #[error("call {} already exists", .0.call_id)]
    AlreadyExists(Box<CallRecord>),
    /// No call with this id.
    #[error("no call {0}")]
    NotFound(String),
    /// The update broke the state machine (nothing was stored).
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// No outbox entry with this id (for this sink, in the state the operation needs).
    #[error("no outbox entry {0}")]
    NoEntry(u64),
    /// The backing database failed.
    #[error("store backend: {0}")]
    Backend(String),
}

/// What an update does to a call: edits the record and names the events it produces.
///
/// It runs inside the store's transaction (under its lock): keep it quick and pure.
pub type Update = Box<dyn FnOnce(&mut CallRecord) -> Result<Vec<EventType>, StoreError> + Send>;

/// Call state plus the outbox.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a new call and its first event, together. [`StoreError::AlreadyExists`]
    /// (with the stored record) if the id is known; nothing is written then.
    async fn create_call(
        &self,
        call: CallRecord,
        first: EventType,
    ) -> Result<CallEvent, StoreError>;

    /// The call, if known.
    async fn get_call(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError>;

    /// Calls matching `filter`, oldest first, one page. [`StoreError::NotFound`] if the
    /// page's cursor names an unknown call.
    async fn list_calls(
        &self,
        filter: &CallFilter,
        page: &Page,
    ) -> Result<Vec<CallRecord>, StoreError>;

    /// Runs `update` on the current record; stores the new record and the events it names
    /// (each numbered after the call's last event, `updated_at` set to now) in one
    /// transaction, and returns those events. An update that returns an error stores
    /// nothing. The store keeps `call_id` and refuses a state change the state machine
    /// forbids ([`StoreError::Transition`], nothing stored); an update that changes nothing
    /// and names no events stores nothing and returns no events.
    async fn update_call(
        &self,
        call_id: &str,
        update: Update,
    ) -> Result<Vec<CallEvent>, StoreError>;

    /// Leases up to `max` due entries of `sink` for `lease`, oldest first, at most one
    /// (the earliest undone) per call. Due: pending with its due time reached, or leased
    /// with the lease run out. Each claim adds one to the entry's `attempts`.
    async fn claim(
        &self,
        sink: SinkKind,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The sink took these entries: they are done for good. Ids not in the outbox for
    /// this sink (already acked) are ignored.
    async fn ack(&self, sink: SinkKind, ids: &[u64]) -> Result<(), StoreError>;

    /// Delivery failed; try again at `at` (the lease ends; `error` is kept as
    /// `last_error`). [`StoreError::NoEntry`] if the entry is not in the outbox for this
    /// sink or is a dead letter (those come back only through [`Store::replay_dead`]).
    async fn retry_later(
        &self,
        sink: SinkKind,
        id: u64,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Delivery gave up: park the entry as a dead letter (`error` kept as `last_error`).
    /// [`StoreError::NoEntry`] if the entry is not in the outbox for this sink.
    async fn dead_letter(&self, sink: SinkKind, id: u64, error: &str) -> Result<(), StoreError>;

    /// Dead letters of every sink, oldest first, at most `limit`.
    async fn list_dead(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Puts a dead letter back in the outbox, due now, with its attempts reset to 0.
    /// [`StoreError::NoEntry`] if this sink has no dead letter with this id.
    async fn replay_dead(&self, sink: SinkKind, id: u64) -> Result<(), StoreError>;

    /// Entries not yet done (pending, leased or waiting to retry), for metrics and tests.
    async fn pending(&self) -> Result<usize, StoreError>;

    /// Keeps a callback that matched no call, for audit.
    async fn record_orphan_callback(
        &self,
        kind: &str,
        fields: &[(String, String)],
    ) -> Result<(), StoreError>;
}

/// A new call's first event (seq 1).
pub(crate) fn first_event(call: &CallRecord, first: EventType) -> CallEvent {
    CallEvent::new(call, 1, first)
}

/// The rule every store applies in [`Store::update_call`], on the record it read inside
/// its transaction: runs `update` on a copy, keeps `call_id`, checks the state change,
/// stamps `updated_at` and numbers the events after `last_seq`. `None`: nothing to store.
pub(crate) fn apply_update(
    current: &CallRecord,
    last_seq: u64,
    update: Update,
    now: DateTime<Utc>,
) -> Result<Option<(CallRecord, Vec<CallEvent>)>, StoreError> {
    let mut next = current.clone();
    let kinds = update(&mut next)?;
    next.call_id.clone_from(&current.call_id);
    current.state.transition(next.state)?;
    if kinds.is_empty() && next == *current {
        return Ok(None);
    }
    next.updated_at = now;
    let events = kinds
        .into_iter()
        .zip(last_seq + 1..)
        .map(|(kind, seq)| CallEvent::new(&next, seq, kind))
        .collect();
    Ok(Some((next, events)))
}

/// The configured sinks, each once, in a fixed order (an event's entries get their ids in
/// this order in every store).
pub(crate) fn sink_set(sinks: &[SinkKind]) -> Vec<SinkKind> {
    let mut set = sinks.to_vec();
    set.sort_unstable();
    set.dedup();
    set
}
