//! The reply side of a call: its audio turned into an agent turn, the model's text into
//! speakable pieces, tool calls run between rounds, a reply finished, cancelled on
//! barge-in, and the context cut to what the caller heard.

use super::*;
use crate::agent::llm::tools::ToolOutcome;
use crate::agent::seam::SessionGone;
use crate::agent::turn::WordTime;
use crate::audio::g711;
use crate::providers::api::TtsAudio;
use crate::providers::api::TtsChunk;
use crate::providers::api::{ChatEvent, TtsInput};

impl Call {
    pub(super) async fn on_step(&mut self, io: &mut AgentIo, step: Step) -> Done {
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

    pub(super) async fn on_audio(&mut self, io: &mut AgentIo, chunk: TtsChunk) -> Done {
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

    pub(super) async fn on_chat(&mut self, io: &mut AgentIo, event: ChatEvent) -> Done {
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
    pub(super) async fn round_done(&mut self, io: &mut AgentIo) -> Done {
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

    pub(super) async fn on_tools(&mut self, io: &mut AgentIo, outcomes: Vec<ToolOutcome>) -> Done {
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
    pub(super) async fn finish_text(&mut self, io: &mut AgentIo) -> Done {
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
    pub(super) async fn reply_done(&mut self, io: &mut AgentIo) -> Done {
        let Some(reply) = self.reply.take() else {
            return Ok(());
        };
        if !self
            .close_reply(io, reply.opened.then_some(reply.turn), reply.hang_up)
            .await?
        {
            return Ok(());
        }
        if std::mem::take(&mut self.answer_after) && !self.heard.trim().is_empty() {
            return self.answer_now(io).await;
        }
        Ok(())
    }

    /// A reply is over (done or cancelled): its turn closes, then the hang-up it carried or
    /// the line that waited for it. True when nothing follows it yet.
    async fn close_reply(
        &mut self,
        io: &mut AgentIo,
        opened: Option<u64>,
        hang_up: bool,
    ) -> Result<bool, SessionGone> {
        if let Some(turn) = opened {
            io.send(Command::CloseTurn { turn }).await?;
        }
        if hang_up {
            self.ending = true;
            io.send(Command::HangUp {
                reason: "the agent ended the call".into(),
            })
            .await?;
            return Ok(false);
        }
        if let Some((text, hang_up)) = self.pending_line.take() {
            self.say_offline(io, text, hang_up);
            return Ok(false);
        }
        Ok(true)
    }

    /// Barge-in: drop the reply (each provider cancels on the wire); the STT stays open.
    pub(super) async fn cancel_reply(&mut self, io: &mut AgentIo) -> Done {
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
        if !reply.opened {
            // Words the caller never heard leave the context (tool calls stay).
            self.cut_to_heard(reply.turn, "");
        } else if !reply.round_text.trim().is_empty() {
            // Cut short mid-round: keep what was written; the cut trims it to what was heard.
            let message = Message::new(Role::Assistant, reply.round_text.trim());
            self.push_message(message, Some(reply.turn));
        }
        // A line that was waiting for this reply is not dropped with it.
        self.close_reply(io, reply.opened.then_some(reply.turn), reply.hang_up)
            .await?;
        Ok(())
    }

    /// The caller heard `heard` of `turn`: the context keeps only that (the turn's first
    /// words of the agent become the heard text, its later ones go; tool calls stay).
    pub(super) fn cut_to_heard(&mut self, turn: u64, heard: &str) {
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
}
