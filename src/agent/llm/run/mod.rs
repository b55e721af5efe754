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
//! speakable pieces ([`Speakable`](super::speakable::Speakable)) fed to one TTS utterance, whose audio becomes one
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

mod failures;
mod reply;
mod speaking;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use metrics::counter;
use tracing::warn;

use super::profile::Profile;
use super::tools;
use crate::agent::Agent;
use crate::agent::flow::{TemplateData, template};
use crate::agent::seam::{AgentIo, CallInfo, Command, Event, Input, Progress};
use crate::agent::turn::TurnConfig;
use crate::audio::resample::Rate;
use crate::providers::api::{
    Chat, ChatRequest, Message, ProviderError, Role, SpeechToText, SttEvent, SttStream,
    TextToSpeech, TtsInput,
};
use crate::retry::Backoff;
use crate::telemetry;
use failures::{retry_policy, stt_retry_policy};
use reply::{Heard, Reply, Slot, Source, Step, next_heard, next_step, open_chat};

/// How long after the end of the caller's turn the agent waits for the STT's answer to
/// `Finalize` before it answers what it has.
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
            answer_schema: None,
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
}
