//! Live speech to text over Deepgram's WebSocket (`{base_url}/v1/listen?…`).
//!
//! [`DeepgramLive::open`] connects at once (TCP, TLS and upgrade under the connect timeout)
//! and spawns one task per stream that owns the socket:
//! - each [`SttInput::Audio`] frame goes out as one binary message, its bytes as they are
//!   (an empty frame is never sent: Deepgram reads it as the end of the stream);
//! - after `keepalive` without audio, a `{"type":"KeepAlive"}` text frame;
//! - [`SttInput::Finalize`] → `{"type":"Finalize"}`;
//! - [`SttInput::Close`], or the agent dropping its [`SttStream`] → `{"type":"CloseStream"}`,
//!   then results are still read (each read under the idle timeout) until the server closes.
//!
//! Server text is parsed by [`super::messages`]; a message that is not Deepgram's protocol
//! (or a binary frame) is counted in `PROVIDER_BAD_MESSAGES` and skipped. The stream ends
//! with one error when the server closes it before we asked (the close reason, e.g.
//! `NET-0001`, is quoted), when the connection drops, when audio was sent but nothing came
//! back (for the first-byte timeout before the server's first message, the idle timeout
//! after it: with `interim_results` a live Deepgram answers audio within about a second),
//! or when a send stalls for the idle timeout.
//!
//! Bounded: the socket reads messages of at most [`MAX_MESSAGE`] bytes; the channels to
//! the agent are [`SttStream::pair`]'s (an agent that stops reading events holds the
//! task, and so the socket, until it reads again or drops its end). Never: logs or formats the key (it only goes into
//! the upgrade request's `Authorization` header, marked sensitive).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use metrics::{counter, histogram};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::PROVIDER;
use super::config::DeepgramConfig;
use super::messages::{ClientMessage, parse_server_message};
use crate::providers::api::{
    ProviderError, SpeechToText, Stage, SttAudio, SttEvent, SttInput, SttStream, SttTask,
};
use crate::telemetry;

/// Largest server message read (results are a few kB).
pub const MAX_MESSAGE: usize = 1 << 20;
/// Most of an upgrade refusal's body quoted.
const MAX_ERROR_BODY: usize = 64 * 1024;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

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

    async fn connect(&self) -> Result<Socket, ProviderError> {
        let config = &self.config;
        let mut request = config
            .listen_url()
            .as_str()
            .into_client_request()
            .map_err(|e| ProviderError::Invalid {
                provider: PROVIDER,
                reason: format!("bad listen URL: {e}"),
            })?;
        if let Some(key) = &config.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Token {}", key.expose())).map_err(|_| {
                    ProviderError::Invalid {
                        provider: PROVIDER,
                        reason: "the API key is not a valid header value".to_owned(),
                    }
                })?;
            value.set_sensitive(true);
            request.headers_mut().insert("authorization", value);
        }
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let timeouts = config.timeouts;
        timeouts
            .guard(PROVIDER, Stage::Connect, async {
                tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true)
                    .await
                    .map(|(socket, _)| socket)
                    .map_err(upgrade_error)
            })
            .await
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
        let socket = self.connect().await.inspect_err(count_error)?;
        let (stream, task) = SttStream::pair(self.config.audio);
        tokio::spawn(run(socket, task, Arc::clone(&self.config)));
        Ok(stream)
    }
}

/// A refused or failed upgrade as a provider error (never quoting the request).
fn upgrade_error(error: WsError) -> ProviderError {
    match error {
        WsError::Http(response) => {
            let retry_after = crate::retry::retry_after(response.headers(), chrono::Utc::now());
            let body = response.body().as_deref().unwrap_or_default();
            let body = &body[..body.len().min(MAX_ERROR_BODY)];
            ProviderError::status(PROVIDER, response.status().as_u16(), body, retry_after)
        }
        WsError::Io(e) => ProviderError::Connect {
            provider: PROVIDER,
            reason: e.to_string(),
        },
        WsError::Tls(e) => ProviderError::Connect {
            provider: PROVIDER,
            reason: format!("TLS: {e}"),
        },
        WsError::Url(e) => ProviderError::Invalid {
            provider: PROVIDER,
            reason: format!("bad listen URL: {e}"),
        },
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            ProviderError::Closed { provider: PROVIDER }
        }
        other => ProviderError::protocol(PROVIDER, format!("upgrade failed: {other}")),
    }
}

fn count_error(error: &ProviderError) {
    counter!(telemetry::PROVIDER_ERRORS, "provider" => PROVIDER, "kind" => error.kind())
        .increment(1);
    counter!(telemetry::PROVIDER_REQUESTS, "provider" => PROVIDER, "api" => "stt", "outcome" => "error")
        .increment(1);
}

/// How a stream's task ended.
enum End {
    /// The server closed after we asked (or the agent went away): no error.
    Done,
    /// The stream failed; the agent gets this error.
    Failed(ProviderError),
}

/// The stream's task: audio and control out, results in, until one side ends it.
async fn run(socket: Socket, task: SttTask, config: Arc<DeepgramConfig>) {
    let SttTask { mut input, events } = task;
    let (mut sink, mut source) = socket.split();
    let timeouts = config.timeouts;
    let idle = timeouts.idle;
    let opened = Instant::now();
    // The last audio or KeepAlive sent: the keep-alive clock.
    let mut last_sent = Instant::now();
    // The first audio sent since the server last said anything: the dead-server clock.
    let mut unanswered: Option<Instant> = None;
    // When CloseStream went out: from then on every read runs under the idle timeout.
    let mut closing: Option<Instant> = None;
    let mut first_result = true;
    let mut agent_gone = false;
    // Whether the server has said anything yet.
    let mut heard = false;

    let end = loop {
        let keepalive_at = last_sent + config.keepalive;
        // The first answer may take the first-byte timeout, later ones the idle timeout.
        let (wait, wait_stage) = if heard {
            (idle, Stage::Idle)
        } else {
            (timeouts.first_byte, Stage::FirstByte)
        };
        let dead_at = unanswered.map(|t| t + wait);
        let closing_at = closing.map(|t| t + idle);
        tokio::select! {
            biased;
            message = source.next() => {
                unanswered = None;
                heard = true;
                if let Some(t) = closing.as_mut() {
                    *t = Instant::now();
                }
                match message {
                    Some(Ok(Message::Text(text))) => {
                        match parse_server_message(text.as_str()) {
                            Ok(Some(event)) => {
                                if first_result && matches!(event, SttEvent::Transcript { .. }) {
                                    first_result = false;
                                    histogram!(telemetry::PROVIDER_FIRST_BYTE, "provider" => PROVIDER, "api" => "stt")
                                        .record(opened.elapsed().as_secs_f64());
                                }
                                if !agent_gone && events.send(Ok(event)).await.is_err() {
                                    agent_gone = true;
                                }
                            }
                            Ok(None) => {}
                            Err(error) => {
                                counter!(telemetry::PROVIDER_BAD_MESSAGES, "provider" => PROVIDER).increment(1);
                                tracing::debug!(provider = PROVIDER, %error, "skipped a message");
                            }
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        counter!(telemetry::PROVIDER_BAD_MESSAGES, "provider" => PROVIDER).increment(1);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (f.code, f.reason.as_str().trim().to_owned()))
                            .unwrap_or((CloseCode::Status, String::new()));
                        let asked = closing.is_some() || agent_gone;
                        break if asked && code == CloseCode::Normal
                            || asked && code == CloseCode::Status && reason.is_empty()
                        {
                            End::Done
                        } else if reason.is_empty() {
                            End::Failed(ProviderError::stream(
                                PROVIDER,
                                format!("closed the stream (code {})", u16::from(code)),
                            ))
                        } else {
                            End::Failed(ProviderError::stream(
                                PROVIDER,
                                format!("closed the stream: {reason} (code {})", u16::from(code)),
                            ))
                        };
                    }
                    Some(Ok(_)) => {} // ping / pong: tungstenite answers pings itself
                    Some(Err(WsError::Capacity(e))) => {
                        break End::Failed(ProviderError::protocol(PROVIDER, format!("message too large: {e}")));
                    }
                    Some(Err(_)) | None => {
                        break End::Failed(ProviderError::Closed { provider: PROVIDER });
                    }
                }
            }
            item = input.recv(), if closing.is_none() => {
                let outgoing = match item {
                    Some(SttInput::Audio(frame)) => {
                        if frame.bytes().is_empty() {
                            continue;
                        }
                        last_sent = Instant::now();
                        unanswered.get_or_insert(last_sent);
                        Message::Binary(Bytes::copy_from_slice(frame.bytes()))
                    }
                    Some(SttInput::Finalize) => Message::text(ClientMessage::Finalize.to_json()),
                    Some(SttInput::Close) => {
                        closing = Some(Instant::now());
                        Message::text(ClientMessage::CloseStream.to_json())
                    }
                    None => {
                        agent_gone = true;
                        closing = Some(Instant::now());
                        Message::text(ClientMessage::CloseStream.to_json())
                    }
                };
                if let Err(error) = send(&mut sink, outgoing, &config).await {
                    break End::Failed(error);
                }
            }
            () = sleep_until(keepalive_at), if closing.is_none() => {
                last_sent = Instant::now();
                let keepalive = Message::text(ClientMessage::KeepAlive.to_json());
                if let Err(error) = send(&mut sink, keepalive, &config).await {
                    break End::Failed(error);
                }
            }
            () = sleep_until_some(dead_at), if closing.is_none() => {
                break End::Failed(ProviderError::Timeout { provider: PROVIDER, stage: wait_stage, after: wait });
            }
            () = sleep_until_some(closing_at) => {
                break End::Failed(ProviderError::Timeout { provider: PROVIDER, stage: Stage::Idle, after: idle });
            }
            () = events.closed(), if !agent_gone => {
                // The agent dropped its end: treat it like the input closing.
                agent_gone = true;
            }
        }
    };

    // Close our side (bounded: a dead peer must not hold the task).
    let _ = tokio::time::timeout(idle, sink.close()).await;
    let outcome = match end {
        End::Done => "ok",
        End::Failed(error) => {
            count_error(&error);
            tracing::warn!(provider = PROVIDER, %error, "stt stream failed");
            if !agent_gone {
                let _ = events.send(Err(error)).await;
            }
            return;
        }
    };
    counter!(telemetry::PROVIDER_REQUESTS, "provider" => PROVIDER, "api" => "stt", "outcome" => outcome)
        .increment(1);
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
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    message: Message,
    config: &DeepgramConfig,
) -> Result<(), ProviderError> {
    let idle = config.timeouts.idle;
    match tokio::time::timeout(idle, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(ProviderError::Closed { provider: PROVIDER }),
        Err(_) => Err(ProviderError::Timeout {
            provider: PROVIDER,
            stage: Stage::Idle,
            after: idle,
        }),
    }
}
