//! In-memory store: the reference model the real stores are tested against.
//!
//! Owns plain data under one mutex: the calls (record and last event seq), the outbox
//! (a `BTreeMap` from entry id to entry, so iteration is oldest first) and the orphan
//! callbacks. Every operation locks, works on the data with straightforward loops, and
//! unlocks before returning; nothing awaits while the lock is held. It is written to be
//! obviously right rather than fast (a claim scans the whole outbox).
//!
//! Invariants: entry ids come from a counter that only grows (never reused, also after
//! acks); an acked entry is removed; an update runs on a copy of the record and the copy
//! replaces the record only when everything succeeded, so a failed update leaves no trace.
//!
//! Crash behaviour: none to speak of, everything is lost with the process. Property tests
//! use it as the durable state a real store must show after a restart. It is also a handy
//! [`Store`] for unit tests elsewhere.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::clock::{SharedClock, SystemClock, micros, micros_after};
use super::{
    CallFilter, MAX_PAGE_LIMIT, OrphanCallback, OutboxEntry, Page, SinkKind, Store, StoreError,
    Update, apply_update, first_event, sink_set,
};
use crate::control::model::{CallEvent, CallRecord, EventType};

/// The in-memory [`Store`].
#[derive(Debug)]
pub struct MemoryStore {
    sinks: Vec<SinkKind>,
    clock: SharedClock,
    data: Mutex<Data>,
}

#[derive(Debug, Default)]
struct Data {
    calls: HashMap<String, StoredCall>,
    outbox: BTreeMap<u64, Entry>,
    last_id: u64,
    orphans: Vec<OrphanCallback>,
}

#[derive(Debug)]
struct StoredCall {
    record: CallRecord,
    last_seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Leased,
    Dead,
}

#[derive(Debug)]
struct Entry {
    sink: SinkKind,
    event: CallEvent,
    status: Status,
    /// When a pending entry falls due, in microseconds.
    due_at: i64,
    /// When a leased entry's lease runs out, in microseconds.
    lease_until: i64,
    attempts: u32,
    last_error: Option<String>,
}

impl Entry {
    fn is_due(&self, now: i64) -> bool {
        match self.status {
            Status::Pending => self.due_at <= now,
            Status::Leased => self.lease_until <= now,
            Status::Dead => false,
        }
    }

    fn to_outbox(&self, id: u64) -> OutboxEntry {
        OutboxEntry {
            id,
            sink: self.sink,
            event: self.event.clone(),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        }
    }
}

impl MemoryStore {
    /// An empty store delivering to `sinks`, on the wall clock.
    pub fn new(sinks: &[SinkKind]) -> Self {
        Self::with_clock(sinks, Arc::new(SystemClock))
    }

    /// An empty store delivering to `sinks`, reading the time from `clock`.
    pub fn with_clock(sinks: &[SinkKind], clock: SharedClock) -> Self {
        Self {
            sinks: sink_set(sinks),
            clock,
            data: Mutex::new(Data::default()),
        }
    }

    /// The orphan callbacks recorded so far, oldest first.
    pub fn orphan_callbacks(&self) -> Vec<OrphanCallback> {
        self.lock().orphans.clone()
    }

    /// The data. A panic in an [`Update`] cannot leave it half-changed (updates run on a
    /// copy), so a poisoned lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

impl Data {
    fn enqueue(&mut self, sinks: &[SinkKind], events: &[CallEvent], now: i64) {
        for event in events {
            for &sink in sinks {
                self.last_id += 1;
                self.outbox.insert(
                    self.last_id,
                    Entry {
                        sink,
                        event: event.clone(),
                        status: Status::Pending,
                        due_at: now,
                        lease_until: 0,
                        attempts: 0,
                        last_error: None,
                    },
                );
            }
        }
    }

    /// The entry `id` of `sink`, if it is in the outbox.
    fn entry(&mut self, sink: SinkKind, id: u64) -> Result<&mut Entry, StoreError> {
        self.outbox
            .get_mut(&id)
            .filter(|entry| entry.sink == sink)
            .ok_or(StoreError::NoEntry(id))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_call(
        &self,
        call: CallRecord,
        first: EventType,
    ) -> Result<CallEvent, StoreError> {
        let now = micros(self.now());
        let mut data = self.lock();
        if let Some(existing) = data.calls.get(&call.call_id) {
            return Err(StoreError::AlreadyExists(Box::new(existing.record.clone())));
        }
        let event = first_event(&call, first);
        data.enqueue(&self.sinks, std::slice::from_ref(&event), now);
        data.calls.insert(
            call.call_id.clone(),
            StoredCall {
                record: call,
                last_seq: 1,
            },
        );
        Ok(event)
    }

    async fn get_call(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        Ok(self.lock().calls.get(call_id).map(|c| c.record.clone()))
    }

    async fn list_calls(
        &self,
        filter: &CallFilter,
        page: &Page,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let data = self.lock();
        let key = |r: &CallRecord| (micros(r.created_at), r.call_id.clone());
        let after = match &page.after {
            Some(id) => match data.calls.get(id) {
                Some(call) => Some(key(&call.record)),
                None => return Err(StoreError::NotFound(id.clone())),
            },
            None => None,
        };
        let mut calls: Vec<&CallRecord> = data
            .calls
            .values()
            .map(|c| &c.record)
            .filter(|r| filter.campaign_id.is_none() || r.campaign_id == filter.campaign_id)
            .filter(|r| filter.state.is_none_or(|s| r.state == s))
            .filter(|r| after.as_ref().is_none_or(|a| key(r) > *a))
            .collect();
        calls.sort_by_key(|r| key(r));
        Ok(calls
            .into_iter()
            .take(page.limit.min(MAX_PAGE_LIMIT))
            .cloned()
            .collect())
    }

    async fn update_call(
        &self,
        call_id: &str,
        update: Update,
    ) -> Result<Vec<CallEvent>, StoreError> {
        let now = self.now();
        let mut data = self.lock();
        let stored = data
            .calls
            .get(call_id)
            .ok_or_else(|| StoreError::NotFound(call_id.to_owned()))?;
        let Some((record, events)) = apply_update(&stored.record, stored.last_seq, update, now)?
        else {
            return Ok(Vec::new());
        };
        data.enqueue(&self.sinks, &events, micros(now));
        if let Some(stored) = data.calls.get_mut(call_id) {
            stored.last_seq += events.len() as u64;
            stored.record = record;
        }
        Ok(events)
    }

    async fn claim(
        &self,
        sink: SinkKind,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = micros(self.now());
        let lease_until = micros_after(now, lease);
        let mut data = self.lock();
        // Calls whose earliest undone entry for this sink has been seen: their later
        // entries must wait, whether that first one was claimable or not.
        let mut seen: HashSet<String> = HashSet::new();
        let mut claimed = Vec::new();
        for (&id, entry) in data.outbox.iter_mut() {
            if claimed.len() >= max {
                break;
            }
            if entry.sink != sink || entry.status == Status::Dead {
                continue;
            }
            if !seen.insert(entry.event.call_id.clone()) {
                continue;
            }
            if entry.is_due(now) {
                entry.status = Status::Leased;
                entry.lease_until = lease_until;
                entry.attempts = entry.attempts.saturating_add(1);
                claimed.push(entry.to_outbox(id));
            }
        }
        Ok(claimed)
    }

    async fn ack(&self, sink: SinkKind, ids: &[u64]) -> Result<(), StoreError> {
        let mut data = self.lock();
        for id in ids {
            if data.outbox.get(id).is_some_and(|e| e.sink == sink) {
                data.outbox.remove(id);
            }
        }
        Ok(())
    }

    async fn retry_later(
        &self,
        sink: SinkKind,
        id: u64,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut data = self.lock();
        let entry = data.entry(sink, id)?;
        if entry.status == Status::Dead {
            return Err(StoreError::NoEntry(id));
        }
        entry.status = Status::Pending;
        entry.due_at = micros(at);
        entry.lease_until = 0;
        entry.last_error = Some(error.to_owned());
        Ok(())
    }

    async fn dead_letter(&self, sink: SinkKind, id: u64, error: &str) -> Result<(), StoreError> {
        let mut data = self.lock();
        let entry = data.entry(sink, id)?;
        entry.status = Status::Dead;
        entry.lease_until = 0;
        entry.last_error = Some(error.to_owned());
        Ok(())
    }

    async fn list_dead(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .lock()
            .outbox
            .iter()
            .filter(|(_, e)| e.status == Status::Dead)
            .take(limit)
            .map(|(&id, e)| e.to_outbox(id))
            .collect())
    }

    async fn replay_dead(&self, sink: SinkKind, id: u64) -> Result<(), StoreError> {
        let now = micros(self.now());
        let mut data = self.lock();
        let entry = data.entry(sink, id)?;
        if entry.status != Status::Dead {
            return Err(StoreError::NoEntry(id));
        }
        entry.status = Status::Pending;
        entry.due_at = now;
        entry.attempts = 0;
        Ok(())
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        Ok(self
            .lock()
            .outbox
            .values()
            .filter(|e| e.status != Status::Dead)
            .count())
    }

    async fn record_orphan_callback(
        &self,
        kind: &str,
        fields: &[(String, String)],
    ) -> Result<(), StoreError> {
        let received_at = self.now();
        self.lock().orphans.push(OrphanCallback {
            kind: kind.to_owned(),
            fields: fields.to_vec(),
            received_at,
        });
        Ok(())
    }
}
