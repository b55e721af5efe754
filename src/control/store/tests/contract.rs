//! Each documented behaviour of [`Store`], checked on the model, SQLite and Redis alike.

use std::time::Duration;

use super::*;
use crate::control::model::TransitionError;
use crate::control::store::{CallFilter, OutboxEntry, Page, StoreError};

const LEASE: Duration = Duration::from_secs(30);

/// Runs each named test body on a fresh `MemoryStore`, `SqliteStore` and `RedisStore`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Fixture::memory(&super::BOTH)).await;
            })*
        }
        mod on_sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Fixture::sqlite(&super::BOTH)).await;
            })*
        }
        mod on_redis {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Fixture::redis(&super::BOTH).await).await;
            })*
        }
    };
}

on_both_stores!(
    create_stores_the_call_and_its_first_event,
    create_of_a_known_id_returns_the_stored_record_and_writes_nothing,
    unknown_calls_are_none_or_not_found,
    update_numbers_events_after_the_last_and_stamps_updated_at,
    refused_updates_store_nothing,
    a_terminal_state_is_final,
    update_keeps_call_id_and_an_empty_update_writes_nothing,
    claim_keeps_per_call_order_oldest_first_up_to_max,
    leases_run_out_and_entries_come_back,
    ack_is_for_good_and_idempotent,
    retry_later_waits_keeps_order_and_records_the_error,
    dead_letters_unblock_later_entries_until_replayed,
    list_calls_filters_pages_and_caps,
);

fn ids(entries: &[OutboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.event.event_id.as_str()).collect()
}

async fn create_stores_the_call_and_its_first_event(f: Fixture) {
    let c1 = call("c1", &f.clock);
    let event = f
        .store
        .create_call(c1.clone(), EventType::Initiated)
        .await
        .unwrap();
    assert_eq!((event.event_id.as_str(), event.seq), ("c1:1", 1));
    assert_eq!(event.event, EventType::Initiated);
    assert_eq!(event.call, c1);
    assert_eq!(event.occurred_at, c1.updated_at);
    assert_eq!(f.store.get_call("c1").await.unwrap(), Some(c1));
    assert_eq!(f.store.pending().await.unwrap(), 2, "one entry per sink");
    for sink in BOTH {
        let claimed = f.store.claim(sink, 10, LEASE).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].sink, sink);
        assert_eq!(claimed[0].event, event);
        assert_eq!((claimed[0].attempts, &claimed[0].last_error), (1, &None));
    }
}

async fn create_of_a_known_id_returns_the_stored_record_and_writes_nothing(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    f.store
        .update_call("c1", to_state(CallState::Ringing))
        .await
        .unwrap();
    let stored = f.store.get_call("c1").await.unwrap().unwrap();
    let mut again = call("c1", &f.clock);
    again.to = "+15559999".into();
    match f.store.create_call(again, EventType::Initiated).await {
        Err(StoreError::AlreadyExists(existing)) => assert_eq!(*existing, stored),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(f.store.get_call("c1").await.unwrap(), Some(stored));
    assert_eq!(f.store.pending().await.unwrap(), 4);
}

async fn unknown_calls_are_none_or_not_found(f: Fixture) {
    assert_eq!(f.store.get_call("nope").await.unwrap(), None);
    match f
        .store
        .update_call("nope", to_state(CallState::Ringing))
        .await
    {
        Err(StoreError::NotFound(id)) => assert_eq!(id, "nope"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(f.store.pending().await.unwrap(), 0);
}

async fn update_numbers_events_after_the_last_and_stamps_updated_at(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    f.advance_secs(1);
    let events = f
        .store
        .update_call("c1", to_state(CallState::Ringing))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].event_id.as_str(), events[0].seq), ("c1:2", 2));
    assert_eq!(events[0].call.state, CallState::Ringing);
    assert_eq!(events[0].call.updated_at, f.now());
    assert_eq!(events[0].occurred_at, f.now());
    f.advance_secs(1);
    let events = f
        .store
        .update_call(
            "c1",
            Box::new(|record| {
                record.state = CallState::InProgress;
                record.answered_at = Some(record.updated_at);
                Ok(vec![EventType::Answered, EventType::MediaStarted])
            }),
        )
        .await
        .unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 4]);
    assert_eq!(events[1].event, EventType::MediaStarted);
    let stored = f.store.get_call("c1").await.unwrap().unwrap();
    assert_eq!(stored.updated_at, f.now());
    assert_eq!(stored, events[1].call);
    assert_eq!(f.store.pending().await.unwrap(), 8);
}

async fn refused_updates_store_nothing(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    f.store
        .update_call("c1", to_state(CallState::InProgress))
        .await
        .unwrap();
    let before = f.store.get_call("c1").await.unwrap();
    f.advance_secs(1);
    let refused = [
        f.store
            .update_call("c1", to_state(CallState::Ringing))
            .await,
        f.store
            .update_call("c1", force_state(CallState::Initiated))
            .await,
    ];
    for result in refused {
        assert!(
            matches!(
                result,
                Err(StoreError::Transition(TransitionError::Backwards { .. }))
            ),
            "{result:?}"
        );
    }
    let failed = f
        .store
        .update_call(
            "c1",
            Box::new(|record| {
                record.transcript = Some("half-written".into());
                Err(StoreError::Backend("upstream failed".into()))
            }),
        )
        .await;
    assert!(matches!(failed, Err(StoreError::Backend(m)) if m == "upstream failed"));
    assert_eq!(f.store.get_call("c1").await.unwrap(), before);
    assert_eq!(f.store.pending().await.unwrap(), 4);
    let events = f
        .store
        .update_call("c1", to_state(CallState::Completed))
        .await
        .unwrap();
    assert_eq!(events[0].seq, 3, "refused updates leave no gap");
}

async fn a_terminal_state_is_final(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    f.store
        .update_call("c1", force_state(CallState::Busy))
        .await
        .unwrap();
    for next in [CallState::Completed, CallState::InProgress] {
        let result = f.store.update_call("c1", force_state(next)).await;
        assert!(
            matches!(
                result,
                Err(StoreError::Transition(TransitionError::Terminal { .. }))
            ),
            "{result:?}"
        );
    }
    let replayed = f
        .store
        .update_call("c1", to_state(CallState::Busy))
        .await
        .unwrap();
    assert!(replayed.is_empty(), "a replayed hangup reports nothing");
    let events = f
        .store
        .update_call(
            "c1",
            Box::new(|record| {
                record.recording_url = Some("file:///rec/c1.wav".into());
                Ok(vec![EventType::RecordingReady])
            }),
        )
        .await
        .unwrap();
    assert_eq!((events[0].seq, events[0].call.state), (3, CallState::Busy));
}

async fn update_keeps_call_id_and_an_empty_update_writes_nothing(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    let created = f.store.get_call("c1").await.unwrap().unwrap();
    f.advance_secs(1);
    let nothing = f
        .store
        .update_call("c1", Box::new(|_| Ok(Vec::new())))
        .await
        .unwrap();
    assert!(nothing.is_empty());
    assert_eq!(f.store.get_call("c1").await.unwrap().unwrap(), created);
    let events = f
        .store
        .update_call(
            "c1",
            Box::new(|record| {
                record.call_id = "hijacked".into();
                record.transcript = Some("hello".into());
                Ok(Vec::new())
            }),
        )
        .await
        .unwrap();
    assert!(events.is_empty());
    let stored = f.store.get_call("c1").await.unwrap().unwrap();
    assert_eq!(stored.call_id, "c1");
    assert_eq!(stored.transcript.as_deref(), Some("hello"));
    assert_eq!(
        stored.updated_at,
        f.now(),
        "an edit without events is stored"
    );
    assert_eq!(f.store.get_call("hijacked").await.unwrap(), None);
    assert_eq!(f.store.pending().await.unwrap(), 2);
}

async fn claim_keeps_per_call_order_oldest_first_up_to_max(f: Fixture) {
    for id in ["a", "b", "c"] {
        f.store
            .create_call(call(id, &f.clock), EventType::Initiated)
            .await
            .unwrap();
    }
    for id in ["a", "b"] {
        f.store
            .update_call(id, to_state(CallState::Ringing))
            .await
            .unwrap();
    }
    let queue = SinkKind::Queue;
    assert!(f.store.claim(queue, 0, LEASE).await.unwrap().is_empty());
    let first = f.store.claim(queue, 2, LEASE).await.unwrap();
    assert_eq!(ids(&first), ["a:1", "b:1"]);
    assert!(first[0].id < first[1].id);
    let rest = f.store.claim(queue, 10, LEASE).await.unwrap();
    assert_eq!(ids(&rest), ["c:1"], "a:2 and b:2 wait for a:1 and b:1");
    f.store.ack(queue, &[first[0].id]).await.unwrap();
    let next = f.store.claim(queue, 10, LEASE).await.unwrap();
    assert_eq!(ids(&next), ["a:2"]);
    assert!(
        next[0].id > rest[0].id,
        "ids grow in the order events were stored"
    );
    let backend = f.store.claim(SinkKind::Backend, 10, LEASE).await.unwrap();
    assert_eq!(
        ids(&backend),
        ["a:1", "b:1", "c:1"],
        "sinks are independent"
    );
}

async fn leases_run_out_and_entries_come_back(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    let first = f.store.claim(SinkKind::Queue, 10, LEASE).await.unwrap();
    assert_eq!(first[0].attempts, 1);
    assert!(
        f.store
            .claim(SinkKind::Queue, 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    f.advance_secs(29);
    assert!(
        f.store
            .claim(SinkKind::Queue, 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    f.advance_secs(1);
    let again = f.store.claim(SinkKind::Queue, 10, LEASE).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].attempts, 2, "every claim is an attempt");
    assert_eq!(f.store.pending().await.unwrap(), 2);
}

async fn ack_is_for_good_and_idempotent(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    let queue = f.store.claim(SinkKind::Queue, 10, LEASE).await.unwrap();
    let backend = f.store.claim(SinkKind::Backend, 10, LEASE).await.unwrap();
    f.store
        .ack(SinkKind::Queue, &[backend[0].id, 999])
        .await
        .unwrap();
    assert_eq!(
        f.store.pending().await.unwrap(),
        2,
        "another sink's id is ignored"
    );
    f.store.ack(SinkKind::Queue, &[queue[0].id]).await.unwrap();
    f.store.ack(SinkKind::Queue, &[queue[0].id]).await.unwrap();
    f.store.ack(SinkKind::Queue, &[]).await.unwrap();
    assert_eq!(f.store.pending().await.unwrap(), 1);
    f.advance_secs(3600);
    assert!(
        f.store
            .claim(SinkKind::Queue, 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let back = f.store.claim(SinkKind::Backend, 10, LEASE).await.unwrap();
    assert_eq!(back[0].id, backend[0].id);
    assert!(matches!(
        f.store.retry_later(SinkKind::Queue, queue[0].id, f.now(), "x").await,
        Err(StoreError::NoEntry(id)) if id == queue[0].id
    ));
}

async fn retry_later_waits_keeps_order_and_records_the_error(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    f.store
        .update_call("c1", to_state(CallState::Ringing))
        .await
        .unwrap();
    let q = SinkKind::Queue;
    let first = f.store.claim(q, 10, LEASE).await.unwrap();
    let at = f.now() + chrono::Duration::seconds(10);
    f.store
        .retry_later(q, first[0].id, at, "503 unavailable")
        .await
        .unwrap();
    f.advance_secs(9);
    assert!(
        f.store.claim(q, 10, LEASE).await.unwrap().is_empty(),
        "c1:1 is not due and c1:2 waits behind it"
    );
    f.advance_secs(1);
    let again = f.store.claim(q, 10, LEASE).await.unwrap();
    assert_eq!(ids(&again), ["c1:1"]);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("503 unavailable"));
    for (sink, id) in [(q, 999), (SinkKind::Backend, first[0].id)] {
        assert!(matches!(
            f.store.retry_later(sink, id, at, "x").await,
            Err(StoreError::NoEntry(n)) if n == id
        ));
    }
    f.store
        .dead_letter(q, first[0].id, "gave up")
        .await
        .unwrap();
    assert!(
        matches!(
            f.store.retry_later(q, first[0].id, at, "x").await,
            Err(StoreError::NoEntry(_))
        ),
        "a dead letter comes back only through replay"
    );
}

async fn dead_letters_unblock_later_entries_until_replayed(f: Fixture) {
    f.store
        .create_call(call("c1", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    f.store
        .update_call("c1", to_state(CallState::Ringing))
        .await
        .unwrap();
    let q = SinkKind::Queue;
    let first = f.store.claim(q, 10, LEASE).await.unwrap();
    f.store
        .dead_letter(q, first[0].id, "400 bad request")
        .await
        .unwrap();
    let dead = f.store.list_dead(10).await.unwrap();
    assert_eq!(ids(&dead), ["c1:1"]);
    assert_eq!(dead[0].sink, q);
    assert_eq!(dead[0].last_error.as_deref(), Some("400 bad request"));
    assert_eq!(
        f.store.pending().await.unwrap(),
        3,
        "dead letters are not pending"
    );
    let second = f.store.claim(q, 10, LEASE).await.unwrap();
    assert_eq!(
        ids(&second),
        ["c1:2"],
        "a dead letter no longer blocks its call"
    );
    assert!(matches!(
        f.store.replay_dead(q, second[0].id).await,
        Err(StoreError::NoEntry(_))
    ));
    assert!(matches!(
        f.store.replay_dead(SinkKind::Backend, first[0].id).await,
        Err(StoreError::NoEntry(_))
    ));
    assert!(matches!(
        f.store.dead_letter(q, 999, "x").await,
        Err(StoreError::NoEntry(999))
    ));
    f.store.replay_dead(q, first[0].id).await.unwrap();
    assert!(f.store.list_dead(10).await.unwrap().is_empty());
    assert_eq!(f.store.pending().await.unwrap(), 4);
    let replayed = f.store.claim(q, 10, LEASE).await.unwrap();
    assert_eq!(
        ids(&replayed),
        ["c1:1"],
        "due now, and it is the oldest again"
    );
    assert_eq!(replayed[0].attempts, 1, "replay starts the count again");
    let backend = f.store.claim(SinkKind::Backend, 10, LEASE).await.unwrap();
    f.store
        .dead_letter(SinkKind::Backend, backend[0].id, "b")
        .await
        .unwrap();
    assert_eq!(f.store.list_dead(1).await.unwrap().len(), 1, "limit");
    assert_eq!(f.store.list_dead(10).await.unwrap().len(), 1);
}

async fn list_calls_filters_pages_and_caps(f: Fixture) {
    let plan = [
        ("c1", "A", false),
        ("c2", "B", true),
        ("c3", "A", true),
        ("c4", "A", false),
    ];
    for (id, campaign, ring) in plan {
        let mut record = call(id, &f.clock);
        record.campaign_id = Some(campaign.into());
        f.store
            .create_call(record, EventType::Initiated)
            .await
            .unwrap();
        if ring {
            f.store
                .update_call(id, to_state(CallState::Ringing))
                .await
                .unwrap();
        }
        f.advance_secs(1);
    }
    // Same creation time as c4's successor: ties go by call id.
    f.clock.set(start() + chrono::Duration::seconds(3));
    f.store
        .create_call(call("c0", &f.clock), EventType::Initiated)
        .await
        .unwrap();
    let list = |filter: CallFilter, after: Option<&str>, limit| {
        let page = Page {
            after: after.map(str::to_owned),
            limit,
        };
        let store = &f.store;
        async move {
            let calls = store.list_calls(&filter, &page).await?;
            Ok::<_, StoreError>(calls.into_iter().map(|c| c.call_id).collect::<Vec<_>>())
        }
    };
    let all = CallFilter::default();
    assert_eq!(
        list(all.clone(), None, 10).await.unwrap(),
        ["c1", "c2", "c3", "c0", "c4"]
    );
    assert_eq!(list(all.clone(), None, 2).await.unwrap(), ["c1", "c2"]);
    assert_eq!(
        list(all.clone(), Some("c2"), 2).await.unwrap(),
        ["c3", "c0"]
    );
    assert_eq!(list(all.clone(), Some("c0"), 2).await.unwrap(), ["c4"]);
    assert!(list(all.clone(), None, 0).await.unwrap().is_empty());
    let campaign_a = CallFilter {
        campaign_id: Some("A".into()),
        state: None,
    };
    assert_eq!(
        list(campaign_a.clone(), None, 10).await.unwrap(),
        ["c1", "c3", "c4"]
    );
    assert_eq!(
        list(campaign_a, Some("c2"), 10).await.unwrap(),
        ["c3", "c4"]
    );
    let ringing_a = CallFilter {
        campaign_id: Some("A".into()),
        state: Some(CallState::Ringing),
    };
    assert_eq!(list(ringing_a, None, 10).await.unwrap(), ["c3"]);
    let initiated = CallFilter {
        campaign_id: None,
        state: Some(CallState::Initiated),
    };
    assert_eq!(
        list(initiated, None, usize::MAX).await.unwrap(),
        ["c1", "c0", "c4"]
    );
    assert!(matches!(
        list(all, Some("nope"), 10).await,
        Err(StoreError::NotFound(id)) if id == "nope"
    ));
}

#[tokio::test]
async fn orphan_callbacks_are_kept_for_audit() {
    let fields = vec![
        ("CallUUID".to_owned(), "9f1c".to_owned()),
        ("CallStatus".to_owned(), "completed".to_owned()),
    ];
    let expected = vec![crate::control::store::OrphanCallback {
        kind: "hangup".into(),
        fields: fields.clone(),
        received_at: start(),
    }];
    let clock = Arc::new(ManualClock::new(start()));
    let memory = MemoryStore::with_clock(&BOTH, clock.clone());
    memory
        .record_orphan_callback("hangup", &fields)
        .await
        .unwrap();
    assert_eq!(memory.orphan_callbacks(), expected);
    let dir = TempDir::new("orphans");
    let sqlite = SqliteStore::open_with_clock(dir.path().join("o.db"), &BOTH, clock).unwrap();
    sqlite
        .record_orphan_callback("hangup", &fields)
        .await
        .unwrap();
    assert_eq!(sqlite.orphan_callbacks().await.unwrap(), expected);
    let scratch = RedisScratch::new("orphans");
    let redis = scratch.open(&BOTH, &ManualClock::new(start())).await;
    redis
        .record_orphan_callback("hangup", &fields)
        .await
        .unwrap();
    assert_eq!(redis.orphan_callbacks().await.unwrap(), expected);
}
