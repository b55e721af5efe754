//! The deliverer against a store double (only the outbox half of [`Store`]) and scripted
//! sinks.

mod doubles;

use std::collections::HashSet;
use std::time::Instant;

use doubles::{OutboxDouble, ScriptedSink, Slot};

use super::*;
use crate::control::model::CallState;
use crate::control::sinks::test_support::{aged, entry, unique_call_id};

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(2),
        cap: Duration::from_millis(10),
        ..RetryPolicy::default()
    }
}

fn config(idle_poll: Duration) -> DelivererConfig {
    DelivererConfig {
        batch: 16,
        lease: Duration::from_secs(5),
        idle_poll,
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn start(
    store: &Arc<OutboxDouble>,
    sinks: &[Arc<ScriptedSink>],
    policy: RetryPolicy,
    idle_poll: Duration,
) -> (Deliverer, JoinHandle<()>, CancellationToken) {
    let shutdown = CancellationToken::new();
    let sinks = sinks
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn Sink>)
        .collect();
    let store = Arc::clone(store) as Arc<dyn Store>;
    let (deliverer, handle) =
        Deliverer::spawn(store, sinks, policy, config(idle_poll), shutdown.clone());
    (deliverer, handle, shutdown)
}

async fn stop(handle: JoinHandle<()>, shutdown: CancellationToken) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
}

/// The event ids of `call` in the order `seen` lists them.
fn of_call(seen: &[String], call: &str) -> Vec<String> {
    seen.iter()
        .filter(|id| id.starts_with(&format!("{call}:")))
        .cloned()
        .collect()
}

#[tokio::test]
async fn delivered_entries_are_acked_once_in_call_order_for_every_sink() {
    let store = Arc::new(OutboxDouble::default());
    let calls: Vec<String> = (0..3)
        .map(|i| unique_call_id(&format!("deliver-{i}")))
        .collect();
    let mut id = 0;
    for seq in 1..=3 {
        for call in &calls {
            for sink in [SinkKind::Queue, SinkKind::Backend] {
                id += 1;
                store.push(entry(sink, id, call, seq, CallState::Initiated));
            }
        }
    }
    let sinks = [
        ScriptedSink::new(SinkKind::Queue),
        ScriptedSink::new(SinkKind::Backend),
    ];
    let (_deliverer, handle, shutdown) =
        start(&store, &sinks, fast_policy(), Duration::from_millis(5));
    wait_until("all delivered", || {
        store
            .entries
            .lock()
            .unwrap()
            .iter()
            .all(|(_, s)| *s == Slot::Done)
    })
    .await;
    stop(handle, shutdown).await;

    let acked: Vec<u64> = store.acks.lock().unwrap().concat();
    let unique: HashSet<u64> = acked.iter().copied().collect();
    assert_eq!(acked.len(), 18, "each entry acked once");
    assert_eq!(unique.len(), 18);
    for sink in &sinks {
        let seen = sink.seen();
        assert_eq!(seen.len(), 9, "each event handed to each sink once");
        for call in &calls {
            let expected: Vec<String> = (1..=3).map(|seq| format!("{call}:{seq}")).collect();
            assert_eq!(of_call(&seen, call), expected);
        }
    }
    assert!(store.retries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_sink_failing_n_times_then_succeeding_delivers_in_order() {
    let store = Arc::new(OutboxDouble::default());
    let call = unique_call_id("deliver-flaky");
    store.push(entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated));
    store.push(entry(SinkKind::Backend, 2, &call, 2, CallState::Ringing));
    let sink = ScriptedSink::new(SinkKind::Backend);
    let hint = Duration::from_millis(60);
    sink.script(
        &format!("{call}:1"),
        vec![
            Delivery::retry("503"),
            Delivery::retry("connection reset"),
            Delivery::Retry {
                reason: "429".into(),
                retry_after: Some(hint),
            },
        ],
    );
    let (_deliverer, handle, shutdown) = start(
        &store,
        std::slice::from_ref(&sink),
        fast_policy(),
        Duration::from_millis(5),
    );
    wait_until("both delivered", || {
        store.slot(SinkKind::Backend, 2) == Slot::Done
    })
    .await;
    stop(handle, shutdown).await;

    let one = format!("{call}:1");
    assert_eq!(
        sink.seen(),
        [
            one.clone(),
            one.clone(),
            one.clone(),
            one,
            format!("{call}:2")
        ],
        "the second event waited for the first"
    );
    let retries = store.retries.lock().unwrap().clone();
    assert_eq!(retries.len(), 3);
    assert!(retries.iter().all(|(id, _, _)| *id == 1));
    assert_eq!(retries[1].2, "connection reset", "the reason is stored");
    assert_eq!(store.acks.lock().unwrap().concat(), [1, 2]);
    let attempts = store.entries.lock().unwrap()[0].0.attempts;
    assert_eq!(
        attempts, 4,
        "three failed claims and the one that delivered"
    );
}

#[tokio::test]
async fn retry_after_is_a_floor_on_the_due_time() {
    let store = Arc::new(OutboxDouble::default());
    let call = unique_call_id("deliver-hint");
    store.push(entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated));
    let sink = ScriptedSink::new(SinkKind::Backend);
    let hint = Duration::from_secs(30);
    sink.script(
        &format!("{call}:1"),
        vec![Delivery::Retry {
            reason: "429".into(),
            retry_after: Some(hint),
        }],
    );
    let before = Utc::now();
    let (_deliverer, handle, shutdown) = start(
        &store,
        std::slice::from_ref(&sink),
        fast_policy(),
        Duration::from_millis(5),
    );
    wait_until("a retry", || !store.retries.lock().unwrap().is_empty()).await;
    stop(handle, shutdown).await;
    let (_, at, _) = store.retries.lock().unwrap()[0].clone();
    assert!(at >= before + TimeDelta::seconds(30), "{at} vs {before}");
    assert!(matches!(store.slot(SinkKind::Backend, 1), Slot::Due(_)));
}

#[tokio::test]
async fn a_reject_is_dead_lettered_and_the_calls_next_event_still_flows() {
    let store = Arc::new(OutboxDouble::default());
    let call = unique_call_id("deliver-reject");
    store.push(entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated));
    store.push(entry(SinkKind::Backend, 2, &call, 2, CallState::Ringing));
    let sink = ScriptedSink::new(SinkKind::Backend);
    sink.script(
        &format!("{call}:1"),
        vec![Delivery::Reject {
            reason: "backend answered 400: bad campaign".into(),
        }],
    );
    let (_deliverer, handle, shutdown) = start(
        &store,
        std::slice::from_ref(&sink),
        fast_policy(),
        Duration::from_millis(5),
    );
    wait_until("the next event delivered", || {
        store.slot(SinkKind::Backend, 2) == Slot::Done
    })
    .await;
    stop(handle, shutdown).await;
    assert_eq!(
        store.slot(SinkKind::Backend, 1),
        Slot::Dead("backend answered 400: bad campaign".into())
    );
    assert_eq!(sink.seen(), [format!("{call}:1"), format!("{call}:2")]);
    assert!(
        store.retries.lock().unwrap().is_empty(),
        "a reject is never retried"
    );
}

#[tokio::test]
async fn giving_up_dead_letters_the_entry() {
    let store = Arc::new(OutboxDouble::default());
    let (budget, old) = (
        unique_call_id("deliver-budget"),
        unique_call_id("deliver-old"),
    );
    store.push(entry(SinkKind::Queue, 1, &budget, 1, CallState::Initiated));
    let ancient = aged(
        entry(SinkKind::Queue, 2, &old, 1, CallState::Initiated),
        Duration::from_secs(25 * 3600),
    );
    store.push(ancient);
    let sink = ScriptedSink::new(SinkKind::Queue);
    sink.script(
        &format!("{budget}:1"),
        vec![Delivery::retry("redis: down"); 10],
    );
    sink.script(&format!("{old}:1"), vec![Delivery::retry("redis: down")]);
    let policy = RetryPolicy {
        max_attempts: Some(3),
        ..fast_policy()
    };
    let (_deliverer, handle, shutdown) = start(
        &store,
        std::slice::from_ref(&sink),
        policy,
        Duration::from_millis(5),
    );
    wait_until("both dead", || {
        matches!(store.slot(SinkKind::Queue, 1), Slot::Dead(_))
            && matches!(store.slot(SinkKind::Queue, 2), Slot::Dead(_))
    })
    .await;
    stop(handle, shutdown).await;
    let Slot::Dead(reason) = store.slot(SinkKind::Queue, 1) else {
        unreachable!()
    };
    assert!(reason.starts_with("gave up after 3 attempts"), "{reason}");
    assert!(reason.ends_with("redis: down"), "{reason}");
    assert_eq!(
        of_call(&sink.seen(), &budget).len(),
        3,
        "the attempt budget"
    );
    assert_eq!(
        of_call(&sink.seen(), &old).len(),
        1,
        "past max_age: no retry"
    );
}

#[tokio::test]
async fn notify_wakes_delivery_at_once() {
    let store = Arc::new(OutboxDouble::default());
    let sink = ScriptedSink::new(SinkKind::Backend);
    // A poll so slow the test would time out without the notify.
    let (deliverer, handle, shutdown) = start(
        &store,
        std::slice::from_ref(&sink),
        fast_policy(),
        Duration::from_secs(3600),
    );
    // Let the loop find nothing and go idle.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let call = unique_call_id("deliver-notify");
    store.push(entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated));
    let notified = Instant::now();
    deliverer.notify();
    wait_until("delivered", || {
        store.slot(SinkKind::Backend, 1) == Slot::Done
    })
    .await;
    assert!(
        notified.elapsed() < Duration::from_millis(500),
        "{:?}",
        notified.elapsed()
    );
    stop(handle, shutdown).await;
}

#[tokio::test]
async fn shutdown_finishes_the_batch_in_flight_then_stops() {
    let store = Arc::new(OutboxDouble::default());
    let call = unique_call_id("deliver-shutdown");
    store.push(entry(SinkKind::Queue, 1, &call, 1, CallState::Initiated));
    let sink = ScriptedSink::slow(SinkKind::Queue, Duration::from_millis(200));
    let (_deliverer, handle, shutdown) = start(
        &store,
        std::slice::from_ref(&sink),
        fast_policy(),
        Duration::from_millis(5),
    );
    wait_until("the batch is in flight", || {
        matches!(store.slot(SinkKind::Queue, 1), Slot::Leased(_))
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.slot(SinkKind::Queue, 1),
        Slot::Done,
        "the in-flight batch was acked"
    );

    // Nothing is claimed after the stop.
    store.push(entry(SinkKind::Queue, 2, &call, 2, CallState::Ringing));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(store.slot(SinkKind::Queue, 2), Slot::Due(_)));
    assert_eq!(sink.seen().len(), 1);
}

#[tokio::test]
async fn an_idle_loop_stops_at_once() {
    let store = Arc::new(OutboxDouble::default());
    let sink = ScriptedSink::new(SinkKind::Queue);
    let (_deliverer, handle, shutdown) = start(
        &store,
        std::slice::from_ref(&sink),
        fast_policy(),
        Duration::from_secs(3600),
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cancelled = Instant::now();
    stop(handle, shutdown).await;
    assert!(cancelled.elapsed() < Duration::from_millis(200));
}
