//! Durable delivery with the real binary: what a user of the backend sees when the
//! backend goes away, when voxgate is killed with SIGKILL mid-delivery, and when one of two
//! instances sharing a Redis dies.
//!
//! Each test runs `voxgate serve` as a process (port, data directory and config of its
//! own), a local server speaking Plivo's REST API that places the calls and sends the
//! signed ring, answer and hangup callbacks, and a backend on loopback that records every
//! update it acknowledged ([`backend::Backend`]). A call here lives through
//! `call.initiated → call.ringing → call.answered → call.ended` (seq 1–4, no media).
//!
//! What "nothing lost, in order" means, checked on what the backend acknowledged: every
//! event of every call arrived (the set of event ids is complete), each call's events
//! arrived in seq order (a redelivered event may repeat, never come after a later one),
//! each request's `Idempotency-Key` is its event's id, and nothing became a dead letter.
//!
//! Redis mode: call ids carry a per-run suffix (Redis keeps state between runs), each test
//! has its own queue stream, and an instance restarted after SIGKILL gets a fresh data
//! directory — with `store = "redis"` the state must live in Redis, not on the local disk.
//!
//! Times: the backend-down test lasts the outage (60 s) plus the catch-up; the kill tests
//! wait for the deliverer's lease (30 s, `DelivererConfig::default`) to run out on the
//! events the dead process had claimed. Retries are capped at 5 s
//! (`control.delivery_retry_cap_secs`) so delivery resumes within 5 s of the backend's
//! return; with the default cap (5 min) it can take minutes.

mod common;
#[path = "durability/instance.rs"]
mod instance;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::backend::{Backend, Mode, Received};
use instance::Instance;
use serde_json::{Value, json};
use voxgate::sim::plivo_rest::{Completion, FakePlivo};

const API_TOKEN: &str = "api-token";
const AUTH_ID: &str = "MAZDQ1ZDU2NDE4MTNHMQ";
const AUTH_TOKEN: &str = "plivo-auth-token";
const SECRET: &str = "backend-secret";
const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// A call's events, seq 1 to 4.
const EVENTS: [&str; 4] = [
    "call.initiated",
    "call.ringing",
    "call.answered",
    "call.ended",
];
/// `control.delivery_retry_cap_secs` in these tests.
const RETRY_CAP: Duration = Duration::from_secs(5);
/// The deliverer's lease (`DelivererConfig::default().lease`).
const LEASE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreMode {
    Sqlite,
    Redis,
}

/// A folder under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("voxgate-durability-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One test's world: Plivo, the backend, a folder, and the calls placed so far.
struct World {
    mode: StoreMode,
    run: String,
    fake: FakePlivo,
    backend: Backend,
    root: Dir,
    config: PathBuf,
    stream: String,
    /// `(call_id, Plivo uuid)`.
    calls: Vec<(String, String)>,
}

impl World {
    async fn new(mode: StoreMode) -> Self {
        let fake = FakePlivo::start(AUTH_ID, AUTH_TOKEN).await.unwrap();
        let backend = Backend::start(SECRET).await;
        let root = Dir::new();
        let stream = format!("voxgate:test:{}", uuid::Uuid::new_v4());
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let config = root.0.join("voxgate.toml");
        // The Redis store's keys are this test's own (`redis_prefix`): Redis outlives test
        // runs, and tests run in parallel.
        std::fs::write(
            &config,
            format!(
                "[control]\nqueue_stream = \"{stream}\"\nredis_prefix = \"vgtest-{run}\"\n\
                 delivery_retry_cap_secs = {}\n",
                RETRY_CAP.as_secs()
            ),
        )
        .unwrap();
        eprintln!("durability: files under {}", root.0.display());
        Self {
            mode,
            run,
            fake,
            backend,
            root,
            config,
            stream,
            calls: Vec::new(),
        }
    }

    /// Starts an instance whose data directory (and log) is named `name`: the same name
    /// means the same disk.
    async fn start(&self, name: &str) -> Instance {
        let data = self.root.0.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = self.root.0.join(format!(
            "{name}-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ));
        let (api, backend, data) = (
            self.fake.base_url(),
            self.backend.url(),
            data.display().to_string(),
        );
        let mut env = vec![
            ("VOXGATE_API_TOKENS", API_TOKEN),
            ("PLIVO_AUTH_ID", AUTH_ID),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VOXGATE_PLIVO_API_URL", api.as_str()),
            ("VOXGATE_BACKEND_URL", backend.as_str()),
            ("VOXGATE_BACKEND_SECRET", SECRET),
            ("VOXGATE_DATA_DIR", data.as_str()),
        ];
        match self.mode {
            StoreMode::Sqlite => env.push(("VOXGATE_STORE", "sqlite")),
            StoreMode::Redis => {
                env.push(("VOXGATE_STORE", "redis"));
                env.push(("VOXGATE_REDIS_URL", REDIS_URL));
            }
        }
        let instance = Instance::start(&self.config, &env, log).await;
        eprintln!(
            "durability: {name} at {}, log {}",
            instance.base,
            instance.log.display()
        );
        instance
    }

    /// Places `n` calls through `instance` (`call.initiated`); returns their indexes.
    async fn place(&mut self, instance: &Instance, n: usize) -> std::ops::Range<usize> {
        let first = self.calls.len();
        for i in first..first + n {
            let call_id = format!("dur-{}-{i}", self.run);
            let response = reqwest::Client::new()
                .post(format!("{}/v1/calls", instance.base))
                .bearer_auth(API_TOKEN)
                .json(&json!({"call_id": call_id, "to": "+14155550100", "from": "+14155550199"}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 201, "placing {call_id}: {body}");
            let uuid = body["plivo_request_uuid"].as_str().unwrap().to_owned();
            self.calls.push((call_id, uuid));
        }
        first..first + n
    }

    /// Plivo rings the calls (`call.ringing`).
    async fn ring(&self, calls: std::ops::Range<usize>) {
        for (_, uuid) in &self.calls[calls] {
            self.fake.ring(uuid).await.unwrap();
        }
    }

    /// The callees answer, talk 30 s and hang up (`call.answered`, `call.ended`).
    async fn answer_and_hang_up(&self, calls: std::ops::Range<usize>) {
        for (_, uuid) in &self.calls[calls] {
            let answer = self.fake.answer(uuid).await.unwrap();
            assert!(answer.body.contains("<Stream"), "{}", answer.body);
            self.fake.complete(uuid, Completion::normal(30)).unwrap();
            self.fake.hangup_callback(uuid).await.unwrap();
        }
    }

    /// The whole life of new calls.
    async fn live(&mut self, instance: &Instance, n: usize) -> std::ops::Range<usize> {
        let calls = self.place(instance, n).await;
        self.ring(calls.clone()).await;
        self.answer_and_hang_up(calls.clone()).await;
        calls
    }

    fn ids(&self, calls: std::ops::Range<usize>) -> Vec<String> {
        self.calls[calls].iter().map(|(id, _)| id.clone()).collect()
    }

    /// Waits until the backend acknowledged seqs `1..=upto` of each of `ids`; panics after
    /// `within`, naming what is missing. Returns how long it took.
    async fn wait_delivered(&self, ids: &[String], upto: u64, within: Duration) -> Duration {
        let started = Instant::now();
        let want: Vec<u64> = (1..=upto).collect();
        loop {
            let missing: Vec<(String, Vec<u64>)> = ids
                .iter()
                .map(|id| (id.clone(), self.backend.seqs_of(id)))
                .filter(|(_, seqs)| !want.iter().all(|s| seqs.contains(s)))
                .collect();
            if missing.is_empty() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "after {within:?} the backend still lacks events of {} call(s) \
                 (call, seqs it has): {missing:?}; logs under {}",
                missing.len(),
                self.root.0.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every event of `ids` reached the backend, each call's in seq order, under its own
    /// idempotency key; returns how many updates were duplicates.
    fn assert_complete_in_order(&self, ids: &[String]) -> usize {
        let received = self.backend.received();
        let mut duplicates = 0;
        for id in ids {
            let of_call: Vec<&Received> = received.iter().filter(|r| &r.call_id == id).collect();
            let order: Vec<u64> = of_call.iter().map(|r| r.seq).collect();
            assert!(
                order.windows(2).all(|w| w[0] <= w[1]),
                "{id}: events out of order at the backend: seqs {order:?}"
            );
            let mut distinct = order.clone();
            distinct.dedup();
            assert_eq!(
                distinct,
                [1, 2, 3, 4],
                "{id}: the backend got seqs {order:?}"
            );
            duplicates += order.len() - distinct.len();
            for r in &of_call {
                assert_eq!(r.event, EVENTS[(r.seq - 1) as usize], "{id}: {r:?}");
                assert_eq!(r.event_id, format!("{id}:{}", r.seq), "{r:?}");
                assert_eq!(
                    r.key, r.event_id,
                    "the Idempotency-Key is the event id: {r:?}"
                );
            }
        }
        assert_eq!(self.backend.bad_signatures(), 0);
        duplicates
    }

    /// No event became a dead letter.
    async fn assert_no_dead_letters(&self, instance: &Instance) {
        let dead =
            common::api_get(&format!("{}/v1/deliveries/dead", instance.base), API_TOKEN).await;
        assert_eq!(dead["dead"], json!([]), "dead letters: {dead}");
    }

    /// Removes what the queue sink wrote to Redis for these calls.
    async fn clean_redis(&self) {
        if self.mode != StoreMode::Redis {
            return;
        }
        let client = redis::Client::open(REDIS_URL).unwrap();
        let mut redis = client.get_multiplexed_async_connection().await.unwrap();
        let mut keys: Vec<String> = self
            .calls
            .iter()
            .map(|(id, _)| format!("call_job:{id}"))
            .collect();
        keys.push(self.stream.clone());
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
}

/// Waits until the backend holds at least one request (a delivery is in flight).
async fn wait_held(backend: &Backend) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.held() == 0 {
        assert!(Instant::now() < deadline, "no delivery reached the backend");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_for_60_s_then_up_gets_every_event_in_order() {
    const OUTAGE: Duration = Duration::from_secs(60);
    let mut w = World::new(StoreMode::Sqlite).await;
    let vx = w.start("a").await;
    // The path works before the outage.
    let before = w.live(&vx, 1).await;
    w.wait_delivered(&w.ids(before), 4, Duration::from_secs(10))
        .await;

    w.backend.go_down().await;
    let down_at = Instant::now();
    // Calls keep coming while the backend is down: three waves of four calls, plus
    // three calls still ringing when it comes back (their last events come after).
    let mut during = Vec::new();
    for wave in 0..3u32 {
        let at = down_at + OUTAGE * wave / 3;
        tokio::time::sleep_until(at.into()).await;
        during.push(w.live(&vx, 4).await);
    }
    let ringing = w.place(&vx, 3).await;
    w.ring(ringing.clone()).await;
    tokio::time::sleep_until((down_at + OUTAGE).into()).await;
    let outage_ids = w.ids(1..w.calls.len());
    assert!(
        w.backend
            .received()
            .iter()
            .all(|r| !outage_ids.contains(&r.call_id)),
        "the backend was down: it got nothing of the calls since"
    );

    w.backend.come_up().await;
    w.answer_and_hang_up(ringing.clone()).await;
    let all = w.ids(0..w.calls.len());
    // Every waiting event is retried within the cap; a call's later events follow at once.
    let catch_up = w
        .wait_delivered(&all, 4, RETRY_CAP + Duration::from_secs(15))
        .await;
    let duplicates = w.assert_complete_in_order(&all);
    w.assert_no_dead_letters(&vx).await;
    eprintln!(
        "durability: {} events of {} calls stored during a {OUTAGE:?} outage, all delivered \
         {catch_up:.1?} after the backend came back ({duplicates} duplicates)",
        (all.len() - 1) * 4,
        all.len() - 1
    );
}

/// Events delivered, then the backend hangs with deliveries in flight, voxgate is killed
/// with SIGKILL and started again: every event arrives, in order.
async fn sigkill_mid_delivery_loses_nothing(mode: StoreMode) {
    let mut w = World::new(mode).await;
    let mut first = w.start("a").await;
    let calls = w.place(&first, 8).await;
    w.ring(calls.clone()).await;
    let ids = w.ids(calls.clone());
    // The first half of every call is delivered…
    w.wait_delivered(&ids, 2, Duration::from_secs(10)).await;
    // …the rest is in flight when the process dies.
    w.backend.set_mode(Mode::Stall);
    w.answer_and_hang_up(calls).await;
    wait_held(&w.backend).await;
    first.kill();
    let held = w.backend.held_total();
    assert!(held > 0);
    w.backend.set_mode(Mode::Up);

    // SQLite: the same disk. Redis: a fresh one (the state lives in Redis).
    let name = match mode {
        StoreMode::Sqlite => "a",
        StoreMode::Redis => "b",
    };
    let second = w.start(name).await;
    let took = w
        .wait_delivered(&ids, 4, LEASE + Duration::from_secs(30))
        .await;
    let duplicates = w.assert_complete_in_order(&ids);
    w.assert_no_dead_letters(&second).await;
    eprintln!(
        "durability ({mode:?}): killed with {held} deliveries in flight; every event arrived \
         {took:.1?} after the restart ({duplicates} duplicates)"
    );
    w.clean_redis().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_nothing_with_sqlite() {
    sigkill_mid_delivery_loses_nothing(StoreMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_nothing_with_redis() {
    sigkill_mid_delivery_loses_nothing(StoreMode::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_the_survivor_delivers_the_killed_ones_events() {
    let mut w = World::new(StoreMode::Redis).await;
    let mut a = w.start("a").await;
    // Every event of these calls is stored by `a`, and `a` is delivering when it dies.
    w.backend.set_mode(Mode::Stall);
    let calls = w.live(&a, 6).await;
    let ids = w.ids(calls);
    wait_held(&w.backend).await;
    let b = w.start("b").await;
    a.kill();
    let held = w.backend.held_total();
    w.backend.set_mode(Mode::Up);

    let took = w
        .wait_delivered(&ids, 4, LEASE + Duration::from_secs(30))
        .await;
    let duplicates = w.assert_complete_in_order(&ids);
    w.assert_no_dead_letters(&b).await;
    eprintln!(
        "durability: instance a killed with {held} deliveries in flight; b delivered every \
         event {took:.1?} later ({duplicates} duplicates)"
    );
    w.clean_redis().await;
}
