//! The queue sink: mirrors each call's state into the `call_job:{call_id}` hash the
//! backend's workers read, and appends every event to a Redis Stream.
//!
//! Per event, one Lua script does, atomically:
//! 1. `HSET call_job:{call_id}` `status` (the call's state), `call_outcome`, `plivo_uuid`,
//!    `duration` (answered seconds), `hangup_cause`, `recording_url`, `updated_at`
//!    (RFC 3339, the record's last change), `data_source=voxgate`, and `last_seq` — **only
//!    if the event's `seq` is greater than the stored `last_seq`**, so an older event
//!    (a replayed dead letter, a redelivery) never overwrites a newer state. Unknown values
//!    are written as the empty string (Redis hashes have no null).
//! 2. `XADD {stream_key} * event_id … call_id … event … seq … occurred_at … payload …`
//!    (`payload` is the whole [`CallEvent`] as JSON) — **only if the marker
//!    `voxgate:delivered:{event_id}` does not exist**; the marker is then set with a TTL
//!    ([`DEFAULT_MARKER_TTL`], 3 days: the retry window is 24 h, which leaves two days to
//!    replay dead letters without duplicates). A redelivered event appends nothing.
//!
//! The stream entry is appended before the marker is set: Redis does not roll a script back
//! when a command fails, so a failed `XADD` leaves no marker behind and the retry appends.
//!
//! The connection is made on first use, not in [`QueueSink::new`], so voxgate starts while
//! Redis is down (its events wait in the outbox). Every command is bounded by the sink's
//! timeout. Any Redis error is a [`Delivery::Retry`]; after a connection-level error the
//! rest of the batch is not tried (it would only wait for the same timeout).
//!
//! Never trims the stream (its consumers own that) and never deletes a hash.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::SecondsFormat;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Delivery, OutboxEntry, Sink, SinkError, SinkKind, error_chain, held_back};
use crate::control::model::CallEvent;

#[cfg(test)]
mod tests;

/// How long the "already appended" marker of an event lives.
pub const DEFAULT_MARKER_TTL: Duration = Duration::from_secs(3 * 24 * 60 * 60);

/// Bound on connecting and on each command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The value of the hash's `data_source` field.
pub const DATA_SOURCE: &str = "voxgate";

const APPLY: &str = r"
-- KEYS: call_job hash, stream, delivered marker
-- ARGV: seq, marker ttl (s), n hash pairs, n hash field/value pairs, stream field/value pairs
local seq = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'last_seq')) or 0
local hash_updated = 0
if seq > last then
  local fields = {'last_seq', ARGV[1]}
  for i = 4, 3 + 2 * n do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
  hash_updated = 1
end
local appended = 0
if redis.call('EXISTS', KEYS[3]) == 0 then
  local entry = {}
  for i = 4 + 2 * n, #ARGV do entry[#entry + 1] = ARGV[i] end
  redis.call('XADD', KEYS[2], '*', unpack(entry))
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[2])
  appended = 1
end
return {hash_updated, appended}
";

/// Delivers events to Redis: the `call_job:{call_id}` hash and an events stream.
pub struct QueueSink {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
    stream_key: String,
    marker_ttl: Duration,
    timeout: Duration,
}

/// What the script did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applied {
    /// The hash took the event's state (it was newer than the stored one).
    hash_updated: bool,
    /// A stream entry was appended (first delivery of this event).
    appended: bool,
}

impl QueueSink {
    /// A sink for the Redis at `redis_url` (`redis://host:port/db`) appending to
    /// `stream_key`. Only checks the URL; connects on first delivery.
    pub fn new(redis_url: &str, stream_key: impl Into<String>) -> Result<Self, SinkError> {
        let stream_key = stream_key.into();
        if stream_key.is_empty() {
            return Err(SinkError::Empty("the stream key"));
        }
        Ok(Self {
            client: redis::Client::open(redis_url).map_err(SinkError::RedisUrl)?,
            conn: OnceCell::new(),
            script: redis::Script::new(APPLY),
            stream_key,
            marker_ttl: DEFAULT_MARKER_TTL,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Bounds connecting and each command (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long an event's "already appended" marker lives (default
    /// [`DEFAULT_MARKER_TTL`]); a redelivery after it expired appends again. At least 1 s.
    pub fn with_marker_ttl(mut self, ttl: Duration) -> Self {
        self.marker_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    // Reconnect once per command; the deliverer's backoff does the rest.
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await?;
        Ok(conn.clone())
    }

    async fn apply(
        &self,
        conn: &mut ConnectionManager,
        event: &CallEvent,
        payload: &str,
    ) -> redis::RedisResult<Applied> {
        let hash = hash_fields(event);
        let seq = event.seq.to_string();
        let occurred_at = event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let stream = [
            ("event_id", event.event_id.as_str()),
            ("call_id", event.call_id.as_str()),
            ("event", event.event.as_str()),
            ("seq", seq.as_str()),
            ("occurred_at", occurred_at.as_str()),
            ("payload", payload),
        ];
        let mut invocation = self.script.key(format!("call_job:{}", event.call_id));
        invocation
            .key(&self.stream_key)
            .key(format!("voxgate:delivered:{}", event.event_id))
            .arg(&seq)
            .arg(self.marker_ttl.as_secs())
            .arg(hash.len());
        for (field, value) in &hash {
            invocation.arg(*field).arg(value);
        }
        for (field, value) in stream {
            invocation.arg(field).arg(value);
        }
        let run = invocation.invoke_async::<(i64, i64)>(conn);
        let (hash_updated, appended) = match tokio::time::timeout(self.timeout, run).await {
            Ok(result) => result?,
            Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        };
        Ok(Applied {
            hash_updated: hash_updated == 1,
            appended: appended == 1,
        })
    }
}

/// The `call_job` hash fields an event sets (besides `last_seq`).
fn hash_fields(event: &CallEvent) -> [(&'static str, String); 8] {
    let call = &event.call;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    [
        ("status", call.state.as_str().to_owned()),
        (
            "call_outcome",
            call.call_outcome().unwrap_or_default().to_owned(),
        ),
        ("plivo_uuid", text(&call.plivo_call_uuid)),
        (
            "duration",
            call.duration_secs
                .map(|s| s.to_string())
                .unwrap_or_default(),
        ),
        ("hangup_cause", text(&call.hangup_cause)),
        ("recording_url", text(&call.recording_url)),
        (
            "updated_at",
            call.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
        ("data_source", DATA_SOURCE.to_owned()),
    ]
}

/// A Redis failure that says the connection, not the command, is the problem.
fn is_connection_error(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
}

#[async_trait]
impl Sink for QueueSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Queue
    }

    async fn deliver(&self, entries: &[OutboxEntry]) -> Vec<Delivery> {
        let mut conn = match self.connection().await {
            Ok(conn) => conn,
            Err(err) => {
                let reason = format!("redis: {}", error_chain(&err));
                return entries.iter().map(|_| Delivery::retry(&reason)).collect();
            }
        };
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut down: Option<String> = None;
        // One after the other: a batch may (in principle) hold two events of one call, and
        // a call's event after one that failed must wait for it.
        let mut blocked: HashSet<&str> = HashSet::new();
        for entry in entries {
            let event = &entry.event;
            if let Some(reason) = &down {
                outcomes.push(Delivery::retry(reason));
                continue;
            }
            if blocked.contains(event.call_id.as_str()) {
                outcomes.push(held_back(None));
                continue;
            }
            let payload = match serde_json::to_string(event) {
                Ok(payload) => payload,
                Err(err) => {
                    outcomes.push(Delivery::Reject {
                        reason: format!("cannot encode event: {err}"),
                    });
                    continue;
                }
            };
            match self.apply(&mut conn, event, &payload).await {
                Ok(applied) => {
                    tracing::debug!(
                        call_id = %event.call_id, event_id = %event.event_id,
                        hash_updated = applied.hash_updated, appended = applied.appended,
                        "queue sink applied event"
                    );
                    outcomes.push(Delivery::Delivered);
                }
                Err(err) => {
                    let reason = format!("redis: {}", error_chain(&err));
                    if is_connection_error(&err) {
                        down = Some(reason.clone());
                    }
                    blocked.insert(event.call_id.as_str());
                    outcomes.push(Delivery::retry(reason));
                }
            }
        }
        outcomes
    }
}
