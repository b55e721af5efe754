//! Shared test harness: a real voxgate server on a loopback port, and a raw Plivo-side
//! WebSocket client for the cases the simulator is too well-behaved to produce; a fake
//! Google Cloud Storage in [`gcs`].
#![allow(dead_code)]

pub mod backend;
pub mod gcs;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use voxgate::config::{CliOverrides, Config};
use voxgate::http::AppState;
use voxgate::ids::CallId;
use voxgate::server::Server;

/// A running server.
pub struct TestServer {
    pub base: String,
    /// The configuration it was started with.
    pub config: Config,
    pub state: Arc<AppState>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Starts a server configured by `env` (as `VOXGATE_*` variables would).
    pub async fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(None, env, false).await
    }

    /// Starts a server as `voxgate serve` does: with the control plane (store, sinks, Plivo
    /// client) and the recording publisher.
    pub async fn start_with_control(file: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::start_with(file, env, true).await
    }

    async fn start_with(file: Option<&str>, env: &[(&str, &str)], control: bool) -> Self {
        let mut env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Each server with a Redis store gets keys of its own: Redis outlives test runs, and
        // another run's undelivered events must not reach this test's backend.
        if env.contains_key("VOXGATE_REDIS_URL") && !env.contains_key("VOXGATE_REDIS_PREFIX") {
            let name = format!(
                "vgtest-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            );
            env.insert("VOXGATE_REDIS_PREFIX".into(), name);
        }
        // The tests of the media path measure the echo agent; a test of flows says so.
        env.entry("VOXGATE_AGENT".into())
            .or_insert_with(|| "echo".into());
        let mut config = Config::load(file, &env, CliOverrides::default()).expect("test config");
        if !env.contains_key("VOXGATE_DATA_DIR") && !env.contains_key("VOXGATE_RECORDING_DIR") {
            // Recordings of tests that do not look at them go to a scratch folder.
            config.recording.dir = scratch_dir("recordings");
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = if control {
            // Exactly `voxgate serve`'s wiring: control plane, recording publisher, retention.
            Server::start(config.clone(), shutdown.clone()).await
        } else {
            Server::start_without_control(config.clone(), shutdown.clone())
        }
        .expect("server start");
        let state = Arc::clone(server.state());
        let task = tokio::spawn(server.run(listener));
        Self {
            base,
            config,
            state,
            shutdown,
            task,
        }
    }

    /// The journal of a live or recently ended call.
    pub fn journal(&self, call_id: &str) -> Option<Arc<voxgate::session::journal::Journal>> {
        self.state
            .sessions
            .journal(&CallId::parse(call_id).expect("a valid call id"))
    }

    /// A barged-in call's clear, against the server's own moment to barge in: the caller's
    /// speech onset (its journal's last `SpeechStarted` before the `BargeIn`, on the media
    /// clock, which is the simulator's) plus the default `min_speech_ms` of 250 ms. Returns
    /// when the phone was cleared (simulator ms) and how long after that moment, ms
    /// (negative: before it). Panics if the call has no barge-in or no clear.
    pub fn clear_after_min_speech(&self, report: &voxgate::sim::CallReport) -> (f64, f64) {
        use voxgate::session::journal::Event;
        let journal = self.journal(&report.call_uuid).expect("the call's journal");
        let entries = journal.entries();
        let barge_in = entries
            .iter()
            .position(|e| matches!(e.event, Event::BargeIn { .. }))
            .expect("the server saw a barge-in");
        let onset_ms = entries[..barge_in]
            .iter()
            .rev()
            .find_map(|e| match e.event {
                Event::SpeechStarted { onset_ms } => Some(onset_ms),
                _ => None,
            })
            .expect("speech started before the barge-in");
        let cleared = report
            .timeline
            .iter()
            .find(|e| matches!(e.kind, voxgate::sim::EventKind::PhoneCleared { .. }))
            .expect("the phone was cleared");
        (cleared.sim_ms, cleared.sim_ms - (onset_ms + 250) as f64)
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric line (exact name with labels), or 0.
    pub async fn metric(&self, line_prefix: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// `GET {url}` on the control API with `token`, as JSON.
pub async fn api_get(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A fresh, empty folder under the system's temp dir, unique to this process and call.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("voxgate-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Answers `call_id` at the answer URL (unsigned) and returns the answer's XML.
pub async fn answer(base: &str, call_id: &str) -> String {
    reqwest::Client::new()
        .post(format!("{base}/plivo/answer"))
        .form(&[
            ("CallUUID", call_id),
            ("From", "+15550001"),
            ("To", "+15550002"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The stream URL of a `<Stream>` answer (panics on any other answer, such as busy).
pub fn stream_url(answer: &str) -> String {
    let start = answer.find("ws://").expect("stream URL in the answer");
    let end = answer[start..].find('<').unwrap() + start;
    answer[start..end].replace("&amp;", "&")
}

/// A hand-driven Plivo side of one call: answer URL, WebSocket, messages as given.
pub struct RawCall {
    pub ws: Ws,
    pub call_id: String,
    pub stream_id: String,
}

impl RawCall {
    /// Answers `call_id` and opens its stream (unsigned: the server must not enforce).
    pub async fn open(base: &str, call_id: &str) -> Self {
        Self::connect(&answer(base, call_id).await, call_id, None).await
    }

    /// Opens the stream the `answer` XML names, for `call_id`, signed with `auth_token`
    /// as Plivo signs it (unsigned when `None`).
    pub async fn connect(answer: &str, call_id: &str, auth_token: Option<&str>) -> Self {
        Self::dial(&stream_url(answer), call_id, auth_token).await
    }

    /// Opens the stream at `url` for `call_id`, signed with `auth_token` (unsigned when
    /// `None`).
    pub async fn dial(url: &str, call_id: &str, auth_token: Option<&str>) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use voxgate::telephony::plivo::signature::{
            Method, sign_v3_headers, websocket_signing_url,
        };
        let mut request = url.into_client_request().unwrap();
        if let Some(token) = auth_token {
            let signing_url = websocket_signing_url(url);
            for (name, value) in sign_v3_headers(token, Method::Get, &signing_url, &[]) {
                request.headers_mut().insert(name, value.parse().unwrap());
            }
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Self {
            ws,
            call_id: call_id.to_owned(),
            stream_id: format!("stream-{call_id}"),
        }
    }

    pub async fn text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::Text(text.into().into()))
            .await
            .unwrap();
    }

    pub async fn start(&mut self) {
        let start = format!(
            r#"{{"event":"start","sequenceNumber":1,"start":{{"callId":"{}","streamId":"{}","accountId":"MA1","tracks":["inbound"],"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000}}}}}}"#,
            self.call_id, self.stream_id
        );
        self.text(start).await;
    }

    /// One `media` message of µ-law bytes, stamped where chunk `chunk` belongs.
    pub async fn media(&mut self, chunk: u64, ulaw: &[u8]) {
        self.media_at(chunk, chunk.saturating_sub(1).saturating_mul(20), ulaw)
            .await;
    }

    /// One `media` message of µ-law bytes with the given chunk number and timestamp.
    pub async fn media_at(&mut self, chunk: u64, timestamp_ms: u64, ulaw: &[u8]) {
        let text = self.media_text(chunk, timestamp_ms, ulaw);
        self.text(text).await;
    }

    /// The text of a `media` message of µ-law bytes.
    pub fn media_text(&self, chunk: u64, timestamp_ms: u64, ulaw: &[u8]) -> String {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD.encode(ulaw);
        format!(
            r#"{{"event":"media","sequenceNumber":{},"streamId":"{}","media":{{"track":"inbound","timestamp":"{timestamp_ms}","chunk":{chunk},"payload":"{payload}"}}}}"#,
            chunk.wrapping_add(1),
            self.stream_id,
        )
    }

    /// Sends `audio` (µ-law) as 20 ms frames starting at `first_chunk`, `pace` apart.
    pub async fn stream(&mut self, first_chunk: u64, audio: &[u8], pace: Duration) -> u64 {
        let mut chunk = first_chunk;
        for frame in audio.chunks_exact(160) {
            self.media(chunk, frame).await;
            chunk += 1;
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
        }
        chunk
    }

    /// Collects `playAudio` payload bytes (µ-law) until `quiet` passes with none, or `limit`.
    pub async fn collect_audio(&mut self, quiet: Duration, limit: Duration) -> Vec<u8> {
        use base64::Engine as _;
        let mut audio = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let wait = quiet.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                    if value["event"] == "playAudio" {
                        let payload = value["media"]["payload"].as_str().unwrap();
                        audio.extend(
                            base64::engine::general_purpose::STANDARD
                                .decode(payload)
                                .unwrap(),
                        );
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => return audio,
            }
            if tokio::time::Instant::now() >= deadline {
                return audio;
            }
        }
    }
}

/// The fixture `name` under `fixtures/audio/`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/audio/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The µ-law bytes from the first to the last sample louder than −50 dBFS.
pub fn speech_span(ulaw: &[u8]) -> &[u8] {
    let loud = |&b: &u8| voxgate::audio::g711::ulaw_to_pcm(b).unsigned_abs() > 100;
    let first = ulaw.iter().position(loud).unwrap_or(0);
    let last = ulaw.iter().rposition(loud).unwrap_or(0);
    &ulaw[first..=last]
}

/// The committed test utterance `n` (8 kHz PCM16, decoded from its µ-law fixture).
pub fn utterance(n: u8) -> Vec<i16> {
    voxgate::sim::load_ulaw(format!(
        "{}/fixtures/audio/utterance_{n}.ulaw",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A caller who says utterance 1, speaks again (utterance 2) 500 ms into the agent's echo
/// of it, then waits for the agent to finish.
pub fn barge_in_script() -> Vec<voxgate::sim::CallerStep> {
    use voxgate::sim::CallerStep;
    vec![
        CallerStep::Audio(utterance(1)),
        CallerStep::UntilAgentHeard {
            then: Duration::from_millis(500),
        },
        CallerStep::Audio(utterance(2)),
        CallerStep::UntilAgentSilent {
            timeout: Duration::from_secs(10),
        },
    ]
}

/// Normalized cross-correlation of `a` against `b` shifted by `lag` samples.
pub fn correlation(a: &[i16], b: &[i16], lag: usize) -> f64 {
    let b = &b[lag..lag + a.len()];
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1.0)
}
