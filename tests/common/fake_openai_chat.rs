//! A fake OpenAI-compatible chat server on loopback, written from the public protocol
//! (`../shared/reference/providers.md` §3), not from voxgate's adapter: `POST
//! /v1/chat/completions` with `stream: true` answers server-sent events of
//! `chat.completion.chunk`s and `data: [DONE]`; errors are `{"error":{...}}` bodies.
//!
//! A whole answer ends as §3 shows: the finish chunk, the usage chunk (`choices: []` with
//! token totals), then `[DONE]`.
//!
//! Each request takes the next scripted [`Answer`] (the last one repeats). The fake records
//! every request's JSON body and headers, when it arrived, and when the client went away
//! before the finish chunk was sent (the cancel: a dropped connection; a client that stops
//! reading once the answer finished is not cancelling).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One piece of a scripted answer.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Wait this long.
    Wait(Duration),
    /// A text delta.
    Text(&'static str),
    /// A tool call, sent as fragments (id and name first, then arguments in two halves).
    Tool {
        id: &'static str,
        name: &'static str,
        arguments: String,
    },
    /// An in-stream error object.
    Error(&'static str),
    /// One tool call whose name comes as `fragment`, `times` times over (a runaway
    /// server).
    NameFlood {
        fragment: &'static str,
        times: usize,
    },
    /// The finish chunk with this reason now (the pieces after it are sent after it, and
    /// no second finish at the end: a server that misbehaves after finishing).
    Finish(&'static str),
    /// Stop sending and never finish (a stall).
    Stall,
    /// Close the connection mid-answer.
    Cut,
}

/// What the fake answers one request with.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A streamed answer: the pieces, then a finish reason (`stop`, or `tool_calls` when
    /// a tool piece was sent), then `[DONE]`.
    Stream(Vec<Piece>),
    /// An HTTP error with OpenAI's error body.
    Status(u16, &'static str),
    /// No answer at all (not even headers) for this long.
    Silent(Duration),
    /// 401 whose message quotes the key of the request's `Authorization: Bearer` header,
    /// whole and its first 12 characters (as some proxies and self-hosted servers do).
    EchoKey,
}

/// What the fake saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub body: Value,
    pub authorization: Option<String>,
    /// When the client dropped the connection before the finish chunk was sent.
    pub cancelled_at: Option<Instant>,
    /// Rules of §3 the request broke (structured output: the name's pattern, a strict
    /// schema whose objects do not require every property or allow others).
    pub problems: Vec<String>,
}

#[derive(Default)]
struct Shared {
    answers: VecDeque<Answer>,
    last: Option<Answer>,
    seen: Vec<Seen>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeChat {
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
}

impl FakeChat {
    /// Starts the fake with its script.
    pub async fn start(answers: Vec<Answer>) -> Self {
        let (mut fake, app) = Self::routes(answers);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake.base_url = format!("http://{addr}/v1");
        fake
    }

    /// The fake and its routes, not yet served (`base_url` empty): to serve them beside
    /// another fake's on one address, as one OpenAI-compatible server.
    pub fn routes(answers: Vec<Answer>) -> (Self, Router) {
        let shared = Arc::new(Mutex::new(Shared {
            answers: answers.into(),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(Arc::clone(&shared));
        let fake = Self {
            base_url: String::new(),
            shared,
        };
        (fake, app)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().unwrap().seen.clone()
    }

    /// Adds answers to the script.
    pub fn push(&self, answer: Answer) {
        self.shared.lock().unwrap().answers.push_back(answer);
    }
}

/// Marks the request cancelled if dropped before `done` (set once the answer finished).
struct CancelGuard {
    shared: Arc<Mutex<Shared>>,
    index: usize,
    done: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().unwrap().seen[self.index].cancelled_at = Some(Instant::now());
        }
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> Bytes {
    let chunk = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    Bytes::from(format!("data: {chunk}\n\n"))
}

async fn complete(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (answer, index) = {
        let mut shared = shared.lock().unwrap();
        let answer = match shared.answers.pop_front() {
            Some(answer) => {
                shared.last = Some(answer.clone());
                answer
            }
            None => shared
                .last
                .clone()
                .unwrap_or(Answer::Stream(vec![Piece::Text("OK.")])),
        };
        shared.seen.push(Seen {
            at: Instant::now(),
            body: body.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            cancelled_at: None,
            problems: response_format_problems(&body),
        });
        (answer, shared.seen.len() - 1)
    };
    let streamed = body.get("stream") == Some(&Value::Bool(true));
    if let (false, Answer::Stream(pieces)) = (streamed, &answer) {
        return whole(pieces.clone()).await;
    }
    let pieces = match answer {
        Answer::Status(status, message) => {
            let body = json!({"error": {"message": message, "type": "fake_error", "param": null, "code": null}});
            return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
        }
        Answer::Silent(wait) => {
            tokio::time::sleep(wait).await;
            return (StatusCode::GATEWAY_TIMEOUT, "late").into_response();
        }
        Answer::EchoKey => {
            let key = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("")
                .to_owned();
            let prefix: String = key.chars().take(12).collect();
            let message = format!(
                "Incorrect API key provided: {key}. Keys starting {prefix}... are revoked."
            );
            let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
            return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        }
        Answer::Stream(pieces) => pieces,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut guard = CancelGuard {
            shared,
            index,
            done: false,
        };
        let send = |bytes: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(bytes)).await.is_ok() }
        };
        let mut tool_index = 0;
        let mut first = true;
        let mut finished = false;
        for piece in pieces {
            if first {
                first = false;
                if !send(chunk(json!({"role": "assistant", "content": ""}), None)).await {
                    return;
                }
            }
            let ok = match piece {
                Piece::Wait(wait) => {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => true,
                        _ = tx.closed() => false,
                    }
                }
                Piece::Text(text) => send(chunk(json!({"content": text}), None)).await,
                Piece::Tool {
                    id,
                    name,
                    arguments,
                } => {
                    // Halves at a character boundary (arguments may be any UTF-8).
                    let mut half = arguments.len() / 2;
                    while !arguments.is_char_boundary(half) {
                        half -= 1;
                    }
                    let (a, b) = arguments.split_at(half);
                    let head = json!({"tool_calls": [{"index": tool_index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]});
                    let one = json!({"tool_calls": [{"index": tool_index, "function": {"arguments": a}}]});
                    let two = json!({"tool_calls": [{"index": tool_index, "function": {"arguments": b}}]});
                    tool_index += 1;
                    send(chunk(head, None)).await
                        && send(chunk(one, None)).await
                        && send(chunk(two, None)).await
                }
                Piece::NameFlood { fragment, times } => {
                    let mut ok = true;
                    for _ in 0..times {
                        let delta = json!({"tool_calls": [{"index": tool_index, "function": {"name": fragment}}]});
                        if !send(chunk(delta, None)).await {
                            ok = false;
                            break;
                        }
                    }
                    tool_index += 1;
                    ok
                }
                Piece::Finish(reason) => {
                    finished = true;
                    let ok = send(chunk(json!({}), Some(reason))).await;
                    guard.done = ok;
                    ok
                }
                Piece::Error(message) => {
                    let error = json!({"error": {"message": message, "type": "server_error"}});
                    send(Bytes::from(format!("data: {error}\n\n"))).await;
                    guard.done = true;
                    return;
                }
                Piece::Stall => {
                    tx.closed().await;
                    return;
                }
                Piece::Cut => {
                    // Let what was sent reach the client before the connection breaks.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tx.send(Err(std::io::Error::other("cut"))).await;
                    guard.done = true;
                    return;
                }
            };
            if !ok {
                return;
            }
        }
        let finish = if tool_index > 0 { "tool_calls" } else { "stop" };
        if !finished && !send(chunk(json!({}), Some(finish))).await {
            return;
        }
        // The answer is complete: a client may stop reading here.
        guard.done = true;
        let usage = json!({
            "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake",
            "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
        });
        let _ = send(Bytes::from(format!("data: {usage}\n\n"))).await
            && send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A `stream: false` answer (§3): one `chat.completion` with the pieces' text and tool
/// calls in `choices[0].message`, after the pieces' waits.
async fn whole(pieces: Vec<Piece>) -> Response {
    let mut text = String::new();
    let mut calls = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Wait(wait) => tokio::time::sleep(wait).await,
            Piece::Text(t) => text.push_str(t),
            Piece::Tool {
                id,
                name,
                arguments,
            } => calls.push(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}})),
            Piece::Error(message) => {
                let body = json!({"error": {"message": message, "type": "server_error"}});
                return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
            }
            Piece::Stall => std::future::pending::<()>().await,
            Piece::Cut => {
                return (StatusCode::OK, "{\"choices\": [{\"mess").into_response();
            }
            Piece::NameFlood { .. } | Piece::Finish(_) => {}
        }
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    axum::Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "fake",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    }))
    .into_response()
}

/// What a request's `response_format` breaks of §3's rules for structured output.
fn response_format_problems(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(format) = body.get("response_format") else {
        return problems;
    };
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {}
        Some("json_object" | "text") => return problems,
        other => {
            problems.push(format!("response_format.type {other:?}"));
            return problems;
        }
    }
    let spec = &format["json_schema"];
    let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        problems.push(format!("json_schema.name {name:?}"));
    }
    let Some(schema) = spec.get("schema").filter(|s| s.is_object()) else {
        problems.push("json_schema.schema is not an object".into());
        return problems;
    };
    if spec.get("strict") == Some(&Value::Bool(true)) {
        strict_problems(schema, "$", &mut problems);
    }
    problems
}

/// Under `strict`, every object lists all its properties in `required` and sets
/// `additionalProperties: false`.
fn strict_problems(schema: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
            problems.push(format!("{at}: additionalProperties is not false"));
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, property) in properties {
            if !required.contains(&name.as_str()) {
                problems.push(format!("{at}.{name} is not required"));
            }
            strict_problems(property, &format!("{at}.{name}"), problems);
        }
    }
    if let Some(items) = schema.get("items") {
        strict_problems(items, &format!("{at}[]"), problems);
    }
}
