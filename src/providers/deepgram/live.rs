//! Live speech to text over Deepgram's WebSocket (`{base_url}/v1/listen?…`).
//!
//! [`DeepgramLive::open`] connects at once ([`ws::connect`]: TCP, TLS and upgrade under the
//! connect timeout, the key in the `Authorization: Token …` header marked sensitive) and
//! spawns one task per stream that owns the socket:
//! - each [`SttInput::Audio`] frame goes out as one binary message, its bytes as they are
//!   (an empty frame is never sent: Deepgram reads it as the end of the stream);
//! - after `keepalive` without audio, a `{"type":"KeepAlive"}` text frame;
//! - [`SttInput::Finalize`] → `{"type":"Finalize"}`;
//! - [`SttInput::Close`] → `{"type":"CloseStream"}`; results are still read until the
//!   server closes, but no longer than one idle timeout in all (an absolute deadline: a
//!   server that keeps pinging cannot keep the socket, which is billed, open);
//! - the agent dropping its [`SttStream`] (nobody reads results any more) → the hard
//!   cancel: `CloseStream` and our close frame at once, without waiting for results.
//!
//! Results go to the agent without stalling the socket: interim results and
//! `SpeechStarted` are offered with `try_send` and dropped (counted in
//! `voxgate_provider_stt_events_dropped_total`) when the agent is [`crate::providers::api::STT_EVENT_CAPACITY`]
//! events behind, since a later result replaces them; finals, answers to `Finalize` and
//! `UtteranceEnd` are waited for, at most one idle timeout, after which the agent is taken
//! for stuck and the stream is cancelled.
//!
//! Server text is parsed by [`super::messages`]; a message that is not Deepgram's protocol
//! (or a binary frame) is counted in `PROVIDER_BAD_MESSAGES` and skipped. The stream ends
//! with one error when the server closes it before we asked (even with a normal 1000: the
//! close reason, e.g. `NET-0001`, is quoted), when the connection drops, when a send stalls
//! for the idle timeout, when the closing deadline passes, or — only if `answer_timeout`
//! is set (default 30 s) — when audio was sent and the server said nothing for that long.
//! Errors never quote the key ([`ProviderError::without_key`]).
//!
//! Bounded: the socket reads messages of at most [`MAX_MESSAGE`] bytes; the channels to
//! the agent are [`SttStream::pair`]'s. Never: logs or formats the key.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use metrics::{counter, histogram};
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use super::PROVIDER;
use super::config::DeepgramConfig;
use super::messages::{ClientMessage, parse_server_message};
use crate::providers::api::ws::{self, Ending, KeyHeader, Socket};
use crate::providers::api::{
    ProviderError, SpeechToText, Stage, SttAudio, SttEvent, SttInput, SttStream, SttTask,
};
use crate::telemetry;

/// Largest server message read (results are a few kB).
pub const MAX_MESSAGE: usize = 1 << 20;

/// The header the key goes in.
const AUTH: KeyHeader = KeyHeader {
    name: "authorization",
    prefix: "Token ",
};

/// Deepgram live transcription: one WebSocket per [`SttStream`].
#[derive(Debug, Clone)]
pub struct DeepgramLive {
    config: Arc<DeepgramConfig>,
}

impl DeepgramLive {
    /// An adapter for `config` (shared by every stream it opens).
    pub fn new(config: impl Into<Arc<DeepgramConfig>>) -> Self {
        Self {
            config: config.into(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &DeepgramConfig {
        &self.config
    }
}

#[async_trait::async_trait]
impl SpeechToText for DeepgramLive {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn audio(&self) -> SttAudio {
        self.config.audio
    }

    async fn open(&self) -> Result<SttStream, ProviderError> {
        let config = &self.config;
        let key = config.api_key.as_ref().map(|key| (AUTH, key));
        let socket = ws::connect(
            PROVIDER,
            &config.listen_url(),
            key,
            MAX_MESSAGE,
            &config.timeouts,
        )
        .await
        .inspect_err(|e| crate::providers::api::http::count_error(PROVIDER, "stt", e))?;
        let (stream, task) = SttStream::pair(config.audio);
        tokio::spawn(run(socket, task, Arc::clone(config)));
        Ok(stream)
    }
}

/// The stream's task: audio and control out, results in, until one side ends it.
async fn run(socket: Socket, task: SttTask, config: Arc<DeepgramConfig>) {
    let SttTask { input, events } = task;
    let (mut sink, source) = socket.split();
    let mut stream = Live {
        config: &config,
        input,
        events: &events,
        opened: Instant::now(),
        last_sent: Instant::now(),
        unanswered: None,
        closing_at: None,
        heard: false,
        first_result: true,
    };
    let ending = stream.drive(&mut sink, source).await;
    ws::finish(
        PROVIDER,
        "stt",
        ending,
        config.api_key.as_ref(),
        events,
        &mut sink,
        config.timeouts.idle,
    )
    .await;
}

struct Live<'a> {
    config: &'a DeepgramConfig,
    input: tokio::sync::mpsc::Receiver<SttInput>,
    events: &'a tokio::sync::mpsc::Sender<Result<SttEvent, ProviderError>>,
    opened: Instant,
    /// The last audio or KeepAlive sent: the keep-alive clock.
    last_sent: Instant,
    /// The first audio sent since the server last said anything: the dead-server clock.
    unanswered: Option<Instant>,
    /// Set by CloseStream: when we stop waiting for the server's last results.
    closing_at: Option<Instant>,
    /// Whether the server has said anything yet.
    heard: bool,
    first_result: bool,
}

type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Source = futures_util::stream::SplitStream<Socket>;

impl Live<'_> {
    async fn drive(&mut self, sink: &mut Sink, mut source: Source) -> Ending {
        let idle = self.config.timeouts.idle;
        loop {
            let keepalive_at = self.last_sent + self.config.keepalive;
            let dead_at = self
                .unanswered
                .zip(self.config.answer_timeout)
                .map(|(sent, wait)| sent + wait);
            let closing = self.closing_at.is_some();
            // Biased: deadlines and the agent's input come before the socket, so a flood of
            // server messages cannot starve them.
            tokio::select! {
                biased;
                () = sleep_until_some(self.closing_at) => {
                    return Ending::Failed(ProviderError::Timeout { provider: PROVIDER, stage: Stage::Idle, after: idle });
                }
                () = sleep_until_some(dead_at), if !closing => {
                    let stage = if self.heard { Stage::Idle } else { Stage::FirstByte };
                    let after = self.config.answer_timeout.unwrap_or_default();
                    return Ending::Failed(ProviderError::Timeout { provider: PROVIDER, stage, after });
                }
                () = self.events.closed() => return self.cancel(sink).await,
                item = self.input.recv(), if !closing => {
                    let outgoing = match item {
                        Some(SttInput::Audio(frame)) => {
                            if frame.bytes().is_empty() {
                                continue;
                            }
                            self.last_sent = Instant::now();
                            self.unanswered.get_or_insert(self.last_sent);
                            Message::Binary(Bytes::copy_from_slice(frame.bytes()))
                        }
                        Some(SttInput::Finalize) => Message::text(ClientMessage::Finalize.to_json()),
                        Some(SttInput::Close) => {
                            self.closing_at = Some(Instant::now() + idle);
                            Message::text(ClientMessage::CloseStream.to_json())
                        }
                        None => return self.cancel(sink).await,
                    };
                    if let Err(error) = send(sink, outgoing, self.config).await {
                        return Ending::Failed(error);
                    }
                }
                () = sleep_until(keepalive_at), if !closing => {
                    self.last_sent = Instant::now();
                    let keepalive = Message::text(ClientMessage::KeepAlive.to_json());
                    if let Err(error) = send(sink, keepalive, self.config).await {
                        return Ending::Failed(error);
                    }
                }
                message = source.next() => {
                    if let Some(ending) = self.on_message(message).await {
                        return ending;
                    }
                }
            }
        }
    }

    /// The agent is gone: nobody reads results, so nothing is worth waiting for. Tells
    /// the server we are done (the close follows in [`ws::finish`]).
    async fn cancel(&mut self, sink: &mut Sink) -> Ending {
        let _ = send(
            sink,
            Message::text(ClientMessage::CloseStream.to_json()),
            self.config,
        )
        .await;
        Ending::Cancelled
    }

    /// Handles one socket item; `Some` when the stream is over.
    async fn on_message(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Ending> {
        // Anything from the server shows it is alive (a ping too), but only the closing
        // deadline's absolute clock decides how long we wait after CloseStream.
        self.unanswered = None;
        self.heard = true;
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                bad_message("binary frame");
                return None;
            }
            Some(Ok(Message::Close(frame))) => {
                let asked = self.closing_at.is_some();
                return Some(if asked && ws::is_normal_close(frame.as_ref()) {
                    Ending::Done
                } else {
                    Ending::Failed(ws::close_error(PROVIDER, frame.as_ref()))
                });
            }
            Some(Ok(_)) => return None, // ping / pong: tungstenite answers pings itself
            Some(Err(error)) => return Some(Ending::Failed(ws::socket_error(PROVIDER, &error))),
            None => return Some(Ending::Failed(ProviderError::Closed { provider: PROVIDER })),
        };
        let event = match parse_server_message(text.as_str()) {
            Ok(Some(event)) => event,
            Ok(None) => return None,
            Err(error) => {
                tracing::debug!(provider = PROVIDER, %error, "skipped a message");
                bad_message("not Deepgram's JSON");
                return None;
            }
        };
        if self.first_result && matches!(event, SttEvent::Transcript { .. }) {
            self.first_result = false;
            histogram!(telemetry::PROVIDER_FIRST_BYTE, "provider" => PROVIDER, "api" => "stt")
                .record(self.opened.elapsed().as_secs_f64());
        }
        self.hand_on(event).await
    }

    /// Gives `event` to the agent: an interim one only if there is room, a final one
    /// within the idle timeout; `Some` when the agent is gone or stuck.
    async fn hand_on(&mut self, event: SttEvent) -> Option<Ending> {
        let must_arrive = matches!(
            event,
            SttEvent::Transcript { is_final: true, .. }
                | SttEvent::Transcript {
                    from_finalize: true,
                    ..
                }
                | SttEvent::UtteranceEnd { .. }
        );
        if !must_arrive {
            return match self.events.try_send(Ok(event)) {
                Ok(()) => None,
                Err(TrySendError::Full(_)) => {
                    counter!(telemetry::PROVIDER_STT_EVENTS_DROPPED, "provider" => PROVIDER)
                        .increment(1);
                    None
                }
                Err(TrySendError::Closed(_)) => Some(Ending::Cancelled),
            };
        }
        let idle = self.config.timeouts.idle;
        match tokio::time::timeout(idle, self.events.send(Ok(event))).await {
            Ok(Ok(())) => None,
            Ok(Err(_)) => Some(Ending::Cancelled),
            Err(_) => {
                tracing::warn!(
                    provider = PROVIDER,
                    "the agent stopped reading results; cancelling the stream"
                );
                Some(Ending::Cancelled)
            }
        }
    }
}

/// Counts and skips a server message that is not the protocol.
fn bad_message(why: &'static str) {
    counter!(telemetry::PROVIDER_BAD_MESSAGES, "provider" => PROVIDER).increment(1);
    tracing::debug!(provider = PROVIDER, why, "skipped a server message");
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends one message under the idle timeout.
async fn send(
    sink: &mut Sink,
    message: Message,
    config: &DeepgramConfig,
) -> Result<(), ProviderError> {
    let idle = config.timeouts.idle;
    match tokio::time::timeout(idle, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(ws::socket_error(PROVIDER, &error)),
        Err(_) => Err(ProviderError::Timeout {
            provider: PROVIDER,
            stage: Stage::Idle,
            after: idle,
        }),
    }
}
