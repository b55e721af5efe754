//! Random operation sequences, run on the model and on SQLite or Redis side by side.
//!
//! Each case applies a random list of operations (create, updates that follow the state
//! machine or break it, claims, acks, retries, dead letters, replays, misuse of entry ids,
//! clock ticks past leases, restarts and crashes) to a [`MemoryStore`] and a real store
//! sharing one clock: a [`SqliteStore`] (restart: reopen the file; crash: reopen a crash
//! image) or a [`RedisStore`] (restart and crash: a new instance, with a consumer of its
//! own, takes over the same keys while the old one's leases are still running). After every step both must
//! return the same thing and hold the same state, and a ledger kept by the test (what was
//! stored, acked, parked) checks the contract's invariants: per-call, per-sink order,
//! terminal states are final, seqs run 1..n without gaps, nothing acked comes back,
//! nothing unacked is lost. A case ends by draining the outbox far in the future: every
//! event not acked or dead must come out exactly once more.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;

use super::*;
use crate::control::model::CallEvent;
use crate::control::store::{CallFilter, Clock, OutboxEntry, Page, StoreError};

const CALLS: [&str; 4] = ["a", "b", "c", "d"];
const STATES: [CallState; 8] = [
    CallState::Initiated,
    CallState::Ringing,
    CallState::InProgress,
    CallState::Completed,
    CallState::Missed,
    CallState::Busy,
    CallState::Failed,
    CallState::Canceled,
];
/// An id no entry ever gets in a case.
const NO_SUCH_ID: u64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
    Create {
        call: usize,
        campaign: bool,
    },
    Move {
        call: usize,
        to: CallState,
    },
    Force {
        call: usize,
        to: CallState,
    },
    Annotate {
        call: usize,
    },
    Touch {
        call: usize,
    },
    Fail {
        call: usize,
    },
    Claim {
        sink: SinkKind,
        max: usize,
        lease_secs: u64,
    },
    Ack {
        sink: SinkKind,
        mask: u8,
    },
    Retry {
        pick: Index,
        delay_secs: u64,
    },
    Dead {
        pick: Index,
    },
    Replay {
        pick: Index,
    },
    Misuse {
        pick: Index,
        kind: u8,
    },
    Tick {
        secs: u64,
    },
    Restart,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let call = 0..CALLS.len();
    let state = prop::sample::select(STATES.to_vec());
    let sink = prop::sample::select(BOTH.to_vec());
    prop_oneof![
        3 => (call.clone(), any::<bool>()).prop_map(|(call, campaign)| Op::Create { call, campaign }),
        4 => (call.clone(), state.clone()).prop_map(|(call, to)| Op::Move { call, to }),
        1 => (call.clone(), state).prop_map(|(call, to)| Op::Force { call, to }),
        1 => call.clone().prop_map(|call| Op::Annotate { call }),
        1 => call.clone().prop_map(|call| Op::Touch { call }),
        1 => call.prop_map(|call| Op::Fail { call }),
        7 => (sink.clone(), 0..6usize, 1..60u64)
            .prop_map(|(sink, max, lease_secs)| Op::Claim { sink, max, lease_secs }),
        4 => (sink, any::<u8>()).prop_map(|(sink, mask)| Op::Ack { sink, mask }),
        3 => (any::<Index>(), 0..60u64).prop_map(|(pick, delay_secs)| Op::Retry { pick, delay_secs }),
        2 => any::<Index>().prop_map(|pick| Op::Dead { pick }),
        2 => any::<Index>().prop_map(|pick| Op::Replay { pick }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(pick, kind)| Op::Misuse { pick, kind }),
        3 => (1..90u64).prop_map(|secs| Op::Tick { secs }),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
    ]
}

/// What became of one outbox entry, keyed by (call, sink, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Live,
    Acked,
    Dead,
}

type Key = (String, SinkKind, u64);

/// The test's own account of what the stores must hold.
#[derive(Default)]
struct Ledger {
    fates: BTreeMap<Key, Fate>,
    keys: HashMap<u64, Key>,
    /// Held by this test's deliverer: claimed and not yet acked, retried or parked.
    claimed: Vec<(SinkKind, u64)>,
    dead: Vec<(SinkKind, u64)>,
    acked: Vec<(SinkKind, u64)>,
    last_seq: HashMap<String, u64>,
    states: HashMap<String, CallState>,
}

impl Ledger {
    fn stored(&mut self, sinks: &[SinkKind], events: &[CallEvent]) {
        for event in events {
            let last = self.last_seq.entry(event.call_id.clone()).or_insert(0);
            assert_eq!(
                event.seq,
                *last + 1,
                "seqs run 1..n without gaps: {event:?}"
            );
            assert_eq!(event.event_id, format!("{}:{}", event.call_id, event.seq));
            *last = event.seq;
            for &sink in sinks {
                let key = (event.call_id.clone(), sink, event.seq);
                assert!(self.fates.insert(key, Fate::Live).is_none());
            }
        }
    }

    fn claimed(&mut self, sink: SinkKind, max: usize, entries: &[OutboxEntry]) {
        assert!(entries.len() <= max, "claim returned more than {max}");
        assert!(
            entries.windows(2).all(|w| w[0].id < w[1].id),
            "oldest first"
        );
        let mut calls: Vec<&str> = entries.iter().map(|e| e.event.call_id.as_str()).collect();
        calls.sort_unstable();
        calls.dedup();
        assert_eq!(calls.len(), entries.len(), "at most one entry per call");
        for entry in entries {
            let event = &entry.event;
            assert_eq!(entry.sink, sink);
            let key = (event.call_id.clone(), sink, event.seq);
            assert_eq!(
                self.fates.get(&key),
                Some(&Fate::Live),
                "claimed {key:?}: acked or dead entries never come back"
            );
            for seq in 1..event.seq {
                let earlier = self.fates.get(&(event.call_id.clone(), sink, seq));
                assert!(
                    matches!(earlier, Some(Fate::Acked | Fate::Dead)),
                    "claimed {key:?} while seq {seq} is {earlier:?}"
                );
            }
            if let Some(known) = self.keys.insert(entry.id, key.clone()) {
                assert_eq!(known, key, "entry ids are never reused");
            }
            if !self.claimed.contains(&(sink, entry.id)) {
                self.claimed.push((sink, entry.id));
            }
        }
    }

    fn set_fate(&mut self, id: u64, fate: Fate) {
        let key = self.keys[&id].clone();
        self.fates.insert(key, fate);
    }

    fn live(&self) -> usize {
        self.fates.values().filter(|f| **f == Fate::Live).count()
    }
}

/// Which real store a case runs beside the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    None,
    Sqlite,
    Redis,
}

/// The real store of a case.
enum Real {
    Sqlite(SqliteStore),
    Redis(RedisStore),
}

impl std::ops::Deref for Real {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Sqlite(store) => store,
            Self::Redis(store) => store,
        }
    }
}

/// The two stores, the clock they share, and the ledger.
struct Harness {
    sinks: Vec<SinkKind>,
    clock: ManualClock,
    model: MemoryStore,
    real: Option<Real>,
    redis: Option<RedisScratch>,
    dir: TempDir,
    file: PathBuf,
    images: u32,
    ledger: Ledger,
}

/// Runs the same call on the model and (if present) on SQLite; both must agree. Yields
/// the model's result.
macro_rules! both {
    ($h:expr, |$s:ident| $call:expr) => {{
        let model = {
            let $s: &dyn Store = &$h.model;
            $call.await
        };
        if let Some(real) = &$h.real {
            let $s: &dyn Store = &**real;
            let real = $call.await;
            agree(&model, &real, stringify!($call));
        }
        model
    }};
}

fn agree<T: PartialEq + Debug>(
    model: &Result<T, StoreError>,
    real: &Result<T, StoreError>,
    what: &str,
) {
    match (model, real) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{what}: model vs real store"),
        (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{what}"),
        _ => panic!("{what}: model {model:?} vs real store {real:?}"),
    }
    if let Err(StoreError::Backend(e)) = model {
        panic!("{what}: backend error {e}");
    }
}

impl Harness {
    async fn new(sinks: &[SinkKind], backend: Backend) -> Self {
        let clock = ManualClock::new(start());
        let dir = TempDir::new("props");
        let file = dir.path().join("store0.db");
        let redis = (backend == Backend::Redis).then(|| RedisScratch::new("props"));
        let real = match (backend, &redis) {
            (Backend::Sqlite, _) => Some(Real::Sqlite(reopen(&file, sinks, &clock))),
            (Backend::Redis, Some(scratch)) => Some(Real::Redis(scratch.open(sinks, &clock).await)),
            _ => None,
        };
        Self {
            sinks: sinks.to_vec(),
            model: MemoryStore::with_clock(sinks, Arc::new(clock.clone())),
            clock,
            real,
            redis,
            dir,
            file,
            images: 0,
            ledger: Ledger::default(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        Clock::now(&self.clock)
    }

    async fn step(&mut self, op: Op) {
        match op {
            Op::Create { call: i, campaign } => {
                let mut record = call(CALLS[i], &self.clock);
                record.campaign_id = campaign.then(|| "spring".to_owned());
                let result = both!(self, |s| s
                    .create_call(record.clone(), EventType::Initiated));
                match result {
                    Ok(event) => {
                        self.ledger.stored(&self.sinks, &[event]);
                        self.ledger
                            .states
                            .insert(CALLS[i].into(), CallState::Initiated);
                    }
                    Err(StoreError::AlreadyExists(existing)) => {
                        assert_eq!(Some(&existing.state), self.ledger.states.get(CALLS[i]));
                    }
                    Err(e) => panic!("create: {e:?}"),
                }
            }
            Op::Move { call, to } => {
                self.update(call, || to_state(to)).await;
            }
            Op::Force { call, to } => {
                self.update(call, || force_state(to)).await;
            }
            Op::Annotate { call } => {
                let url = format!("file:///rec/{}.wav", self.now().timestamp());
                self.update(call, move || {
                    let url = url.clone();
                    Box::new(move |record| {
                        record.recording_url = Some(url);
                        Ok(vec![EventType::RecordingReady])
                    })
                })
                .await;
            }
            Op::Touch { call } => {
                self.update(call, || Box::new(|_| Ok(Vec::new()))).await;
            }
            Op::Fail { call } => {
                self.update(call, || {
                    Box::new(|record| {
                        record.state = CallState::Failed;
                        Err(StoreError::NotFound("refused by the update".into()))
                    })
                })
                .await;
            }
            Op::Claim {
                sink,
                max,
                lease_secs,
            } => {
                let lease = Duration::from_secs(lease_secs);
                let claimed = both!(self, |s| s.claim(sink, max, lease)).expect("claim");
                self.ledger.claimed(sink, max, &claimed);
            }
            Op::Ack { sink, mask } => {
                let mut ids: Vec<u64> = Vec::new();
                let held = std::mem::take(&mut self.ledger.claimed);
                for (i, (s, id)) in held.into_iter().enumerate() {
                    if s == sink && mask & (1 << (i % 8)) != 0 {
                        ids.push(id);
                    } else {
                        self.ledger.claimed.push((s, id));
                    }
                }
                // A stale ack (a deliverer whose lease ran out) and another sink's id
                // must be harmless.
                if let Some(&(_, stale)) = self.ledger.acked.iter().find(|(s, _)| *s == sink) {
                    ids.push(stale);
                }
                if let Some(&(_, other)) = self.ledger.claimed.iter().find(|(s, _)| *s != sink) {
                    ids.push(other);
                }
                both!(self, |s| s.ack(sink, &ids)).expect("ack");
                for id in ids {
                    if self.ledger.keys[&id].1 == sink && !self.ledger.acked.contains(&(sink, id)) {
                        self.ledger.set_fate(id, Fate::Acked);
                        self.ledger.acked.push((sink, id));
                    }
                }
            }
            Op::Retry { pick, delay_secs } => {
                let Some((sink, id)) = take(&mut self.ledger.claimed, pick) else {
                    return;
                };
                let at = self.now() + chrono::Duration::seconds(delay_secs as i64);
                both!(self, |s| s.retry_later(sink, id, at, "503")).expect("retry_later");
            }
            Op::Dead { pick } => {
                let Some((sink, id)) = take(&mut self.ledger.claimed, pick) else {
                    return;
                };
                both!(self, |s| s.dead_letter(sink, id, "400")).expect("dead_letter");
                self.ledger.set_fate(id, Fate::Dead);
                self.ledger.dead.push((sink, id));
            }
            Op::Replay { pick } => {
                let Some((sink, id)) = take(&mut self.ledger.dead, pick) else {
                    return;
                };
                both!(self, |s| s.replay_dead(sink, id)).expect("replay_dead");
                self.ledger.set_fate(id, Fate::Live);
            }
            Op::Misuse { pick, kind } => self.misuse(pick, kind).await,
            Op::Tick { secs } => self.clock.advance(Duration::from_secs(secs)),
            Op::Restart => match self.real.take() {
                Some(Real::Sqlite(_)) => {
                    self.real = Some(Real::Sqlite(reopen(&self.file, &self.sinks, &self.clock)));
                }
                Some(Real::Redis(_)) => self.real = Some(self.another_redis_instance().await),
                None => {}
            },
            Op::Crash => match self.real.take() {
                Some(Real::Sqlite(real)) => {
                    self.images += 1;
                    let image = self.dir.path().join(format!("store{}.db", self.images));
                    crash_image(&self.file, &image);
                    drop(real);
                    self.file = image;
                    self.real = Some(Real::Sqlite(reopen(&self.file, &self.sinks, &self.clock)));
                }
                Some(Real::Redis(_)) => self.real = Some(self.another_redis_instance().await),
                None => {}
            },
        }
    }

    /// A new Redis store instance on the case's keys (the old one is gone as if killed).
    async fn another_redis_instance(&self) -> Real {
        let scratch = self
            .redis
            .as_ref()
            .expect("a Redis case has its scratch name");
        Real::Redis(scratch.open(&self.sinks, &self.clock).await)
    }

    /// An update of call `i`; `make` builds the same update once per store.
    async fn update(&mut self, i: usize, make: impl Fn() -> Update) {
        let id = CALLS[i];
        let before = self.ledger.states.get(id).copied();
        let result = both!(self, |s| s.update_call(id, make()));
        let after = both!(self, |s| s.get_call(id)).expect("get_call");
        match (&result, before) {
            (Ok(events), Some(before)) => {
                self.ledger.stored(&self.sinks, events);
                let after = after.expect("updated call exists").state;
                assert!(before.transition(after).is_ok(), "{before:?} -> {after:?}");
                if before.is_terminal() {
                    assert_eq!(after, before, "a terminal state never changes");
                }
                self.ledger.states.insert(id.into(), after);
            }
            (Err(StoreError::NotFound(_)), None) => assert!(after.is_none()),
            (Err(StoreError::Transition(_) | StoreError::NotFound(_)), Some(before)) => {
                assert_eq!(
                    after.map(|c| c.state),
                    Some(before),
                    "refused: nothing stored"
                );
            }
            other => panic!("update {id}: {other:?}"),
        }
    }

    /// Entry ids used the wrong way: each must be refused with `NoEntry`.
    async fn misuse(&mut self, pick: Index, kind: u8) {
        let pick_from =
            |list: &[(SinkKind, u64)]| (!list.is_empty()).then(|| list[pick.index(list.len())]);
        let acked = pick_from(&self.ledger.acked).unwrap_or((SinkKind::Queue, NO_SUCH_ID));
        let held = pick_from(&self.ledger.claimed);
        let dead = pick_from(&self.ledger.dead);
        let at = self.now();
        let result = match (kind % 5, held, dead) {
            (1, Some((sink, id)), _) => both!(self, |s| s.replay_dead(sink, id)),
            (2, _, Some((sink, id))) => both!(self, |s| s.retry_later(sink, id, at, "x")),
            (3, Some((sink, id)), _) => {
                let other = if sink == SinkKind::Queue {
                    SinkKind::Backend
                } else {
                    SinkKind::Queue
                };
                both!(self, |s| s.dead_letter(other, id, "x"))
            }
            (4, _, _) => both!(self, |s| s.dead_letter(acked.0, acked.1, "x")),
            _ => both!(self, |s| s.retry_later(acked.0, acked.1, at, "x")),
        };
        assert!(
            matches!(result, Err(StoreError::NoEntry(_))),
            "misuse {kind}: {result:?}"
        );
    }

    /// Both stores hold the same state, and it is the ledger's.
    async fn check(&self) {
        let pending = both!(self, |s| s.pending()).expect("pending");
        assert_eq!(pending, self.ledger.live(), "nothing unacked is lost");
        let dead = both!(self, |s| s.list_dead(1_000)).expect("list_dead");
        let mut dead: Vec<u64> = dead.iter().map(|e| e.id).collect();
        let mut expected: Vec<u64> = self.ledger.dead.iter().map(|(_, id)| *id).collect();
        dead.sort_unstable();
        expected.sort_unstable();
        assert_eq!(dead, expected, "dead letters");
        for id in CALLS {
            let call = both!(self, |s| s.get_call(id)).expect("get_call");
            assert_eq!(call.map(|c| c.state), self.ledger.states.get(id).copied());
        }
        let page = Page {
            after: None,
            limit: 10,
        };
        both!(self, |s| s.list_calls(&CallFilter::default(), &page)).expect("list_calls");
    }

    /// Far in the future, claims and acks until nothing is left: every live entry comes
    /// out (once), in order, and then the outbox is empty.
    async fn drain(&mut self) {
        self.clock.advance(Duration::from_secs(86_400));
        self.ledger.claimed.clear();
        for sink in BOTH {
            loop {
                let lease = Duration::from_secs(60);
                let claimed = both!(self, |s| s.claim(sink, 3, lease)).expect("claim");
                if claimed.is_empty() {
                    break;
                }
                self.ledger.claimed(sink, 3, &claimed);
                let ids: Vec<u64> = claimed.iter().map(|e| e.id).collect();
                both!(self, |s| s.ack(sink, &ids)).expect("ack");
                for id in ids {
                    self.ledger.set_fate(id, Fate::Acked);
                }
            }
        }
        assert_eq!(self.ledger.live(), 0, "every unacked entry was delivered");
        assert_eq!(both!(self, |s| s.pending()).expect("pending"), 0);
    }
}

fn reopen(file: &std::path::Path, sinks: &[SinkKind], clock: &ManualClock) -> SqliteStore {
    SqliteStore::open_with_clock(file, sinks, Arc::new(clock.clone())).expect("open sqlite")
}

fn take(list: &mut Vec<(SinkKind, u64)>, pick: Index) -> Option<(SinkKind, u64)> {
    (!list.is_empty()).then(|| list.remove(pick.index(list.len())))
}

fn run(ops: Vec<Op>, sinks: &[SinkKind], backend: Backend) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut harness = Harness::new(sinks, backend).await;
        for op in ops {
            harness.step(op).await;
            harness.check().await;
        }
        harness.drain().await;
    });
}

fn sinks() -> impl Strategy<Value = Vec<SinkKind>> {
    prop_oneof![Just(BOTH.to_vec()), Just(vec![SinkKind::Backend])]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn sqlite_agrees_with_the_model_and_keeps_the_contract(
        sinks in sinks(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(ops, &sinks, Backend::Sqlite);
    }

    #[test]
    fn redis_agrees_with_the_model_and_keeps_the_contract(
        sinks in sinks(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(ops, &sinks, Backend::Redis);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_model_keeps_the_contract(
        sinks in sinks(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(ops, &sinks, Backend::None);
    }
}
