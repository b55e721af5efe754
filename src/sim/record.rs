//! The server's own account of a simulated call: `GET {server}/v1/calls/{call_id}` read
//! after the call, for the per-turn latency split the wire cannot show (issue #12).
//!
//! Owns: fetching the call record with a bearer token ([`fetch_record`], retried for a short
//! window because the server writes the conversation fields when the stream ends) and
//! reading its `transcript`, `turns`, `slots` and `hung_up_by` ([`parse_record`]).
//!
//! Parsing is lenient on purpose: the record belongs to the server, which may be older or
//! newer than this simulator. A missing field, a field of an unexpected type, or an unknown
//! field is simply absent here; only a body that is not a JSON object is an error. Never:
//! fails or slows down a call (this runs after it), or puts the token in a log, an error or
//! a `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// How long [`fetch_record`] keeps asking by default.
pub const FETCH_WINDOW: Duration = Duration::from_secs(2);

/// Pause between attempts.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Each request's own limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest body quoted in an error.
const QUOTE_CHARS: usize = 200;

/// The control API's bearer token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// A token; `None` when empty.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into();
        (!token.trim().is_empty()).then_some(Self(token))
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

/// The latency stages of an agent turn, in the order they happen (CONTRACT: `turns[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// End-of-turn decision.
    EndOfTurn,
    /// Final STT text.
    SttFinal,
    /// Response decided (LLM first token / the flow's decision).
    Decided,
    /// First TTS audio.
    FirstTtsAudio,
    /// First `playAudio` handed to the socket.
    FirstPlayAudio,
    /// First audio heard at the phone (playout clock).
    FirstHeard,
    /// Plivo's `playedStream` for the turn.
    PlayedStream,
    /// The gateway's own share.
    Gateway,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 8] = [
        Self::EndOfTurn,
        Self::SttFinal,
        Self::Decided,
        Self::FirstTtsAudio,
        Self::FirstPlayAudio,
        Self::FirstHeard,
        Self::PlayedStream,
        Self::Gateway,
    ];

    /// The stage's name (`end_of_turn`, …), as in the Prometheus label.
    pub fn name(self) -> &'static str {
        match self {
            Self::EndOfTurn => "end_of_turn",
            Self::SttFinal => "stt_final",
            Self::Decided => "decided",
            Self::FirstTtsAudio => "first_tts_audio",
            Self::FirstPlayAudio => "first_play_audio",
            Self::FirstHeard => "first_heard",
            Self::PlayedStream => "played_stream",
            Self::Gateway => "gateway",
        }
    }

    /// The record's field for this stage (`end_of_turn_ms`, …).
    fn field(self) -> String {
        format!("{}_ms", self.name())
    }
}

/// One line of the server's transcript.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TranscriptLine {
    /// `agent` or `caller`.
    pub speaker: Option<String>,
    /// Turn number (agent turns: the agent's; caller turns: their own count).
    pub turn: Option<u64>,
    /// What the agent meant to say, or the caller's STT text (`[dtmf] 1` for keys).
    pub text: Option<String>,
    /// Agent only: what the caller actually heard.
    pub heard_text: Option<String>,
    /// Start on the call's media clock, ms.
    pub start_ms: Option<f64>,
    /// End on the call's media clock, ms.
    pub end_ms: Option<f64>,
    /// The turn was cut off by a barge-in.
    pub interrupted: Option<bool>,
}

/// One agent turn's latency split, ms from the caller's speech end.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageTurn {
    /// The agent's turn number.
    pub turn: Option<u64>,
    /// The speech end it answers, media clock ms (`None` for a greeting or a reprompt).
    pub speech_end_ms: Option<f64>,
    /// Stage → ms; stages that did not happen are absent.
    pub stages: BTreeMap<Stage, f64>,
    /// The turn was cut off by a barge-in.
    pub interrupted: Option<bool>,
}

impl StageTurn {
    /// One stage's ms, if it happened.
    pub fn stage(&self, stage: Stage) -> Option<f64> {
        self.stages.get(&stage).copied()
    }
}

/// What the simulator reads from the call record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerRecord {
    /// `state`, e.g. `completed`.
    pub state: Option<String>,
    /// Every turn, agent's and caller's, in order of start.
    pub transcript: Vec<TranscriptLine>,
    /// Per agent turn latency split.
    pub turns: Vec<StageTurn>,
    /// Slots the flow filled (non-string values written as JSON).
    pub slots: BTreeMap<String, String>,
    /// `agent`, `caller`, `voxgate`, … as the server saw it.
    pub hung_up_by: Option<String>,
    /// The record says the call ended (`ended_at` set), or is too old to say.
    pub ended: bool,
}

impl ServerRecord {
    /// The agent's transcript line for turn `turn`.
    pub fn agent_line(&self, turn: u64) -> Option<&TranscriptLine> {
        self.transcript
            .iter()
            .find(|l| l.speaker.as_deref() == Some("agent") && l.turn == Some(turn))
    }

    /// The caller's transcript lines, in order.
    pub fn caller_lines(&self) -> impl Iterator<Item = &TranscriptLine> {
        self.transcript
            .iter()
            .filter(|l| l.speaker.as_deref() == Some("caller"))
    }
}

/// Why the record could not be read.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The server URL or call id do not make a URL.
    #[error("call record URL: {0}")]
    Url(String),
    /// No response (connection refused, timeout, …).
    #[error("fetching the call record: {0}")]
    Http(String),
    /// The token was refused.
    #[error("the call record API refused the token (HTTP {0}); check --api-token")]
    Unauthorized(u16),
    /// Another non-2xx answer (404 after every retry: the call has no record).
    #[error("the call record API answered HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The body is not a JSON object.
    #[error("the call record is not a JSON object: {0}")]
    NotJson(String),
}

impl RecordError {
    /// A short fixed label for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Url(_) => "url",
            Self::Http(_) => "http",
            Self::Unauthorized(_) => "unauthorized",
            Self::Status { .. } => "status",
            Self::NotJson(_) => "not_json",
        }
    }
}

/// Reads a call record body. Fails only when it is not a JSON object.
pub fn parse_record(body: &[u8]) -> Result<ServerRecord, RecordError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| RecordError::NotJson(e.to_string()))?;
    let Value::Object(record) = value else {
        return Err(RecordError::NotJson(format!("a JSON {}", kind_of(&value))));
    };
    let transcript = array(&record, "transcript")
        .map(|line| TranscriptLine {
            speaker: string(line, "speaker"),
            turn: uint(line, "turn"),
            text: string(line, "text"),
            heard_text: string(line, "heard_text"),
            start_ms: number(line, "start_ms"),
            end_ms: number(line, "end_ms"),
            interrupted: line.get("interrupted").and_then(Value::as_bool),
        })
        .collect();
    let turns = array(&record, "turns")
        .map(|turn| StageTurn {
            turn: uint(turn, "turn"),
            speech_end_ms: number(turn, "speech_end_ms"),
            stages: Stage::ALL
                .iter()
                .filter_map(|&s| number(turn, &s.field()).map(|ms| (s, ms)))
                .collect(),
            interrupted: turn.get("interrupted").and_then(Value::as_bool),
        })
        .collect();
    let slots = match record.get("slots") {
        Some(Value::Object(slots)) => slots
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k.clone(), v)
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let ended = match record.get("ended_at") {
        None => true,
        Some(v) => !v.is_null(),
    };
    Ok(ServerRecord {
        state: string(&record, "state"),
        transcript,
        turns,
        slots,
        hung_up_by: string(&record, "hung_up_by"),
        ended,
    })
}

/// Fetches `GET {server}/v1/calls/{call_id}` with `token`, asking again every 200 ms for up
/// to `window` while the call has no record yet (404), the server fails (5xx, no answer)
/// or the record does not say the call ended. Returns the last record read if the window
/// runs out with one in hand.
pub async fn fetch_record(
    client: &reqwest::Client,
    server: &str,
    token: &ApiToken,
    call_id: &str,
    window: Duration,
) -> Result<ServerRecord, RecordError> {
    let mut url = reqwest::Url::parse(server).map_err(|e| RecordError::Url(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| RecordError::Url(format!("{server} cannot be a base URL")))?
        .pop_if_empty()
        .extend(["v1", "calls", call_id]);
    let until = Instant::now() + window;
    loop {
        let outcome = attempt(client, &url, token).await;
        let retry = match &outcome {
            Ok(record) => !record.ended,
            Err(RecordError::Http(_)) => true,
            Err(RecordError::Status { status, .. }) => *status == 404 || *status >= 500,
            Err(_) => false,
        };
        if !retry || Instant::now() + RETRY_EVERY > until {
            return outcome;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

async fn attempt(
    client: &reqwest::Client,
    url: &reqwest::Url,
    token: &ApiToken,
) -> Result<ServerRecord, RecordError> {
    let response = client
        .get(url.clone())
        .bearer_auth(&token.0)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|e| RecordError::Http(e.without_url().to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| RecordError::Http(e.without_url().to_string()))?;
    match status {
        200..=299 => parse_record(&body),
        401 | 403 => Err(RecordError::Unauthorized(status)),
        _ => Err(RecordError::Status {
            status,
            body: String::from_utf8_lossy(&body)
                .chars()
                .take(QUOTE_CHARS)
                .collect(),
        }),
    }
}

fn array<'a>(record: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    record
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.is_object())
}

fn string(v: &impl Index, key: &str) -> Option<String> {
    v.field(key).and_then(Value::as_str).map(str::to_owned)
}

fn number(v: &impl Index, key: &str) -> Option<f64> {
    v.field(key)
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite())
}

fn uint(v: &impl Index, key: &str) -> Option<u64> {
    v.field(key).and_then(Value::as_u64)
}

/// A JSON object, as a `Value` or as its map.
trait Index {
    fn field(&self, key: &str) -> Option<&Value>;
}

impl Index for Value {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

impl Index for Map<String, Value> {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests;
