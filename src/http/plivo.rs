//! Plivo's routes: the answer URL, the media WebSocket upgrade and (in `callbacks`) the
//! callbacks.
//!
//! Every request Plivo makes is signed (V3); when signatures are enforced, each route
//! checks it against the URL Plivo dialled (the configured public URL plus the request's
//! path and query; the `http://` form for the WebSocket) and refuses with 403 and a
//! metric when it does not match. Callbacks are idempotent: Plivo retries them, and a
//! repeat is acknowledged without being acted on twice.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tracing::{info, warn};

use super::AppState;
use super::plan::{self, opted_out_of_recording};
use crate::ids::CallId;
use crate::session::Refused;
use crate::session::socket::{self, Unreadable, WsMessage, WsOut};
use crate::telemetry;
use crate::telephony::plivo::answer::{
    self, AnswerRequest, Refusal, StreamXml, parse_form, parse_query, refusal_response,
    stream_response,
};
use crate::telephony::plivo::signature::{self, Method, websocket_signing_url};
use crate::telephony::plivo::stream::MAX_MESSAGE_BYTES;

mod callbacks;
pub(super) use callbacks::{hangup, ring, stream_status};

/// The transport's own cap on one WebSocket message; the session drops (and counts) any
/// message over Plivo's 64 KiB limit itself, so a peer's oversized message ends nothing.
const TRANSPORT_MAX_MESSAGE: usize = 16 * MAX_MESSAGE_BYTES;
/// The WebSocket's read buffer (tungstenite's default is 128 KiB per socket, allocated and
/// zeroed at the upgrade): a 20 ms media message is well under 2 KiB, and a bigger message
/// grows the buffer for as long as it takes to read it.
const WS_READ_BUFFER: usize = 4 * 1024;
/// Bytes the WebSocket gathers before writing (tungstenite's default is 128 KiB); the
/// writer flushes every message anyway.
const WS_WRITE_BUFFER: usize = 4 * 1024;
/// The most the WebSocket's write buffer may hold: one outbound message (under 2 KiB) and
/// a control frame, with room to spare; tungstenite requires more than `WS_WRITE_BUFFER`.
const WS_MAX_WRITE_BUFFER: usize = 64 * 1024;
/// The base URL Plivo reaches us at: the configured one, else `http://{Host}`.
pub(super) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    match &state.public_url {
        Some(url) => url.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    }
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// A request refused for its signature: answered 403.
struct BadSignature;

impl IntoResponse for BadSignature {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            "invalid or missing Plivo signature\n",
        )
            .into_response()
    }
}

/// Checks the request's signature when enforced.
fn check_signature(
    state: &AppState,
    route: &'static str,
    method: Method,
    url: &str,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> Result<(), BadSignature> {
    let Some(verifier) = &state.verifier else {
        return Ok(());
    };
    verifier.verify_headers(method, url, params, headers).map_err(|error| {
        metrics::counter!(telemetry::SIGNATURE_FAILURES, "route" => route, "kind" => error.kind()).increment(1);
        warn!(route, %url, kind = error.kind(), "refused a request with a bad Plivo signature");
        BadSignature
    })
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// `GET|POST /plivo/answer`: the `<Stream>` document for the call, or a refusal.
pub(super) async fn answer(
    State(state): State<Arc<AppState>>,
    method: axum::http::Method,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let Some(signed_method) = Method::from_http(&method) else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let base = public_base(&state, &headers);
    let query = parse_query(uri.query().unwrap_or(""));
    let form = if signed_method == Method::Post {
        parse_form(&body)
    } else {
        Vec::new()
    };
    let url = format!("{base}{}", path_and_query(&uri));
    if let Err(refusal) = check_signature(&state, "answer", signed_method, &url, &form, &headers) {
        return refusal.into_response();
    }
    let request = match AnswerRequest::from_params(&query, &form) {
        Ok(request) => request,
        Err(error) => {
            telemetry::bad_message(error.kind());
            warn!(%error, "answer URL request without a usable CallUUID");
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    let call_id = match CallId::parse(request.call_id.as_deref().unwrap_or(&request.call_uuid)) {
        Ok(call_id) => call_id,
        Err(error) => {
            telemetry::bad_message("invalid_call_id");
            warn!(%error, "answer URL request with an unusable call_id");
            return (StatusCode::BAD_REQUEST, format!("call_id: {error}\n")).into_response();
        }
    };
    let plan = plan::resolve(&state, call_id.clone(), Some(&request), &query).await;
    let direction = plan.direction;
    if let Err(refused) = state.sessions.reserve(plan) {
        metrics::counter!(telemetry::CALLS_REFUSED, "reason" => refused.kind()).increment(1);
        warn!(%call_id, reason = refused.kind(), "refused a call");
        return xml(refusal_response(Refusal::Busy));
    }
    info!(%call_id, call_uuid = %request.call_uuid, from = %request.from, to = %request.to,
        direction = %request.direction, "answering");
    if let Some(control) = &state.control {
        // The call is answered: record it (an inbound call is created here). A store
        // failure must not drop the caller: log it, answer anyway.
        if let Err(error) = control
            .on_answer(
                &call_id,
                &request.call_uuid,
                direction,
                &request.from,
                &request.to,
            )
            .await
        {
            warn!(%call_id, %error, "could not record the answer");
        }
    }
    // `?record=false` on the answer URL opts the call out of recording (the plan says so);
    // the stream URL carries it too, for a socket that reaches an instance which did not
    // answer the call.
    let stream_path = if opted_out_of_recording(&query) {
        "/plivo/stream?record=false"
    } else {
        "/plivo/stream"
    };
    let stream_url = answer::stream_url(&base, stream_path, call_id.as_str());
    let status_url = {
        let mut url = format!("{base}/plivo/stream-status?call_id=");
        url.extend(form_urlencoded::byte_serialize(call_id.as_str().as_bytes()));
        url
    };
    xml(stream_response(&StreamXml {
        stream_url: &stream_url,
        content_type: answer::CONTENT_TYPE_MULAW_8K,
        status_callback_url: Some(&status_url),
        extra_headers: None,
        stream_timeout_secs: None,
    }))
}

/// `GET /plivo/stream`: the media WebSocket.
pub(super) async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let base = public_base(&state, &headers);
    let dialled = format!("{base}{}", path_and_query(&uri));
    if let Err(refusal) = check_signature(
        &state,
        "stream",
        Method::Get,
        &websocket_signing_url(&dialled),
        &[],
        &headers,
    ) {
        return refusal.into_response();
    }
    // A signed upgrade is good once: the same nonce again is a captured upgrade replayed.
    if state.verifier.is_some()
        && let Some(nonce) = signature::nonce(&headers)
        && !state.upgrade_nonces.first_time(nonce)
    {
        metrics::counter!(telemetry::SIGNATURE_FAILURES, "route" => "stream", "kind" => "replayed")
            .increment(1);
        warn!("refused a WebSocket upgrade whose signature nonce was already used");
        return BadSignature.into_response();
    }
    let query = parse_query(uri.query().unwrap_or(""));
    let Some(call_id) = query
        .iter()
        .find(|(k, v)| k == "call_id" && !v.is_empty())
        .map(|(_, v)| v)
    else {
        return (StatusCode::BAD_REQUEST, "the stream URL needs ?call_id=\n").into_response();
    };
    let call_id = match CallId::parse(call_id) {
        Ok(call_id) => call_id,
        Err(error) => {
            telemetry::bad_message("invalid_call_id");
            return (StatusCode::BAD_REQUEST, format!("call_id: {error}\n")).into_response();
        }
    };
    // A call answered elsewhere (another instance, or before a restart) is planned here,
    // once, from its stored record and the stream URL. Until its `start` such a socket is
    // pending: it takes a pending slot, not a call slot (and is refused before any lookup
    // when none is free).
    let attached = if state.sessions.is_known(&call_id) {
        state.sessions.attach(&call_id)
    } else if state.sessions.pending() >= state.sessions.config().max_pending_sockets {
        Err(Refused::TooManyPending)
    } else {
        let plan = plan::resolve(&state, call_id.clone(), None, &query).await;
        state.sessions.attach_planned(plan)
    };
    let attachment = match attached {
        Ok(attachment) => attachment,
        Err(refused) => {
            metrics::counter!(telemetry::CALLS_REFUSED, "reason" => refused.kind()).increment(1);
            let status = match refused {
                Refused::LiveSocket => {
                    warn!(%call_id, "refused a second upgrade while the call's socket is live");
                    StatusCode::CONFLICT
                }
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            // A refused upgrade keeps no idle connection (and its buffers) behind.
            return (
                status,
                [(header::CONNECTION, "close")],
                format!("{refused}\n"),
            )
                .into_response();
        }
    };
    let deps = state.session_deps();
    let sessions = Arc::clone(&state.sessions);
    upgrade
        .max_message_size(TRANSPORT_MAX_MESSAGE)
        .max_frame_size(TRANSPORT_MAX_MESSAGE)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            let (sink, incoming) = socket.split();
            let incoming = incoming.map(|message| match message {
                Ok(Message::Text(text)) => Ok(WsMessage::Text(text)),
                Ok(Message::Binary(bytes)) => Ok(WsMessage::Binary(bytes.len())),
                Ok(Message::Close(_)) => Ok(WsMessage::Close),
                Ok(Message::Ping(_) | Message::Pong(_)) => Ok(WsMessage::Other),
                Err(error) => unreadable(&error).map(WsMessage::Unreadable).ok_or(error),
            });
            let sink = sink.with(|out: WsOut| async move {
                Ok::<_, axum::Error>(match out {
                    WsOut::Text(text) => Message::Text(text.into()),
                    WsOut::Close(code) => Message::Close(Some(CloseFrame {
                        code: code.code(),
                        reason: code.reason().into(),
                    })),
                })
            });
            sessions.spawn(socket::run(incoming, Box::pin(sink), attachment, deps));
        })
}

/// Why the transport could not read a message, when the socket is owed a close code for
/// it (RFC 6455: 1009 for a message over the cap, 1007 for a text frame that is not UTF-8).
fn unreadable(error: &axum::Error) -> Option<Unreadable> {
    use std::error::Error as _;
    match error.source()?.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(_) => Some(Unreadable::TooLarge),
        tungstenite::Error::Utf8(_) => Some(Unreadable::InvalidUtf8),
        _ => None,
    }
}
