//! The control API (`/v1`): place, read, list and hang up calls; inspect and replay dead
//! letters.
//!
//! Every route needs `Authorization: Bearer <token>` (one of `control.api_tokens`,
//! compared in constant time). Errors have one stable shape,
//! `{"error": {"code": "...", "message": "..."}}`, with a status that says who must act:
//! 400/401/404/409/413/415 for the caller, 502/503 when Plivo failed.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::control::model::{CallRecord, CallState};
use crate::control::plane::{ControlPlane, HangupError, NewCall, PlaceError};
use crate::control::store::{CallFilter, Page, SinkKind, StoreError};
use crate::telephony::plivo::rest::RestError;

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

/// An API error: status, stable code, message, and optional extra fields.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: Option<(&'static str, Value)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some((key, value)) = self.extra {
            body[key] = value;
        }
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
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "store failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            error.to_string(),
        )
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
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let known = &state.config.control.api_tokens;
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
#[derive(Debug, Serialize)]
pub struct CallView {
    call_id: String,
    status: CallState,
    call_outcome: Option<&'static str>,
    direction: crate::control::model::Direction,
    to: String,
    from: String,
    campaign_id: Option<String>,
    flow_name: Option<String>,
    agent: Option<String>,
    metadata: Value,
    plivo_request_uuid: Option<String>,
    plivo_call_uuid: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    duration: Option<u64>,
    hangup_cause: Option<String>,
    recording_url: Option<String>,
    transcript: Option<String>,
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
            transcript: call.transcript,
        }
    }
}

/// `POST /v1/calls` body; unknown fields are ignored.
#[derive(Debug, Deserialize)]
pub struct CreateCall {
    call_id: Option<String>,
    to: Option<String>,
    from: Option<String>,
    campaign_id: Option<String>,
    flow_name: Option<String>,
    agent: Option<String>,
    #[serde(default)]
    metadata: Value,
}

async fn create_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<CreateCall>, JsonRejection>,
) -> Result<Response, ApiError> {
    let control = authorize(&state, &headers)?;
    let Json(body) = body?;
    let base = super::plivo::public_base(&state, &headers);
    let new = NewCall {
        call_id: body.call_id,
        to: body.to,
        from: body.from,
        campaign_id: body.campaign_id,
        flow_name: body.flow_name,
        agent: body.agent,
        metadata: body.metadata,
    };
    match control.place_call(new, &base).await {
        Ok(call) => Ok((
            StatusCode::CREATED,
            Json(json!({
                "call_id": call.call_id,
                "status": call.state,
                "plivo_request_uuid": call.plivo_request_uuid,
            })),
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
        Err(PlaceError::Exists(call)) => {
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "call_exists",
                format!("call {} already exists; no call was placed", call.call_id),
            );
            error.extra = Some((
                "call",
                serde_json::to_value(CallView::from(*call)).unwrap_or(Value::Null),
            ));
            Err(error)
        }
        Err(PlaceError::NoPlivo) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "plivo_not_configured",
            "no Plivo account is configured",
        )),
        Err(PlaceError::Plivo { error, call }) => {
            let (status, code) = plivo_error(&error);
            let mut api = ApiError::new(
                status,
                code,
                format!("Plivo did not place the call: {error}"),
            );
            api.extra = Some((
                "call",
                serde_json::to_value(CallView::from(*call)).unwrap_or(Value::Null),
            ));
            Err(api)
        }
        Err(PlaceError::Store(error)) => Err(error.into()),
    }
}

async fn get_call(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    let control = authorize(&state, &headers)?;
    match control.get(&call_id).await? {
        Some(call) => Ok(Json(call.into())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no call {call_id}"),
        )),
    }
}

async fn hang_up(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(call_id): Path<String>,
) -> Result<Json<CallView>, ApiError> {
    let control = authorize(&state, &headers)?;
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
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    campaign_id: Option<String>,
    status: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_calls(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
    let calls = control
        .list(
            &filter,
            &Page {
                after: query.after,
                limit,
            },
        )
        .await?;
    let next = (calls.len() == limit)
        .then(|| calls.last().map(|c| c.call_id.clone()))
        .flatten();
    let calls: Vec<CallView> = calls.into_iter().map(CallView::from).collect();
    Ok(Json(json!({"calls": calls, "next": next})))
}

#[derive(Debug, Deserialize)]
struct DeadQuery {
    limit: Option<usize>,
}

async fn list_dead(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<DeadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let control = authorize(&state, &headers)?;
    let limit = query
        .ok()
        .and_then(|Query(q)| q.limit)
        .unwrap_or(100)
        .clamp(1, 1_000);
    let dead = control.store().list_dead(limit).await?;
    let entries: Vec<Value> = dead
        .into_iter()
        .map(|e| {
            json!({"id": e.id, "sink": e.sink, "attempts": e.attempts, "last_error": e.last_error,
                   "event_id": e.event.event_id, "call_id": e.event.call_id, "event": e.event.event})
        })
        .collect();
    Ok(Json(json!({"dead": entries})))
}

async fn replay_dead(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((sink, id)): Path<(String, u64)>,
) -> Result<StatusCode, ApiError> {
    let control = authorize(&state, &headers)?;
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
