//! A fake OpenAI-compatible audio server on loopback, written from the public protocol
//! (`../shared/reference/providers.md` §4–5), not from voxgate's adapters:
//! - `POST /v1/audio/speech`, Bearer auth, JSON `{model, input, voice, response_format,
//!   speed?, instructions?}`; with `response_format: "pcm"` the body is headerless 24 kHz
//!   s16le mono, streamed in odd-sized pieces;
//! - `POST /v1/audio/transcriptions`, multipart/form-data (`file`, `model`,
//!   `response_format`, `timestamp_granularities[]`), answered with the scripted JSON. As
//!   §5 says, `gpt-4o-transcribe` / `gpt-4o-mini-transcribe` take only `json`, and
//!   `timestamp_granularities[]` needs `verbose_json`: a request breaking either is
//!   recorded in `problems` and answered 400, as the API would.
//!
//! Errors are `{"error":{"message",…}}` bodies. Each speech request takes the next scripted
//! [`Speech`] answer (the last one repeats); the fake records every request with its
//! arrival time, the samples it sent, and when the client went away before the body was
//! complete (the cancel: a dropped connection).
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

/// Sizes of the body's pieces, in turn: odd, so samples straddle reads.
const PIECES: [usize; 5] = [1, 333, 1001, 77, 4097];

/// How the fake answers one speech request.
#[derive(Debug, Clone)]
pub enum Speech {
    /// `ms_per_char` of 24 kHz audio per character of `input`, in odd pieces `gap` apart.
    Pcm { ms_per_char: u64, gap: Duration },
    /// An HTTP error with OpenAI's body and, if given, `Retry-After` (seconds).
    Status(u16, &'static str, Option<u64>),
    /// 401 quoting the request's key back (see [`echo_key`]).
    EchoKey,
}

/// What the fake saw of one speech request.
#[derive(Debug, Clone)]
pub struct SpeechSeen {
    pub at: Instant,
    pub body: Value,
    pub authorization: Option<String>,
    /// The samples the fake sent (all of them once the body is complete).
    pub samples: Vec<i16>,
    /// When the client dropped the connection before the body was complete.
    pub cancelled_at: Option<Instant>,
    /// Rules of §4 the request broke.
    pub problems: Vec<String>,
}

/// One part of a multipart form.
#[derive(Debug, Clone)]
pub struct FormPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

impl FormPart {
    /// The part's data as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// What the fake saw of one transcription request.
#[derive(Debug, Clone)]
pub struct TranscriptionSeen {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The form's parts (empty when the body was not a multipart form).
    pub parts: Vec<FormPart>,
    /// Rules of §5 the request broke.
    pub problems: Vec<String>,
}

/// How the fake answers one transcription request.
#[derive(Debug, Clone)]
pub enum Transcription {
    /// 200 with this JSON.
    Json(Value),
    /// An HTTP error with OpenAI's body.
    Status(u16, &'static str),
    /// 200 with this JSON after this long (a server transcribing a real recording).
    Late(Duration, Value),
    /// Headers never come (a server that takes the upload and never answers).
    Stall,
    /// 200, then one byte of a JSON answer every `gap`, never ending (a trickle: each
    /// read is quick, the whole never comes).
    Trickle(Duration),
    /// 200 with a JSON string this many bytes long.
    Huge(usize),
    /// 401 quoting the request's key back (see [`echo_key`]).
    EchoKey,
}

#[derive(Default)]
struct Shared {
    speech: VecDeque<Speech>,
    last_speech: Option<Speech>,
    speech_seen: Vec<SpeechSeen>,
    transcriptions: VecDeque<Transcription>,
    transcription_seen: Vec<TranscriptionSeen>,
}

type SharedState = Arc<Mutex<Shared>>;

/// The running fake.
#[derive(Clone)]
pub struct FakeAudio {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    shared: SharedState,
}

impl FakeAudio {
    /// Starts the fake with its speech and transcription scripts.
    pub async fn start(speech: Vec<Speech>, transcriptions: Vec<Transcription>) -> Self {
        let (mut fake, app) = Self::routes(speech, transcriptions);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake.base_url = format!("http://{addr}/v1");
        fake
    }

    /// The fake and its routes, not yet served (`base_url` empty): to serve them beside
    /// another fake's on one address, as one OpenAI-compatible server.
    pub fn routes(speech: Vec<Speech>, transcriptions: Vec<Transcription>) -> (Self, Router) {
        let shared = Arc::new(Mutex::new(Shared {
            speech: speech.into(),
            transcriptions: transcriptions.into(),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/v1/audio/speech", post(speak))
            .route("/v1/audio/transcriptions", post(transcribe))
            .with_state(Arc::clone(&shared));
        let fake = Self {
            base_url: String::new(),
            shared,
        };
        (fake, app)
    }

    /// Every speech request so far.
    pub fn speech_seen(&self) -> Vec<SpeechSeen> {
        self.shared.lock().unwrap().speech_seen.clone()
    }

    /// Every transcription request so far.
    pub fn transcription_seen(&self) -> Vec<TranscriptionSeen> {
        self.shared.lock().unwrap().transcription_seen.clone()
    }
}

/// `n` samples of a loud, varied signal (deterministic; negative values included).
pub fn fake_pcm(seed: usize, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 65_536) as u16 as i16)
        .collect()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A 401 whose message quotes the key of `Authorization: Bearer <key>`, whole and its
/// first 12 characters, as some proxies and self-hosted servers do.
fn echo_key(headers: &HeaderMap) -> Response {
    let key = header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
        .unwrap_or_default();
    let prefix: String = key.chars().take(12).collect();
    error_body(
        401,
        &format!("Incorrect API key provided: {key}. Keys starting {prefix}... are revoked."),
    )
}

fn error_body(status: u16, message: &str) -> Response {
    let body =
        json!({"error": {"message": message, "type": "fake_error", "param": null, "code": null}});
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// Marks the request cancelled if dropped before `done`.
struct CancelGuard {
    shared: SharedState,
    index: usize,
    done: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().unwrap().speech_seen[self.index].cancelled_at = Some(Instant::now());
        }
    }
}

async fn speak(State(shared): State<SharedState>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut problems = Vec::new();
    for field in ["model", "input", "voice"] {
        if !body.get(field).is_some_and(Value::is_string) {
            problems.push(format!("no {field}"));
        }
    }
    let input = body.get("input").and_then(Value::as_str).unwrap_or("");
    if input.chars().count() > 4096 {
        problems.push("input over 4096 characters".into());
    }
    if let Some(speed) = body.get("speed")
        && !speed.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s))
    {
        problems.push(format!("speed {speed}"));
    }
    let pcm = body.get("response_format").and_then(Value::as_str) == Some("pcm");
    if !pcm {
        problems.push("response_format is not pcm".into());
    }
    let (answer, index, seed) = {
        let mut shared = shared.lock().unwrap();
        let answer = match shared.speech.pop_front() {
            Some(answer) => {
                shared.last_speech = Some(answer.clone());
                answer
            }
            None => shared.last_speech.clone().unwrap_or(Speech::Pcm {
                ms_per_char: 10,
                gap: Duration::ZERO,
            }),
        };
        shared.speech_seen.push(SpeechSeen {
            at: Instant::now(),
            body: body.clone(),
            authorization: header(&headers, "authorization"),
            samples: Vec::new(),
            cancelled_at: None,
            problems,
        });
        let index = shared.speech_seen.len() - 1;
        (answer, index, index)
    };
    let (ms_per_char, gap) = match answer {
        Speech::Status(status, message, retry_after) => {
            let mut response = error_body(status, message);
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            return response;
        }
        Speech::EchoKey => return echo_key(&headers),
        Speech::Pcm { ms_per_char, gap } => (ms_per_char, gap),
    };
    let samples = fake_pcm(seed, 24 * ms_per_char as usize * input.chars().count());
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut guard = CancelGuard {
            shared,
            index,
            done: false,
        };
        let mut at = 0;
        for size in PIECES.iter().cycle() {
            if at >= bytes.len() {
                break;
            }
            let end = (at + size).min(bytes.len());
            if tx
                .send(Ok(Bytes::copy_from_slice(&bytes[at..end])))
                .await
                .is_err()
            {
                return;
            }
            // Whole samples sent so far (an odd byte counts once its partner is out).
            let sent: Vec<i16> = samples[at / 2..end / 2].to_vec();
            guard.shared.lock().unwrap().speech_seen[index]
                .samples
                .extend(sent);
            at = end;
            if !gap.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(gap) => {}
                    () = tx.closed() => return,
                }
            }
        }
        guard.done = true;
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .header("content-type", "application/octet-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

async fn transcribe(
    State(shared): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = header(&headers, "content-type");
    let parts = content_type
        .as_deref()
        .and_then(|ct| ct.split("boundary=").nth(1))
        .map(|boundary| parse_multipart(&body, boundary.trim_matches('"')))
        .unwrap_or_default();
    let problems = form_problems(&parts);
    let answer = {
        let mut shared = shared.lock().unwrap();
        shared.transcription_seen.push(TranscriptionSeen {
            authorization: header(&headers, "authorization"),
            content_type,
            parts,
            problems: problems.clone(),
        });
        shared
            .transcriptions
            .pop_front()
            .unwrap_or(Transcription::Status(500, "no script"))
    };
    if let Transcription::EchoKey = answer {
        return echo_key(&headers);
    }
    if !problems.is_empty() {
        return error_body(400, &problems.join("; "));
    }
    match answer {
        Transcription::Json(value) => axum::Json(value).into_response(),
        Transcription::Late(wait, value) => {
            tokio::time::sleep(wait).await;
            axum::Json(value).into_response()
        }
        Transcription::Status(status, message) => error_body(status, message),
        Transcription::EchoKey => echo_key(&headers),
        Transcription::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        Transcription::Huge(n) => {
            let mut body = Vec::with_capacity(n + 12);
            body.extend_from_slice(b"{\"text\":\"");
            body.resize(n + 9, b'a');
            body.extend_from_slice(b"\"}");
            ([("content-type", "application/json")], body).into_response()
        }
        Transcription::Trickle(gap) => {
            let bytes = futures_util::stream::unfold(0usize, move |sent| async move {
                tokio::time::sleep(gap).await;
                let byte: &'static [u8] = if sent == 0 { b"{" } else { b" " };
                Some((Ok::<_, std::io::Error>(Bytes::from_static(byte)), sent + 1))
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(bytes))
                .unwrap()
        }
    }
}

/// The rules of §5 a transcription form breaks: a `file` and a `model` are required;
/// `gpt-4o-(mini-)transcribe` take only `response_format=json`; word or segment
/// timestamps need `verbose_json`.
fn form_problems(parts: &[FormPart]) -> Vec<String> {
    let text = |name: &str| parts.iter().find(|p| p.name == name).map(FormPart::text);
    let mut problems = Vec::new();
    if !parts.iter().any(|p| p.name == "file") {
        problems.push("no file".to_owned());
    }
    let model = text("model").unwrap_or_default();
    if model.is_empty() {
        problems.push("no model".to_owned());
    }
    let format = text("response_format").unwrap_or_else(|| "json".to_owned());
    let json_only = ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"];
    if json_only.contains(&model.as_str()) && format != "json" {
        problems.push(format!(
            "response_format '{format}' is not compatible with model '{model}'"
        ));
    }
    if text("timestamp_granularities[]").is_some() && format != "verbose_json" {
        problems.push("timestamp_granularities[] needs response_format verbose_json".to_owned());
    }
    problems
}

/// The parts of a multipart/form-data body (RFC 7578), leniently.
fn parse_multipart(body: &[u8], boundary: &str) -> Vec<FormPart> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for section in split(body, delimiter.as_bytes()).into_iter().skip(1) {
        if section.starts_with(b"--") {
            break;
        }
        let section = section.strip_prefix(b"\r\n").unwrap_or(section);
        let section = section.strip_suffix(b"\r\n").unwrap_or(section);
        let Some(split_at) = find(section, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&section[..split_at]).into_owned();
        let data = section[split_at + 4..].to_vec();
        let mut part = FormPart {
            name: String::new(),
            filename: None,
            content_type: None,
            data,
        };
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-type:") {
                part.content_type = Some(line["content-type:".len()..].trim().to_owned());
            } else if lower.starts_with("content-disposition:") {
                part.name = quoted(line, "name=").unwrap_or_default();
                part.filename = quoted(line, "filename=");
            }
        }
        parts.push(part);
    }
    parts
}

/// The quoted value after `key` (`name="file"`), not matching inside another key.
fn quoted(line: &str, key: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = line[from..].find(key) {
        let at = from + at;
        let before = line[..at].chars().last();
        if matches!(before, Some(' ') | Some(';')) {
            let rest = line[at + key.len()..].strip_prefix('"')?;
            return rest.split('"').next().map(str::to_owned);
        }
        from = at + key.len();
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(mut body: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(at) = find(body, delimiter) {
        out.push(&body[..at]);
        body = &body[at + delimiter.len()..];
    }
    out.push(body);
    out
}
