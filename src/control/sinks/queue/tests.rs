//! Against the real Redis at 127.0.0.1:6379; every test uses its own call ids and stream
//! key and deletes what it wrote.

use std::collections::HashMap;
use std::time::Instant;

use chrono::DateTime;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use super::*;
use crate::control::model::CallState;
use crate::control::sinks::test_support::{entry, unique_call_id};

const REDIS_URL: &str = "redis://127.0.0.1:6379/";

struct Fixture {
    sink: QueueSink,
    conn: MultiplexedConnection,
    stream: String,
    calls: Vec<String>,
}

impl Fixture {
    async fn new(tag: &str) -> Self {
        let stream = unique_call_id(&format!("{tag}-stream"));
        let client = redis::Client::open(REDIS_URL).unwrap();
        Self {
            sink: QueueSink::new(REDIS_URL, stream.clone()).unwrap(),
            conn: client.get_multiplexed_async_connection().await.unwrap(),
            stream,
            calls: Vec::new(),
        }
    }

    fn call(&mut self, tag: &str) -> String {
        let id = unique_call_id(tag);
        self.calls.push(id.clone());
        id
    }

    async fn hash(&mut self, call_id: &str) -> HashMap<String, String> {
        self.conn
            .hgetall(format!("call_job:{call_id}"))
            .await
            .unwrap()
    }

    async fn stream_entries(&mut self) -> Vec<HashMap<String, String>> {
        let entries: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn)
            .await
            .unwrap();
        entries.into_iter().map(|(_, fields)| fields).collect()
    }

    async fn cleanup(mut self) {
        let mut keys = vec![self.stream.clone()];
        for call in &self.calls {
            keys.push(format!("call_job:{call}"));
            for seq in 1..=10 {
                keys.push(format!("voxgate:delivered:{call}:{seq}"));
            }
        }
        let _: () = self.conn.del(keys).await.unwrap();
    }
}

#[tokio::test]
async fn writes_the_call_job_hash_and_one_stream_entry() {
    let mut fx = Fixture::new("queue-write").await;
    let call = fx.call("queue-write");
    let e = entry(SinkKind::Queue, 1, &call, 4, CallState::Completed);
    assert_eq!(
        fx.sink.deliver(std::slice::from_ref(&e)).await,
        vec![Delivery::Delivered]
    );

    let hash = fx.hash(&call).await;
    let expect = |field: &str, value: &str| assert_eq!(hash[field], value, "{field}");
    expect("status", "completed");
    expect("call_outcome", "answered");
    expect("plivo_uuid", &format!("uuid-{call}"));
    expect("duration", "42");
    expect("hangup_cause", "NORMAL_CLEARING");
    expect("recording_url", &format!("https://rec.example/{call}.wav"));
    expect("data_source", "voxgate");
    expect("last_seq", "4");
    let updated_at = DateTime::parse_from_rfc3339(&hash["updated_at"]).unwrap();
    assert_eq!(
        updated_at.timestamp_millis(),
        e.event.call.updated_at.timestamp_millis()
    );

    let stream = fx.stream_entries().await;
    assert_eq!(stream.len(), 1);
    let fields = &stream[0];
    assert_eq!(fields["event_id"], format!("{call}:4"));
    assert_eq!(fields["call_id"], call);
    assert_eq!(fields["event"], "call.ended");
    assert_eq!(fields["seq"], "4");
    assert!(DateTime::parse_from_rfc3339(&fields["occurred_at"]).is_ok());
    let payload: CallEvent = serde_json::from_str(&fields["payload"]).unwrap();
    assert_eq!(payload, e.event);

    let ttl: i64 = fx
        .conn
        .ttl(format!("voxgate:delivered:{call}:4"))
        .await
        .unwrap();
    let days3 = DEFAULT_MARKER_TTL.as_secs() as i64;
    assert!(ttl > days3 - 60 && ttl <= days3, "marker ttl {ttl}");
    fx.cleanup().await;
}

#[tokio::test]
async fn unknown_values_are_empty_strings() {
    let mut fx = Fixture::new("queue-empty").await;
    let call = fx.call("queue-empty");
    let mut e = entry(SinkKind::Queue, 1, &call, 1, CallState::Initiated);
    e.event.call.plivo_call_uuid = None;
    assert_eq!(fx.sink.deliver(&[e]).await, vec![Delivery::Delivered]);
    let hash = fx.hash(&call).await;
    assert_eq!(hash["status"], "initiated");
    for field in [
        "call_outcome",
        "plivo_uuid",
        "duration",
        "hangup_cause",
        "recording_url",
    ] {
        assert_eq!(hash[field], "", "{field}");
    }
    fx.cleanup().await;
}

#[tokio::test]
async fn redelivery_appends_nothing() {
    let mut fx = Fixture::new("queue-redeliver").await;
    let call = fx.call("queue-redeliver");
    let e = entry(SinkKind::Queue, 1, &call, 1, CallState::Initiated);
    for _ in 0..3 {
        assert_eq!(
            fx.sink.deliver(std::slice::from_ref(&e)).await,
            vec![Delivery::Delivered]
        );
    }
    assert_eq!(fx.stream_entries().await.len(), 1);
    assert_eq!(fx.hash(&call).await["last_seq"], "1");
    fx.cleanup().await;
}

#[tokio::test]
async fn an_older_event_never_overwrites_a_newer_state() {
    let mut fx = Fixture::new("queue-stale").await;
    let call = fx.call("queue-stale");
    let newer = entry(SinkKind::Queue, 2, &call, 4, CallState::Completed);
    let older = entry(SinkKind::Queue, 1, &call, 2, CallState::Ringing);
    assert_eq!(fx.sink.deliver(&[newer]).await, vec![Delivery::Delivered]);
    // A replayed dead letter: never delivered before, so it is appended, but the hash
    // keeps the newer state.
    assert_eq!(fx.sink.deliver(&[older]).await, vec![Delivery::Delivered]);
    let hash = fx.hash(&call).await;
    assert_eq!(hash["status"], "completed");
    assert_eq!(hash["last_seq"], "4");
    assert_eq!(hash["call_outcome"], "answered");
    let seqs: Vec<String> = fx
        .stream_entries()
        .await
        .into_iter()
        .map(|fields| fields["seq"].clone())
        .collect();
    assert_eq!(seqs, ["4", "2"]);
    fx.cleanup().await;
}

#[tokio::test]
async fn a_batch_of_several_calls_lands_in_order() {
    let mut fx = Fixture::new("queue-batch").await;
    let (a, b) = (fx.call("queue-batch-a"), fx.call("queue-batch-b"));
    let entries = [
        entry(SinkKind::Queue, 1, &a, 1, CallState::Initiated),
        entry(SinkKind::Queue, 2, &b, 1, CallState::Initiated),
        entry(SinkKind::Queue, 3, &a, 2, CallState::InProgress),
    ];
    assert_eq!(
        fx.sink.deliver(&entries).await,
        vec![Delivery::Delivered; 3]
    );
    let ids: Vec<String> = fx
        .stream_entries()
        .await
        .into_iter()
        .map(|fields| fields["event_id"].clone())
        .collect();
    assert_eq!(ids, [format!("{a}:1"), format!("{b}:1"), format!("{a}:2")]);
    assert_eq!(fx.hash(&a).await["status"], "in_progress");
    fx.cleanup().await;
}

#[tokio::test]
async fn a_redis_error_is_a_retry_and_holds_the_call_back() {
    let mut fx = Fixture::new("queue-wrongtype").await;
    let (bad, good) = (fx.call("queue-wrongtype"), fx.call("queue-fine"));
    // Someone else's value where the hash should be: WRONGTYPE from HSET.
    let _: () = fx
        .conn
        .set(format!("call_job:{bad}"), "oops")
        .await
        .unwrap();
    let entries = [
        entry(SinkKind::Queue, 1, &bad, 1, CallState::Initiated),
        entry(SinkKind::Queue, 2, &good, 1, CallState::Initiated),
        entry(SinkKind::Queue, 3, &bad, 2, CallState::Ringing),
    ];
    let outcomes = fx.sink.deliver(&entries).await;
    assert!(
        matches!(&outcomes[0], Delivery::Retry { reason, .. } if reason.contains("WRONGTYPE")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], Delivery::Delivered, "other calls carry on");
    assert_eq!(outcomes[2], held_back(None));
    let ids: Vec<String> = fx
        .stream_entries()
        .await
        .into_iter()
        .map(|fields| fields["event_id"].clone())
        .collect();
    assert_eq!(
        ids,
        [format!("{good}:1")],
        "nothing half-written for the failed call"
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn redis_down_is_a_retry_within_the_timeout() {
    // Nothing listens on port 1.
    let sink = QueueSink::new("redis://127.0.0.1:1/", "test-stream")
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let (a, b) = (
        unique_call_id("queue-down-a"),
        unique_call_id("queue-down-b"),
    );
    let entries = [
        entry(SinkKind::Queue, 1, &a, 1, CallState::Initiated),
        entry(SinkKind::Queue, 2, &b, 1, CallState::Initiated),
    ];
    let started = Instant::now();
    let outcomes = sink.deliver(&entries).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Delivery::Retry { reason, .. } if reason.starts_with("redis"))),
        "{outcomes:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn construction_checks_url_and_stream_key() {
    assert!(matches!(
        QueueSink::new("http://127.0.0.1:6379", "events"),
        Err(SinkError::RedisUrl(_))
    ));
    assert!(matches!(
        QueueSink::new(REDIS_URL, ""),
        Err(SinkError::Empty(_))
    ));
    assert!(
        QueueSink::new(REDIS_URL, "events").is_ok(),
        "no connection needed"
    );
}
