//! Reconcile: Plivo's REST API as ground truth when callbacks are late or lost.
//!
//! Owns one background loop ([`Reconciler::spawn`]). Every `interval` it lists the calls
//! that are not terminal (`initiated`, `ringing`, `in_progress`), takes those older than
//! `initial_delay` and not checked within `interval`, oldest first and at most
//! [`MAX_CHECKS_PER_TICK`], and asks Plivo about each by its uuid (`plivo_call_uuid`,
//! else `plivo_request_uuid`):
//!
//! 1. live (`GET …/Call/{uuid}/?status=live`) → its `call_status` (`ringing`,
//!    `in-progress`) is observed through [`ControlPlane::observe`];
//! 2. not live → the CDR (`GET …/Call/{uuid}/`); if Plivo has one, the call ended and
//!    its terminal state is observed (see [`cdr_observation`] for the mapping);
//! 3. neither → **not ready yet**: Plivo has not registered the call (reference §4.3–4.4).
//!    Nothing is changed.
//!
//! Every change goes through [`ControlPlane::observe`], so the state machine, the outbox
//! and "terminal is final, `call.ended` once" apply exactly as for callbacks.
//!
//! Errors are counted per call; a success of any kind resets the count. After
//! `error_tolerance` errors in a row the call is logged once at `error`, counted in
//! [`telemetry::RECONCILE_GAVE_UP`], and no longer checked by this process.
//!
//! Must never:
//! - mark a call `failed` (or any terminal state) because Plivo does not know it yet:
//!   404 on both the live call and the CDR means "not ready", never "failed";
//! - touch a terminal call: such calls are not listed, and each call is re-read just
//!   before Plivo is asked, so one that ended meanwhile is skipped;
//! - send a request with an empty uuid (calls without one are skipped).

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, Utc};
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::ReconcileConfig;
use super::lifecycle::Observation;
use super::model::{CallRecord, CallState, state_from_plivo};
use super::plane::ControlPlane;
use super::store::{CallFilter, MAX_PAGE_LIMIT, Page, Store};
use crate::telemetry;
use crate::telephony::plivo::rest::{Cdr, PlivoApi, RestError};

/// The most calls checked in one tick (oldest first); the rest wait for the next tick.
pub const MAX_CHECKS_PER_TICK: usize = 200;

/// How many calls are checked at once.
const CONCURRENCY: usize = 8;

/// The most non-terminal calls read from the store per state per tick.
const MAX_SCAN_PER_STATE: usize = 10_000;

/// The states a call is reconciled in.
const OPEN_STATES: [CallState; 3] = [
    CallState::Initiated,
    CallState::Ringing,
    CallState::InProgress,
];

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Plivo says the call is live.
    Live,
    /// Plivo has the call's record: it ended.
    Ended,
    /// Plivo knows nothing of the call yet.
    NotReady,
    /// Asking Plivo (or storing the answer) failed.
    Error,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Ended => "ended",
            Self::NotReady => "not_ready",
            Self::Error => "error",
        }
    }
}

/// Per-call bookkeeping, in memory (lost on restart: the call is simply checked again).
#[derive(Debug, Clone, Copy)]
struct Tracked {
    last_checked: Instant,
    errors: u32,
    gave_up: bool,
}

/// The reconcile loop.
pub struct Reconciler {
    plane: Arc<ControlPlane>,
    store: Arc<dyn Store>,
    plivo: Arc<dyn PlivoApi>,
    config: ReconcileConfig,
    tracked: HashMap<String, Tracked>,
}

impl Reconciler {
    /// A reconciler; [`Reconciler::tick`] runs one round. `plivo` should be built with
    /// `config.request_timeout` and `config.retries` (each request is also bounded here).
    pub fn new(
        plane: Arc<ControlPlane>,
        store: Arc<dyn Store>,
        plivo: Arc<dyn PlivoApi>,
        config: ReconcileConfig,
    ) -> Self {
        Self {
            plane,
            store,
            plivo,
            config,
            tracked: HashMap::new(),
        }
    }

    /// Runs a round every `config.interval` until `shutdown`.
    pub fn spawn(
        plane: Arc<ControlPlane>,
        store: Arc<dyn Store>,
        plivo: Arc<dyn PlivoApi>,
        config: ReconcileConfig,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let mut reconciler = Self::new(plane, store, plivo, config);
        tokio::spawn(async move {
            info!(
                initial_delay_ms = millis(config.initial_delay),
                interval_ms = millis(config.interval),
                "reconcile started"
            );
            let mut ticks = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = reconciler.tick() => {}
                }
            }
            debug!("reconcile stopped");
        })
    }

    /// One round: checks the calls that are due. Returns how many were checked.
    pub async fn tick(&mut self) -> usize {
        let now = Instant::now();
        let due = match self.due_calls(now).await {
            Ok(due) => due,
            Err(e) => {
                warn!(error = %e, "reconcile could not list calls");
                return 0;
            }
        };
        let checked = due.len();
        let this = &*self;
        let results: Vec<(String, Option<Outcome>)> = futures_util::stream::iter(due)
            .map(|(call_id, uuid)| async move {
                let outcome = this.check(&call_id, &uuid).await;
                (call_id, outcome)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (call_id, outcome) in results {
            // `None`: the call ended before it was asked about; it leaves the listing.
            let Some(outcome) = outcome else { continue };
            metrics::counter!(telemetry::RECONCILE_CHECKS, "outcome" => outcome.as_str())
                .increment(1);
            let tolerance = self.config.error_tolerance.max(1);
            let entry = self.tracked.entry(call_id.clone()).or_insert(Tracked {
                last_checked: now,
                errors: 0,
                gave_up: false,
            });
            entry.last_checked = now;
            if outcome == Outcome::Error {
                entry.errors += 1;
                if entry.errors >= tolerance {
                    entry.gave_up = true;
                    metrics::counter!(telemetry::RECONCILE_GAVE_UP).increment(1);
                    error!(
                        %call_id,
                        errors = entry.errors,
                        "reconcile gave up on the call after consecutive errors"
                    );
                }
            } else {
                entry.errors = 0;
            }
        }
        checked
    }

    /// Calls due for a check, oldest first, at most [`MAX_CHECKS_PER_TICK`], with the
    /// uuid to ask about. Forgets calls that are no longer open.
    async fn due_calls(&mut self, now: Instant) -> Result<Vec<(String, String)>, String> {
        let min_age =
            chrono::Duration::from_std(self.config.initial_delay).unwrap_or(chrono::Duration::MAX);
        let cutoff = Utc::now()
            .checked_sub_signed(min_age)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let mut open: Vec<CallRecord> = Vec::new();
        for state in OPEN_STATES {
            let filter = CallFilter {
                state: Some(state),
                ..CallFilter::default()
            };
            let mut page = Page {
                after: None,
                limit: MAX_PAGE_LIMIT,
            };
            let mut scanned = 0;
            loop {
                let calls = self
                    .store
                    .list_calls(&filter, &page)
                    .await
                    .map_err(|e| e.to_string())?;
                let full = calls.len() >= MAX_PAGE_LIMIT;
                scanned += calls.len();
                page.after = calls.last().map(|c| c.call_id.clone());
                open.extend(calls);
                if !full || scanned >= MAX_SCAN_PER_STATE {
                    break;
                }
            }
        }
        let open_ids: HashSet<&str> = open.iter().map(|c| c.call_id.as_str()).collect();
        self.tracked.retain(|id, _| open_ids.contains(id.as_str()));
        open.sort_by(|a, b| (a.created_at, &a.call_id).cmp(&(b.created_at, &b.call_id)));
        let interval = self.config.interval;
        Ok(open
            .into_iter()
            .filter(|c| c.created_at <= cutoff)
            .filter(|c| {
                self.tracked.get(&c.call_id).is_none_or(|t| {
                    !t.gave_up && now.saturating_duration_since(t.last_checked) >= interval
                })
            })
            .filter_map(|c| uuid_of(&c).map(|u| (c.call_id.clone(), u.to_owned())))
            .take(MAX_CHECKS_PER_TICK)
            .collect())
    }

    /// Asks Plivo about one call and observes what it says. `None`: the call is terminal
    /// (or gone) by now, and Plivo was not asked.
    async fn check(&self, call_id: &str, uuid: &str) -> Option<Outcome> {
        // Re-read: a callback may have ended the call since the listing.
        match self.store.get_call(call_id).await {
            Ok(Some(call)) if !call.state.is_terminal() => {}
            Ok(_) => return None,
            Err(e) => {
                warn!(%call_id, error = %e, "reconcile could not read the call");
                return Some(Outcome::Error);
            }
        }
        let observation = match self.ask(uuid).await {
            Ok(Some((outcome, observation))) => (outcome, observation),
            Ok(None) => {
                debug!(%call_id, %uuid, "Plivo has not registered the call yet");
                return Some(Outcome::NotReady);
            }
            Err(e) => {
                warn!(%call_id, %uuid, kind = e.kind(), error = %e, "reconcile: Plivo request failed");
                return Some(Outcome::Error);
            }
        };
        let (outcome, observation) = observation;
        debug!(%call_id, %uuid, status = ?observation.status, "reconcile observed");
        match self.plane.observe(call_id, observation).await {
            Ok(()) => Some(outcome),
            Err(e) => {
                warn!(%call_id, error = %e, "reconcile could not store what Plivo said");
                Some(Outcome::Error)
            }
        }
    }

    /// Live call first, then the CDR. `None`: Plivo knows neither (not ready).
    async fn ask(&self, uuid: &str) -> Result<Option<(Outcome, Observation)>, RestError> {
        // Only a live status that maps to an open state is taken; anything else (a
        // terminal or unknown status) is settled by the CDR.
        let live = self
            .bounded(self.plivo.live_call(uuid))
            .await?
            .filter(|live| {
                state_from_plivo(&live.call_status, None, 0).is_some_and(|s| !s.is_terminal())
            });
        if let Some(live) = live {
            return Ok(Some((
                Outcome::Live,
                Observation {
                    status: Some(live.call_status),
                    call_uuid: Some(live.call_uuid),
                    ..Observation::default()
                },
            )));
        }
        Ok(self
            .bounded(self.plivo.cdr(uuid))
            .await?
            .map(|cdr| (Outcome::Ended, cdr_observation(&cdr))))
    }

    /// Bounds one request (all its retries) in case the client has no timeout of its own.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, RestError>>,
    ) -> Result<T, RestError> {
        let limit = self
            .config
            .request_timeout
            .saturating_mul(self.config.retries.saturating_add(2));
        tokio::time::timeout(limit, request)
            .await
            .unwrap_or(Err(RestError::Timeout))
    }
}

/// The uuid Plivo knows the call by: its call uuid, else the Make Call request uuid (for
/// a single-destination call they are equal). `None` (skipped) if neither is set.
fn uuid_of(call: &CallRecord) -> Option<&str> {
    call.plivo_call_uuid
        .as_deref()
        .filter(|u| !u.is_empty())
        .or_else(|| call.plivo_request_uuid.as_deref().filter(|u| !u.is_empty()))
}

/// A CDR as a terminal observation. The mapping, kept small on purpose:
///
/// - answered (`answer_time` set) → `completed` with `bill_duration` (the state machine
///   still turns a too-short call into `missed`);
/// - not answered, by `hangup_cause_code` (reference §5.3): 3010 Busy Line → `busy`;
///   1000–1099 Canceled… → `cancel`; 2000–2099 (invalid or unreachable destination,
///   barred, loop) → `failed`; anything else → `no-answer`.
///
/// `hangup_cause` is Plivo's `hangup_cause_name`; times are read as UTC when the CDR
/// carries no offset (Plivo writes the account's zone, which its API does not say).
pub fn cdr_observation(cdr: &Cdr) -> Observation {
    let utc = FixedOffset::east_opt(0).expect("zero offset");
    let answered = cdr.was_answered();
    let status = if answered {
        "completed"
    } else {
        match cdr.hangup_cause_code {
            Some(3010) => "busy",
            Some(1000..=1099) => "cancel",
            Some(2000..=2099) => "failed",
            _ => "no-answer",
        }
    };
    Observation {
        status: Some(status.to_owned()),
        call_uuid: Some(cdr.call_uuid.clone()),
        duration_secs: if answered {
            Some(cdr.bill_duration.unwrap_or(0))
        } else {
            Some(0)
        },
        hangup_cause: cdr.hangup_cause_name.clone().filter(|c| !c.is_empty()),
        answered_at: cdr.answer_time().map(|t| t.to_utc(utc)),
        ended_at: cdr.end_time().map(|t| t.to_utc(utc)),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
