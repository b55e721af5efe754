//! A local server that speaks Plivo's REST API (reference §4.2–4.5), for tests of
//! everything that places, watches or hangs up calls: [`FakePlivo`].
//!
//! It serves `http://127.0.0.1:{port}/v1/Account/{auth_id}/…` with Plivo's shapes:
//! Basic auth (401 with a JSON `error` otherwise), paths that must end in `/` (404
//! without), Make Call with a JSON or form body (201 `{"api_id","message":"call fired",
//! "request_uuid"}`, the call's uuid equal to its v4 `request_uuid` as observed on real
//! calls), the live-call view (`?status=live`, 404 unless live), the CDR (404 until the
//! call ended), hangup (204, 404 when gone; `DELETE .../Call/` with no uuid hangs up every
//! call, as Plivo warns) and cancel (`DELETE .../Request/{uuid}/`).
//!
//! The test drives each call: [`FakePlivo::set_live`], [`FakePlivo::complete`], and the
//! callbacks Plivo would send — [`FakePlivo::ring`], [`FakePlivo::answer`],
//! [`FakePlivo::hangup_callback`] — signed with V3 by
//! [`crate::telephony::plivo::signature`]. It injects failures
//! ([`FakePlivo::fail_next`], [`FakePlivo::rate_limit_next`], [`FakePlivo::stall_next`])
//! and records every request ([`FakePlivo::requests`]).
//!
//! Layout: `server` (routing, auth, the JSON it answers), `callbacks` (requests to the
//! call's URLs). Times are UTC in Plivo's `yyyy-MM-dd HH:mm:ss` (the fake account's time
//! zone is UTC). Error texts are the fake's own; Plivo's exact wording is not documented.
//!
//! Never: shares types with the REST client (it writes Plivo's JSON itself, so a wrong
//! field name in the client cannot be mirrored here), holds its lock across an `.await`,
//! or sends a callback the test did not ask for.

mod callbacks;
mod server;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use callbacks::CallbackReply;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `DELETE`, ….
    pub method: String,
    /// The path, e.g. `/v1/Account/MA…/Call/`.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// Whether the Basic-auth credentials were right.
    pub auth_ok: bool,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The body, as text.
    pub body: String,
}

/// A call the fake knows: placed with Make Call, or added with [`FakePlivo::add_inbound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCall {
    /// The call's uuid.
    pub call_uuid: String,
    /// Make Call's `request_uuid` (equal to `call_uuid` for a single call).
    pub request_uuid: String,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// Caller.
    pub from: String,
    /// This call's destination (one entry of a bulk `to`).
    pub to: String,
    /// Every Make Call parameter as sent; JSON numbers and booleans written out.
    pub params: BTreeMap<String, String>,
    /// Where the call is.
    pub phase: CallPhase,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When it was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
}

impl FakeCall {
    /// A Make Call parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// Where a fake call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallPhase {
    /// Placed, not ringing yet: not live, no CDR.
    Queued,
    /// Live with this `call_status` (`ringing`, `in-progress`, …).
    Live {
        /// Plivo's `CallStatus`.
        call_status: String,
    },
    /// Over: `?status=live` is 404 and the CDR is served.
    Ended(Completion),
}

/// How a call ended: what its CDR and hangup callback say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `CallStatus` of the hangup callback: `completed`, `busy`, `no-answer`, `cancel`, ….
    pub call_status: String,
    /// Answered seconds; `None` if never answered (`answer_time` null).
    pub answered_secs: Option<u64>,
    /// Telephony cause of the hangup callback, e.g. `NORMAL_CLEARING`.
    pub hangup_cause: String,
    /// Plivo's code (reference §5.3).
    pub hangup_cause_code: u32,
    /// Plivo's name for the code.
    pub hangup_cause_name: String,
    /// `Caller`, `Callee`, `Plivo`, `API Request`, ….
    pub hangup_source: String,
}

impl Completion {
    /// Answered, talked `answered_secs`, the callee hung up: 4000 Normal Hangup.
    pub fn normal(answered_secs: u64) -> Self {
        Self::new("completed", Some(answered_secs), "NORMAL_CLEARING", 4000)
            .named("Normal Hangup", "Callee")
    }

    /// Answered, talked `answered_secs`, the caller hung up: 4000 Normal Hangup.
    pub fn caller_hung_up(answered_secs: u64) -> Self {
        Self::new("completed", Some(answered_secs), "NORMAL_CLEARING", 4000)
            .named("Normal Hangup", "Caller")
    }

    /// A `keepCallAlive` stream ended with nothing after it in the XML: 4010.
    pub fn end_of_xml(answered_secs: u64) -> Self {
        Self::new("completed", Some(answered_secs), "NORMAL_CLEARING", 4010)
            .named("End Of XML Instructions", "Plivo")
    }

    /// Busy line: 3010.
    pub fn busy() -> Self {
        Self::new("busy", None, "USER_BUSY", 3010).named("Busy Line", "Callee")
    }

    /// Cancelled through the API before answer: 1000.
    pub fn canceled_by_api() -> Self {
        Self::new("cancel", None, "ORIGINATOR_CANCEL", 1000).named("Canceled", "API Request")
    }

    /// Hung up through the API after `answered_secs` of talk: 4000, source API Request.
    pub fn hung_up_by_api(answered_secs: u64) -> Self {
        Self::new("completed", Some(answered_secs), "NORMAL_CLEARING", 4000)
            .named("Normal Hangup", "API Request")
    }

    fn new(status: &str, answered_secs: Option<u64>, cause: &str, code: u32) -> Self {
        Self {
            call_status: status.to_owned(),
            answered_secs,
            hangup_cause: cause.to_owned(),
            hangup_cause_code: code,
            hangup_cause_name: String::new(),
            hangup_source: String::new(),
        }
    }

    fn named(mut self, name: &str, source: &str) -> Self {
        self.hangup_cause_name = name.to_owned();
        self.hangup_source = source.to_owned();
        self
    }
}

/// A test asked the fake for something it cannot do.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FakeError {
    /// No call with this uuid.
    #[error("the fake knows no call {0:?}")]
    UnknownCall(String),
    /// The call is not in a phase that allows this (e.g. a hangup callback before it ended).
    #[error("call {call_uuid:?} is {phase}: cannot {action}")]
    WrongPhase {
        /// The call.
        call_uuid: String,
        /// Its phase.
        phase: String,
        /// What was asked.
        action: &'static str,
    },
    /// A callback request failed at the transport level.
    #[error("callback to {url} failed: {message}")]
    Http {
        /// Where it went.
        url: String,
        /// The transport's error.
        message: String,
    },
}

/// A failure to answer the next request with instead of serving it.
#[derive(Debug, Clone, Copy)]
enum Injected {
    Status(u16),
    RateLimited { retry_after_secs: u64 },
}

/// Everything the fake holds; behind one mutex, never held across an `.await`.
#[derive(Debug, Default)]
struct State {
    calls: Vec<FakeCall>,
    requests: Vec<RecordedRequest>,
    failures: VecDeque<Injected>,
    stalls: VecDeque<Duration>,
    /// Simulated calls waiting to hear of a hangup through the API, by call uuid.
    watchers: BTreeMap<String, CancellationToken>,
}

impl State {
    /// Tells the simulated calls among `uuids` that the API hung them up.
    fn api_hung_up<'a>(&mut self, uuids: impl IntoIterator<Item = &'a str>) {
        for uuid in uuids {
            if let Some(token) = self.watchers.remove(uuid) {
                token.cancel();
            }
        }
    }
}

/// What the server and the driver share.
#[derive(Debug)]
struct Shared {
    auth_id: String,
    auth_token: String,
    /// The whole `Authorization` value that passes.
    expected_auth: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Plivo REST API. Dropping it stops the server.
#[derive(Debug)]
pub struct FakePlivo {
    addr: SocketAddr,
    shared: Arc<Shared>,
    client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakePlivo {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakePlivo {
    /// Starts the fake on `127.0.0.1:0` for the account `auth_id` / `auth_token`.
    pub async fn start(auth_id: &str, auth_token: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, auth_id, auth_token)
    }

    /// Starts the fake on `addr` (e.g. `127.0.0.1:8089`, for `voxgate simulate
    /// --plivo-rest`).
    pub async fn start_on(
        addr: SocketAddr,
        auth_id: &str,
        auth_token: &str,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::serve(listener, auth_id, auth_token)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        auth_id: &str,
        auth_token: &str,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            auth_id: auth_id.to_owned(),
            auth_token: auth_token.to_owned(),
            expected_auth: server::basic_auth(auth_id, auth_token),
            state: Mutex::new(State::default()),
        });
        let app = server::app(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "fake Plivo server stopped");
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self {
            addr,
            shared,
            client,
            server,
        })
    }

    /// `http://127.0.0.1:{port}`: the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The handle simulated calls use to appear here as live inbound calls and hear of
    /// hangups through the API ([`crate::sim::SimConfig::plivo_rest`]).
    pub fn calls_handle(&self) -> PlivoCalls {
        PlivoCalls {
            shared: self.shared.clone(),
        }
    }

    /// Every call the fake knows, in the order they were placed.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.shared.lock().calls.clone()
    }

    /// One call, by uuid.
    pub fn call(&self, call_uuid: &str) -> Option<FakeCall> {
        let state = self.shared.lock();
        state
            .calls
            .iter()
            .find(|c| c.call_uuid == call_uuid)
            .cloned()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Registers an inbound call (one Plivo routed to an application), live and
    /// `in-progress`.
    pub fn add_inbound(&self, call_uuid: &str, from: &str, to: &str) {
        let now = Utc::now();
        self.shared.lock().calls.push(FakeCall {
            call_uuid: call_uuid.to_owned(),
            request_uuid: call_uuid.to_owned(),
            direction: "inbound".to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            params: BTreeMap::new(),
            phase: CallPhase::Live {
                call_status: "in-progress".to_owned(),
            },
            placed_at: now,
            answered_at: Some(now),
            ended_at: None,
        });
    }

    /// Makes the call live with `call_status` (`ringing`, `in-progress`, …); the first
    /// `in-progress` sets its answer time. An ended call cannot come back.
    pub fn set_live(&self, call_uuid: &str, call_status: &str) -> Result<(), FakeError> {
        self.with_call(call_uuid, "go live", |call| {
            if matches!(call.phase, CallPhase::Ended(_)) {
                return false;
            }
            if call_status == "in-progress" && call.answered_at.is_none() {
                call.answered_at = Some(Utc::now());
            }
            call.phase = CallPhase::Live {
                call_status: call_status.to_owned(),
            };
            true
        })
    }

    /// Ends the call as `completion` says: from now `?status=live` is 404 and the CDR is
    /// served, with `end_time` now and `answer_time` `answered_secs` before it.
    pub fn complete(&self, call_uuid: &str, completion: Completion) -> Result<(), FakeError> {
        self.with_call(call_uuid, "complete", |call| {
            if matches!(call.phase, CallPhase::Ended(_)) {
                return false;
            }
            end(call, completion.clone(), Utc::now());
            true
        })
    }

    /// Answers the next `n` authenticated requests with `status` and Plivo's JSON error
    /// body, without acting on them.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut state = self.shared.lock();
        state
            .failures
            .extend(std::iter::repeat_n(Injected::Status(status), n));
    }

    /// Answers the next `n` authenticated requests with 429 and `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: usize, retry_after_secs: u64) {
        let mut state = self.shared.lock();
        let injected = Injected::RateLimited { retry_after_secs };
        state.failures.extend(std::iter::repeat_n(injected, n));
    }

    /// Serves the next `n` requests normally (the call is placed, hung up, …) but waits
    /// `delay` before replying: a client timeout then hides an action that happened.
    pub fn stall_next(&self, n: usize, delay: Duration) {
        self.shared
            .lock()
            .stalls
            .extend(std::iter::repeat_n(delay, n));
    }

    /// The callee's phone rings: the call goes live `ringing` and, if it has a `ring_url`,
    /// Plivo's ring callback is sent there (`None` when it has none).
    pub async fn ring(&self, call_uuid: &str) -> Result<Option<CallbackReply>, FakeError> {
        self.set_live(call_uuid, "ringing")?;
        let call = self.known(call_uuid)?;
        let Some(url) = call.param("ring_url") else {
            return Ok(None);
        };
        let params = callbacks::ring_params(&call, &self.shared.auth_id);
        let method = call.param("ring_method");
        self.send(url, method, &params).await.map(Some)
    }

    /// The callee answers: the call goes live `in-progress` and Plivo fetches its
    /// `answer_url` (with `answer_method`, POST by default); the reply (the XML) comes back.
    pub async fn answer(&self, call_uuid: &str) -> Result<CallbackReply, FakeError> {
        self.set_live(call_uuid, "in-progress")?;
        let call = self.known(call_uuid)?;
        let url = call.param("answer_url").unwrap_or_default().to_owned();
        let params = callbacks::answer_params(&call, &self.shared.auth_id);
        self.send(&url, call.param("answer_method"), &params).await
    }

    /// Sends the hangup callback of an ended call to its `hangup_url` (`None` when it has
    /// none). Call [`FakePlivo::complete`] first.
    pub async fn hangup_callback(
        &self,
        call_uuid: &str,
    ) -> Result<Option<CallbackReply>, FakeError> {
        let call = self.known(call_uuid)?;
        let CallPhase::Ended(completion) = &call.phase else {
            return Err(wrong_phase(&call, "send the hangup callback"));
        };
        let Some(url) = call.param("hangup_url") else {
            return Ok(None);
        };
        let params = callbacks::hangup_params(&call, completion, &self.shared.auth_id);
        self.send(url, call.param("hangup_method"), &params)
            .await
            .map(Some)
    }

    async fn send(
        &self,
        url: &str,
        method: Option<&str>,
        params: &[(String, String)],
    ) -> Result<CallbackReply, FakeError> {
        callbacks::send(&self.client, &self.shared.auth_token, url, method, params).await
    }

    fn known(&self, call_uuid: &str) -> Result<FakeCall, FakeError> {
        self.call(call_uuid)
            .ok_or_else(|| FakeError::UnknownCall(call_uuid.to_owned()))
    }

    /// Runs `change` on the call; it returns false when the phase forbids `action`.
    fn with_call(
        &self,
        call_uuid: &str,
        action: &'static str,
        change: impl FnOnce(&mut FakeCall) -> bool,
    ) -> Result<(), FakeError> {
        let mut state = self.shared.lock();
        let call = state
            .calls
            .iter_mut()
            .find(|c| c.call_uuid == call_uuid)
            .ok_or_else(|| FakeError::UnknownCall(call_uuid.to_owned()))?;
        if change(call) {
            Ok(())
        } else {
            Err(wrong_phase(call, action))
        }
    }
}

/// Simulated calls' side of a [`FakePlivo`]: each call registers itself as a live inbound
/// call and gets a token the fake cancels when the API hangs the call up
/// (`DELETE …/Call/{uuid}/`, or `DELETE …/Call/` for every call).
#[derive(Debug, Clone)]
pub struct PlivoCalls {
    shared: Arc<Shared>,
}

impl PlivoCalls {
    /// Registers `call_uuid` as a live, answered inbound call; the token is cancelled when
    /// the API hangs it up.
    pub fn register(&self, call_uuid: &str, from: &str, to: &str) -> CancellationToken {
        let token = CancellationToken::new();
        let now = Utc::now();
        let mut state = self.shared.lock();
        state.calls.retain(|c| c.call_uuid != call_uuid);
        state.calls.push(FakeCall {
            call_uuid: call_uuid.to_owned(),
            request_uuid: call_uuid.to_owned(),
            direction: "inbound".to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            params: BTreeMap::new(),
            phase: CallPhase::Live {
                call_status: "in-progress".to_owned(),
            },
            placed_at: now,
            answered_at: Some(now),
            ended_at: None,
        });
        state.watchers.insert(call_uuid.to_owned(), token.clone());
        token
    }

    /// The call ended another way (the caller hung up, or the stream closed): it is no
    /// longer live, and no longer watched.
    pub fn ended(&self, call_uuid: &str, completion: Completion) {
        let mut state = self.shared.lock();
        state.watchers.remove(call_uuid);
        if let Some(call) = state
            .calls
            .iter_mut()
            .find(|c| c.call_uuid == call_uuid && !matches!(c.phase, CallPhase::Ended(_)))
        {
            end(call, completion, Utc::now());
        }
    }
}

/// Ends `call` at `at` as `completion` says.
fn end(call: &mut FakeCall, completion: Completion, at: DateTime<Utc>) {
    call.answered_at = completion.answered_secs.map(|secs| {
        i64::try_from(secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|talk| at.checked_sub_signed(talk))
            .unwrap_or(at)
    });
    call.ended_at = Some(at);
    call.phase = CallPhase::Ended(completion);
}

fn wrong_phase(call: &FakeCall, action: &'static str) -> FakeError {
    let phase = match &call.phase {
        CallPhase::Queued => "queued".to_owned(),
        CallPhase::Live { call_status } => format!("live ({call_status})"),
        CallPhase::Ended(c) => format!("ended ({})", c.call_status),
    };
    FakeError::WrongPhase {
        call_uuid: call.call_uuid.clone(),
        phase,
        action,
    }
}
