//! One reply in progress — one agent turn — and the futures the call's select loop polls
//! over it and over the STT: a provider stream that may still be connecting ([`Slot`]),
//! the reply's TTS utterance, chat stream and running tools ([`next_step`]).
//!
//! Never: awaits anything outside those futures (each is cancel-safe: dropped by the
//! select loop, it loses nothing).

use super::*;
use crate::agent::llm::speakable::Speakable;
use crate::agent::llm::tools::ToolOutcome;
use crate::agent::turn::WordTime;
use crate::providers::api::TtsChunk;
use crate::providers::api::{
    Chat, ChatEvent, ChatRequest, ChatStream, SttEvent, SttStream, TtsInput, TtsStream,
};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

/// A provider stream that may still be connecting.
pub(super) enum Slot<T> {
    Empty,
    Opening(BoxFuture<'static, Result<T, ProviderError>>),
    Ready(T),
}

/// What the STT slot yields.
pub(super) enum Heard {
    Opened(Result<SttStream, ProviderError>),
    Event(Option<Result<SttEvent, ProviderError>>),
}

pub(super) async fn next_heard(slot: &mut Slot<SttStream>) -> Heard {
    match slot {
        Slot::Empty => std::future::pending().await,
        Slot::Opening(opening) => Heard::Opened(opening.await),
        Slot::Ready(stream) => Heard::Event(stream.next().await),
    }
}

/// Where a reply's words come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The chat model, answering the caller.
    Model,
    /// A fixed line (first message, fallback, goodbye) by the profile's voice.
    Line,
    /// A fixed line by espeak-ng.
    Offline,
}

/// A reply in progress: one agent turn.
pub(super) struct Reply {
    pub(super) source: Source,
    /// The agent turn it is (numbered when made, opened at its first audio).
    pub(super) turn: u64,
    pub(super) opened: bool,
    pub(super) decided: Instant,
    /// When the model was first asked for this reply.
    pub(super) asked: Option<Instant>,
    pub(super) first_token: Option<Instant>,
    pub(super) chat: Option<ChatStream>,
    pub(super) tts: Slot<TtsStream>,
    /// Inputs for the TTS while it connects.
    pub(super) queued: Vec<TtsInput>,
    pub(super) splitter: Speakable,
    /// Everything sent to the TTS: the turn's text.
    pub(super) text: String,
    /// This chat round's text and tool calls, for the context.
    pub(super) round_text: String,
    pub(super) calls: Vec<crate::providers::api::ToolCall>,
    pub(super) tools: Option<BoxFuture<'static, Vec<ToolOutcome>>>,
    /// The ids of the tool calls `tools` is running.
    pub(super) pending_calls: Vec<String>,
    pub(super) rounds: u32,
    pub(super) words: Vec<WordTime>,
    pub(super) word_cursor: usize,
    /// How much of `text` the session was told.
    pub(super) text_told: usize,
    pub(super) audio_ms: u64,
    pub(super) hang_up: bool,
    pub(super) attempt: u32,
}

impl Reply {
    pub(super) fn new(source: Source, turn: u64, tts: &Arc<dyn TextToSpeech>) -> Self {
        let tts = Arc::clone(tts);
        Self {
            source,
            turn,
            opened: false,
            decided: Instant::now(),
            asked: None,
            first_token: None,
            chat: None,
            tts: Slot::Opening(async move { tts.open().await }.boxed()),
            queued: Vec::new(),
            splitter: Speakable::new(),
            text: String::new(),
            round_text: String::new(),
            calls: Vec::new(),
            tools: None,
            pending_calls: Vec::new(),
            rounds: 0,
            words: Vec::new(),
            word_cursor: 0,
            text_told: 0,
            audio_ms: 0,
            hang_up: false,
            attempt: 0,
        }
    }

    /// Hands `input` to the TTS (queued while it connects). A full TTS inbox is a failure.
    pub(super) fn send(&mut self, input: TtsInput) -> Result<(), ProviderError> {
        if let TtsInput::Text(text) = &input {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            self.text.push_str(text.trim());
        }
        match &self.tts {
            Slot::Ready(stream) => stream.try_send(input),
            _ => {
                self.queued.push(input);
                Ok(())
            }
        }
    }

    pub(super) fn heard_any(&self) -> bool {
        self.audio_ms > 0
    }
}

/// What the reply yields next.
pub(super) enum Step {
    TtsOpened(Result<TtsStream, ProviderError>),
    Audio(Option<Result<TtsChunk, ProviderError>>),
    Chat(Option<Result<ChatEvent, ProviderError>>),
    Tools(Vec<ToolOutcome>),
}

pub(super) async fn next_step(reply: &mut Option<Reply>) -> Step {
    let Some(reply) = reply else {
        return std::future::pending().await;
    };
    let tts = async {
        match &mut reply.tts {
            Slot::Empty => std::future::pending().await,
            Slot::Opening(opening) => Step::TtsOpened(opening.await),
            Slot::Ready(stream) => Step::Audio(stream.next().await),
        }
    };
    let chat = async {
        match &mut reply.chat {
            Some(chat) => Step::Chat(chat.next().await),
            None => std::future::pending().await,
        }
    };
    let tools = async {
        match &mut reply.tools {
            Some(tools) => Step::Tools(tools.await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        step = tts => step,
        step = chat => step,
        step = tools => step,
    }
}

/// A chat stream that connects when first polled (so the agent never awaits it inline).
pub(super) fn open_chat(chat: Arc<dyn Chat>, request: ChatRequest) -> ChatStream {
    futures_util::stream::once(async move { chat.stream(request).await })
        .flat_map(|opened| match opened {
            Ok(stream) => stream,
            Err(error) => futures_util::stream::once(async move { Err(error) }).boxed(),
        })
        .boxed()
}
