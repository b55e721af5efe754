//! One utterance's socket task: text from the agent out, audio and timed words back, until
//! `isFinal`, an error or the agent's cancel.
//!
//! Clocks: first byte runs from the first text (or the end) sent to the first audio; idle
//! runs between server messages once the text has ended (before that the server may
//! rightly wait for more text). Every write is bounded by the idle timeout.
//!
//! How each outcome ends: `isFinal` → the chunks channel is dropped (the agent's stream
//! ends), then the socket is closed normally. The agent gone → a normal close frame at once
//! (the barge-in cancel). An error (error JSON, close frame before `isFinal`, bad base64,
//! a timeout, the connection lost) → one `Err` to the agent, then the end and a close. A
//! message that is not the protocol is counted in `PROVIDER_BAD_MESSAGES` and skipped.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use metrics::{counter, histogram};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::PROVIDER;
use super::messages::{
    MessageError, ServerMessage, TextMessage, WordTimer, parse_server_message, text_piece,
};
use crate::providers::api::{
    ProviderError, Stage, Timeouts, TtsAudio, TtsChunk, TtsInput, TtsTask,
};
use crate::telemetry;

/// The client socket.
pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest a closing handshake is waited for once the utterance is over.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Sends one text frame.
pub(super) async fn send_text(socket: &mut Socket, text: String) -> Result<(), ProviderError> {
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| socket_error(&e))
}

/// Drives one utterance to its end, then closes the socket.
pub(super) async fn run(socket: Socket, task: TtsTask, timeouts: Timeouts) {
    let mut utterance = Utterance {
        socket,
        input: task.input,
        chunks: task.chunks,
        timeouts,
        words: WordTimer::new(),
        bytes: 0,
        input_open: true,
        first_sent: None,
        last_heard: None,
    };
    let end = utterance.drive().await;
    let Utterance {
        mut socket, chunks, ..
    } = utterance;
    let outcome = match end {
        End::Done => "ok",
        End::Cancelled => "cancelled",
        End::Failed(error) => {
            counter!(telemetry::PROVIDER_ERRORS, "provider" => PROVIDER, "kind" => error.kind())
                .increment(1);
            tracing::debug!(provider = PROVIDER, %error, "utterance failed");
            let _ = chunks.send(Err(error)).await;
            "error"
        }
    };
    counter!(telemetry::PROVIDER_REQUESTS, "provider" => PROVIDER, "api" => "tts", "outcome" => outcome)
        .increment(1);
    // The agent's stream ends now, whatever the socket's closing handshake takes.
    drop(chunks);
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if socket.close(Some(normal)).await.is_ok() && outcome != "cancelled" {
            // Read the server's close (or whatever is left) so the close is clean.
            while let Some(Ok(_)) = socket.next().await {}
        }
    })
    .await;
}

/// How an utterance ended.
enum End {
    /// `isFinal` came and every chunk was handed on.
    Done,
    /// The agent dropped its stream.
    Cancelled,
    /// The provider or the connection failed.
    Failed(ProviderError),
}

struct Utterance {
    socket: Socket,
    input: tokio::sync::mpsc::Receiver<TtsInput>,
    chunks: tokio::sync::mpsc::Sender<Result<TtsChunk, ProviderError>>,
    timeouts: Timeouts,
    words: WordTimer,
    /// Audio bytes received so far (8 per ms of µ-law 8 kHz).
    bytes: u64,
    /// The agent may still send text (no `End` yet).
    input_open: bool,
    /// When the first text (or the end) was sent.
    first_sent: Option<Instant>,
    /// When audio last came (or, after it came, the end was sent).
    last_heard: Option<Instant>,
}

impl Utterance {
    async fn drive(&mut self) -> End {
        loop {
            let deadline = self.deadline();
            tokio::select! {
                biased;
                () = self.chunks.closed() => return End::Cancelled,
                input = self.input.recv(), if self.input_open => {
                    if let Err(end) = self.on_input(input).await {
                        return end;
                    }
                }
                message = self.socket.next() => {
                    if let Some(end) = self.on_message(message).await {
                        return end;
                    }
                }
                () = sleep_until(deadline) => {
                    let (_, stage) = deadline.unwrap_or((Instant::now(), Stage::Idle));
                    return End::Failed(ProviderError::Timeout {
                        provider: PROVIDER,
                        stage,
                        after: self.timeouts.of(stage),
                    });
                }
            }
        }
    }

    /// When the utterance times out, and in which stage.
    fn deadline(&self) -> Option<(Instant, Stage)> {
        match (self.first_sent, self.last_heard) {
            (Some(sent), None) => Some((sent + self.timeouts.first_byte, Stage::FirstByte)),
            (_, Some(heard)) if !self.input_open => Some((heard + self.timeouts.idle, Stage::Idle)),
            _ => None,
        }
    }

    async fn on_input(&mut self, input: Option<TtsInput>) -> Result<(), End> {
        let text = match input {
            None => return Err(End::Cancelled),
            Some(TtsInput::Text(piece)) => match text_piece(&piece) {
                Some(text) => serde_json::to_string(&TextMessage {
                    text: &text,
                    try_trigger_generation: Some(true),
                }),
                None => return Ok(()),
            },
            Some(TtsInput::End) => {
                self.input_open = false;
                serde_json::to_string(&TextMessage {
                    text: "",
                    try_trigger_generation: None,
                })
            }
        };
        let text =
            text.map_err(|e| End::Failed(ProviderError::protocol(PROVIDER, e.to_string())))?;
        let guard = self
            .timeouts
            .guard(PROVIDER, Stage::Idle, send_text(&mut self.socket, text));
        guard.await.map_err(End::Failed)?;
        let now = Instant::now();
        self.first_sent.get_or_insert(now);
        if !self.input_open && self.last_heard.is_some() {
            self.last_heard = Some(now);
        }
        Ok(())
    }

    /// Handles one server frame; `Some` when the utterance is over.
    async fn on_message(
        &mut self,
        message: Option<Result<Message, tungstenite::Error>>,
    ) -> Option<End> {
        let text = match message {
            None => return Some(End::Failed(ProviderError::Closed { provider: PROVIDER })),
            Some(Err(error)) => return Some(End::Failed(socket_error(&error))),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let reason = frame
                    .filter(|f| !f.reason.trim().is_empty())
                    .map(|f| format!("{} ({})", f.reason, u16::from(f.code)));
                return Some(End::Failed(match reason {
                    Some(reason) => ProviderError::stream(PROVIDER, reason),
                    None => ProviderError::Closed { provider: PROVIDER },
                }));
            }
            Some(Ok(Message::Binary(_))) => {
                bad_message("binary frame");
                return None;
            }
            Some(Ok(_)) => return None,
        };
        match parse_server_message(text.as_bytes()) {
            Ok(ServerMessage::Audio {
                audio,
                alignment,
                is_final,
            }) => {
                let now = Instant::now();
                if self.last_heard.is_none()
                    && let Some(sent) = self.first_sent
                {
                    histogram!(telemetry::PROVIDER_FIRST_BYTE, "provider" => PROVIDER, "api" => "tts")
                        .record(now.duration_since(sent).as_secs_f64());
                }
                self.last_heard = Some(now);
                let offset_ms = self.bytes / 8;
                self.bytes = self.bytes.saturating_add(audio.len() as u64);
                let mut words = alignment.map_or_else(Vec::new, |a| self.words.push(&a, offset_ms));
                if is_final {
                    words.extend(self.words.finish());
                }
                let chunk = TtsChunk {
                    audio: TtsAudio::Mulaw8k(audio.into()),
                    words,
                };
                if !self.hand_on(chunk).await {
                    return Some(End::Cancelled);
                }
                is_final.then_some(End::Done)
            }
            Ok(ServerMessage::Final) => {
                // A word still open at the end comes with an empty chunk of its own.
                if let Some(word) = self.words.finish() {
                    let chunk = TtsChunk {
                        audio: TtsAudio::Mulaw8k(Vec::new().into()),
                        words: vec![word],
                    };
                    if !self.hand_on(chunk).await {
                        return Some(End::Cancelled);
                    }
                }
                Some(End::Done)
            }
            Ok(ServerMessage::Error { message }) => {
                Some(End::Failed(ProviderError::stream(PROVIDER, message)))
            }
            Err(MessageError::Malformed(why)) => {
                bad_message(why);
                None
            }
            Err(MessageError::BadAudio) => Some(End::Failed(ProviderError::protocol(
                PROVIDER,
                "audio is not base64",
            ))),
        }
    }

    /// Hands a chunk to the agent; false when the agent is gone.
    async fn hand_on(&mut self, chunk: TtsChunk) -> bool {
        self.chunks.send(Ok(chunk)).await.is_ok()
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<(Instant, Stage)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Counts and skips a server message that is not the protocol.
fn bad_message(why: &'static str) {
    counter!(telemetry::PROVIDER_BAD_MESSAGES, "provider" => PROVIDER).increment(1);
    tracing::debug!(provider = PROVIDER, why, "skipped a server message");
}

/// A socket failure as a provider error (tungstenite's text holds no header).
fn socket_error(error: &tungstenite::Error) -> ProviderError {
    match error {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Io(_) => ProviderError::Closed { provider: PROVIDER },
        other => ProviderError::protocol(PROVIDER, other.to_string()),
    }
}
