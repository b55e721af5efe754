//! What only the Redis store owes: several instances share one outbox; an instance's
//! leased entries sit in the consumer group's pending list under its own consumer, and
//! another instance takes them over when the lease runs out; concurrent updates of one
//! call from two instances both land, in turn.

use std::time::Duration;

use super::*;

const LEASE: Duration = Duration::from_secs(30);

/// `(consumer, count)` per consumer holding entries of `sink`'s stream.
async fn holders(store: &RedisStore, sink: SinkKind) -> Vec<(String, u64)> {
    let client = ::redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let summary: ::redis::Value = ::redis::cmd("XPENDING")
        .arg(format!("{}:outbox:{}", store.prefix(), sink.as_str()))
        .arg("deliverers")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ::redis::Value::Array(parts) = summary else {
        panic!("XPENDING summary: {summary:?}");
    };
    match parts.get(3) {
        Some(::redis::Value::Array(rows)) => rows
            .iter()
            .map(|row| ::redis::from_redis_value(row.clone()).unwrap())
            .map(|(name, count): (String, String)| (name, count.parse().unwrap()))
            .collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn a_dead_instances_leases_are_taken_over_by_another() {
    let scratch = RedisScratch::new("takeover");
    let clock = ManualClock::new(start());
    let first = scratch.open(&BOTH, &clock).await;
    let second = scratch.open(&BOTH, &clock).await;
    assert_ne!(first.consumer(), second.consumer());

    first
        .create_call(call("a", &clock), EventType::Initiated)
        .await
        .unwrap();
    first
        .create_call(call("b", &clock), EventType::Initiated)
        .await
        .unwrap();
    let held = first.claim(SinkKind::Backend, 10, LEASE).await.unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(
        holders(&first, SinkKind::Backend).await,
        [(first.consumer().to_owned(), 2)]
    );

    // The first instance dies holding both. Until its lease runs out nobody else may
    // deliver them; then the second takes them over, attempts counting on.
    drop(first);
    assert!(
        second
            .claim(SinkKind::Backend, 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(LEASE);
    let taken = second.claim(SinkKind::Backend, 10, LEASE).await.unwrap();
    assert_eq!(
        taken.iter().map(|e| e.id).collect::<Vec<_>>(),
        held.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert!(taken.iter().all(|e| e.attempts == 2));
    assert_eq!(
        holders(&second, SinkKind::Backend).await,
        [(second.consumer().to_owned(), 2)]
    );

    let ids: Vec<u64> = taken.iter().map(|e| e.id).collect();
    second.ack(SinkKind::Backend, &ids).await.unwrap();
    assert!(holders(&second, SinkKind::Backend).await.is_empty());
    // The queue sink's entries were never claimed: still pending, nothing lost.
    assert_eq!(second.pending().await.unwrap(), 2);
}

#[tokio::test]
async fn two_instances_updating_one_call_take_turns() {
    let scratch = RedisScratch::new("turns");
    let clock = ManualClock::new(start());
    let first = scratch.open(&[SinkKind::Backend], &clock).await;
    let second = scratch.open(&[SinkKind::Backend], &clock).await;
    first
        .create_call(call("a", &clock), EventType::Initiated)
        .await
        .unwrap();

    // 40 annotations, half from each instance, all at once: each must land as its own
    // event, numbered without gaps or repeats.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .update_call(
                    "a",
                    Box::new(move |record| {
                        record.transcript = Some(format!("note {i}"));
                        Ok(vec![EventType::Ringing])
                    }),
                )
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap().into_iter().map(|e| e.seq));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=41).collect::<Vec<u64>>());
    assert_eq!(first.pending().await.unwrap(), 41);
}
