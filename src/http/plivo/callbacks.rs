//! Plivo's callback routes (hangup, ring, stream status): each one mapped to the call
//! registry, the control plane and the logs.
//!
//! A callback is signature-checked (403 when it fails), read by
//! [`crate::telephony::plivo::callback`] (400 and `voxgate_bad_messages_total{kind}` when
//! it names no call at all), counted, and acted on the first time its idempotency key is
//! seen: Plivo retries callbacks and a retry is answered 200 without being acted on again.
//! A callback for a call voxgate does not know is answered 200 and kept for audit. This
//! file never reads a Plivo field by name: the telephony module does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::{check_signature, path_and_query, public_base};
use crate::control::lifecycle::Observation;
use crate::control::store::StoreError;
use crate::http::AppState;
use crate::ids::CallId;
use crate::telemetry;
use crate::telephony::plivo::answer::{parse_form, parse_query};
use crate::telephony::plivo::callback::{CallStatus, Callback, CallbackEvent, CallbackKind};
use crate::telephony::plivo::signature::Method;

/// `POST /plivo/hangup`: the call ended; its session (if still open) is closed.
pub(in crate::http) async fn hangup(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(&state, CallbackKind::Hangup, &headers, &uri, &body).await
}

/// `POST /plivo/ring`: the callee's phone is ringing (outbound calls).
pub(in crate::http) async fn ring(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(&state, CallbackKind::Ring, &headers, &uri, &body).await
}

/// `POST /plivo/stream-status`: the media stream's lifecycle, logged (a dropped, failed
/// or degraded stream at warn).
pub(in crate::http) async fn stream_status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    handle(&state, CallbackKind::StreamStatus, &headers, &uri, &body).await
}

/// Checks, reads and deduplicates a callback, then acts on it once.
async fn handle(
    state: &AppState,
    kind: CallbackKind,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Response {
    let route = kind.as_str();
    let form = parse_form(body);
    let url = format!("{}{}", public_base(state, headers), path_and_query(uri));
    if let Err(refusal) = check_signature(state, route, Method::Post, &url, &form, headers) {
        return refusal.into_response();
    }
    let query = parse_query(uri.query().unwrap_or(""));
    let callback = match Callback::from_params(kind, &query, &form) {
        Ok(callback) => callback,
        Err(error) => {
            telemetry::bad_message(error.kind());
            warn!(route, %error, "refused a callback that names no call");
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    if first_time(state, kind, &callback) {
        act(state, &callback, &form).await;
    }
    StatusCode::OK.into_response()
}

/// Counts the callback; true the first time its idempotency key is seen.
fn first_time(state: &AppState, kind: CallbackKind, callback: &Callback) -> bool {
    let first = state.callbacks.first_time(&callback.idempotency_key);
    let duplicate = if first { "false" } else { "true" };
    metrics::counter!(telemetry::CALLBACKS, "kind" => kind.as_str(), "duplicate" => duplicate)
        .increment(1);
    first
}

/// What a first-time callback does: a hangup closes the session and ends the call, a ring
/// moves it to ringing, a stream status is logged.
async fn act(state: &AppState, callback: &Callback, form: &[(String, String)]) {
    let call_id = &callback.call_id;
    let observation = match &callback.event {
        CallbackEvent::Hangup(hangup) => {
            let known =
                CallId::parse(call_id).is_ok_and(|call_id| state.sessions.hang_up(&call_id));
            info!(%call_id, known, status = %hangup.status, cause = hangup.cause.as_deref(),
                duration_secs = hangup.duration_secs, "hangup callback");
            Observation {
                status: Some(hangup.status.as_str().to_owned()),
                call_uuid: callback.call_uuid.clone(),
                duration_secs: hangup.duration_secs,
                hangup_cause: hangup.cause.clone(),
                ended_at: Some(chrono::Utc::now()),
                ..Observation::default()
            }
        }
        CallbackEvent::Ring => {
            info!(%call_id, "ring callback");
            Observation {
                status: Some(CallStatus::Ringing.as_str().to_owned()),
                call_uuid: callback.call_uuid.clone(),
                ..Observation::default()
            }
        }
        CallbackEvent::StreamStatus(status) => {
            let event = status.event.as_ref().map_or("", |event| event.as_str());
            let stream_id = status.stream_id.as_deref().unwrap_or("");
            if status
                .event
                .as_ref()
                .is_some_and(|event| event.is_trouble())
            {
                warn!(%call_id, event, stream_id, "stream status");
            } else {
                info!(%call_id, event, stream_id, "stream status");
            }
            return;
        }
    };
    record(state, callback, form, observation).await;
}

/// Feeds a callback to the control plane; a callback for no known call is kept for audit
/// with its raw form.
async fn record(
    state: &AppState,
    callback: &Callback,
    form: &[(String, String)],
    observation: Observation,
) {
    let Some(control) = &state.control else {
        return;
    };
    let (call_id, kind) = (&callback.call_id, callback.kind().as_str());
    let result = match control.observe(call_id, observation).await {
        Err(StoreError::NotFound(_)) => {
            info!(%call_id, kind, "callback for an unknown call: kept for audit");
            control.orphan_callback(kind, form).await
        }
        other => other,
    };
    if let Err(error) = result {
        warn!(%call_id, kind, %error, "could not record the callback");
    }
}
