//! The deliverer: moves outbox entries from the [`Store`] to the [`Sink`]s.
//!
//! One task per sink runs: `claim` a batch → [`Sink::deliver`] → `ack` what was delivered
//! (one call per batch), `retry_later` what is retriable (the [`RetryPolicy`] picks the
//! time; when it gives up, `dead_letter`), `dead_letter` what the sink rejected. When
//! nothing was due it waits `idle_poll`, or less if [`Deliverer::notify`] is called (the
//! control plane calls it right after storing events, so delivery starts at once).
//!
//! Invariants:
//! - An entry is acknowledged only after its sink reported [`Delivery::Delivered`]; every
//!   other path leaves it in the store (retry, dead letter, or — when a store call fails —
//!   leased until the lease runs out, then claimed again). Delivery is at-least-once; the
//!   sinks make redelivery harmless.
//! - Per-call order is the store's (a claim holds at most the earliest undone entry of a
//!   call); the deliverer hands a batch to the sink in the claimed order and never reorders
//!   or splits it, and sinks hold a call's later entries behind a failed one.
//! - A batch is never acted on after its lease: [`Sink::deliver`] gets three quarters of
//!   the lease, after which every entry of the batch is retried. Size `batch` and the
//!   sinks' timeouts so a batch fits.
//! - Shutdown stops claiming at once; a batch in flight is finished (sink, then store), so
//!   it takes at most that bound. A claim cut short by shutdown leaves its entries leased
//!   until the lease runs out.
//!
//! Attempts: by the store's contract an entry's `attempts` counts every claim, the one
//! that returned it included, so the try at hand is attempt `attempts` — the number the
//! [`RetryPolicy`] backs off from and budgets against (a deliverer that crashed mid-try
//! still used one up).
//!
//! Telemetry: each retry is logged at warn, each dead letter (a rejection or a give-up)
//! once at error; counters and the latency histogram are named in [`crate::telemetry`].
//! The deliverer never sleeps inside a batch and never retries a sink call itself: a
//! retry is a due time in the store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::sinks::{Delivery, Sink};
use super::store::{OutboxEntry, SinkKind, Store};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::telemetry;

#[cfg(test)]
mod tests;

/// How the deliverer claims work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelivererConfig {
    /// Entries claimed at once, per sink (default 64; at least 1).
    pub batch: usize,
    /// How long a claim holds its entries (default 30 s).
    pub lease: Duration,
    /// Wait between claims that found nothing, unless notified (default 200 ms).
    pub idle_poll: Duration,
}

impl Default for DelivererConfig {
    fn default() -> Self {
        Self {
            batch: 64,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(200),
        }
    }
}

/// A handle on the running deliverer: cheap to clone, [`Deliverer::notify`] wakes it.
#[derive(Debug, Clone)]
pub struct Deliverer {
    wakers: Arc<[Arc<Notify>]>,
}

impl Deliverer {
    /// Starts one delivery loop per sink (on the current Tokio runtime); they stop when
    /// `shutdown` is cancelled. The returned task ends when every loop has.
    pub fn spawn(
        store: Arc<dyn Store>,
        sinks: Vec<Arc<dyn Sink>>,
        policy: RetryPolicy,
        config: DelivererConfig,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let config = DelivererConfig {
            batch: config.batch.max(1),
            ..config
        };
        let mut loops = JoinSet::new();
        let mut wakers = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let wake = Arc::new(Notify::new());
            wakers.push(Arc::clone(&wake));
            let worker = Worker {
                kind: sink.kind(),
                store: Arc::clone(&store),
                sink,
                policy,
                config: config.clone(),
                wake,
                shutdown: shutdown.clone(),
            };
            loops.spawn(worker.run());
        }
        let all = tokio::spawn(async move {
            while let Some(ended) = loops.join_next().await {
                if let Err(err) = ended {
                    tracing::error!(error = %err, "a delivery loop died; its sink gets no more events");
                }
            }
        });
        (
            Self {
                wakers: wakers.into(),
            },
            all,
        )
    }

    /// New events are stored: claim now instead of at the next poll. A notify that
    /// arrives while a loop is busy makes its next wait return at once (never lost).
    pub fn notify(&self) {
        for wake in self.wakers.iter() {
            wake.notify_one();
        }
    }
}

/// Why an entry became a dead letter (the metric's `reason` label).
#[derive(Debug, Clone, Copy)]
enum DeadReason {
    Rejected,
    GaveUp,
}

impl DeadReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::GaveUp => "gave_up",
        }
    }
}

/// One sink's delivery loop.
struct Worker {
    kind: SinkKind,
    store: Arc<dyn Store>,
    sink: Arc<dyn Sink>,
    policy: RetryPolicy,
    config: DelivererConfig,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Worker {
    async fn run(self) {
        let sink = self.kind.as_str();
        tracing::info!(sink, "delivery loop started");
        let mut store_failing = false;
        while !self.shutdown.is_cancelled() {
            let claimed = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                claimed = self.store.claim(self.kind, self.config.batch, self.config.lease) => claimed,
            };
            match claimed {
                Ok(entries) => {
                    if store_failing {
                        store_failing = false;
                        tracing::info!(sink, "outbox claims work again");
                    }
                    if entries.is_empty() {
                        self.idle().await;
                    } else {
                        // Not raced with shutdown: a batch in flight is finished.
                        self.deliver(entries).await;
                    }
                }
                Err(err) => {
                    if !store_failing {
                        store_failing = true;
                        tracing::warn!(sink, error = %err, "cannot claim outbox entries; polling on");
                    }
                    self.idle().await;
                }
            }
        }
        tracing::info!(sink, "delivery loop stopped");
    }

    async fn idle(&self) {
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = self.wake.notified() => {}
            () = tokio::time::sleep(self.config.idle_poll) => {}
        }
    }

    async fn deliver(&self, entries: Vec<OutboxEntry>) {
        let bound = self.config.lease * 3 / 4;
        let outcomes = match tokio::time::timeout(bound, self.sink.deliver(&entries)).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                let reason = format!("sink gave no answer within {bound:?} (3/4 of the lease)");
                entries.iter().map(|_| Delivery::retry(&reason)).collect()
            }
        };
        if outcomes.len() != entries.len() {
            tracing::error!(
                sink = self.kind.as_str(),
                entries = entries.len(),
                outcomes = outcomes.len(),
                "sink broke its contract: one outcome per entry; the missing ones are retried"
            );
        }
        let outcomes = outcomes.into_iter().chain(std::iter::repeat_with(|| {
            Delivery::retry("the sink gave no outcome")
        }));
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        for (entry, outcome) in entries.iter().zip(outcomes) {
            match outcome {
                Delivery::Delivered => delivered.push(entry),
                other => failed.push((entry, other)),
            }
        }
        self.ack(&delivered).await;
        for (entry, outcome) in failed {
            match outcome {
                Delivery::Retry {
                    reason,
                    retry_after,
                } => self.retry(entry, &reason, retry_after).await,
                Delivery::Reject { reason } => {
                    self.dead_letter(entry, DeadReason::Rejected, &reason).await;
                }
                Delivery::Delivered => {}
            }
        }
    }

    async fn ack(&self, delivered: &[&OutboxEntry]) {
        if delivered.is_empty() {
            return;
        }
        let ids: Vec<u64> = delivered.iter().map(|entry| entry.id).collect();
        if let Err(err) = self.store.ack(self.kind, &ids).await {
            // The sink has them; they come back when the lease runs out and the sink
            // ignores the redelivery (idempotency key).
            tracing::warn!(
                sink = self.kind.as_str(), entries = ids.len(), error = %err,
                "cannot acknowledge delivered entries; they will be delivered again"
            );
            return;
        }
        let now = Utc::now();
        let sink = self.kind.as_str();
        metrics::counter!(telemetry::DELIVERIES, "sink" => sink).increment(ids.len() as u64);
        let latency = metrics::histogram!(telemetry::DELIVERY_LATENCY, "sink" => sink);
        for entry in delivered {
            latency.record(age(entry, now).as_secs_f64());
            tracing::debug!(
                sink, call_id = %entry.event.call_id, event_id = %entry.event.event_id,
                attempts = entry.attempts.max(1), "event delivered"
            );
        }
    }

    async fn retry(&self, entry: &OutboxEntry, reason: &str, retry_after: Option<Duration>) {
        // `attempts` counts claims, this one included (the store's contract).
        let attempt = entry.attempts.max(1);
        let now = Utc::now();
        let age = age(entry, now);
        let delay = match self.policy.next(attempt, age, retry_after) {
            RetryDecision::RetryAt(delay) => delay,
            RetryDecision::GiveUp => {
                let why = format!(
                    "gave up after {attempt} attempts over {}s: {reason}",
                    age.as_secs()
                );
                self.dead_letter(entry, DeadReason::GaveUp, &why).await;
                return;
            }
        };
        let at = TimeDelta::from_std(delay)
            .ok()
            .and_then(|delta| now.checked_add_signed(delta))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if let Err(err) = self
            .store
            .retry_later(self.kind, entry.id, at, reason)
            .await
        {
            tracing::warn!(
                sink = self.kind.as_str(), call_id = %entry.event.call_id,
                event_id = %entry.event.event_id, error = %err,
                "cannot schedule a retry; the entry comes back when its lease runs out"
            );
            return;
        }
        tracing::warn!(
            sink = self.kind.as_str(), call_id = %entry.event.call_id,
            event_id = %entry.event.event_id, attempt, retry_in = ?delay, reason,
            "delivery failed; retrying"
        );
        metrics::counter!(telemetry::DELIVERY_RETRIES, "sink" => self.kind.as_str()).increment(1);
    }

    async fn dead_letter(&self, entry: &OutboxEntry, why: DeadReason, reason: &str) {
        if let Err(err) = self.store.dead_letter(self.kind, entry.id, reason).await {
            tracing::warn!(
                sink = self.kind.as_str(), call_id = %entry.event.call_id,
                event_id = %entry.event.event_id, error = %err,
                "cannot park a dead letter; the entry comes back when its lease runs out"
            );
            return;
        }
        tracing::error!(
            sink = self.kind.as_str(), call_id = %entry.event.call_id,
            event_id = %entry.event.event_id, attempts = entry.attempts.max(1),
            why = why.as_str(), reason, "event not delivered; parked as a dead letter"
        );
        metrics::counter!(
            telemetry::DEAD_LETTERS,
            "sink" => self.kind.as_str(),
            "reason" => why.as_str()
        )
        .increment(1);
    }
}

/// How long ago the entry's event occurred (zero if its clock was ahead).
fn age(entry: &OutboxEntry, now: DateTime<Utc>) -> Duration {
    (now - entry.event.occurred_at)
        .to_std()
        .unwrap_or(Duration::ZERO)
}
