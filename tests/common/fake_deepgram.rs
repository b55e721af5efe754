//! A fake Deepgram on loopback, written from the public protocol
//! (`../shared/reference/providers.md` §1–2), not from voxgate's adapter.
//!
//! `GET /v1/listen` (WebSocket): records the query, the headers and every message with
//! the time it arrived; runs a [`Step`] script from the moment the socket opens; answers
//! `{"type":"Finalize"}` with the configured reply and `{"type":"CloseStream"}` with the
//! configured last results, `Metadata` and a normal close, as the docs describe. It checks
//! the wire format the docs require: audio in binary frames (never empty), control
//! messages as text JSON with a known `type`; anything else is noted in `violations`.
//! Or it refuses the upgrade with a status and Deepgram's error body.
//!
//! `POST /v1/listen`: records query, headers and body; answers with the scripted
//! [`BatchAnswer`].
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One step of the server's script on a live socket.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send this JSON as a text frame.
    Send(Value),
    /// Send this raw text frame (not necessarily JSON).
    SendRaw(&'static str),
    /// Wait this long.
    Wait(Duration),
    /// Wait until this many audio frames arrived.
    AfterFrames(usize),
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// Close with this code and a reason quoting the `Authorization` header it got (some
    /// proxies and self-hosted servers do).
    CloseEchoingKey(u16),
}

/// How the live endpoint answers.
#[derive(Debug, Clone, Default)]
pub struct LiveScript {
    /// Refuse the upgrade with this status, body and optional `Retry-After`.
    pub refuse: Option<(u16, Value, Option<&'static str>)>,
    /// Run from the moment the socket opens.
    pub steps: Vec<Step>,
    /// The reply to each `Finalize` (none: no reply).
    pub on_finalize: Option<Value>,
    /// How long after each `Finalize` its reply is sent (the recognizer's own time).
    pub finalize_after: Duration,
    /// Sent after `CloseStream`, before `Metadata` and the close.
    pub on_close_stream: Vec<Value>,
    /// Refuse the upgrade with this status and an error body quoting the `Authorization`
    /// header it got.
    pub refuse_echoing_key: Option<u16>,
    /// Send a WebSocket ping this often, from the moment the socket opens.
    pub ping_every: Option<Duration>,
    /// Take `CloseStream` like any message and keep the socket open (a misbehaving server).
    pub ignore_close_stream: bool,
}

/// How the batch endpoint answers.
#[derive(Debug, Clone)]
pub enum BatchAnswer {
    /// 200 with this JSON.
    Json(Value),
    /// This status with this body.
    Status(u16, Value),
    /// Headers never come.
    Stall,
    /// 200 with this many bytes of a JSON string (a huge answer).
    Huge(usize),
}

/// A message the fake received on a live socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// An audio frame.
    Binary(Vec<u8>),
    /// A text frame.
    Text(String),
    /// The client's close frame.
    Close,
}

/// What the fake saw on one live socket.
#[derive(Debug, Clone, Default)]
pub struct LiveSeen {
    /// The raw query string.
    pub query: String,
    /// The upgrade request's headers.
    pub headers: HeaderMap,
    /// Every message, with when it arrived.
    pub messages: Vec<(Instant, Received)>,
    /// Wire-format violations (by the docs).
    pub violations: Vec<String>,
    /// When the TCP/WebSocket ended on our side.
    pub ended: Option<Instant>,
}

impl LiveSeen {
    /// `(key, value)` pairs of the query, decoded.
    pub fn pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The values of `key` in the query.
    pub fn param(&self, key: &str) -> Vec<String> {
        self.pairs()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    }

    /// The audio frames, in order.
    pub fn frames(&self) -> Vec<(Instant, Vec<u8>)> {
        self.messages
            .iter()
            .filter_map(|(at, m)| match m {
                Received::Binary(b) => Some((*at, b.clone())),
                _ => None,
            })
            .collect()
    }

    /// The control messages' `type`s, with when they came.
    pub fn controls(&self) -> Vec<(Instant, String)> {
        self.messages
            .iter()
            .filter_map(|(at, m)| match m {
                Received::Text(t) => serde_json::from_str::<Value>(t)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(|s| (*at, s.to_owned()))),
                _ => None,
            })
            .collect()
    }
}

/// What the fake saw of one batch request.
#[derive(Debug, Clone)]
pub struct BatchSeen {
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl BatchSeen {
    /// The values of `key` in the query.
    pub fn param(&self, key: &str) -> Vec<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }
}

#[derive(Default)]
struct Shared {
    live: LiveScript,
    batch: VecDeque<BatchAnswer>,
    sockets: Vec<Arc<Mutex<LiveSeen>>>,
    requests: Vec<BatchSeen>,
}

/// A running fake.
pub struct FakeDeepgram {
    /// `ws://127.0.0.1:<port>`: the adapter's `base_url`.
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
}

impl FakeDeepgram {
    /// Starts a fake answering live sockets with `live` and batch requests with `batch`
    /// (in turn; the last repeats).
    pub async fn start(live: LiveScript, batch: Vec<BatchAnswer>) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            live,
            batch: batch.into(),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/v1/listen", get(listen).post(prerecorded))
            .with_state(Arc::clone(&shared));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("ws://{addr}"),
            shared,
        }
    }

    /// What the `n`th live socket saw so far.
    pub fn socket(&self, n: usize) -> Option<LiveSeen> {
        let shared = self.shared.lock().unwrap();
        shared.sockets.get(n).map(|s| s.lock().unwrap().clone())
    }

    /// Waits (up to 5 s) until the `n`th socket's record satisfies `done`, and returns it.
    pub async fn wait_socket(&self, n: usize, done: impl Fn(&LiveSeen) -> bool) -> LiveSeen {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(seen) = self.socket(n)
                && done(&seen)
            {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "fake: socket {n} never got there: {:?}",
                self.socket(n)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The batch requests so far.
    pub fn requests(&self) -> Vec<BatchSeen> {
        self.shared.lock().unwrap().requests.clone()
    }
}

async fn listen(
    State(shared): State<Arc<Mutex<Shared>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let seen = Arc::new(Mutex::new(LiveSeen {
        query: query.unwrap_or_default(),
        headers,
        ..LiveSeen::default()
    }));
    let script = {
        let mut shared = shared.lock().unwrap();
        shared.sockets.push(Arc::clone(&seen));
        shared.live.clone()
    };
    if let Some(status) = script.refuse_echoing_key {
        let body = json!({"err_code": "INVALID_AUTH",
            "err_msg": format!("Invalid credentials: {auth}"), "request_id": "r"});
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    if let Some((status, body, retry_after)) = script.refuse {
        let mut response =
            (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        if let Some(after) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        return response;
    }
    upgrade.on_upgrade(move |socket| async move {
        session(socket, script, auth, Arc::clone(&seen)).await;
        seen.lock().unwrap().ended = Some(Instant::now());
    })
}

fn text(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })))
        .await;
    // Read until the client answers the close (or goes away).
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            msg = socket.recv() => match msg {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

async fn session(
    mut socket: WebSocket,
    script: LiveScript,
    auth: String,
    seen: Arc<Mutex<LiveSeen>>,
) {
    let mut steps: VecDeque<Step> = script.steps.clone().into();
    let mut next_ping = script
        .ping_every
        .map(|every| tokio::time::Instant::now() + every);
    let mut frames = 0usize;
    let mut wake: Option<tokio::time::Instant> = None;
    // Replies to `Finalize` not sent yet, each with when it is due.
    let mut replies: VecDeque<(tokio::time::Instant, Value)> = VecDeque::new();
    loop {
        // Run every step that can run now.
        while let Some(step) = steps.front().cloned() {
            match step {
                Step::Send(value) => {
                    let _ = socket.send(text(&value)).await;
                }
                Step::SendRaw(raw) => {
                    let _ = socket.send(Message::Text(raw.into())).await;
                }
                Step::Wait(d) => {
                    let at = *wake.get_or_insert_with(|| tokio::time::Instant::now() + d);
                    if tokio::time::Instant::now() < at {
                        break;
                    }
                    wake = None;
                }
                Step::AfterFrames(n) => {
                    if frames < n {
                        break;
                    }
                }
                Step::Close(code, reason) => {
                    close(&mut socket, code, reason).await;
                    return;
                }
                Step::CloseEchoingKey(code) => {
                    close(&mut socket, code, &format!("bad key {auth}")).await;
                    return;
                }
            }
            steps.pop_front();
        }
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let ping = async {
            match next_ping {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let reply = async {
            match replies.front() {
                Some((at, _)) => tokio::time::sleep_until(*at).await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            () = sleep => continue,
            () = reply => {
                if let Some((_, value)) = replies.pop_front() {
                    let _ = socket.send(text(&value)).await;
                }
                continue;
            }
            () = ping => {
                next_ping = script.ping_every.map(|every| tokio::time::Instant::now() + every);
                if socket.send(Message::Ping(Bytes::from_static(b"fake"))).await.is_err() {
                    return;
                }
                continue;
            }
            message = socket.recv() => message,
        };
        let Some(Ok(message)) = message else { return };
        let now = Instant::now();
        match message {
            Message::Binary(bytes) => {
                let mut seen = seen.lock().unwrap();
                if bytes.is_empty() {
                    seen.violations.push("an empty binary frame".into());
                }
                seen.messages.push((now, Received::Binary(bytes.to_vec())));
                frames += 1;
            }
            Message::Text(raw) => {
                let raw = raw.to_string();
                let kind = serde_json::from_str::<Value>(&raw)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_owned));
                {
                    let mut seen = seen.lock().unwrap();
                    match kind.as_deref() {
                        Some("KeepAlive" | "Finalize" | "CloseStream") => {}
                        _ => seen.violations.push(format!("unknown text message {raw}")),
                    }
                    seen.messages.push((now, Received::Text(raw)));
                }
                match kind.as_deref() {
                    Some("Finalize") => {
                        if let Some(reply) = &script.on_finalize {
                            let due = tokio::time::Instant::now() + script.finalize_after;
                            replies.push_back((due, reply.clone()));
                        }
                    }
                    Some("CloseStream") if !script.ignore_close_stream => {
                        // What a Finalize asked for comes before the stream's end.
                        for (_, value) in replies.drain(..) {
                            let _ = socket.send(text(&value)).await;
                        }
                        for value in &script.on_close_stream {
                            let _ = socket.send(text(value)).await;
                        }
                        let metadata = json!({
                            "type": "Metadata", "transaction_key": "deprecated",
                            "request_id": "fake-request", "sha256": "00",
                            "created": "2025-01-01T00:00:00.000Z",
                            "duration": frames as f64 * 0.02, "channels": 1
                        });
                        let _ = socket.send(text(&metadata)).await;
                        close(&mut socket, 1000, "").await;
                        return;
                    }
                    _ => {}
                }
            }
            Message::Close(_) => {
                seen.lock().unwrap().messages.push((now, Received::Close));
                return;
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

async fn prerecorded(
    State(shared): State<Arc<Mutex<Shared>>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut shared = shared.lock().unwrap();
        shared.requests.push(BatchSeen {
            query: query.unwrap_or_default(),
            headers,
            body: body.to_vec(),
        });
        if shared.batch.len() > 1 {
            shared.batch.pop_front()
        } else {
            shared.batch.front().cloned()
        }
    };
    match answer {
        None => (StatusCode::NOT_FOUND, "no answer scripted").into_response(),
        Some(BatchAnswer::Json(value)) => axum::Json(value).into_response(),
        Some(BatchAnswer::Status(status, value)) => {
            (StatusCode::from_u16(status).unwrap(), axum::Json(value)).into_response()
        }
        Some(BatchAnswer::Stall) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Some(BatchAnswer::Huge(n)) => {
            let mut body = Vec::with_capacity(n + 2);
            body.push(b'"');
            body.resize(n + 1, b'a');
            body.push(b'"');
            ([("content-type", "application/json")], body).into_response()
        }
    }
}

/// A documented-shape pre-recorded answer: two channels, utterances out of start order.
pub fn two_channel_answer() -> Value {
    let word = |w: &str, s: f64, e: f64| json!({"word": w, "start": s, "end": e, "confidence": 0.99, "punctuated_word": w});
    json!({
        "metadata": {
            "transaction_key": "deprecated", "request_id": "fake", "sha256": "00",
            "created": "2025-01-01T00:00:00.000Z", "duration": 6.25, "channels": 2,
            "models": ["m"], "model_info": {"m": {"name": "general-nova-3", "version": "x", "arch": "nova-3"}}
        },
        "results": {
            "channels": [
                {"alternatives": [{"transcript": "Hello. Yes please.", "confidence": 0.98,
                    "words": [word("Hello.", 0.4, 0.9), word("Yes", 4.0, 4.3), word("please.", 4.4, 4.9)]}]},
                {"alternatives": [{"transcript": "Hi, how can I help?", "confidence": 0.97,
                    "words": [word("Hi,", 1.2, 1.4), word("help?", 2.6, 3.1)]}]}
            ],
            "utterances": [
                {"id": "u3", "start": 4.0, "end": 4.9, "confidence": 0.98, "channel": 0,
                 "transcript": "Yes please.", "words": []},
                {"id": "u2", "start": 1.2, "end": 3.1, "confidence": 0.97, "channel": 1,
                 "transcript": "Hi, how can I help?", "words": []},
                {"id": "u1", "start": 0.4, "end": 0.9, "confidence": 0.98, "channel": 0,
                 "transcript": "Hello.", "words": []}
            ]
        }
    })
}

/// A `Results` message as the docs show it.
pub fn results(
    transcript: &str,
    start: f64,
    duration: f64,
    is_final: bool,
    speech_final: bool,
    from_finalize: bool,
    words: &[(&str, &str, f64, f64)],
) -> Value {
    let words: Vec<Value> = words
        .iter()
        .map(|(w, p, s, e)| {
            json!({"word": w, "start": s, "end": e, "confidence": 0.9, "punctuated_word": p})
        })
        .collect();
    json!({
        "type": "Results", "channel_index": [0, 1], "duration": duration, "start": start,
        "is_final": is_final, "speech_final": speech_final, "from_finalize": from_finalize,
        "channel": {"alternatives": [{"transcript": transcript, "confidence": 0.95, "words": words}]},
        "metadata": {"request_id": "fake", "model_uuid": "fake",
                     "model_info": {"name": "general-nova-3", "version": "x", "arch": "nova-3"}}
    })
}

/// A TCP listener that accepts connections and never answers (a stuck upgrade).
pub async fn silent_listener() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("ws://{addr}")
}
