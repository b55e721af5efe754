//! Many simulated calls at once: [`run_load`] and its [`LoadReport`].
//!
//! Owns: starting N concurrent calls (each its own `CallUUID`, same script) over an
//! optional ramp, stopping them at a deadline, and aggregating their reports.
//!
//! Bounds: at most [`MAX_CALLS`] calls, a deadline on the whole run, loopback addresses
//! only (a load run must never hit someone else's server), and every call records
//! [`Detail::Summary`] so memory stays flat however long the calls are. Never: retries a
//! failed call (a failure is a result).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::call::{http_client, run_call_with};
use super::config::SimConfig;
use super::error::SimError;
use super::record::{self, ApiToken, RecordError, ServerRecord, Stage};
use super::report::{CallReport, Detail};

/// Most calls one run may start.
pub const MAX_CALLS: usize = 5_000;

/// Call records fetched at once (`--api-token`), so fetching never becomes load itself.
const RECORD_FETCHES: usize = 8;

/// Extra time the record fetches get after the last call ended.
const RECORD_DRAIN: Duration = Duration::from_secs(10);

/// A load run: validated at construction, so [`run_load`] cannot be handed a bad one.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    call: SimConfig,
    calls: usize,
    ramp: Duration,
    deadline: Duration,
    records: Option<ApiToken>,
}

impl LoadConfig {
    /// `calls` copies of `call` (each with a fresh `CallUUID`). Forces loopback-only and
    /// summary detail; refuses a zero or too-large count, a non-loopback server, or a bad
    /// call setting. The deadline defaults to the call's longest duration plus 30 s.
    pub fn new(mut call: SimConfig, calls: usize) -> Result<Self, SimError> {
        if calls == 0 || calls > MAX_CALLS {
            return Err(SimError::Config(format!(
                "calls must be between 1 and {MAX_CALLS}, not {calls}"
            )));
        }
        call.loopback_only = true;
        call.detail = Detail::Summary;
        call.validate()?;
        let speed = call.speed;
        let deadline = call.timeouts.max_call.div_f64(speed) + Duration::from_secs(30);
        Ok(Self {
            call,
            calls,
            ramp: Duration::ZERO,
            deadline,
            records: None,
        })
    }

    /// Spreads the starts evenly over `ramp` (real time).
    pub fn with_ramp(mut self, ramp: Duration) -> Self {
        self.ramp = ramp;
        self
    }

    /// Stops every call still running after `deadline` (real time, from the first start).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// After each call, fetches its record from the control API with `token` (at most
    /// 8 at once) and summarises the server's per-stage latency.
    pub fn with_records(mut self, token: ApiToken) -> Self {
        self.records = Some(token);
        self
    }

    /// Number of calls.
    pub fn calls(&self) -> usize {
        self.calls
    }
}

/// Nearest-rank percentiles of a set of values, ms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values counted.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `values`, `None` when empty.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let i = (p / 100.0 * values.len() as f64).ceil() as usize;
            values[i.clamp(1, values.len()) - 1]
        };
        Some(Self {
            count: values.len(),
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: values[values.len() - 1],
        })
    }
}

/// How the call records went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordCounts {
    /// Records read.
    pub fetched: usize,
    /// Records not read, by [`RecordError::kind`].
    pub failed: BTreeMap<String, usize>,
    /// One message per failure kind, the first seen.
    pub failure_examples: BTreeMap<String, String>,
}

/// Stage name → values, for the percentiles.
#[derive(Debug, Default)]
struct StageValues(BTreeMap<&'static str, Vec<f64>>);

impl StageValues {
    fn push(&mut self, stage: &'static str, value: Option<f64>) {
        if let Some(v) = value {
            self.0.entry(stage).or_default().push(v);
        }
    }

    fn percentiles(self) -> BTreeMap<String, Percentiles> {
        self.0
            .into_iter()
            .filter_map(|(k, v)| Percentiles::of(v).map(|p| (k.to_owned(), p)))
            .collect()
    }
}

/// What a load run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Calls started.
    pub calls: usize,
    /// Calls that streamed to the end.
    pub ok: usize,
    /// Calls that failed.
    pub failed: usize,
    /// Failures by [`SimError::kind`] (`deadline` for calls cut off by the deadline).
    pub failures: BTreeMap<String, usize>,
    /// One message per failure kind, the first seen.
    pub failure_examples: BTreeMap<String, String>,
    /// Caller turns across all calls.
    pub turns: usize,
    /// Caller turns the agent answered.
    pub answered_turns: usize,
    /// First-response latency (caller speech end → first agent audio) across turns.
    pub latency: Option<Percentiles>,
    /// Barge-in onset → `clearAudio` across turns.
    pub barge_in_to_clear: Option<Percentiles>,
    /// Wire stages across caller turns, ms from speech end: `first_play_audio`,
    /// `first_heard`, `played_stream`.
    pub wire_stages: BTreeMap<String, Percentiles>,
    /// Who ended the calls: `caller`, `gateway`, `gateway_rest`, `plivo` → count.
    pub hung_up_by: BTreeMap<String, usize>,
    /// Call records read (`--api-token`); `None` without a token.
    pub records: Option<RecordCounts>,
    /// The server's stages across all agent turns of the records read (`end_of_turn`, …,
    /// `gateway`), ms from the caller's speech end; `gateway` is the gateway's own share.
    pub server_stages: BTreeMap<String, Percentiles>,
    /// Gaps in agent audio across all calls.
    pub gaps: u32,
    /// Their total length, ms.
    pub gap_ms: f64,
    /// Protocol errors across all calls.
    pub protocol_errors: u64,
    /// Protocol errors by kind.
    pub protocol_error_kinds: BTreeMap<String, u64>,
    /// Messages dropped because a server did not read.
    pub send_queue_full: u64,
    /// Ticks that ran more than one period late (the load generator itself overloaded).
    pub late_ticks: u64,
    /// Worst tick lateness, real ms.
    pub max_late_ms: f64,
    /// Real time the run took, ms.
    pub wall_ms: f64,
}

impl LoadReport {
    fn add(&mut self, outcome: Result<CallReport, (String, String)>) {
        match outcome {
            Ok(report) => {
                self.ok += 1;
                *self
                    .hung_up_by
                    .entry(report.hung_up_by.as_str().to_owned())
                    .or_default() += 1;
                self.turns += report.turns.len();
                self.gaps += report.gaps.count;
                self.gap_ms += report.gaps.total_ms;
                self.protocol_errors += report.counts.protocol_errors;
                for e in &report.protocol_errors {
                    *self.protocol_error_kinds.entry(e.kind.clone()).or_default() += 1;
                }
                self.send_queue_full += report.counts.send_queue_full;
                self.late_ticks += report.clock.late_ticks;
                self.max_late_ms = self.max_late_ms.max(report.clock.max_late_ms);
            }
            Err((kind, message)) => {
                self.failed += 1;
                *self.failures.entry(kind.clone()).or_default() += 1;
                self.failure_examples.entry(kind).or_insert(message);
            }
        }
    }
}

/// Runs the load and aggregates it.
pub async fn run_load(cfg: LoadConfig) -> LoadReport {
    let started = Instant::now();
    let mut report = LoadReport {
        calls: cfg.calls,
        ..LoadReport::default()
    };
    let client = match http_client() {
        Ok(client) => client,
        Err(e) => {
            for _ in 0..cfg.calls {
                report.add(Err((e.kind().to_owned(), e.to_string())));
            }
            return report;
        }
    };
    let mut set = JoinSet::new();
    for i in 0..cfg.calls {
        let mut call = cfg.call.clone();
        call.call_uuid = uuid::Uuid::new_v4().to_string();
        let delay = cfg.ramp.mul_f64(i as f64 / cfg.calls as f64);
        let client = client.clone();
        set.spawn(async move {
            tokio::time::sleep(delay).await;
            run_call_with(&client, call)
                .await
                .map_err(|e| (e.kind().to_owned(), e.to_string()))
        });
    }
    let mut latencies = Vec::new();
    let mut clears = Vec::new();
    let mut wire = StageValues::default();
    let mut fetches = JoinSet::new();
    let permits = Arc::new(Semaphore::new(RECORD_FETCHES));
    let deadline = tokio::time::Instant::from_std(started + cfg.deadline);
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(joined)) => {
                let outcome = joined.unwrap_or_else(|e| Err(("panic".to_owned(), e.to_string())));
                if let Ok(call) = &outcome {
                    for turn in &call.turns {
                        latencies.extend(turn.response_latency_ms);
                        clears.extend(turn.barge_in_to_clear_ms);
                        wire.push("first_play_audio", turn.first_play_audio_latency_ms);
                        wire.push("first_heard", turn.response_latency_ms);
                        wire.push("played_stream", turn.played_stream_latency_ms);
                    }
                    if let Some(token) = &cfg.records {
                        let (client, token, permits) =
                            (client.clone(), token.clone(), permits.clone());
                        let (server, call_id) = (cfg.call.server.clone(), call.call_uuid.clone());
                        fetches.spawn(async move {
                            let _permit = permits.acquire_owned().await;
                            record::fetch_record(
                                &client,
                                &server,
                                &token,
                                &call_id,
                                record::FETCH_WINDOW,
                            )
                            .await
                        });
                    }
                }
                report.add(outcome);
            }
            Ok(None) => break,
            Err(_) => {
                let left = set.len();
                set.abort_all();
                for _ in 0..left {
                    report.add(Err((
                        "deadline".to_owned(),
                        format!("still running after {:?}", cfg.deadline),
                    )));
                }
                break;
            }
        }
    }
    if cfg.records.is_some() {
        let (counts, stages) = drain_records(fetches).await;
        report.records = Some(counts);
        report.server_stages = stages;
    }
    report.wire_stages = wire.percentiles();
    report.answered_turns = latencies.len();
    report.latency = Percentiles::of(latencies);
    report.barge_in_to_clear = Percentiles::of(clears);
    report.wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

/// Waits for the record fetches (bounded by [`RECORD_DRAIN`]) and gathers their stages.
async fn drain_records(
    mut fetches: JoinSet<Result<ServerRecord, RecordError>>,
) -> (RecordCounts, BTreeMap<String, Percentiles>) {
    let mut counts = RecordCounts::default();
    let mut stages = StageValues::default();
    let mut fail = |kind: &str, message: String| {
        *counts.failed.entry(kind.to_owned()).or_default() += 1;
        counts
            .failure_examples
            .entry(kind.to_owned())
            .or_insert(message);
    };
    let until = tokio::time::Instant::now() + RECORD_DRAIN;
    loop {
        match tokio::time::timeout_at(until, fetches.join_next()).await {
            Ok(Some(Ok(Ok(record)))) => {
                counts.fetched += 1;
                for turn in &record.turns {
                    for stage in Stage::ALL {
                        stages.push(stage.name(), turn.stage(stage));
                    }
                }
            }
            Ok(Some(Ok(Err(e)))) => fail(e.kind(), e.to_string()),
            Ok(Some(Err(e))) => fail("panic", e.to_string()),
            Ok(None) => break,
            Err(_) => {
                for _ in 0..fetches.len() {
                    fail("deadline", format!("not read within {RECORD_DRAIN:?}"));
                }
                fetches.abort_all();
                break;
            }
        }
    }
    (counts, stages.percentiles())
}

fn pct(f: &mut fmt::Formatter<'_>, name: &str, p: &Option<Percentiles>) -> fmt::Result {
    match p {
        Some(p) => writeln!(
            f,
            "  {name} (n={}): p50 {}, p95 {}, p99 {}, max {}",
            p.count,
            ms(p.p50),
            ms(p.p95),
            ms(p.p99),
            ms(p.max)
        ),
        None => writeln!(f, "  {name}: no samples"),
    }
}

/// Whole ms, or one decimal below 10 ms (the gateway's share is a few ms).
fn ms(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load: {} calls in {:.1} s: {} ok, {} failed",
            self.calls,
            self.wall_ms / 1000.0,
            self.ok,
            self.failed
        )?;
        for (kind, n) in &self.failures {
            let example = self.failure_examples.get(kind).map_or("", String::as_str);
            writeln!(f, "  failed {kind}: {n} (e.g. {example})")?;
        }
        writeln!(
            f,
            "  turns {}, answered {}",
            self.turns, self.answered_turns
        )?;
        pct(f, "first-response latency", &self.latency)?;
        pct(f, "barge-in → clearAudio", &self.barge_in_to_clear)?;
        if !self.hung_up_by.is_empty() {
            let by: Vec<String> = self
                .hung_up_by
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(f, "  hung up by: {}", by.join(", "))?;
        }
        writeln!(f, "  wire stages (ms from the caller's speech end):")?;
        for stage in ["first_play_audio", "first_heard", "played_stream"] {
            pct(
                f,
                &format!("  {stage}"),
                &self.wire_stages.get(stage).cloned(),
            )?;
        }
        match &self.records {
            None => writeln!(
                f,
                "  (--api-token adds the server's per-stage split from each call record)"
            )?,
            Some(records) => {
                writeln!(f, "  call records read: {}", records.fetched)?;
                for (kind, n) in &records.failed {
                    let example = records
                        .failure_examples
                        .get(kind)
                        .map_or("", String::as_str);
                    writeln!(f, "    not read ({kind}): {n} (e.g. {example})")?;
                }
                writeln!(f, "  server stages (ms from the caller's speech end):")?;
                for stage in Stage::ALL {
                    let name = stage.name();
                    pct(
                        f,
                        &format!("  {name}"),
                        &self.server_stages.get(name).cloned(),
                    )?;
                }
            }
        }
        writeln!(
            f,
            "  gaps {} ({:.0} ms), protocol errors {}, send queue full {}",
            self.gaps, self.gap_ms, self.protocol_errors, self.send_queue_full
        )?;
        for (kind, n) in &self.protocol_error_kinds {
            writeln!(f, "    {kind}: {n}")?;
        }
        writeln!(
            f,
            "  generator clock: {} late ticks, worst {:.1} ms late",
            self.late_ticks, self.max_late_ms
        )
    }
}
