//! The control API (`/v1`): place, read, list and hang up calls; inspect and replay dead
//! letters.
//!
//! Every route needs `Authorization: Bearer <token>` (one of `control.api_tokens`,
//! compared in constant time). Errors have one stable shape,
//! `{"error": {"code": "...", "message": "..."}}`, with a status that says who must act:
//! 400/401/404/409/413/415 for the caller, 502/503 when Plivo failed.
//!
//! Every handler and body type here is described for the OpenAPI document
//! (`GET /openapi.json`, see [`super::openapi`]); the bodies are typed so the document and
//! the wire cannot drift apart.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::agent::AgentKind;
use crate::control::model::{CallRecord, CallState, Direction, EventType};
use crate::control::plane::{ControlPlane, HangupError, NewCall, PlaceError};
use crate::control::store::{CallFilter, Page, SinkKind, StoreError};
use crate::telephony::plivo::rest::RestError;
use crate::transcript::{AgentEvent, HungUpBy, TranscriptEntry, TurnLatency};

/// Most calls one listing page returns.
const MAX_PAGE: usize = 200;

/// The `/v1` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/calls", post(create_call).get(list_calls))
        .route("/v1/calls/{call_id}", get(get_call).delete(hang_up))
        .route("/v1/deliveries/dead", get(list_dead))
        .route("/v1/deliveries/dead/{sink}/{id}/replay", post(replay_dead))
}

/// An API error: status, stable code, message, and the call it concerns, if any.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    call: Option<Box<CallView>>,
}

/// Every error's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
    /// The call concerned: the existing one on `409 call_exists`, the now `failed` one when
    /// Plivo refused or failed to place it. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    call: Option<Box<CallView>>,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (`unauthorized`, `not_found`, `call_exists`,
    /// `invalid_number`, `plivo_unavailable`, …).
    #[schema(example = "not_found")]
    code: &'static str,
    /// For humans; may change.
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            call: None,
        }
    }

    fn with_call(mut self, call: CallRecord) -> Self {
        self.call = Some(Box::new(call.into()));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
            call: self.call,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    /// The caller's mistakes (unknown ids, a refused state change) are 4xx; only the
    /// store itself failing is a 503.
    fn from(error: StoreError) -> Self {
        let (status, code) = match &error {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "call_not_found"),
            StoreError::NoEntry(_) => (StatusCode::NOT_FOUND, "delivery_not_found"),
            StoreError::AlreadyExists(_) => (StatusCode::CONFLICT, "call_exists"),
            StoreError::Transition(_) => (StatusCode::CONFLICT, "invalid_transition"),
            StoreError::Backend(_) => {
                tracing::error!(%error, "store failed");
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
        };
        Self::new(status, code, error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            _ => "malformed_json",
        };
        // Axum says 422 for well-formed JSON of the wrong shape; it is still the caller's bad request.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_path", rejection.body_text())
    }
}

fn plivo_error(error: &RestError) -> (StatusCode, &'static str) {
    match error {
        RestError::Unauthorized { .. } => (StatusCode::BAD_GATEWAY, "plivo_unauthorized"),
        RestError::Forbidden { .. } => (StatusCode::BAD_GATEWAY, "plivo_forbidden"),
        RestError::RateLimited { .. } => (StatusCode::SERVICE_UNAVAILABLE, "plivo_rate_limited"),
        RestError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "plivo_rejected"),
        _ => (StatusCode::BAD_GATEWAY, "plivo_unavailable"),
    }
}

/// Checks the bearer token; the control plane must be configured.
fn authorize<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a ControlPlane, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1): `bearer`, `BEARER` work too.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or("");
    let known = &state.api_tokens;
    let ok = !token.is_empty()
        && known
            .iter()
            .fold(subtle::Choice::from(0), |ok, k| {
                ok | k.as_bytes().ct_eq(token.as_bytes())
            })
            .into();
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        ));
    }
    state.control.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "control_disabled",
            "the control plane is not configured",
        )
    })
}

/// A call as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    /// The backend's id for the call.
    call_id: String,
    #[schema(value_type = CallStatus)]
    status: CallState,
    /// How the call ended, once it has (`null` while it is live).
    #[schema(value_type = Option<CallOutcome>)]
    call_outcome: Option<&'static str>,
    #[schema(value_type = CallDirection)]
    direction: Direction,
    /// Destination (E.164 or `sip:` URI).
    to: String,
    /// Caller id.
    from: String,
    campaign_id: Option<String>,
    flow_name: Option<String>,
    agent: Option<String>,
    /// Free-form data from the backend, returned as given (`null` when none was sent).
    metadata: Value,
    plivo_request_uuid: Option<String>,
    plivo_call_uuid: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    /// Answered duration in seconds.
    duration: Option<u64>,
    hangup_cause: Option<String>,
    recording_url: Option<String>,
    /// Every turn of the conversation in order: `speaker` (`agent`/`caller`), `turn`,
    /// `text`, `heard_text` (the agent's text the caller heard), `start_ms`/`end_ms` on
    /// the media clock, `interrupted`.
    #[schema(value_type = Vec<Object>)]
    transcript: Vec<TranscriptEntry>,
    /// Each agent turn's latency split, ms after the caller's speech ended: `end_of_turn_ms`,
    /// `stt_final_ms`, `decided_ms`, `first_tts_audio_ms`, `first_play_audio_ms`,
    /// `first_heard_ms`, `played_stream_ms`, `gateway_ms` (null when a stage did not happen).
    #[schema(value_type = Vec<Object>)]
    turns: Vec<TurnLatency>,
    /// What the agent collected (name, city, ...).
    slots: BTreeMap<String, String>,
    /// Who ended the call: `agent`, `caller` or `voxgate` (null while it is live).
    #[schema(value_type = Option<String>)]
    hung_up_by: Option<HungUpBy>,
    /// What went wrong with the agent's providers: `at_ms` (media clock), `api`
    /// (`stt`/`chat`/`tts`/`tool`), `provider`, `kind`, `outcome` (`retried`, `fallback`,
    /// `goodbye`), `message`.
    #[schema(value_type = Vec<Object>)]
    agent_events: Vec<AgentEvent>,
}

impl From<CallRecord> for CallView {
    fn from(call: CallRecord) -> Self {
        Self {
            call_outcome: call.call_outcome(),
            call_id: call.call_id,
            status: call.state,
            direction: call.direction,
            to: call.to,
            from: call.from,
            campaign_id: call.campaign_id,
            flow_name: call.flow_name,
            agent: call.agent,
            metadata: call.metadata,
            plivo_request_uuid: call.plivo_request_uuid,
            plivo_call_uuid: call.plivo_call_uuid,
            created_at: call.created_at,
            updated_at: call.updated_at,
            answered_at: call.answered_at,
            ended_at: call.ended_at,
            duration: call.duration_secs,
            hangup_cause: call.hangup_cause,
            recording_url: call.recording_url,
            transcript: call.conversation.transcript,
            turns: call.conversation.turns,
            slots: call.conversation.slots,
            hung_up_by: call.conversation.hung_up_by,
            agent_events: call.conversation.agent_events,
        }
    }
}

// The document's names for the model's wire enums (`control::model` stays free of OpenAPI);
// `tests::the_documented_enums_match_the_wire` keeps each in step with its model type.

/// Where a call is in its life.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CallStatus {
    Initiated,
    Ringing,
    InProgress,
    Completed,
    Missed,
    Busy,
    Failed,
    Canceled,
}

/// How a call ended.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CallOutcome {
    Answered,
    ShortCall,
    NoAnswer,
    Busy,
    Failed,
    Canceled,
}

/// Which way a call goes.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CallDirection {
    Outbound,
    Inbound,
}

/// A lifecycle event's name.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum EventName {
    #[serde(rename = "call.initiated")]
    Initiated,
    #[serde(rename = "call.ringing")]
    Ringing,
    #[serde(rename = "call.answered")]
    Answered,
    #[serde(rename = "call.media_started")]
    MediaStarted,
    #[serde(rename = "call.ended")]
    Ended,
    #[serde(rename = "call.recording_ready")]
    RecordingReady,
    #[serde(rename = "call.completed")]
    Completed,
}

/// An agent voxgate runs.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AgentName {
    Echo,
    Flow,
    /// An LLM agent profile (`flow_name` names the profile).
    Llm,
}

/// Where events go: the Redis queue or the backend's HTTP endpoint.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum Sink {
    Queue,
    Backend,
}

/// `POST /v1/calls` body; unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCall {
    /// The backend's id for this call (required: voxgate never makes one up); at most 128
    /// bytes, no control characters, surrounding whitespace trimmed. Reusing an id is `409`.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 128, example = "call-42")]
    call_id: Option<String>,
    /// Destination: an E.164 number or a `sip:` URI.
    #[schema(value_type = String, required = true, pattern = r"^(\+?[1-9][0-9]{6,14}|sip:[A-Za-z0-9._~+-]+@[A-Za-z0-9.-]+)$", example = "+14155550100")]
    to: Option<String>,
    /// Caller id (E.164 or `sip:` URI); defaults to `control.caller_id`.
    #[schema(value_type = Option<String>, pattern = r"^(\+?[1-9][0-9]{6,14}|sip:[A-Za-z0-9._~+-]+@[A-Za-z0-9.-]+)$", example = "+14155550199")]
    from: Option<String>,
    campaign_id: Option<String>,
    /// The flow to run (agent `flow`), or the agent profile (agent `llm`); the default
    /// flow or the first profile when absent.
    flow_name: Option<String>,
    /// The agent to run, if not the default (`agent.default`); another name is `400
    /// unknown_agent`.
    #[schema(value_type = Option<AgentName>)]
    agent: Option<String>,
    /// Free-form JSON, kept with the call and returned as given.
    #[serde(default)]
    metadata: Value,
    /// `false` opts this call out of recording (default: recorded when recording is on).
    record: Option<bool>,
}

/// `201` to `POST /v1/calls`: Plivo accepted the call.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallCreated {
    call_id: String,
    #[schema(value_type = CallStatus)]
    status: CallState,
    plivo_request_uuid: Option<String>,
}

/// Places an outbound call through Plivo.
#[utoipa::path(
    post,
    path = "/v1/calls",
    tag = "calls",
    request_body(content = CreateCall, content_type = "application/json"),
    responses(
        (status = 201, description = "Placed: Plivo accepted the call", body = CallCreated),
        (status = 400, description = "Malformed JSON, no `call_id`, a bad number, an unknown `agent` (`unknown_agent`), or Plivo refused the request (`plivo_rejected`)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 409, description = "The `call_id` exists: nothing was placed; `call` is the existing call", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 502, description = "Plivo failed or refused our credentials; `call` is the call, now `failed`", body = ErrorBody),
        (status = 503, description = "Plivo rate-limited us or is not configured, the control plane is off, or the store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CreateCall>, JsonRejection>,
) -> Result<Response, ApiError> {
    let control = authorize(&state, &headers)?;
    let Json(body) = body?;
    if let Some(name) = body.agent.as_deref()
        && name.parse::<AgentKind>().is_err()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_agent",
            format!(
                "unknown agent {name:?}: the known agents are {}",
                AgentKind::known_names()
            ),
        ));
    }
    let base = super::plivo::public_base(&state, &headers);
    let new = NewCall {
        call_id: body.call_id,
        to: body.to,
        from: body.from,
        campaign_id: body.campaign_id,
        flow_name: body.flow_name,
        agent: body.agent,
        metadata: body.metadata,
        record: body.record,
    };
    match control.place_call(new, &base).await {
        Ok(call) => Ok((
            StatusCode::CREATED,
            Json(CallCreated {
                call_id: call.call_id,
                status: call.state,
                plivo_request_uuid: call.plivo_request_uuid,
            }),
        )
            .into_response()),
        Err(PlaceError::CallId(why)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "call_id_required",
            format!(
                "call_id is required: send the backend's id for this call ({why}); voxgate never makes one up"
            ),
        )),
        Err(error @ PlaceError::Number { .. }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_number",
            error.to_string(),
        )),
        Err(PlaceError::Exists(call)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "call_exists",
            format!("call {} already exists; no call was placed", call.call_id),
        )
        .with_call(*call)),
        Err(PlaceError::NoPlivo) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "plivo_not_configured",
            "no Plivo account is configured",
        )),
        Err(PlaceError::Plivo { error, call }) => {
            let (status, code) = plivo_error(&error);
            Err(ApiError::new(
                status,
                code,
                format!("Plivo did not place the call: {error}"),
            )
            .with_call(*call))
        }
        Err(PlaceError::Store(error)) => Err(error.into()),
    }
}

/// One call.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}",
    tag = "calls",
    params(("call_id" = String, Path, description = "The backend's id for the call")),
    responses(
        (status = 200, description = "The call", body = CallView),
        (status = 400, description = "Unusable path", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such call", body = ErrorBody),
        (status = 503, description = "The control plane is off, or the store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    call_id: Result<Path<String>, PathRejection>,
) -> Result<Json<CallView>, ApiError> {
    let control = authorize(&state, &headers)?;
    let Path(call_id) = call_id?;
    match control.get(&call_id).await? {
        Some(call) => Ok(Json(call.into())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no call {call_id}"),
        )),
    }
}

/// Hangs up a placed call through Plivo.
#[utoipa::path(
    delete,
    path = "/v1/calls/{call_id}",
    tag = "calls",
    params(("call_id" = String, Path, description = "The backend's id for the call")),
    responses(
        (status = 200, description = "Hangup requested; the call as it is now", body = CallView),
        (status = 400, description = "Unusable path, or Plivo refused the request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such call", body = ErrorBody),
        (status = 409, description = "The call was never placed with Plivo (`not_placed`)", body = ErrorBody),
        (status = 502, description = "Plivo failed or refused our credentials", body = ErrorBody),
        (status = 503, description = "Plivo rate-limited us or is not configured, the control plane is off, or the store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn hang_up(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    call_id: Result<Path<String>, PathRejection>,
) -> Result<Json<CallView>, ApiError> {
    let control = authorize(&state, &headers)?;
    let Path(call_id) = call_id?;
    match control.hang_up(&call_id).await {
        Ok(call) => Ok(Json(call.into())),
        Err(HangupError::NotFound(id)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no call {id}"),
        )),
        Err(error @ HangupError::NotPlaced(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_placed",
            error.to_string(),
        )),
        Err(HangupError::NoPlivo) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "plivo_not_configured",
            "no Plivo account is configured",
        )),
        Err(HangupError::Plivo(error)) => {
            let (status, code) = plivo_error(&error);
            Err(ApiError::new(status, code, error.to_string()))
        }
        Err(HangupError::Store(error)) => Err(error.into()),
    }
}

/// `GET /v1/calls` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this campaign's calls.
    campaign_id: Option<String>,
    /// Only calls in this state.
    #[param(value_type = Option<CallStatus>)]
    status: Option<String>,
    /// Cursor: the `next` of the previous page (a `call_id`; an unknown one is `400`).
    after: Option<String>,
    /// Page size, 1 to 200 (others are clamped); 50 by default.
    limit: Option<usize>,
}

/// One page of calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallPage {
    calls: Vec<CallView>,
    /// Pass as `after` for the next page; `null` on the last one.
    next: Option<String>,
}

/// Lists calls, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/calls",
    tag = "calls",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of calls", body = CallPage),
        (status = 400, description = "Bad query (`bad_query`, `bad_status`, `bad_cursor`: `after` names no call)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 503, description = "The control plane is off, or the store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_calls(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CallPage>, ApiError> {
    let control = authorize(&state, &headers)?;
    let Query(query) =
        query.map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", r.body_text()))?;
    let state_filter = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(name) => Some(CallState::parse(name).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_status",
                format!("unknown status {name:?}"),
            )
        })?),
    };
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let filter = CallFilter {
        campaign_id: query.campaign_id.filter(|c| !c.is_empty()),
        state: state_filter,
    };
    let after = query.after.filter(|a| !a.is_empty());
    let calls = match control.list(&filter, &Page { after, limit }).await {
        Ok(calls) => calls,
        // The cursor names no call: the caller's mistake, not the store's.
        Err(StoreError::NotFound(cursor)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                format!("after: no call {cursor:?} to continue from"),
            ));
        }
        Err(other) => return Err(other.into()),
    };
    let next = (calls.len() == limit)
        .then(|| calls.last().map(|c| c.call_id.clone()))
        .flatten();
    let calls: Vec<CallView> = calls.into_iter().map(CallView::from).collect();
    Ok(Json(CallPage { calls, next }))
}

/// `GET /v1/deliveries/dead` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadQuery {
    /// Most entries, 1 to 1000 (others are clamped); 100 by default.
    limit: Option<usize>,
}

/// An event a sink rejected or gave up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    /// The entry's id (with `sink`, what replay takes).
    id: u64,
    #[schema(value_type = Sink)]
    sink: SinkKind,
    /// Delivery attempts made.
    attempts: u32,
    /// The last failure.
    last_error: Option<String>,
    /// The event's idempotency key, `{call_id}:{seq}`.
    event_id: String,
    call_id: String,
    #[schema(value_type = EventName)]
    event: EventType,
}

/// The dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetters {
    dead: Vec<DeadLetter>,
}

/// Lists dead letters, oldest first.
#[utoipa::path(
    get,
    path = "/v1/deliveries/dead",
    tag = "deliveries",
    params(DeadQuery),
    responses(
        (status = 200, description = "The dead letters", body = DeadLetters),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 503, description = "The control plane is off, or the store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_dead(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<DeadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadLetters>, ApiError> {
    let control = authorize(&state, &headers)?;
    let limit = query
        .ok()
        .and_then(|Query(q)| q.limit)
        .unwrap_or(100)
        .clamp(1, 1_000);
    let dead = control.store().list_dead(limit).await?;
    let dead = dead
        .into_iter()
        .map(|e| DeadLetter {
            id: e.id,
            sink: e.sink,
            attempts: e.attempts,
            last_error: e.last_error,
            event_id: e.event.event_id,
            call_id: e.event.call_id,
            event: e.event.event,
        })
        .collect();
    Ok(Json(DeadLetters { dead }))
}

/// Puts a dead letter back in the outbox, due now, attempts reset.
#[utoipa::path(
    post,
    path = "/v1/deliveries/dead/{sink}/{id}/replay",
    tag = "deliveries",
    params(
        ("sink" = Sink, Path, description = "The sink that gave up"),
        ("id" = u64, Path, description = "The dead letter's id"),
    ),
    responses(
        (status = 202, description = "Queued for delivery again"),
        (status = 400, description = "`id` is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such sink, or no such dead letter", body = ErrorBody),
        (status = 503, description = "The control plane is off, or the store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn replay_dead(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    path: Result<Path<(String, u64)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let control = authorize(&state, &headers)?;
    let Path((sink, id)) = path?;
    let sink = match sink.as_str() {
        "queue" => SinkKind::Queue,
        "backend" => SinkKind::Backend,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no sink {other:?}"),
            ));
        }
    };
    match control.store().replay_dead(sink, id).await {
        Ok(()) => {
            state.wake_deliverer();
            Ok(StatusCode::ACCEPTED)
        }
        Err(StoreError::NoEntry(id)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dead letter {id}"),
        )),
        Err(other) => Err(other.into()),
    }
}
