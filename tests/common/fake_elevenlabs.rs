//! A fake ElevenLabs stream-input WebSocket on loopback, written from the public protocol
//! (`../shared/reference/providers.md` §6.1), not from voxgate's adapter:
//! `GET /v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=…`, key in the
//! `xi-api-key` header; the client's first message is the init (`"text":" "` and
//! `voice_settings`, optionally `generation_config.chunk_length_schedule`), then text pieces
//! each ending in one space, then `{"text":""}`. As §6.1 says, the fake buffers text and
//! generates only when the buffer reaches the schedule's current step (default
//! 120/160/250/290 characters), on a `"flush":true`, or at the end of input;
//! `try_trigger_generation` (whose minimum is unconfirmed) triggers nothing. It answers
//! `{"audio":<base64>,"alignment":{chars,charStartTimesMs,charDurationsMs},
//! "normalizedAlignment":{…}}` chunks (times relative to the chunk), `{"isFinal":true}`
//! after the end of input, then a normal close.
//!
//! Each connection takes the next scripted [`Script`] (the last one repeats). The fake
//! records each connection's path, query, key header and every client message with its
//! arrival time, the audio it sent, the protocol rules the client broke (`problems`), and
//! when and how the client closed.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// A chunk of speech the fake sends: its text is aligned evenly over its audio.
#[derive(Debug, Clone)]
pub struct FakeChunk {
    /// The characters this audio speaks.
    pub text: &'static str,
    /// ms of audio per character (the audio is `8 * ms_per_char * chars` µ-law bytes).
    pub ms_per_char: u64,
}

/// What the fake does with one connection.
#[derive(Debug, Clone)]
pub enum Script {
    /// Each generation (schedule reached or flush) sends the next of `chunks`; the end of
    /// input sends all the rest, `gap` apart (the first of each generation at once); once
    /// all are sent and the input has ended, the final message and a normal close.
    /// `snake_case` sends `is_final` and `normalized_alignment` (no `alignment`) instead.
    /// The connection's first audio comes `first_after` after the text that asked for it
    /// (the voice's own time to first audio).
    Speak {
        chunks: Vec<FakeChunk>,
        gap: Duration,
        snake_case: bool,
        first_after: Duration,
    },
    /// Refuse the upgrade with this status and JSON body.
    Refuse(u16, Value),
    /// After the first text, send one chunk, then this error JSON, then close 1008 with
    /// the error's code as the reason.
    ErrorAfterText(Value),
    /// After the first text, close with this code and reason (no JSON).
    CloseAfterText(u16, &'static str),
    /// Refuse the upgrade with this status and a body quoting the key it got.
    RefuseEchoingKey(u16),
    /// After the first text, an error JSON quoting the key, then close 1008.
    ErrorEchoingKey,
    /// After the first text, close 1008 with a reason quoting the key.
    CloseEchoingKey,
    /// After the first text, an audio message whose `audio` is not base64.
    BadAudioAfterText,
    /// Accept text, never answer.
    Silent,
}

/// What the fake saw of one connection.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub path: String,
    pub query: HashMap<String, String>,
    pub api_key: Option<String>,
    /// Every client text message, parsed, with its arrival time.
    pub messages: Vec<(Instant, Value)>,
    /// The audio the fake sent, chunk by chunk.
    pub audio: Vec<Vec<u8>>,
    /// The alignments the fake sent, with the chunk each belongs to.
    pub alignments: Vec<Value>,
    /// Protocol rules the client broke.
    pub problems: Vec<String>,
    /// When the client's close frame arrived (or the connection ended without one).
    pub closed_at: Option<Instant>,
    /// The client's close code (`None`: no close frame).
    pub close_code: Option<u16>,
}

#[derive(Default)]
struct Shared {
    scripts: VecDeque<Script>,
    last: Option<Script>,
    seen: Vec<Seen>,
}

type SharedState = Arc<Mutex<Shared>>;

/// The running fake.
#[derive(Clone)]
pub struct FakeElevenLabs {
    /// `ws://127.0.0.1:port`.
    pub base_url: String,
    shared: SharedState,
}

impl FakeElevenLabs {
    /// Starts the fake with its script.
    pub async fn start(scripts: Vec<Script>) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            scripts: scripts.into(),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/v1/text-to-speech/{voice_id}/stream-input", get(upgrade))
            .with_state(Arc::clone(&shared));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("ws://{addr}"),
            shared,
        }
    }

    /// Every connection so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().unwrap().seen.clone()
    }

    /// Waits up to 2 s for connection `index` to be closed by the client; its close time.
    pub async fn closed_at(&self, index: usize) -> Option<Instant> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(at) = self.seen().get(index).and_then(|s| s.closed_at) {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }
}

/// `n` bytes of µ-law that look like speech (deterministic, every byte value used).
pub fn fake_mulaw(seed: usize, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 31 + seed * 97 + (i * i) % 7) % 256) as u8)
        .collect()
}

async fn upgrade(
    State(shared): State<SharedState>,
    Path(voice_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let (script, index) = {
        let mut shared = shared.lock().unwrap();
        let script = match shared.scripts.pop_front() {
            Some(script) => {
                shared.last = Some(script.clone());
                script
            }
            None => shared.last.clone().unwrap_or(Script::Silent),
        };
        shared.seen.push(Seen {
            path: format!("/v1/text-to-speech/{voice_id}/stream-input"),
            query,
            api_key: headers
                .get("xi-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            ..Seen::default()
        });
        (script, shared.seen.len() - 1)
    };
    let key = headers
        .get("xi-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match script {
        Script::Refuse(status, body) => {
            return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        }
        Script::RefuseEchoingKey(status) => {
            let body = json!({"detail": {"status": "invalid_api_key",
                "message": format!("Invalid API key: {key}")}});
            return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        }
        _ => {}
    }
    ws.on_upgrade(move |socket| Connection::new(shared, index, script, key).run(socket))
}

struct Connection {
    shared: SharedState,
    index: usize,
    script: Script,
    /// The `xi-api-key` the client sent.
    key: String,
    /// Client text messages so far.
    received: usize,
    input_ended: bool,
    /// The init's chunk schedule (characters before each generation).
    schedule: Vec<usize>,
    /// Characters buffered since the last generation.
    buffered: usize,
    /// Generations started.
    generations: usize,
}

/// What a client text message asks of the server.
enum Asked {
    /// Nothing yet (the init, or text still under the schedule).
    Nothing,
    /// Generate what is buffered.
    Generate,
    /// The input ended: generate the rest and finish.
    End,
}

impl Connection {
    fn new(shared: SharedState, index: usize, script: Script, key: String) -> Self {
        Self {
            shared,
            index,
            script,
            key,
            received: 0,
            input_ended: false,
            schedule: vec![120, 160, 250, 290],
            buffered: 0,
            generations: 0,
        }
    }

    fn record(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.shared.lock().unwrap().seen[self.index]);
    }

    fn problem(&self, problem: String) {
        self.record(|s| s.problems.push(problem));
    }

    /// Checks a client message against §6.1 and says what it asks for.
    fn check(&mut self, text: &str) -> Asked {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                self.problem(format!("not JSON: {text:?}"));
                Value::Null
            }
        };
        self.record(|s| s.messages.push((Instant::now(), value.clone())));
        self.received += 1;
        let text = value.get("text").and_then(Value::as_str);
        for flag in ["flush", "try_trigger_generation"] {
            if value.get(flag).is_some_and(|v| !v.is_boolean()) {
                self.problem(format!("{flag} is not a boolean: {value}"));
            }
        }
        if self.received == 1 {
            if text != Some(" ") {
                self.problem(format!("the init's text is {text:?}, not \" \""));
            }
            if !value.get("voice_settings").is_some_and(Value::is_object) {
                self.problem("the init has no voice_settings".into());
            }
            if let Some(steps) = value
                .pointer("/generation_config/chunk_length_schedule")
                .and_then(Value::as_array)
            {
                let steps: Vec<usize> = steps
                    .iter()
                    .filter_map(Value::as_u64)
                    .map(|n| n as usize)
                    .collect();
                if steps.is_empty() || steps.iter().any(|n| !(50..=500).contains(n)) {
                    self.problem(format!("a bad chunk_length_schedule: {value}"));
                } else {
                    self.schedule = steps;
                }
            }
            return Asked::Nothing;
        }
        if self.input_ended {
            self.problem(format!("a message after the end of input: {value}"));
        }
        match text {
            None => {
                self.problem(format!("a message without text: {value}"));
                Asked::Nothing
            }
            Some("") => {
                self.input_ended = true;
                Asked::End
            }
            Some(t) => {
                if !t.ends_with(' ') {
                    self.problem(format!("text {t:?} does not end with a space"));
                }
                self.buffered += t.chars().count();
                let step = self.schedule[self.generations.min(self.schedule.len() - 1)];
                let flush = value.get("flush") == Some(&Value::Bool(true));
                if flush || self.buffered >= step {
                    self.buffered = 0;
                    self.generations += 1;
                    Asked::Generate
                } else {
                    Asked::Nothing
                }
            }
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let (mut chunks, gap, snake_case, mut first_after) = match &self.script {
            Script::Speak {
                chunks,
                gap,
                snake_case,
                first_after,
            } => (
                VecDeque::from(chunks.clone()),
                *gap,
                *snake_case,
                *first_after,
            ),
            _ => (VecDeque::new(), Duration::ZERO, false, Duration::ZERO),
        };
        // Chunks generated and not sent yet, each with when it is due.
        let mut due: VecDeque<(tokio::time::Instant, FakeChunk)> = VecDeque::new();
        let mut sent = 0usize;
        let mut finished = false;
        loop {
            let wait = async {
                match due.front() {
                    Some((at, _)) => tokio::time::sleep_until(*at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = socket.recv() => match message {
                    None | Some(Err(_)) => {
                        self.record(|s| { s.closed_at.get_or_insert(Instant::now()); });
                        return;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map(|f| f.code);
                        self.record(|s| {
                            s.closed_at.get_or_insert(Instant::now());
                            s.close_code = s.close_code.or(code);
                        });
                        return;
                    }
                    Some(Ok(Message::Binary(_))) => self.problem("a binary frame".into()),
                    Some(Ok(Message::Text(text))) => {
                        let asked = self.check(&text);
                        if self.received == 2 && !self.on_first_text(&mut socket).await {
                            continue;
                        }
                        let take = match asked {
                            Asked::Nothing => 0,
                            Asked::Generate => 1,
                            Asked::End => chunks.len(),
                        };
                        let now = tokio::time::Instant::now();
                        let mut at = due.back().map_or(now, |(last, _)| (*last).max(now));
                        if take > 0 {
                            at += std::mem::take(&mut first_after);
                        }
                        for (i, chunk) in chunks.drain(..take.min(chunks.len())).enumerate() {
                            if i > 0 {
                                at += gap;
                            }
                            due.push_back((at, chunk));
                        }
                    }
                    Some(Ok(_)) => {}
                },
                () = wait => {
                    let Some((_, chunk)) = due.pop_front() else { continue };
                    let message = self.audio_message(sent, &chunk, snake_case);
                    sent += 1;
                    if socket.send(Message::Text(message.to_string().into())).await.is_err() {
                        continue;
                    }
                }
            }
            let speaking = matches!(self.script, Script::Speak { .. });
            if speaking && !finished && self.input_ended && chunks.is_empty() && due.is_empty() {
                finished = true;
                let key = if snake_case { "is_final" } else { "isFinal" };
                let _ = socket
                    .send(Message::Text(json!({ key: true }).to_string().into()))
                    .await;
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1000,
                        reason: "".into(),
                    })))
                    .await;
            }
        }
    }

    /// Answers the first text as the script says; false when nothing more is sent.
    async fn on_first_text(&mut self, socket: &mut WebSocket) -> bool {
        match self.script.clone() {
            Script::Speak { .. } => true,
            Script::Silent | Script::Refuse(..) | Script::RefuseEchoingKey(_) => false,
            Script::ErrorEchoingKey => {
                let error = json!({"message": format!("Invalid API key {}", self.key),
                    "error": "invalid_api_key", "code": 1008});
                let _ = socket.send(Message::Text(error.to_string().into())).await;
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1008,
                        reason: "invalid_api_key".into(),
                    })))
                    .await;
                false
            }
            Script::CloseEchoingKey => {
                let reason = format!("invalid key {}", self.key);
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1008,
                        reason: reason.into(),
                    })))
                    .await;
                false
            }
            Script::BadAudioAfterText => {
                let bad = json!({"audio": "this is not base64!", "isFinal": null});
                let _ = socket.send(Message::Text(bad.to_string().into())).await;
                false
            }
            Script::ErrorAfterText(error) => {
                let chunk = FakeChunk {
                    text: "Hello ",
                    ms_per_char: 10,
                };
                let audio = self.audio_message(0, &chunk, false);
                let reason = error
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned();
                let _ = socket.send(Message::Text(audio.to_string().into())).await;
                let _ = socket.send(Message::Text(error.to_string().into())).await;
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1008,
                        reason: reason.into(),
                    })))
                    .await;
                false
            }
            Script::CloseAfterText(code, reason) => {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                false
            }
        }
    }

    /// An audio message for `chunk` (the `n`th), recorded as sent.
    fn audio_message(&self, n: usize, chunk: &FakeChunk, snake_case: bool) -> Value {
        let chars: Vec<String> = chunk.text.chars().map(String::from).collect();
        let each = chunk.ms_per_char;
        let audio = fake_mulaw(n, 8 * each as usize * chars.len());
        let alignment = json!({
            "chars": chars,
            "charStartTimesMs": (0..chars.len() as u64).map(|i| i * each).collect::<Vec<_>>(),
            "charDurationsMs": vec![each; chars.len()],
        });
        self.record(|s| {
            s.audio.push(audio.clone());
            s.alignments.push(alignment.clone());
        });
        let audio = STANDARD.encode(&audio);
        if snake_case {
            json!({"audio": audio, "normalized_alignment": alignment})
        } else {
            json!({"audio": audio, "alignment": alignment, "normalizedAlignment": alignment})
        }
    }
}
