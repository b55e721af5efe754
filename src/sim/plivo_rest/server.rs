//! The fake's HTTP side: one fallback handler that checks auth, records the request,
//! applies injected failures and stalls, routes by path, and answers with Plivo's JSON.
//! All state changes happen under the lock, before any `.await`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{CallPhase, Completion, FakeCall, Injected, RecordedRequest, Shared, State, end};

/// Most destinations in one bulk `to` (Plivo's limit).
const MAX_DESTINATIONS: usize = 1000;
/// Most CDRs in one page of the call list.
const PAGE: usize = 20;
/// The fake's per-minute rate, for `total_rate` / `total_amount`.
const RATE: f64 = 0.0085;

/// The router: everything goes to [`handle`], which routes by hand so it can insist on
/// trailing slashes.
pub(super) fn app(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// The `Authorization` value for `auth_id` / `auth_token`.
pub(super) fn basic_auth(auth_id: &str, auth_token: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{auth_id}:{auth_token}")))
}

async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth_ok = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
        == Some(shared.expected_auth.as_str());
    let (response, stall) = {
        let mut state = shared.lock();
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            auth_ok,
            content_type: header(&headers, CONTENT_TYPE.as_str()).map(str::to_owned),
            user_agent: header(&headers, USER_AGENT.as_str()).map(str::to_owned),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        if !auth_ok {
            (error(401, "authentication failed"), None)
        } else {
            let response = match state.failures.pop_front() {
                Some(injected) => injected_response(injected),
                None => route(&shared, &mut state, &method, &uri, &headers, &body),
            };
            (response, state.stalls.pop_front())
        }
    };
    if let Some(delay) = stall {
        tokio::time::sleep(delay).await;
    }
    response
}

fn route(
    shared: &Shared,
    state: &mut State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Some((account, rest)) = uri
        .path()
        .strip_prefix("/v1/Account/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return error(404, "not found");
    };
    if account != shared.auth_id {
        return error(
            401,
            "the auth id in the path is not the authenticated account",
        );
    }
    let Some(resource) = rest.strip_suffix('/') else {
        return error(404, "not found (Plivo resource paths end with '/')");
    };
    let live = uri.query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "status" && v == "live")
    });
    let segments: Vec<&str> = resource.split('/').collect();
    match (segments.as_slice(), method.as_str()) {
        (["Call"], "POST") => make_call(state, headers, body),
        (["Call"], "GET") if live => {
            let calls: Vec<&str> = state
                .calls
                .iter()
                .filter(|c| matches!(c.phase, CallPhase::Live { .. }))
                .map(|c| c.call_uuid.as_str())
                .collect();
            ok(json!({ "api_id": api_id(), "calls": calls }))
        }
        (["Call"], "GET") => list_cdrs(shared, state),
        // No uuid: Plivo hangs up every call on the account.
        (["Call"] | ["Call", ""], "DELETE") => {
            let now = Utc::now();
            let mut ended = Vec::new();
            for call in state.calls.iter_mut().filter(|c| is_active(c)) {
                let completion = api_completion(call, now);
                end(call, completion, now);
                ended.push(call.call_uuid.clone());
            }
            state.api_hung_up(ended.iter().map(String::as_str));
            StatusCode::NO_CONTENT.into_response()
        }
        (["Call", uuid], "GET") => {
            let Some(call) = state.calls.iter().find(|c| c.call_uuid == *uuid) else {
                return error(404, "call not found");
            };
            match (&call.phase, live) {
                (CallPhase::Live { call_status }, true) => ok(live_json(call, call_status)),
                (CallPhase::Ended(completion), false) => ok(cdr_json(shared, call, completion)),
                _ => error(404, "call not found"),
            }
        }
        (["Call", uuid], "DELETE") => hang_up(state, |c| c.call_uuid == *uuid && is_active(c)),
        // A request can be cancelled while it is queued or ringing.
        (["Request", uuid], "DELETE") => hang_up(state, |c| {
            c.request_uuid == *uuid
                && match &c.phase {
                    CallPhase::Queued => true,
                    CallPhase::Live { call_status } => call_status == "ringing",
                    CallPhase::Ended(_) => false,
                }
        }),
        (["Call"] | ["Call", _] | ["Request", _], _) => error(405, "method not allowed"),
        _ => error(404, "not found"),
    }
}

/// Make Call: every destination of `to` becomes a queued call whose uuid is its
/// `request_uuid`.
fn make_call(state: &mut State, headers: &HeaderMap, body: &[u8]) -> Response {
    let params = match parse_params(headers, body) {
        Ok(params) => params,
        Err(why) => return error(400, why),
    };
    for required in ["from", "to", "answer_url"] {
        if params.get(required).is_none_or(|v| v.trim().is_empty()) {
            return error(400, &format!("missing mandatory parameter: {required}"));
        }
    }
    let destinations: Vec<String> = params["to"]
        .split('<')
        .map(str::trim)
        .filter(|to| !to.is_empty())
        .map(str::to_owned)
        .collect();
    if destinations.is_empty() || destinations.len() > MAX_DESTINATIONS {
        return error(400, "to must name 1 to 1000 destinations");
    }
    let now = Utc::now();
    let mut uuids = Vec::with_capacity(destinations.len());
    for to in destinations {
        let uuid = uuid::Uuid::new_v4().to_string();
        state.calls.push(FakeCall {
            call_uuid: uuid.clone(),
            request_uuid: uuid.clone(),
            direction: "outbound".to_owned(),
            from: params["from"].clone(),
            to,
            params: params.clone(),
            phase: CallPhase::Queued,
            placed_at: now,
            answered_at: None,
            ended_at: None,
        });
        uuids.push(uuid);
    }
    let request_uuid = match uuids.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    json_response(
        201,
        json!({ "api_id": api_id(), "message": "call fired", "request_uuid": request_uuid }),
    )
}

/// Make Call's parameters from a JSON object or a form; JSON numbers and booleans are
/// written out, nulls dropped.
fn parse_params(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<BTreeMap<String, String>, &'static str> {
    let content_type = header(headers, CONTENT_TYPE.as_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return Err("the body is not a JSON object");
        };
        Ok(map
            .into_iter()
            .filter_map(|(key, value)| match value {
                Value::Null => None,
                Value::String(text) => Some((key, text)),
                other => Some((key, other.to_string())),
            })
            .collect())
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        Ok(form_urlencoded::parse(body).into_owned().collect())
    } else {
        Err("Content-Type must be application/json or application/x-www-form-urlencoded")
    }
}

/// Ends the first call matching `pick` as the API would: 204, or 404 if none matches.
fn hang_up(state: &mut State, pick: impl Fn(&FakeCall) -> bool) -> Response {
    let Some(call) = state.calls.iter_mut().find(|c| pick(c)) else {
        return error(404, "call not found");
    };
    let now = Utc::now();
    let completion = api_completion(call, now);
    end(call, completion, now);
    let uuid = call.call_uuid.clone();
    state.api_hung_up([uuid.as_str()]);
    StatusCode::NO_CONTENT.into_response()
}

fn is_active(call: &FakeCall) -> bool {
    !matches!(call.phase, CallPhase::Ended(_))
}

/// How an API hangup at `now` ends `call`: after answer a normal hangup, else a cancel.
fn api_completion(call: &FakeCall, now: DateTime<Utc>) -> Completion {
    match (&call.phase, call.answered_at) {
        (CallPhase::Live { call_status }, Some(at)) if call_status == "in-progress" => {
            let secs = (now - at).num_seconds().max(0);
            Completion::hung_up_by_api(u64::try_from(secs).unwrap_or(0))
        }
        _ => Completion::canceled_by_api(),
    }
}

/// The live-call object (reference §4.4).
fn live_json(call: &FakeCall, call_status: &str) -> Value {
    let mut live = json!({
        "api_id": api_id(),
        "call_status": call_status,
        "call_uuid": call.call_uuid,
        "caller_name": call.param("caller_name").unwrap_or(""),
        "direction": call.direction,
        "from": call.from,
        "to": call.to,
        "request_uuid": call.request_uuid,
        "session_start": call.placed_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
    });
    if let (Some(url), Some(map)) = (call.param("answer_url"), live.as_object_mut()) {
        map.insert("answer_url".to_owned(), json!(url));
    }
    live
}

/// The CDR (reference §4.3): durations are answered seconds, `billed_duration` rounded
/// up to a minute.
fn cdr_json(shared: &Shared, call: &FakeCall, completion: &Completion) -> Value {
    let secs = completion.answered_secs.unwrap_or(0);
    let billed = secs.div_ceil(60) * 60;
    json!({
        "answer_time": completion.answered_secs.and(call.answered_at).map(time),
        "api_id": api_id(),
        "bill_duration": secs,
        "billed_duration": billed,
        "call_direction": call.direction,
        "call_duration": secs,
        "call_state": completion.answered_secs.map(|_| "ANSWER"),
        "call_uuid": call.call_uuid,
        "end_time": call.ended_at.map(time),
        "from_number": call.from,
        "hangup_cause_code": completion.hangup_cause_code,
        "hangup_cause_name": completion.hangup_cause_name,
        "hangup_source": completion.hangup_source,
        "initiation_time": time(call.placed_at),
        "parent_call_uuid": null,
        "resource_uri": format!("/v1/Account/{}/Call/{}/", shared.auth_id, call.call_uuid),
        "to_number": call.to,
        "total_amount": format!("{:.5}", billed as f64 / 60.0 * RATE),
        "total_rate": format!("{RATE:.5}"),
    })
}

/// The completed-call list: newest first, one page.
fn list_cdrs(shared: &Shared, state: &State) -> Response {
    let ended: Vec<Value> = state
        .calls
        .iter()
        .rev()
        .filter_map(|call| match &call.phase {
            CallPhase::Ended(completion) => Some(cdr_json(shared, call, completion)),
            _ => None,
        })
        .collect();
    let total = ended.len();
    let page: Vec<Value> = ended.into_iter().take(PAGE).collect();
    ok(json!({
        "api_id": api_id(),
        "meta": { "count": page.len(), "limit": PAGE, "next": null, "offset": 0,
                  "previous": null, "total_count": total },
        "objects": page,
    }))
}

fn injected_response(injected: Injected) -> Response {
    match injected {
        Injected::Status(status) => error(status, "injected failure"),
        Injected::RateLimited { retry_after_secs } => {
            let mut response = error(429, "too many requests");
            response
                .headers_mut()
                .insert(RETRY_AFTER, retry_after_secs.into());
            response
        }
    }
}

/// Plivo's timestamp format, UTC.
pub(super) fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn api_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn ok(body: Value) -> Response {
    json_response(200, body)
}

fn error(status: u16, message: &str) -> Response {
    json_response(status, json!({ "api_id": api_id(), "error": message }))
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}
