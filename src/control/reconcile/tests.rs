//! Reconcile against a scripted `PlivoApi` and the in-memory store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;

use super::{Reconciler, cdr_observation};
use crate::control::config::{RawControl, ReconcileConfig};
use crate::control::model::{CallRecord, CallState, Direction, EventType};
use crate::control::plane::ControlPlane;
use crate::control::store::{MemoryStore, Store};
use crate::telephony::plivo::rest::{
    Cdr, HangupOutcome, LiveCall, MakeCall, MakeCallResponse, PlivoApi, RestError,
};

/// What the fake says about a uuid.
#[derive(Clone)]
enum Answer {
    Live(&'static str),
    Ended(Box<Cdr>),
    Error,
}

/// A scripted Plivo: unknown uuids are 404 on both endpoints.
#[derive(Default)]
struct Fake {
    answers: Mutex<HashMap<String, Answer>>,
    asked: Mutex<Vec<String>>,
}

impl Fake {
    fn set(&self, uuid: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(uuid.to_owned(), answer);
    }

    fn asked(&self, uuid: &str) -> usize {
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|u| *u == uuid)
            .count()
    }

    fn answer(&self, uuid: &str) -> Option<Answer> {
        self.asked.lock().unwrap().push(uuid.to_owned());
        self.answers.lock().unwrap().get(uuid).cloned()
    }
}

#[async_trait]
impl PlivoApi for Fake {
    async fn make_call(&self, _: &MakeCall) -> Result<MakeCallResponse, RestError> {
        unreachable!("reconcile never places calls")
    }

    async fn live_call(&self, uuid: &str) -> Result<Option<LiveCall>, RestError> {
        match self.answer(uuid) {
            Some(Answer::Live(status)) => Ok(Some(
                serde_json::from_value(json!({"call_uuid": uuid, "call_status": status})).unwrap(),
            )),
            Some(Answer::Error) => Err(RestError::Timeout),
            _ => Ok(None),
        }
    }

    async fn cdr(&self, uuid: &str) -> Result<Option<Cdr>, RestError> {
        match self.answers.lock().unwrap().get(uuid).cloned() {
            Some(Answer::Ended(cdr)) => Ok(Some(*cdr)),
            Some(Answer::Error) => Err(RestError::Timeout),
            _ => Ok(None),
        }
    }

    async fn hangup(&self, _: &str) -> Result<HangupOutcome, RestError> {
        unreachable!("reconcile never hangs up")
    }

    async fn cancel_request(&self, _: &str) -> Result<HangupOutcome, RestError> {
        unreachable!("reconcile never cancels")
    }
}

fn cdr(uuid: &str, answered_secs: Option<u64>, code: u32, name: &str) -> Cdr {
    serde_json::from_value(json!({
        "call_uuid": uuid,
        "answer_time": answered_secs.map(|_| "2025-03-01 10:00:00"),
        "end_time": "2025-03-01 10:00:30",
        "bill_duration": answered_secs.unwrap_or(0),
        "hangup_cause_code": code,
        "hangup_cause_name": name,
    }))
    .unwrap()
}

struct Setup {
    store: Arc<dyn Store>,
    fake: Arc<Fake>,
    reconciler: Reconciler,
}

fn config(initial_delay: Duration, error_tolerance: u32) -> ReconcileConfig {
    ReconcileConfig {
        initial_delay,
        interval: Duration::ZERO,
        request_timeout: Duration::from_secs(5),
        retries: 0,
        error_tolerance,
    }
}

fn setup(config: ReconcileConfig) -> Setup {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(&[]));
    let control = RawControl::default().validate().unwrap();
    let plane = Arc::new(ControlPlane::new(
        Arc::clone(&store),
        None,
        control,
        Arc::new(|| {}),
    ));
    let fake = Arc::new(Fake::default());
    let plivo: Arc<dyn PlivoApi> = fake.clone();
    let reconciler = Reconciler::new(plane, Arc::clone(&store), plivo, config);
    Setup {
        store,
        fake,
        reconciler,
    }
}

/// A call placed an hour ago (so past any initial delay) with `uuid` as request uuid.
async fn call(store: &Arc<dyn Store>, id: &str, uuid: Option<&str>, age: chrono::Duration) {
    let mut call = CallRecord::new(id, Direction::Outbound, "+14155550100", "+14155550199");
    call.plivo_request_uuid = uuid.map(str::to_owned);
    call.created_at = Utc::now() - age;
    store.create_call(call, EventType::Initiated).await.unwrap();
}

fn hour() -> chrono::Duration {
    chrono::Duration::hours(1)
}

async fn state(store: &Arc<dyn Store>, id: &str) -> CallRecord {
    store.get_call(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_live_ringing_call_becomes_ringing() {
    let mut s = setup(config(Duration::from_secs(20), 6));
    call(&s.store, "c1", Some("u1"), hour()).await;
    s.fake.set("u1", Answer::Live("ringing"));
    assert_eq!(s.reconciler.tick().await, 1);
    let c = state(&s.store, "c1").await;
    assert_eq!(c.state, CallState::Ringing);
    assert_eq!(c.plivo_call_uuid.as_deref(), Some("u1"));
}

#[tokio::test]
async fn an_answered_cdr_completes_the_call_with_duration_and_cause() {
    let mut s = setup(config(Duration::from_secs(20), 6));
    call(&s.store, "c1", Some("u1"), hour()).await;
    s.fake.set("u1", Answer::Live("in-progress"));
    s.reconciler.tick().await;
    assert_eq!(state(&s.store, "c1").await.state, CallState::InProgress);

    s.fake.set(
        "u1",
        Answer::Ended(Box::new(cdr("u1", Some(30), 4000, "Normal Hangup"))),
    );
    s.reconciler.tick().await;
    let c = state(&s.store, "c1").await;
    assert_eq!(c.state, CallState::Completed);
    assert_eq!(c.duration_secs, Some(30));
    assert_eq!(c.hangup_cause.as_deref(), Some("Normal Hangup"));
    assert_eq!(
        c.ended_at.unwrap().to_rfc3339(),
        "2025-03-01T10:00:30+00:00"
    );

    // Terminal: never asked about again.
    let asked = s.fake.asked("u1");
    assert_eq!(s.reconciler.tick().await, 0);
    assert_eq!(s.fake.asked("u1"), asked);
}

#[tokio::test]
async fn an_unanswered_cdr_is_missed_and_causes_map_small() {
    let mut s = setup(config(Duration::from_secs(20), 6));
    call(&s.store, "c1", Some("u1"), hour()).await;
    call(&s.store, "c2", Some("u2"), hour()).await;
    call(&s.store, "c3", Some("u3"), hour()).await;
    s.fake.set(
        "u1",
        Answer::Ended(Box::new(cdr("u1", None, 6010, "ring timeout"))),
    );
    s.fake.set(
        "u2",
        Answer::Ended(Box::new(cdr("u2", None, 3010, "Busy Line"))),
    );
    s.fake.set(
        "u3",
        Answer::Ended(Box::new(cdr("u3", None, 1000, "Canceled"))),
    );
    assert_eq!(s.reconciler.tick().await, 3);
    let c1 = state(&s.store, "c1").await;
    assert_eq!(c1.state, CallState::Missed);
    assert_eq!(c1.hangup_cause.as_deref(), Some("ring timeout"));
    assert_eq!(state(&s.store, "c2").await.state, CallState::Busy);
    assert_eq!(state(&s.store, "c3").await.state, CallState::Canceled);
    let invalid = cdr("u4", None, 2000, "Invalid Destination Address");
    assert_eq!(cdr_observation(&invalid).status.as_deref(), Some("failed"));
}

#[tokio::test]
async fn a_call_plivo_has_not_registered_stays_initiated() {
    let mut s = setup(config(Duration::from_secs(20), 2));
    call(&s.store, "c1", Some("u1"), hour()).await;
    for _ in 0..5 {
        assert_eq!(s.reconciler.tick().await, 1);
    }
    let c = state(&s.store, "c1").await;
    assert_eq!(c.state, CallState::Initiated);
    assert!(c.hangup_cause.is_none() && c.ended_at.is_none());
    assert_eq!(
        s.fake.asked("u1"),
        5,
        "not-ready is not an error: never given up"
    );
}

#[tokio::test]
async fn errors_are_counted_and_the_call_given_up_after_the_tolerance() {
    let mut s = setup(config(Duration::from_secs(20), 3));
    call(&s.store, "c1", Some("u1"), hour()).await;
    s.fake.set("u1", Answer::Error);
    // An error, then a success, resets the count.
    s.reconciler.tick().await;
    s.fake.set("u1", Answer::Live("ringing"));
    s.reconciler.tick().await;
    s.fake.set("u1", Answer::Error);
    for _ in 0..3 {
        assert_eq!(s.reconciler.tick().await, 1);
    }
    assert_eq!(s.fake.asked("u1"), 5);
    assert_eq!(s.reconciler.tick().await, 0, "given up after 3 in a row");
    assert_eq!(s.fake.asked("u1"), 5);
    assert_eq!(state(&s.store, "c1").await.state, CallState::Ringing);
}

#[tokio::test]
async fn terminal_calls_and_calls_without_uuid_are_never_asked_about() {
    let mut s = setup(config(Duration::from_secs(20), 6));
    call(&s.store, "done", Some("u1"), hour()).await;
    call(&s.store, "nouuid", None, hour()).await;
    s.store
        .update_call("done", crate::control::lifecycle::failed("x".into()))
        .await
        .unwrap();
    s.fake.set("u1", Answer::Live("ringing"));
    assert_eq!(s.reconciler.tick().await, 0);
    assert!(s.fake.asked.lock().unwrap().is_empty());
    assert_eq!(state(&s.store, "done").await.state, CallState::Failed);
}

#[tokio::test]
async fn the_initial_delay_and_the_interval_are_respected() {
    let mut cfg = config(Duration::from_secs(20), 6);
    cfg.interval = Duration::from_secs(3600);
    let mut s = setup(cfg);
    call(&s.store, "young", Some("u1"), chrono::Duration::seconds(5)).await;
    call(&s.store, "old", Some("u2"), chrono::Duration::seconds(25)).await;
    assert_eq!(s.reconciler.tick().await, 1);
    assert_eq!((s.fake.asked("u1"), s.fake.asked("u2")), (0, 1));
    // Checked within the interval: not again.
    assert_eq!(s.reconciler.tick().await, 0);
}

#[tokio::test]
async fn the_spawned_loop_reconciles_and_stops_on_shutdown() {
    let cfg = ReconcileConfig {
        interval: Duration::from_millis(20),
        ..config(Duration::ZERO, 6)
    };
    let s = setup(cfg);
    call(&s.store, "c1", Some("u1"), hour()).await;
    s.fake.set(
        "u1",
        Answer::Ended(Box::new(cdr("u1", Some(42), 4000, "Normal Hangup"))),
    );
    let Reconciler {
        plane,
        store,
        plivo,
        config,
        ..
    } = s.reconciler;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = Reconciler::spawn(plane, store, plivo, config, shutdown.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while state(&s.store, "c1").await.state != CallState::Completed {
        assert!(tokio::time::Instant::now() < deadline, "not reconciled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state(&s.store, "c1").await.duration_secs, Some(42));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}
