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

pub mod memory;

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
}

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
    /// At most this many (the store caps it).
    pub limit: usize,
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
    /// No outbox entry with this id (for this sink).
    #[error("no outbox entry {0}")]
    NoEntry(u64),
    /// The backing database failed.
    #[error("store backend: {0}")]
    Backend(String),
}

/// What an update does to a call: edits the record and names the events it produces.
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

    /// Calls matching `filter`, oldest first, one page.
    async fn list_calls(
        &self,
        filter: &CallFilter,
        page: &Page,
    ) -> Result<Vec<CallRecord>, StoreError>;

    /// Runs `update` on the current record; stores the new record and the events it names
    /// (each numbered after the call's last event, `updated_at` set to now) in one
    /// transaction, and returns those events. An update that returns an error stores
    /// nothing.
    async fn update_call(
        &self,
        call_id: &str,
        update: Update,
    ) -> Result<Vec<CallEvent>, StoreError>;

    /// Leases up to `max` due entries of `sink` for `lease`, oldest first, at most one
    /// (the earliest undone) per call.
    async fn claim(
        &self,
        sink: SinkKind,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The sink took these entries: they are done for good.
    async fn ack(&self, sink: SinkKind, ids: &[u64]) -> Result<(), StoreError>;

    /// Delivery failed; try again at `at`.
    async fn retry_later(
        &self,
        sink: SinkKind,
        id: u64,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Delivery gave up: park the entry as a dead letter.
    async fn dead_letter(&self, sink: SinkKind, id: u64, error: &str) -> Result<(), StoreError>;

    /// Dead letters, oldest first, at most `limit`.
    async fn list_dead(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Puts a dead letter back in the outbox, due now.
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
