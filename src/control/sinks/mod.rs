//! Sinks: where lifecycle events go — the Redis queue ([`QueueSink`]) and the backend's HTTP
//! endpoint ([`BackendSink`]).
//!
//! A sink owns one half of retry logic: it decides, per entry, whether the outcome was a
//! success, worth retrying, or permanent ([`Delivery`]). When to retry is the
//! [`RetryPolicy`](crate::retry::RetryPolicy)'s call, and acknowledging, retrying
//! and dead-lettering is the [`Deliverer`](crate::control::deliver::Deliverer)'s.
//!
//! Invariants every sink keeps:
//! - [`Sink::deliver`] returns exactly one [`Delivery`] per entry, in the entries' order,
//!   and never fails as a whole: an I/O error is a [`Delivery::Retry`] for the entries it
//!   touched.
//! - Redelivery is harmless: the same event (same `event_id`) delivered twice has the
//!   effect of one delivery (delivery is at-least-once; the event id is the idempotency key).
//! - Two events of the same call are never sent out of order: a sink delivers a batch's
//!   entries of one call one after the other, in the order given, and once one of them is
//!   to be retried the later ones are held back (retried too), never sent ahead of it.
//! - Every call is bounded in time (connection and response timeouts), so a shutdown that
//!   waits for the in-flight batch waits a bounded time.
//!
//! A sink never touches the store and never sleeps to retry on its own.

pub mod backend;
pub mod queue;
#[cfg(test)]
pub(crate) mod test_support;

use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

pub use backend::BackendSink;
pub use queue::QueueSink;

pub use super::store::{OutboxEntry, SinkKind};

/// What became of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The sink has the event: acknowledge it.
    Delivered,
    /// A transient failure: try again later.
    Retry {
        /// What went wrong (for the log and the entry's `last_error`).
        reason: String,
        /// The sink's own "not before" (HTTP `Retry-After`), if it gave one.
        retry_after: Option<Duration>,
    },
    /// A permanent failure: retrying cannot help, the entry goes to the dead letters.
    Reject {
        /// Why (for the log and the dead letter).
        reason: String,
    },
}

impl Delivery {
    /// A retry without a server hint.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// Somewhere events are delivered.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Which sink this is (its outbox entries are claimed under this kind).
    fn kind(&self) -> SinkKind;

    /// Delivers `entries`; one [`Delivery`] per entry, in order.
    async fn deliver(&self, entries: &[OutboxEntry]) -> Vec<Delivery>;
}

/// A sink could not be set up (bad configuration).
#[derive(Debug, Error)]
pub enum SinkError {
    /// The Redis URL does not parse.
    #[error("invalid Redis URL: {0}")]
    RedisUrl(#[source] redis::RedisError),
    /// The backend URL does not parse or is not http(s).
    #[error("invalid backend URL {url:?}: {reason}")]
    BackendUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HMAC secret is empty.
    #[error("the backend HMAC secret is empty")]
    EmptySecret,
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// An empty name where one is needed (stream key).
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

/// The outcome of an entry not tried because an earlier entry of its call, in the same
/// batch, is to be retried: it waits (at least as long as) behind that one.
fn held_back(retry_after: Option<Duration>) -> Delivery {
    Delivery::Retry {
        reason: "held behind an earlier event of the call that was not delivered".to_owned(),
        retry_after,
    }
}

/// `err` and its sources, `: `-separated (reqwest and redis hide the cause in the chain).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
