//! One utterance's socket task: text from the agent out, audio and timed words back, until
//! `isFinal`, an error or the agent's cancel.
//!
//! Each text piece goes out with `"flush":true`, so the server generates it at once
//! (providers.md §6.1: otherwise it waits until its buffer meets the chunk schedule, and a
//! short first clause followed by a slow LLM would get no audio at all).
//!
//! Clocks: every flush (or the end of input) sent while no audio has answered since the
//! last audio starts the first-byte clock, and audio stops it — so a server rightly waiting
//! for more text is never timed, and one that owes audio is. Once the input has ended and
//! audio has come, idle runs between audio messages. Every write is bounded by the idle
//! timeout.
//!
//! How each outcome ends ([`ws::finish`]): `isFinal` → the agent's stream ends, then the
//! socket is closed normally. The agent gone → a normal close frame at once (the barge-in
//! cancel). An error (error JSON, close frame before `isFinal` — a normal 1000 too —, bad
//! base64, a timeout, the connection lost) → one `Err` to the agent, key removed, then the
//! end and a close. A message that is not the protocol is counted in
//! `PROVIDER_BAD_MESSAGES` and skipped.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use metrics::{counter, histogram};
use tokio_tungstenite::tungstenite::{self, Message};

use super::PROVIDER;
use super::messages::{
    MessageError, ServerMessage, TextMessage, WordTimer, parse_server_message, text_piece,
};
use crate::providers::api::ws::{self, Ending, Socket};
use crate::providers::api::{
    ApiKey, ProviderError, Stage, Timeouts, TtsAudio, TtsChunk, TtsInput, TtsTask,
};
use crate::telemetry;

/// Longest a closing handshake is waited for once the utterance is over.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Sends one text frame.
pub(super) async fn send_text(socket: &mut Socket, text: String) -> Result<(), ProviderError> {
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| ws::socket_error(PROVIDER, &e))
}

/// Drives one utterance to its end, then closes the socket.
pub(super) async fn run(socket: Socket, task: TtsTask, timeouts: Timeouts, key: Option<ApiKey>) {
    let mut utterance = Utterance {
        socket,
        input: task.input,
        chunks: task.chunks,
        timeouts,
        words: WordTimer::new(),
        bytes: 0,
        input_open: true,
        first_flush: None,
        owed_since: None,
        last_audio: None,
    };
    let ending = utterance.drive().await;
    let Utterance {
        mut socket, chunks, ..
    } = utterance;
    ws::finish(
        PROVIDER,
        "tts",
        ending,
        key.as_ref(),
        chunks,
        &mut socket,
        CLOSE_WAIT,
    )
    .await;
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
    /// When the first flush (or the end) was sent: the first-byte histogram's start.
    first_flush: Option<Instant>,
    /// The first flush (or the end) sent since the last audio: the server owes audio.
    owed_since: Option<Instant>,
    /// When audio last came.
    last_audio: Option<Instant>,
}

impl Utterance {
    async fn drive(&mut self) -> Ending {
        loop {
            let deadline = self.deadline();
            tokio::select! {
                biased;
                () = self.chunks.closed() => return Ending::Cancelled,
                () = sleep_until(deadline) => {
                    let (_, stage) = deadline.unwrap_or((Instant::now(), Stage::Idle));
                    return Ending::Failed(ProviderError::Timeout {
                        provider: PROVIDER,
                        stage,
                        after: self.timeouts.of(stage),
                    });
                }
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
            }
        }
    }

    /// When the utterance times out, and in which stage.
    fn deadline(&self) -> Option<(Instant, Stage)> {
        if let Some(flushed) = self.owed_since {
            return Some((flushed + self.timeouts.first_byte, Stage::FirstByte));
        }
        match self.last_audio {
            Some(heard) if !self.input_open => Some((heard + self.timeouts.idle, Stage::Idle)),
            _ => None,
        }
    }

    async fn on_input(&mut self, input: Option<TtsInput>) -> Result<(), Ending> {
        let text = match input {
            None => return Err(Ending::Cancelled),
            Some(TtsInput::Text(piece)) => match text_piece(&piece) {
                Some(text) => serde_json::to_string(&TextMessage::flushed(&text)),
                None => return Ok(()),
            },
            Some(TtsInput::End) => {
                self.input_open = false;
                serde_json::to_string(&TextMessage::end())
            }
        };
        let text =
            text.map_err(|e| Ending::Failed(ProviderError::protocol(PROVIDER, e.to_string())))?;
        let guard = self
            .timeouts
            .guard(PROVIDER, Stage::Idle, send_text(&mut self.socket, text));
        guard.await.map_err(Ending::Failed)?;
        let now = Instant::now();
        self.first_flush.get_or_insert(now);
        self.owed_since.get_or_insert(now);
        Ok(())
    }

    /// Handles one server frame; `Some` when the utterance is over.
    async fn on_message(
        &mut self,
        message: Option<Result<Message, tungstenite::Error>>,
    ) -> Option<Ending> {
        let text = match message {
            None => return Some(Ending::Failed(ProviderError::Closed { provider: PROVIDER })),
            Some(Err(error)) => return Some(Ending::Failed(ws::socket_error(PROVIDER, &error))),
            Some(Ok(Message::Text(text))) => text,
            // Before `isFinal` every close is an error, a normal one too: audio is missing.
            Some(Ok(Message::Close(frame))) => {
                return Some(Ending::Failed(ws::close_error(PROVIDER, frame.as_ref())));
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
                if self.last_audio.is_none()
                    && let Some(sent) = self.first_flush
                {
                    histogram!(telemetry::PROVIDER_FIRST_BYTE, "provider" => PROVIDER, "api" => "tts")
                        .record(now.duration_since(sent).as_secs_f64());
                }
                self.last_audio = Some(now);
                self.owed_since = None;
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
                    return Some(Ending::Cancelled);
                }
                is_final.then_some(Ending::Done)
            }
            Ok(ServerMessage::Final) => {
                // A word still open at the end comes with an empty chunk of its own.
                if let Some(word) = self.words.finish() {
                    let chunk = TtsChunk {
                        audio: TtsAudio::Mulaw8k(Vec::new().into()),
                        words: vec![word],
                    };
                    if !self.hand_on(chunk).await {
                        return Some(Ending::Cancelled);
                    }
                }
                Some(Ending::Done)
            }
            Ok(ServerMessage::Error { message }) => {
                Some(Ending::Failed(ProviderError::stream(PROVIDER, message)))
            }
            Err(MessageError::Malformed(why)) => {
                bad_message(why);
                None
            }
            Err(MessageError::BadAudio) => Some(Ending::Failed(ProviderError::protocol(
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
