//! Test doubles: the outbox half of a [`Store`] and a sink that answers from a script.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::control::model::{CallEvent, CallRecord, EventType};
use crate::control::sinks::{Delivery, Sink};
use crate::control::store::{CallFilter, OutboxEntry, Page, SinkKind, Store, StoreError, Update};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Slot {
    Due(DateTime<Utc>),
    Leased(DateTime<Utc>),
    Done,
    Dead(String),
}

/// The outbox contract the deliverer relies on: oldest first, at most the earliest
/// undone entry per call and sink, leases, retries with a due time, dead letters.
#[derive(Default)]
pub(super) struct OutboxDouble {
    pub(super) entries: Mutex<Vec<(OutboxEntry, Slot)>>,
    pub(super) acks: Mutex<Vec<Vec<u64>>>,
    pub(super) retries: Mutex<Vec<(u64, DateTime<Utc>, String)>>,
}

impl OutboxDouble {
    pub(super) fn push(&self, entry: OutboxEntry) {
        self.entries
            .lock()
            .unwrap()
            .push((entry, Slot::Due(Utc::now())));
    }

    pub(super) fn slot(&self, sink: SinkKind, id: u64) -> Slot {
        let entries = self.entries.lock().unwrap();
        let found = entries.iter().find(|(e, _)| e.sink == sink && e.id == id);
        found.map(|(_, slot)| slot.clone()).unwrap()
    }

    fn update(
        &self,
        sink: SinkKind,
        id: u64,
        f: impl FnOnce(&mut OutboxEntry, &mut Slot),
    ) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().unwrap();
        let (entry, slot) = entries
            .iter_mut()
            .find(|(e, _)| e.sink == sink && e.id == id)
            .ok_or(StoreError::NoEntry(id))?;
        f(entry, slot);
        Ok(())
    }
}

fn not_in_double<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend("not in the test double".into()))
}

#[async_trait]
impl Store for OutboxDouble {
    async fn create_call(&self, _: CallRecord, _: EventType) -> Result<CallEvent, StoreError> {
        not_in_double()
    }
    async fn get_call(&self, _: &str) -> Result<Option<CallRecord>, StoreError> {
        not_in_double()
    }
    async fn list_calls(&self, _: &CallFilter, _: &Page) -> Result<Vec<CallRecord>, StoreError> {
        not_in_double()
    }
    async fn update_call(&self, _: &str, _: Update) -> Result<Vec<CallEvent>, StoreError> {
        not_in_double()
    }

    async fn claim(
        &self,
        sink: SinkKind,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = Utc::now();
        let until = now + TimeDelta::from_std(lease).unwrap();
        let mut entries = self.entries.lock().unwrap();
        let mut seen_calls = HashSet::new();
        let mut claimed = Vec::new();
        for (entry, slot) in entries.iter_mut().filter(|(e, _)| e.sink == sink) {
            if matches!(slot, Slot::Done | Slot::Dead(_)) {
                continue;
            }
            // Only the earliest undone entry of a call is a candidate.
            if !seen_calls.insert(entry.event.call_id.clone()) {
                continue;
            }
            let free = match slot {
                Slot::Due(at) | Slot::Leased(at) => *at <= now,
                _ => false,
            };
            if free && claimed.len() < max {
                // The store's contract: every claim counts as an attempt.
                entry.attempts += 1;
                *slot = Slot::Leased(until);
                claimed.push(entry.clone());
            }
        }
        Ok(claimed)
    }

    async fn ack(&self, sink: SinkKind, ids: &[u64]) -> Result<(), StoreError> {
        self.acks.lock().unwrap().push(ids.to_vec());
        for &id in ids {
            self.update(sink, id, |_, slot| *slot = Slot::Done)?;
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
        self.retries
            .lock()
            .unwrap()
            .push((id, at, error.to_owned()));
        self.update(sink, id, |entry, slot| {
            entry.last_error = Some(error.to_owned());
            *slot = Slot::Due(at);
        })
    }

    async fn dead_letter(&self, sink: SinkKind, id: u64, error: &str) -> Result<(), StoreError> {
        self.update(sink, id, |_, slot| *slot = Slot::Dead(error.to_owned()))
    }

    async fn list_dead(&self, _: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        not_in_double()
    }
    async fn replay_dead(&self, _: SinkKind, _: u64) -> Result<(), StoreError> {
        not_in_double()
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        let entries = self.entries.lock().unwrap();
        let undone =
            |(_, slot): &&(OutboxEntry, Slot)| matches!(slot, Slot::Due(_) | Slot::Leased(_));
        Ok(entries.iter().filter(undone).count())
    }

    async fn record_orphan_callback(
        &self,
        _: &str,
        _: &[(String, String)],
    ) -> Result<(), StoreError> {
        not_in_double()
    }
}

/// A sink that answers from a script per event id (default: delivered) and logs every
/// event it is handed, in order.
pub(super) struct ScriptedSink {
    kind: SinkKind,
    /// event_id → outcomes to give, first to last, before delivering.
    script: Mutex<HashMap<String, Vec<Delivery>>>,
    seen: Mutex<Vec<String>>,
    delay: Duration,
}

impl ScriptedSink {
    pub(super) fn new(kind: SinkKind) -> Arc<Self> {
        Self::slow(kind, Duration::ZERO)
    }

    pub(super) fn slow(kind: SinkKind, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            kind,
            script: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            delay,
        })
    }

    pub(super) fn script(&self, event_id: &str, outcomes: Vec<Delivery>) {
        self.script
            .lock()
            .unwrap()
            .insert(event_id.to_owned(), outcomes);
    }

    pub(super) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sink for ScriptedSink {
    fn kind(&self) -> SinkKind {
        self.kind
    }

    async fn deliver(&self, entries: &[OutboxEntry]) -> Vec<Delivery> {
        tokio::time::sleep(self.delay).await;
        let mut script = self.script.lock().unwrap();
        let mut seen = self.seen.lock().unwrap();
        entries
            .iter()
            .map(|entry| {
                seen.push(entry.event.event_id.clone());
                match script.get_mut(&entry.event.event_id) {
                    Some(outcomes) if !outcomes.is_empty() => outcomes.remove(0),
                    _ => Delivery::Delivered,
                }
            })
            .collect()
    }
}
