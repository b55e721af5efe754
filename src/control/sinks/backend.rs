//! The backend sink: posts each event to `POST {backend_url}/api/calls/external-updates`.
//!
//! Wire format: the body is a JSON **array** of updates; voxgate sends one event per
//! request (so the response speaks for exactly one event and a 400 dead-letters only the
//! event it refused), each
//! `{call_id, campaign_id, status, call_outcome, duration, hangup_cause, recording_url,
//! transcript, event, event_id, seq, occurred_at, plivo_uuid, metadata}` (unknown values
//! are `null`; `status` is the call's state, `duration` answered seconds, `seq` the event's
//! position in its call so the backend can drop stale updates). Headers:
//! - `Content-Type: application/json`
//! - `X-Voxgate-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`
//! - `Idempotency-Key: <event_id>` (the same on every redelivery of the event).
//!
//! A batch's requests run concurrently (up to [`DEFAULT_CONCURRENCY`]); the store hands out
//! at most one entry per call, and entries of one call that still share a batch are sent
//! one after the other, in order.
//!
//! Outcome ([`classify`]): 2xx → delivered; 408, 429 (with its `Retry-After`), 5xx (with
//! its `Retry-After`) and any other status, timeouts and connection errors → retry; other
//! 4xx → reject (dead letter, with the status and the start of the body). Once a request
//! times out or cannot connect, the batch starts no new request (the rest are retried
//! untried), so a dead backend costs a batch about one timeout, not one per event. Redirects are
//! not followed (a signed POST is never replayed elsewhere): a 3xx is retried so an
//! operator can fix the URL before the events age out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use sha2::Sha256;

use super::{Delivery, OutboxEntry, Sink, SinkError, SinkKind, error_chain, held_back};
use crate::control::model::{CallEvent, EventType};
use crate::retry::retry_after;

#[cfg(test)]
mod tests;

/// The path events are posted to, under the backend URL.
pub const UPDATES_PATH: &str = "/api/calls/external-updates";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Voxgate-Signature";
/// The idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Requests in flight at once for one batch.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// How much of a refusal's body is kept in the dead letter.
const BODY_EXCERPT: usize = 256;
const HEX: &[u8; 16] = b"0123456789abcdef";

type HmacSha256 = Hmac<Sha256>;

/// Delivers events to the backend's HTTP endpoint, signed.
pub struct BackendSink {
    client: reqwest::Client,
    url: reqwest::Url,
    key: HmacSha256,
    timeout: Duration,
    concurrency: usize,
}

/// One update as the backend receives it.
#[derive(Debug, Serialize)]
struct ExternalUpdate<'a> {
    call_id: &'a str,
    campaign_id: Option<&'a str>,
    status: &'static str,
    call_outcome: Option<&'static str>,
    duration: Option<u64>,
    hangup_cause: Option<&'a str>,
    recording_url: Option<&'a str>,
    transcript: Option<&'a str>,
    event: EventType,
    event_id: &'a str,
    seq: u64,
    occurred_at: DateTime<Utc>,
    plivo_uuid: Option<&'a str>,
    metadata: &'a serde_json::Value,
}

impl<'a> From<&'a CallEvent> for ExternalUpdate<'a> {
    fn from(event: &'a CallEvent) -> Self {
        let call = &event.call;
        Self {
            call_id: &event.call_id,
            campaign_id: call.campaign_id.as_deref(),
            status: call.state.as_str(),
            call_outcome: call.call_outcome(),
            duration: call.duration_secs,
            hangup_cause: call.hangup_cause.as_deref(),
            recording_url: call.recording_url.as_deref(),
            transcript: call.transcript.as_deref(),
            event: event.event,
            event_id: &event.event_id,
            seq: event.seq,
            occurred_at: event.occurred_at,
            plivo_uuid: call.plivo_call_uuid.as_deref(),
            metadata: &call.metadata,
        }
    }
}

impl BackendSink {
    /// A sink posting to `{backend_url}/api/calls/external-updates`, signing with
    /// `hmac_secret`; each request (connect, send, response body) is bounded by `timeout`.
    pub fn new(
        backend_url: &str,
        hmac_secret: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Self, SinkError> {
        let bad = |reason: &str| SinkError::BackendUrl {
            url: backend_url.to_owned(),
            reason: reason.to_owned(),
        };
        let joined = format!("{}{UPDATES_PATH}", backend_url.trim_end_matches('/'));
        let url = reqwest::Url::parse(&joined).map_err(|err| bad(&err.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        let secret = hmac_secret.as_ref();
        if secret.is_empty() {
            return Err(SinkError::EmptySecret);
        }
        let key = HmacSha256::new_from_slice(secret).map_err(|_| SinkError::EmptySecret)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(SinkError::Http)?;
        Ok(Self {
            client,
            url,
            key,
            timeout,
            concurrency: DEFAULT_CONCURRENCY,
        })
    }

    /// Requests in flight at once for one batch (default [`DEFAULT_CONCURRENCY`], at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// `sha256=<hex HMAC-SHA256 of body>`.
    fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.key.clone();
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let mut text = String::with_capacity(7 + 2 * digest.len());
        text.push_str("sha256=");
        for byte in digest.iter() {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        text
    }

    /// Posts a call's entries one after the other; after one that is to be retried, the
    /// later ones are held back (retried behind it), never sent ahead of it. Once any
    /// request of the batch found the backend unreachable (`down`), no new request starts.
    async fn post_in_order(&self, entries: Vec<&OutboxEntry>, down: &AtomicBool) -> Vec<Delivery> {
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut blocked: Option<Option<Duration>> = None;
        for entry in entries {
            let outcome = match blocked {
                Some(retry_after) => held_back(retry_after),
                None if down.load(Ordering::Relaxed) => {
                    Delivery::retry("backend unreachable earlier in this batch; not tried")
                }
                None => match self.post(&entry.event).await {
                    Posted::Answered(outcome) => outcome,
                    Posted::Unreachable(reason) => {
                        down.store(true, Ordering::Relaxed);
                        Delivery::retry(reason)
                    }
                },
            };
            if let Delivery::Retry { retry_after, .. } = &outcome {
                blocked.get_or_insert(*retry_after);
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    async fn post(&self, event: &CallEvent) -> Posted {
        let body = match serde_json::to_vec(&[ExternalUpdate::from(event)]) {
            Ok(body) => body,
            Err(err) => {
                return Posted::Answered(Delivery::Reject {
                    reason: format!("cannot encode event: {err}"),
                });
            }
        };
        let signature = self.sign(&body);
        let sent = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(IDEMPOTENCY_HEADER, &event.event_id)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            // A request that cannot even be built (a call id that is no valid header
            // value) never will be: not the backend's fault, not worth retrying.
            Err(err) if err.is_builder() => {
                return Posted::Answered(Delivery::Reject {
                    reason: format!("cannot build the request: {}", error_chain(&err)),
                });
            }
            Err(err) if err.is_timeout() => {
                let reason = format!("backend timed out after {:?}", self.timeout);
                return Posted::Unreachable(reason);
            }
            Err(err) => return Posted::Unreachable(format!("backend: {}", error_chain(&err))),
        };
        let status = response.status();
        if status.is_success() {
            return Posted::Answered(Delivery::Delivered);
        }
        let retry_after = retry_after(response.headers(), Utc::now());
        // The start of the body says why; the rest is not worth waiting for.
        let mut excerpt = Vec::new();
        while excerpt.len() < BODY_EXCERPT {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        excerpt.truncate(BODY_EXCERPT);
        let body = String::from_utf8_lossy(&excerpt);
        Posted::Answered(classify(status, retry_after, &body))
    }
}

/// How one request went.
enum Posted {
    /// The backend answered (or the event could not be encoded).
    Answered(Delivery),
    /// No answer: timeout or connection error (a retry, and the batch stops here).
    Unreachable(String),
}

/// Whether a non-network outcome is delivered, retriable or permanent (the "is it
/// retriable" half of retry logic; the policy times the retry).
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> Delivery {
    let code = status.as_u16();
    let described = || {
        let body = body.trim();
        if body.is_empty() {
            format!("backend answered {code}")
        } else {
            format!("backend answered {code}: {body}")
        }
    };
    match code {
        200..=299 => Delivery::Delivered,
        408 | 429 => Delivery::Retry {
            reason: described(),
            retry_after,
        },
        400..=499 => Delivery::Reject {
            reason: described(),
        },
        _ => Delivery::Retry {
            reason: described(),
            retry_after,
        },
    }
}

#[async_trait]
impl Sink for BackendSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Backend
    }

    async fn deliver(&self, entries: &[OutboxEntry]) -> Vec<Delivery> {
        // Group by call, keeping order: calls go concurrently, a call's events in sequence.
        let mut slot_of_call: HashMap<&str, usize> = HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let slot = *slot_of_call
                .entry(entry.event.call_id.as_str())
                .or_insert_with(|| {
                    groups.push(Vec::new());
                    groups.len() - 1
                });
            groups[slot].push(index);
        }
        let down = AtomicBool::new(false);
        let down = &down;
        let results: Vec<(Vec<usize>, Vec<Delivery>)> = futures_util::stream::iter(groups)
            .map(|indexes| async move {
                let group = indexes.iter().map(|&i| &entries[i]).collect();
                let outcomes = self.post_in_order(group, down).await;
                (indexes, outcomes)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut outcomes: Vec<Option<Delivery>> = vec![None; entries.len()];
        for (indexes, delivered) in results {
            for (index, outcome) in indexes.into_iter().zip(delivered) {
                outcomes[index] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Delivery::retry("no outcome")))
            .collect()
    }
}
