//! A fake voxgate for the simulator's tests: an axum app on 127.0.0.1:0 that answers with
//! `<Stream>` XML (written by the real `answer` module), verifies signatures with the real
//! `signature` module, and on its WebSocket records every message and plays a script of
//! actions keyed to the media chunk numbers it receives (so what it does is tied to the
//! simulated clock, not to wall time). Everything it sends in reply to one media message
//! goes out in one flush.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{State, ws::Utf8Bytes};
use axum::http::{HeaderMap, Method as HttpMethod, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures_util::SinkExt as _;

use crate::telephony::plivo::answer::{
    Refusal, StreamXml, parse_form, parse_query, refusal_response, stream_response,
};
use crate::telephony::plivo::signature::{Method, SignatureError, Verifier};
use crate::telephony::plivo::stream::{
    Inbound, MediaFormat, Outbound, PlayMedia, encode_payload, parse_inbound,
};

/// What the fake does when it receives a given media chunk.
#[derive(Debug, Clone)]
pub enum Action {
    /// `playAudio` of these 8 kHz samples (16 kHz for an L16@16k stream), one message per
    /// 20 ms, sent back to back.
    Play(Vec<i16>),
    /// `checkpoint` with this name.
    Checkpoint(&'static str),
    /// `clearAudio`.
    Clear,
    /// This text frame, verbatim.
    Raw(String),
    /// A binary frame.
    Binary,
    /// Close the socket.
    Close,
    /// Hang the call up through Plivo's REST API: `DELETE {0}{call_id}/` with Basic auth
    /// `{1}` (the REST emulator's `.../Call/` URL and `Authorization` value), awaited
    /// before anything else in the flush goes out.
    RestHangup(String, String),
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Token to verify signatures with (none: not checked).
    pub token: Option<String>,
    /// Answer with `<Hangup reason="busy"/>`.
    pub refuse: bool,
    /// `contentType` of the `<Stream>` (and of the audio the fake plays).
    pub format: MediaFormat,
    /// Put a `statusCallbackUrl` in the XML.
    pub status_callback: bool,
    /// Echo media back in bursts of this many frames, each burst followed by a checkpoint.
    pub echo_burst: Option<usize>,
    /// (chunk, action): done right after media chunk `chunk` arrives.
    pub actions: Vec<(u64, Action)>,
    /// `extraHeaders` of the `<Stream>`.
    pub extra_headers: Option<&'static str>,
    /// `streamTimeout` of the `<Stream>`, seconds.
    pub stream_timeout_secs: Option<u32>,
    /// Answer with this status and body instead (`{addr}` is replaced by the fake's address).
    pub raw_answer: Option<(u16, &'static str)>,
    /// Serve `GET /v1/calls/{id}` with this JSON (`{call_id}` replaced) to the bearer
    /// token [`RECORD_TOKEN`], after answering 404 to the first `record_misses` requests.
    pub record: Option<&'static str>,
    /// 404s before the record is served.
    pub record_misses: usize,
}

/// The bearer token the fake's record endpoint accepts.
pub const RECORD_TOKEN: &str = "api-t0ken";

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            token: None,
            refuse: false,
            format: MediaFormat::MuLaw8k,
            status_callback: true,
            echo_burst: None,
            actions: Vec::new(),
            extra_headers: None,
            stream_timeout_secs: None,
            raw_answer: None,
            record: None,
            record_misses: 0,
        }
    }
}

/// One HTTP request (or WebSocket upgrade) the fake received.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub url: String,
    pub content_type: Option<String>,
    pub params: Vec<(String, String)>,
    /// `None` when the fake has no token to check with.
    pub signature: Option<Result<(), SignatureError>>,
}

impl Req {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything the fake saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub answers: Vec<Req>,
    pub upgrades: Vec<Req>,
    pub hangups: Vec<Req>,
    pub statuses: Vec<Req>,
    /// Text frames from the simulator, in order.
    pub received: Vec<String>,
    /// `GET /v1/calls/{id}` requests, as (id, Authorization header).
    pub record_requests: Vec<(String, Option<String>)>,
}

struct AppState {
    config: FakeConfig,
    addr: SocketAddr,
    seen: Mutex<Seen>,
}

/// A running fake.
pub struct Fake {
    pub addr: SocketAddr,
    state: Arc<AppState>,
}

impl Fake {
    pub async fn start(config: FakeConfig) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(AppState {
            config,
            addr,
            seen: Mutex::new(Seen::default()),
        });
        let app = Router::new()
            .route("/plivo/answer", any(answer))
            .route("/plivo/stream", any(stream))
            .route("/plivo/hangup", post(hangup))
            .route("/plivo/stream-status", any(status))
            .route("/v1/calls/{call_id}", get(call_record))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { addr, state }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.state.seen.lock().unwrap()
    }
}

fn record(
    state: &AppState,
    method: &HttpMethod,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Req {
    let url = format!("http://{}{}", state.addr, uri);
    let params = if method == HttpMethod::POST {
        parse_form(body)
    } else {
        parse_query(uri.query().unwrap_or(""))
    };
    let sig_method = if method == HttpMethod::POST {
        Method::Post
    } else {
        Method::Get
    };
    // A POST is signed with its form fields; a GET's fields are in the URL already.
    let signed_params = if method == HttpMethod::POST {
        params.clone()
    } else {
        Vec::new()
    };
    let signature = state.config.token.as_ref().map(|token| {
        Verifier::new(vec![token.clone()]).verify_headers(sig_method, &url, &signed_params, headers)
    });
    Req {
        method: method.to_string(),
        url,
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        params,
        signature,
    }
}

async fn answer(
    State(state): State<Arc<AppState>>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = record(&state, &method, &uri, &headers, &body);
    state.seen.lock().unwrap().answers.push(req);
    if let Some((status, body)) = state.config.raw_answer {
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        let body = body.replace("{addr}", &state.addr.to_string());
        return (status, [("content-type", "text/xml")], body).into_response();
    }
    if state.config.refuse {
        return (
            [("content-type", "application/xml")],
            refusal_response(Refusal::Busy),
        )
            .into_response();
    }
    let f = state.config.format;
    let content_type = format!("{};rate={}", f.content_type(), f.sample_rate());
    let stream_url = format!("ws://{}/plivo/stream?call=abc&tenant=7", state.addr);
    let status = format!("http://{}/plivo/stream-status", state.addr);
    let xml = stream_response(&StreamXml {
        stream_url: &stream_url,
        content_type: &content_type,
        status_callback_url: state.config.status_callback.then_some(status.as_str()),
        extra_headers: state.config.extra_headers,
        stream_timeout_secs: state.config.stream_timeout_secs,
    });
    ([("content-type", "application/xml")], xml).into_response()
}

async fn hangup(
    State(state): State<Arc<AppState>>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let req = record(&state, &method, &uri, &headers, &body);
    state.seen.lock().unwrap().hangups.push(req);
    "ok"
}

async fn status(
    State(state): State<Arc<AppState>>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let req = record(&state, &method, &uri, &headers, &body);
    state.seen.lock().unwrap().statuses.push(req);
    "ok"
}

async fn call_record(
    State(state): State<Arc<AppState>>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let misses = {
        let mut seen = state.seen.lock().unwrap();
        seen.record_requests.push((call_id.clone(), auth.clone()));
        seen.record_requests.len()
    };
    let Some(body) = state.config.record else {
        return (axum::http::StatusCode::NOT_FOUND, "{}").into_response();
    };
    if auth.as_deref() != Some(&format!("Bearer {RECORD_TOKEN}")) {
        return (axum::http::StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    if misses <= state.config.record_misses {
        return (axum::http::StatusCode::NOT_FOUND, "{}").into_response();
    }
    (
        [("content-type", "application/json")],
        body.replace("{call_id}", &call_id),
    )
        .into_response()
}

async fn stream(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Plivo signs the upgrade as a GET on the http:// form of the stream URL.
    let req = record(&state, &HttpMethod::GET, &uri, &headers, &[]);
    state.seen.lock().unwrap().upgrades.push(req);
    ws.on_upgrade(move |socket| serve(socket, state))
}

fn text(message: &Outbound<'_>) -> Message {
    Message::Text(Utf8Bytes::from(message.to_json()))
}

async fn serve(mut socket: WebSocket, state: Arc<AppState>) {
    let config = &state.config;
    let mut stream_id = String::new();
    let mut call_id = String::new();
    let mut echo: Vec<String> = Vec::new();
    let mut bursts = 0;
    while let Some(Ok(message)) = socket.recv().await {
        let Message::Text(frame) = message else {
            continue;
        };
        state
            .seen
            .lock()
            .unwrap()
            .received
            .push(frame.as_str().to_owned());
        let mut out = Vec::new();
        let chunk = match parse_inbound(frame.as_str()) {
            Ok(Inbound::Start(start)) => {
                stream_id = start.start.stream_id.clone();
                call_id = start.start.call_id.clone();
                continue;
            }
            Ok(Inbound::Media(media)) => {
                if config.echo_burst.is_some() {
                    echo.push(media.media.payload.clone().into_owned());
                }
                media.media.chunk
            }
            _ => continue,
        };
        if let Some(burst) = config.echo_burst
            && echo.len() >= burst
        {
            for payload in echo.drain(..) {
                out.push(text(&play(config.format, &stream_id, payload)));
            }
            bursts += 1;
            let name = format!("echo-{bursts}");
            out.push(text(&Outbound::Checkpoint {
                stream_id: stream_id.as_str().into(),
                name: name.into(),
            }));
        }
        let mut close = false;
        for (_, action) in config.actions.iter().filter(|(at, _)| *at == chunk) {
            match action {
                Action::Play(samples) => {
                    let per = (config.format.sample_rate() / 50) as usize;
                    for part in samples.chunks(per) {
                        let (mut scratch, mut payload) = (Vec::new(), String::new());
                        encode_payload(part, config.format, &mut scratch, &mut payload);
                        out.push(text(&play(config.format, &stream_id, payload)));
                    }
                }
                Action::Checkpoint(name) => out.push(text(&Outbound::Checkpoint {
                    stream_id: stream_id.as_str().into(),
                    name: (*name).into(),
                })),
                Action::Clear => out.push(text(&Outbound::ClearAudio {
                    stream_id: stream_id.as_str().into(),
                })),
                Action::Raw(raw) => out.push(Message::Text(Utf8Bytes::from(raw.clone()))),
                Action::Binary => out.push(Message::Binary(Bytes::from_static(b"\x00\x01"))),
                Action::Close => close = true,
                Action::RestHangup(url, auth) => {
                    let _ = reqwest::Client::builder()
                        .no_proxy()
                        .build()
                        .unwrap()
                        .delete(format!("{url}{call_id}/"))
                        .header("authorization", auth)
                        .send()
                        .await;
                }
            }
        }
        // One flush per burst, so a burst reaches the simulator in one piece.
        for message in out {
            if socket.feed(message).await.is_err() {
                return;
            }
        }
        if socket.flush().await.is_err() {
            return;
        }
        if close {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    }
}

fn play(format: MediaFormat, stream_id: &str, payload: String) -> Outbound<'static> {
    Outbound::PlayAudio {
        media: PlayMedia {
            content_type: format.content_type().into(),
            sample_rate: format.sample_rate(),
            payload: payload.into(),
        },
        stream_id: stream_id.to_owned().into(),
    }
}
