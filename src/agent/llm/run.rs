//! The LLM agent: a hosted speech-to-text hears the caller, a chat model answers, a
//! text-to-speech says the answer while the model is still writing it.
//!
//! One task per call, driven by the seam's inputs, the STT stream, the reply in progress
//! (its chat stream, its TTS stream, its HTTP tools) and one timer. Nothing here awaits a
//! provider inline: connections open and requests start inside the streams the select loop
//! polls, so a slow provider never stops the agent from reading its inbox (the session
//! would take it for stalled) or from hearing a barge-in.
//!
//! A reply: the caller's words go into the context, the chat stream's text is cut into
//! speakable pieces ([`Speakable`]) fed to one TTS utterance, whose audio becomes one
//! agent turn (opened at its first audio, its text and word timings updated as they grow).
//! Tool calls run between chat rounds (`end_call`, `set_slot`, the profile's HTTP tools,
//! with a filler line while they run), then the model continues.
//!
//! Barge-in drops the chat stream and the TTS stream (each adapter cancels on the wire);
//! the STT stays open. When the session reports what the caller heard, the reply's text in
//! the context is cut to it.
//!
//! Failures: a chat or TTS failure before any of the reply was heard is retried once with
//! the project's backoff; otherwise (and for STT and tool failures) the profile's fallback
//! line is said by espeak-ng — offline, so it works when the TTS provider is what failed —
//! and counted; at `max_failures` the agent says goodbye and hangs up.
//!
//! Never: awaits a provider outside the select loop's streams, logs a key or a header, or
//! lets the context hold words the caller never heard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use metrics::counter;
use tracing::{info, warn};

use super::profile::Profile;
use super::speakable::Speakable;
use super::tools::{self, ToolOutcome};
use crate::agent::Agent;
use crate::agent::flow::{TemplateData, template};
use crate::agent::seam::{AgentIo, CallInfo, Command, Event, Input, Progress};
use crate::agent::turn::{TurnConfig, WordTime};
use crate::audio::g711;
use crate::audio::resample::Rate;
use crate::providers::api::{
    Chat, ChatEvent, ChatRequest, ChatStream, Message, ProviderError, Role, SpeechToText, SttEvent,
    SttStream, TextToSpeech, TtsAudio, TtsChunk, TtsInput, TtsStream,
};
use crate::retry::{Backoff, RetryPolicy};
use crate::telemetry;

/// How long after the end of the caller's turn the agent waits for the STT's final words
/// when it has none yet.
const FINAL_WAIT: Duration = Duration::from_millis(1_000);
/// Chat rounds one reply may take (tool calls, then the model goes on).
const MAX_ROUNDS: u32 = 4;
/// The longest system prompt, rendered, in bytes.
const MAX_SYSTEM_PROMPT: usize = 32 * 1024;
/// Retries of a reply that failed before any of it was heard.
const MAX_RETRIES: u32 = 1;

/// What one LLM agent profile runs with: its providers, built once at start and shared by
/// every call.
pub struct LlmSetup {
    /// The profile.
    pub profile: Arc<Profile>,
    /// Speech recognition.
    pub stt: Arc<dyn SpeechToText>,
    /// The chat model (with the profile's model chosen).
    pub chat: Arc<dyn Chat>,
    /// The profile's voice.
    pub tts: Arc<dyn TextToSpeech>,
    /// espeak-ng, for fallback lines.
    pub offline: Arc<dyn TextToSpeech>,
    /// The HTTP client of the profile's tools.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for LlmSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSetup")
            .field("profile", &self.profile.name)
            .field("stt", &self.stt.name())
            .field("chat", &self.chat.name())
            .field("tts", &self.tts.name())
            .finish_non_exhaustive()
    }
}

/// The LLM agent of one call.
pub struct LlmAgent {
    setup: Arc<LlmSetup>,
}

impl LlmAgent {
    /// An agent running `setup`'s profile.
    pub fn new(setup: Arc<LlmSetup>) -> Self {
        Self { setup }
    }
}

/// A provider stream that may still be connecting.
enum Slot<T> {
    Empty,
    Opening(BoxFuture<'static, Result<T, ProviderError>>),
    Ready(T),
}

/// What the STT slot yields.
enum Heard {
    Opened(Result<SttStream, ProviderError>),
    Event(Option<Result<SttEvent, ProviderError>>),
}

async fn next_heard(slot: &mut Slot<SttStream>) -> Heard {
    match slot {
        Slot::Empty => std::future::pending().await,
        Slot::Opening(opening) => Heard::Opened(opening.await),
        Slot::Ready(stream) => Heard::Event(stream.next().await),
    }
}

/// Where a reply's words come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The chat model, answering the caller.
    Model,
    /// A fixed line (first message, fallback, goodbye) by the profile's voice.
    Line,
    /// A fixed line by espeak-ng.
    Offline,
}

/// A reply in progress: one agent turn.
struct Reply {
    source: Source,
    /// The agent turn it is (numbered when made, opened at its first audio).
    turn: u64,
    opened: bool,
    decided: Instant,
    /// When the model was first asked for this reply.
    asked: Option<Instant>,
    first_token: Option<Instant>,
    chat: Option<ChatStream>,
    tts: Slot<TtsStream>,
    /// Inputs for the TTS while it connects.
    queued: Vec<TtsInput>,
    splitter: Speakable,
    /// Everything sent to the TTS: the turn's text.
    text: String,
    /// This chat round's text and tool calls, for the context.
    round_text: String,
    calls: Vec<crate::providers::api::ToolCall>,
    tools: Option<BoxFuture<'static, Vec<ToolOutcome>>>,
    /// The ids of the tool calls `tools` is running.
    pending_calls: Vec<String>,
    rounds: u32,
    words: Vec<WordTime>,
    word_cursor: usize,
    /// How much of `text` the session was told.
    text_told: usize,
    audio_ms: u64,
    hang_up: bool,
    attempt: u32,
}

impl Reply {
    fn new(source: Source, turn: u64, tts: &Arc<dyn TextToSpeech>) -> Self {
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
    fn send(&mut self, input: TtsInput) -> Result<(), ProviderError> {
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

    fn heard_any(&self) -> bool {
        self.audio_ms > 0
    }
}

/// What the reply yields next.
enum Step {
    TtsOpened(Result<TtsStream, ProviderError>),
    Audio(Option<Result<TtsChunk, ProviderError>>),
    Chat(Option<Result<ChatEvent, ProviderError>>),
    Tools(Vec<ToolOutcome>),
}

async fn next_step(reply: &mut Option<Reply>) -> Step {
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

/// One call's state.
struct Call {
    setup: Arc<LlmSetup>,
    info: CallInfo,
    slots: BTreeMap<String, String>,
    messages: Vec<Message>,
    /// The agent turn each context entry belongs to, beside `messages`.
    owners: Vec<Option<u64>>,
    stt: Slot<SttStream>,
    /// The caller's final words since the agent last answered.
    heard: String,
    /// The caller's turn ended and the STT was asked for its last words: answer when they
    /// come, or at this deadline.
    awaiting_final: Option<Instant>,
    /// The caller's turn ended with no words heard: a final that comes later is answered.
    unanswered: bool,
    /// When to reopen the STT after it failed.
    stt_reopen_at: Option<Instant>,
    stt_backoff: Backoff,
    /// The caller's turn ended while the agent was speaking: answer after.
    answer_after: bool,
    reply: Option<Reply>,
    retry: Option<(Instant, Source)>,
    /// When the model was first asked to answer the caller's latest turn.
    asked: Option<Instant>,
    backoff: Backoff,
    failures: u32,
    /// A fallback line (and whether it is the goodbye) waiting for the reply being said.
    pending_line: Option<(String, bool)>,
    ending: bool,
}

impl Call {
    fn render(&self, source: &str) -> String {
        self.render_up_to(source, template::MAX_RENDERED_BYTES)
    }

    fn render_up_to(&self, source: &str, max_bytes: usize) -> String {
        let metadata = self.info.metadata.as_object().cloned().unwrap_or_default();
        let data = TemplateData {
            from: &self.info.from,
            to: &self.info.to,
            direction: self.info.direction.as_str(),
            campaign: self.info.campaign.as_deref(),
            metadata: &metadata,
            slots: &self.slots,
        };
        template::render_up_to(source, &data, max_bytes).unwrap_or_else(|e| {
            warn!(error = %e, "a profile template failed to render");
            String::new()
        })
    }

    fn request(&self) -> ChatRequest {
        let profile = &self.setup.profile;
        ChatRequest {
            messages: self.messages.clone(),
            tools: tools::offered(profile),
            temperature: profile.temperature,
            max_tokens: profile.max_tokens,
        }
    }

    fn push_message(&mut self, message: Message, owner: Option<u64>) {
        self.messages.push(message);
        self.owners.push(owner);
    }

    /// A reply saying `text` whole: by the profile's voice, or by espeak-ng.
    fn line(&self, source: Source, turn: u64, text: &str) -> Reply {
        let tts = match source {
            Source::Offline => &self.setup.offline,
            _ => &self.setup.tts,
        };
        let mut reply = Reply::new(source, turn, tts);
        // Cannot fail: the TTS is still connecting, so both are queued.
        let _ = reply.send(TtsInput::Text(text.to_owned()));
        let _ = reply.send(TtsInput::End);
        reply
    }

    /// A reply from the model to the context as it stands.
    fn answer(&self, turn: u64) -> Reply {
        let mut reply = Reply::new(Source::Model, turn, &self.setup.tts);
        // A retry keeps the first ask: the failed attempt was the providers' time too.
        reply.asked = self.asked.or_else(|| Some(Instant::now()));
        reply.chat = Some(open_chat(Arc::clone(&self.setup.chat), self.request()));
        reply
    }
}

/// A chat stream that connects when first polled (so the agent never awaits it inline).
fn open_chat(chat: Arc<dyn Chat>, request: ChatRequest) -> ChatStream {
    futures_util::stream::once(async move { chat.stream(request).await })
        .flat_map(|opened| match opened {
            Ok(stream) => stream,
            Err(error) => futures_util::stream::once(async move { Err(error) }).boxed(),
        })
        .boxed()
}

#[async_trait::async_trait]
impl Agent for LlmAgent {
    fn caller_audio_rate(&self) -> Option<Rate> {
        Some(self.setup.stt.audio().rate())
    }

    async fn run(self: Box<Self>, mut io: AgentIo) {
        let info = loop {
            match io.next().await {
                Some(Input::Event(Event::Started(info))) => break info,
                Some(_) => continue,
                None => return,
            }
        };
        let setup = self.setup;
        let stt = Arc::clone(&setup.stt);
        let mut call = Call {
            info,
            slots: BTreeMap::new(),
            messages: Vec::new(),
            owners: Vec::new(),
            stt: Slot::Opening(async move { stt.open().await }.boxed()),
            heard: String::new(),
            awaiting_final: None,
            unanswered: false,
            stt_reopen_at: None,
            stt_backoff: Backoff::new(stt_retry_policy()),
            answer_after: false,
            reply: None,
            retry: None,
            asked: None,
            backoff: Backoff::new(retry_policy()),
            failures: 0,
            pending_line: None,
            ending: false,
            setup,
        };
        let system = call.render_up_to(&call.setup.profile.system_prompt, MAX_SYSTEM_PROMPT);
        call.push_message(Message::new(Role::System, system), None);
        let turn_taking = TurnConfig {
            interruption: call.setup.profile.interruption,
            ..TurnConfig::default()
        };
        if io.send(Command::TurnTaking(turn_taking)).await.is_err() {
            return;
        }
        if let Some(first) = call.setup.profile.first_message.clone() {
            let text = call.render(&first);
            let turn = io.next_turn();
            call.push_message(Message::new(Role::Assistant, text.clone()), Some(turn));
            call.reply = Some(call.line(Source::Line, turn, &text));
        }
        loop {
            let timer = call.next_timer();
            let outcome = tokio::select! {
                input = io.next() => match input {
                    None | Some(Input::Event(Event::Ending)) => break,
                    Some(input) => call.on_input(&mut io, input).await,
                },
                heard = next_heard(&mut call.stt) => call.on_heard(&mut io, heard).await,
                step = next_step(&mut call.reply) => call.on_step(&mut io, step).await,
                () = sleep_until(timer) => call.on_timer(&mut io).await,
            };
            if outcome.is_err() {
                break;
            }
        }
        // The call is over: say so to the STT (a last final is nobody's to read).
        if let Slot::Ready(stt) = &call.stt {
            stt.close();
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// A reply's retry: soon, or not at all (a caller waiting in silence is worse than the
/// fallback line; a `Retry-After` beyond 1.5 s gives up).
fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(1),
        max_retry_after: Some(Duration::from_millis(1_500)),
        ..RetryPolicy::default()
    }
    .with_retries(MAX_RETRIES)
}

/// Reopening a failed STT: 0.5 s, 1 s, 2 s apart (jittered), then the outage counts again.
fn stt_retry_policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(2),
        ..RetryPolicy::default()
    }
    .with_retries(3)
}

type Done = Result<(), crate::agent::seam::SessionGone>;

impl Call {
    fn next_timer(&self) -> Option<Instant> {
        [
            self.awaiting_final,
            self.retry.map(|(at, _)| at),
            self.stt_reopen_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn on_timer(&mut self, io: &mut AgentIo) -> Done {
        let now = Instant::now();
        if self.awaiting_final.is_some_and(|at| at <= now) {
            // No answer to the Finalize in time: answer what was heard; with nothing
            // heard, a final that comes later still gets its answer.
            self.awaiting_final = None;
            if self.heard.trim().is_empty() {
                self.unanswered = true;
            } else {
                self.answer_now(io).await?;
            }
        }
        if self.stt_reopen_at.is_some_and(|at| at <= now) {
            self.stt_reopen_at = None;
            if !self.ending {
                let stt = Arc::clone(&self.setup.stt);
                self.stt = Slot::Opening(async move { stt.open().await }.boxed());
            }
        }
        if let Some((at, source)) = self.retry
            && at <= now
        {
            self.retry = None;
            if source == Source::Model && !self.ending {
                if self.reply.is_some() {
                    // A line is being said (a fallback that was waiting): answer after it.
                    self.answer_after = true;
                } else {
                    let mut reply = self.answer(io.next_turn());
                    reply.attempt = 1;
                    self.reply = Some(reply);
                }
            }
        }
        Ok(())
    }

    async fn on_input(&mut self, io: &mut AgentIo, input: Input) -> Done {
        match input {
            Input::Audio(frame) => {
                if let Slot::Ready(stt) = &self.stt
                    && !stt.push(frame.samples())
                {
                    counter!(telemetry::FRAMES_DROPPED, "stage" => "stt").increment(1);
                }
                Ok(())
            }
            Input::Event(event) => self.on_event(io, event).await,
        }
    }

    async fn on_event(&mut self, io: &mut AgentIo, event: Event) -> Done {
        match event {
            Event::EndOfTurn { .. } => {
                // The caller's last words may still be in the STT: ask for them, and answer
                // when they come (or at FINAL_WAIT with what was heard).
                if let Slot::Ready(stt) = &self.stt
                    && stt.finalize()
                {
                    self.awaiting_final = Some(Instant::now() + FINAL_WAIT);
                    return Ok(());
                }
                if self.heard.trim().is_empty() {
                    self.unanswered = true;
                    return Ok(());
                }
                self.answer_now(io).await
            }
            Event::BargeIn { .. } => {
                // The reply being heard stops. One not yet heard (a line that was waiting,
                // a model still thinking) is left: the caller's turn decides about it.
                if self.reply.as_ref().is_some_and(|r| r.opened) {
                    self.cancel_reply(io).await?;
                }
                self.retry = None;
                Ok(())
            }
            Event::Playout(Progress::Cut {
                turn, heard_text, ..
            }) => {
                // The cut may come before the barge-in itself: stop the reply first, so
                // what it wrote is in the context to be cut.
                if self.reply.as_ref().is_some_and(|r| r.turn == turn) {
                    self.cancel_reply(io).await?;
                }
                self.cut_to_heard(turn, &heard_text);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The caller's words so far go into the context and the model answers them.
    async fn answer_now(&mut self, io: &mut AgentIo) -> Done {
        self.awaiting_final = None;
        self.unanswered = false;
        self.retry = None;
        if self.ending || self.heard.trim().is_empty() {
            return Ok(());
        }
        if let Some(reply) = &self.reply {
            if reply.source == Source::Model && !reply.heard_any() {
                // The caller said more before the answer started: answer it all.
                self.cancel_reply(io).await?;
            } else {
                self.answer_after = true;
                return Ok(());
            }
        }
        let words = std::mem::take(&mut self.heard);
        match self.messages.last_mut() {
            Some(last) if last.role == Role::User => {
                last.content.push(' ');
                last.content.push_str(words.trim());
            }
            _ => self.push_message(Message::new(Role::User, words.trim().to_owned()), None),
        }
        self.answer_after = false;
        self.backoff = Backoff::new(retry_policy());
        self.asked = Some(Instant::now());
        self.reply = Some(self.answer(io.next_turn()));
        Ok(())
    }

    async fn on_heard(&mut self, io: &mut AgentIo, heard: Heard) -> Done {
        match heard {
            Heard::Opened(Ok(stream)) => {
                self.stt = Slot::Ready(stream);
                self.stt_backoff = Backoff::new(stt_retry_policy());
                Ok(())
            }
            Heard::Opened(Err(error)) | Heard::Event(Some(Err(error))) => {
                self.stt_failed(io, &error).await
            }
            // The stream ended without an error while the call goes on: as deaf as a
            // failure.
            Heard::Event(None) => {
                let error = ProviderError::Closed {
                    provider: self.setup.stt.name(),
                };
                self.stt_failed(io, &error).await
            }
            Heard::Event(Some(Ok(event))) => self.on_stt(io, event).await,
        }
    }

    /// The STT failed (or ended): counted once per outage, reopened with backoff.
    async fn stt_failed(&mut self, io: &mut AgentIo, error: &ProviderError) -> Done {
        let was_working = matches!(self.stt, Slot::Ready(_));
        self.stt = Slot::Empty;
        // The first failure of an outage costs a fallback line; retries while it lasts
        // cost only a timer, until they give up.
        let delay = self.stt_backoff.next_delay(None);
        if was_working || delay.is_none() || !error.retriable() {
            self.stt_backoff = Backoff::new(stt_retry_policy());
            self.failed(io, "stt", error).await?;
        } else {
            warn!(%error, "speech recognition still unavailable: retrying");
        }
        if !self.ending {
            let delay = delay.unwrap_or(Duration::from_millis(500));
            self.stt_reopen_at = Some(Instant::now() + delay);
        }
        Ok(())
    }

    async fn on_stt(&mut self, io: &mut AgentIo, event: SttEvent) -> Done {
        let SttEvent::Transcript {
            text,
            is_final,
            from_finalize,
            ..
        } = event
        else {
            return Ok(());
        };
        let text = text.trim();
        if !text.is_empty() {
            if is_final {
                if !self.heard.is_empty() {
                    self.heard.push(' ');
                }
                self.heard.push_str(text);
            }
            io.send(Command::CallerText {
                text: text.to_owned(),
                is_final,
                at: Instant::now(),
            })
            .await?;
        }
        let answers_finalize = from_finalize && self.awaiting_final.is_some();
        // A final after the wait for it gave up still gets its answer.
        let late = is_final && self.unanswered && self.reply.is_none();
        if answers_finalize || late {
            return self.answer_now(io).await;
        }
        Ok(())
    }

    async fn on_step(&mut self, io: &mut AgentIo, step: Step) -> Done {
        match step {
            Step::TtsOpened(Ok(stream)) => {
                let Some(reply) = &mut self.reply else {
                    return Ok(());
                };
                let mut failed = None;
                for input in reply.queued.drain(..) {
                    if let Err(error) = stream.try_send(input) {
                        failed = Some(error);
                        break;
                    }
                }
                reply.tts = Slot::Ready(stream);
                match failed {
                    Some(error) => self.reply_failed(io, "tts", error).await,
                    None => Ok(()),
                }
            }
            Step::TtsOpened(Err(error)) | Step::Audio(Some(Err(error))) => {
                self.reply_failed(io, "tts", error).await
            }
            Step::Audio(Some(Ok(chunk))) => self.on_audio(io, chunk).await,
            Step::Audio(None) => self.reply_done(io).await,
            Step::Chat(Some(Ok(event))) => self.on_chat(io, event).await,
            Step::Chat(Some(Err(error))) => self.reply_failed(io, "chat", error).await,
            // A stream that ends without `Done` was cut short.
            Step::Chat(None) => {
                let error = ProviderError::Closed {
                    provider: self.setup.chat.name(),
                };
                self.reply_failed(io, "chat", error).await
            }
            Step::Tools(outcomes) => self.on_tools(io, outcomes).await,
        }
    }

    async fn on_audio(&mut self, io: &mut AgentIo, chunk: TtsChunk) -> Done {
        let Some(reply) = &mut self.reply else {
            return Ok(());
        };
        let (rate, samples): (Rate, Arc<[i16]>) = match &chunk.audio {
            TtsAudio::Pcm { rate, samples } => (*rate, Arc::clone(samples)),
            // µ-law widened to the PCM the session takes; the session's µ-law encoding
            // gives the provider's bytes back (0x7f, µ-law's "negative zero", as 0xff).
            TtsAudio::Mulaw8k(bytes) => (
                Rate::Hz8000,
                bytes.iter().map(|&b| g711::ulaw_to_pcm(b)).collect(),
            ),
        };
        let turn = reply.turn;
        if !reply.opened {
            reply.opened = true;
            reply.text_told = reply.text.len();
            io.send(Command::OpenTurn {
                turn,
                text: reply.text.clone(),
                decided: reply.first_token.unwrap_or(reply.decided),
                asked: reply.asked,
            })
            .await?;
        }
        if reply.text_told != reply.text.len() {
            // The answer grew since the session last heard of it.
            reply.text_told = reply.text.len();
            io.send(Command::TurnText {
                turn,
                text: reply.text.clone(),
            })
            .await?;
        }
        if !chunk.words.is_empty() {
            for word in &chunk.words {
                let Some(found) = reply.text[reply.word_cursor..].find(word.text.trim()) else {
                    continue;
                };
                let byte_offset = reply.word_cursor + found;
                reply.word_cursor = byte_offset + word.text.trim().len();
                reply.words.push(WordTime {
                    byte_offset,
                    len: word.text.trim().len(),
                    start_ms: word.start_ms,
                });
            }
            io.send(Command::Words {
                turn,
                words: reply.words.clone(),
            })
            .await?;
        }
        reply.audio_ms += chunk.audio.duration_ms();
        io.send(Command::Audio {
            turn,
            rate,
            samples,
        })
        .await
    }

    async fn on_chat(&mut self, io: &mut AgentIo, event: ChatEvent) -> Done {
        let Some(reply) = &mut self.reply else {
            return Ok(());
        };
        reply.first_token.get_or_insert_with(Instant::now);
        let result = match event {
            ChatEvent::Text(text) => {
                reply.round_text.push_str(&text);
                let pieces = reply.splitter.push(&text);
                pieces
                    .into_iter()
                    .try_for_each(|piece| reply.send(TtsInput::Text(piece)))
            }
            ChatEvent::ToolCall(call) => {
                reply.calls.push(call);
                Ok(())
            }
            ChatEvent::Done(_) => return self.round_done(io).await,
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) => self.reply_failed(io, "tts", error).await,
        }
    }

    /// The model finished a round: its text and tool calls go into the context; tools run.
    async fn round_done(&mut self, io: &mut AgentIo) -> Done {
        let Some(reply) = &mut self.reply else {
            return Ok(());
        };
        reply.chat = None;
        let calls = std::mem::take(&mut reply.calls);
        let text = std::mem::take(&mut reply.round_text);
        let turn = reply.turn;
        if !text.trim().is_empty() || !calls.is_empty() {
            let message = Message {
                role: Role::Assistant,
                content: text.trim().to_owned(),
                tool_calls: calls.clone(),
                tool_call_id: None,
            };
            self.push_message(message, Some(turn));
        }
        let Some(reply) = &mut self.reply else {
            return Ok(());
        };
        if calls.is_empty() {
            return self.finish_text(io).await;
        }
        // What the model said before its tool calls is said now, not after the tools.
        if let Some(rest) = reply.splitter.finish()
            && let Err(error) = reply.send(TtsInput::Text(rest))
        {
            return self.reply_failed(io, "tts", error).await;
        }
        let last_round = reply.rounds + 1 >= MAX_ROUNDS;
        reply.rounds += 1;
        let profile = Arc::clone(&self.setup.profile);
        let mut run = tools::Run::default();
        for call in calls {
            match tools::built_in(&call) {
                Some(Ok(tools::BuiltIn::EndCall)) => {
                    reply.hang_up = true;
                    run.done(&call, "The call will end after your last words.".into());
                }
                Some(Ok(tools::BuiltIn::SetSlot { name, value })) => {
                    self.slots.insert(name.clone(), value.clone());
                    io.send(Command::SetSlot { name, value }).await?;
                    run.done(&call, "Saved.".into());
                }
                Some(Err(reason)) => run.done(&call, reason),
                // Every call gets its result (the model's API refuses a call without one).
                None if last_round => run.done(&call, "Not run: too many tool rounds.".into()),
                None => run.http(&profile, &self.setup.http, call),
            }
        }
        reply.pending_calls = run.pending_ids();
        let (finished, pending, filler) = run.split();
        for outcome in finished {
            self.push_message(Message::tool_result(outcome.call_id, outcome.content), None);
        }
        let filler = filler.map(|f| self.render(&f));
        let next_round = (pending.is_none()).then(|| self.request());
        let Some(reply) = &mut self.reply else {
            return Ok(());
        };
        if let Some(pending) = pending {
            if let Some(filler) = filler.filter(|_| reply.text.is_empty())
                && let Err(error) = reply.send(TtsInput::Text(filler))
            {
                return self.reply_failed(io, "tts", error).await;
            }
            reply.tools = Some(pending);
            return Ok(());
        }
        if reply.hang_up || last_round {
            return self.finish_text(io).await;
        }
        if let Some(request) = next_round {
            reply.chat = Some(open_chat(Arc::clone(&self.setup.chat), request));
        }
        Ok(())
    }

    async fn on_tools(&mut self, io: &mut AgentIo, outcomes: Vec<ToolOutcome>) -> Done {
        for outcome in outcomes {
            if outcome.failed {
                counter!(telemetry::AGENT_PROVIDER_FAILURES, "api" => "tool", "outcome" => "reported")
                    .increment(1);
                io.send(Command::ProviderFailed {
                    api: "tool",
                    provider: "http",
                    kind: "tool",
                    outcome: "reported",
                    message: outcome.note.clone(),
                })
                .await?;
            }
            self.push_message(Message::tool_result(outcome.call_id, outcome.content), None);
        }
        let request = self.request();
        let Some(reply) = &mut self.reply else {
            return Ok(());
        };
        reply.tools = None;
        reply.pending_calls.clear();
        if reply.hang_up {
            return self.finish_text(io).await;
        }
        reply.chat = Some(open_chat(Arc::clone(&self.setup.chat), request));
        Ok(())
    }

    /// No more text for this reply: say the rest (a goodbye when hanging up silently).
    async fn finish_text(&mut self, io: &mut AgentIo) -> Done {
        let goodbye = self.render(&self.setup.profile.goodbye.clone());
        let Some(reply) = &mut self.reply else {
            return Ok(());
        };
        reply.chat = None;
        let mut result = match reply.splitter.finish() {
            Some(rest) => reply.send(TtsInput::Text(rest)),
            None => Ok(()),
        };
        if result.is_ok() && reply.hang_up && reply.text.trim().is_empty() {
            result = reply.send(TtsInput::Text(goodbye));
        }
        if result.is_ok() {
            result = reply.send(TtsInput::End);
        }
        match result {
            Ok(()) => Ok(()),
            Err(error) => self.reply_failed(io, "tts", error).await,
        }
    }

    /// The reply's audio is complete.
    async fn reply_done(&mut self, io: &mut AgentIo) -> Done {
        let Some(reply) = self.reply.take() else {
            return Ok(());
        };
        if reply.opened {
            io.send(Command::CloseTurn { turn: reply.turn }).await?;
        }
        if reply.hang_up {
            self.ending = true;
            return io
                .send(Command::HangUp {
                    reason: "the agent ended the call".into(),
                })
                .await;
        }
        if let Some((text, hang_up)) = self.pending_line.take() {
            self.say_offline(io, text, hang_up);
            return Ok(());
        }
        if std::mem::take(&mut self.answer_after) && !self.heard.trim().is_empty() {
            return self.answer_now(io).await;
        }
        Ok(())
    }

    /// Barge-in: drop the reply (each provider cancels on the wire); the STT stays open.
    async fn cancel_reply(&mut self, io: &mut AgentIo) -> Done {
        let Some(reply) = self.reply.take() else {
            return Ok(());
        };
        // Tool calls in flight are answered, or the model's API refuses the next request.
        for id in &reply.pending_calls {
            self.push_message(
                Message::tool_result(id, "Not run: the caller interrupted."),
                None,
            );
        }
        if reply.opened && !reply.round_text.trim().is_empty() {
            // Cut short mid-round: keep what was written; the cut trims it to what was heard.
            // A reply never heard leaves nothing.
            let message = Message::new(Role::Assistant, reply.round_text.trim());
            self.push_message(message, Some(reply.turn));
        }
        if !reply.opened {
            // Words the caller never heard leave the context (tool calls stay).
            self.cut_to_heard(reply.turn, "");
        }
        if reply.opened {
            io.send(Command::CloseTurn { turn: reply.turn }).await?;
        }
        if reply.hang_up {
            self.ending = true;
            return io
                .send(Command::HangUp {
                    reason: "the agent ended the call".into(),
                })
                .await;
        }
        // A line that was waiting for this reply is not dropped with it.
        if let Some((text, hang_up)) = self.pending_line.take() {
            self.say_offline(io, text, hang_up);
        }
        Ok(())
    }

    /// The caller heard `heard` of `turn`: the context keeps only that (the turn's first
    /// words of the agent become the heard text, its later ones go; tool calls stay).
    fn cut_to_heard(&mut self, turn: u64, heard: &str) {
        let mut first = true;
        for (message, owner) in self.messages.iter_mut().zip(&self.owners) {
            if *owner == Some(turn) && message.role == Role::Assistant {
                message.content = if first {
                    heard.trim().to_owned()
                } else {
                    String::new()
                };
                first = false;
            }
        }
        // An assistant entry with neither words nor tool calls says nothing: drop it.
        let keep: Vec<bool> = self
            .messages
            .iter()
            .map(|m| {
                !(m.role == Role::Assistant && m.content.is_empty() && m.tool_calls.is_empty())
            })
            .collect();
        let mut flags = keep.iter();
        self.messages.retain(|_| *flags.next().unwrap_or(&true));
        let mut flags = keep.iter();
        self.owners.retain(|_| *flags.next().unwrap_or(&true));
    }

    /// A chat or TTS failure of the reply in progress.
    async fn reply_failed(
        &mut self,
        io: &mut AgentIo,
        api: &'static str,
        error: ProviderError,
    ) -> Done {
        let Some(reply) = &self.reply else {
            return Ok(());
        };
        let source = reply.source;
        if source == Source::Offline {
            // espeak-ng failed saying a fallback line: nothing else can speak.
            warn!(%error, "the offline voice failed: hanging up");
            self.reply = None;
            self.ending = true;
            return io
                .send(Command::HangUp {
                    reason: "no voice left to speak with".into(),
                })
                .await;
        }
        if source == Source::Model
            && !reply.heard_any()
            && reply.attempt < MAX_RETRIES
            && error.retriable()
            && let Some(delay) = self.backoff.next_delay(retry_after(&error))
        {
            warn!(api, %error, ?delay, "provider failed before the caller heard anything: retrying");
            counter!(telemetry::AGENT_PROVIDER_FAILURES, "api" => api, "outcome" => "retried")
                .increment(1);
            io.send(failure(api, &error, "retried")).await?;
            self.cancel_reply(io).await?;
            self.retry = Some((Instant::now() + delay, Source::Model));
            return Ok(());
        }
        self.cancel_reply(io).await?;
        self.failed(io, api, &error).await
    }

    /// A provider failed mid-call: the fallback line, or goodbye after `max_failures`.
    async fn failed(&mut self, io: &mut AgentIo, api: &'static str, error: &ProviderError) -> Done {
        self.failures += 1;
        let profile = Arc::clone(&self.setup.profile);
        let last = self.failures >= profile.max_failures;
        let outcome = if last { "goodbye" } else { "fallback" };
        counter!(telemetry::AGENT_PROVIDER_FAILURES, "api" => api, "outcome" => outcome)
            .increment(1);
        warn!(api, provider = error.provider(), kind = error.kind(), %error, failures = self.failures, outcome, "provider failed mid-call");
        io.send(failure(api, error, outcome)).await?;
        if self.ending {
            return Ok(());
        }
        let text = if last {
            self.render(&profile.goodbye)
        } else {
            self.render(&profile.fallback_line)
        };
        if last {
            info!("too many provider failures: saying goodbye");
            self.ending = true;
        }
        let saying_fallback = self
            .reply
            .as_ref()
            .is_some_and(|r| r.source == Source::Offline);
        if !last && (self.pending_line.is_some() || saying_fallback) {
            // The caller is already hearing (or about to hear) the fallback line.
            return Ok(());
        }
        if self.reply.is_some() {
            // What is being said is not what failed (the STT, say): the line follows it.
            self.pending_line = Some((text, last));
            return Ok(());
        }
        self.say_offline(io, text, last);
        Ok(())
    }

    /// Says `text` with espeak-ng (then hangs up, if `hang_up`).
    fn say_offline(&mut self, io: &mut AgentIo, text: String, hang_up: bool) {
        let mut reply = self.line(Source::Offline, io.next_turn(), &text);
        reply.hang_up = hang_up;
        self.reply = Some(reply);
    }
}

/// The call record's note of a provider failure.
fn failure(api: &'static str, error: &ProviderError, outcome: &'static str) -> Command {
    Command::ProviderFailed {
        api,
        provider: error.provider(),
        kind: error.kind(),
        outcome,
        message: error.to_string(),
    }
}

fn retry_after(error: &ProviderError) -> Option<Duration> {
    match error {
        ProviderError::Status { retry_after, .. } => *retry_after,
        _ => None,
    }
}
