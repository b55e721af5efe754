//! The `flow` agent: runs a scripted flow ([`flow`](super::flow)) with offline speech —
//! espeak-ng says its prompts, pocketsphinx listens for the words its asks expect, key
//! presses answer too.
//!
//! One task per call, driven by the seam's inputs, the recognizer's results, the prompt's
//! synthesis and a 100 ms tick for the flow's timers. A prompt streams to the session as
//! espeak-ng makes it (one turn per prompt, its word timings sent for what-was-heard); the
//! flow hears that a prompt finished when the session says the turn was heard or cut.
//! Barge-in drops the prompt being made. Beyond the recognizers' capacity a call runs on
//! DTMF alone (counted), never waits for one.
//!
//! Never: blocks (synthesis and recognition run on their own threads), or says anything
//! the flow did not ask for.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::Agent;
use super::flow::{Action, CallFacts, Flow, FlowRun};
use super::seam::{AgentIo, CallInfo, Command, Event, Input, Progress, SessionGone};
use super::turn::{TurnConfig, WordTime};
use crate::audio::resample::Rate;
use crate::providers::espeak::{Espeak, SpeakOptions, Speech};
use crate::providers::pocketsphinx::{Recognition, Recognizers};

/// How often the flow's timers are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Runs one flow for one call.
pub struct FlowAgent {
    flow: Arc<Flow>,
    tts: Espeak,
    stt: Option<Recognizers>,
    voice: SpeakOptions,
}

impl FlowAgent {
    /// An agent running `flow`, speaking through `tts` and listening through `stt` (DTMF
    /// only without it).
    pub fn new(flow: Arc<Flow>, tts: Espeak, stt: Option<Recognizers>) -> Self {
        Self {
            flow,
            tts,
            stt,
            voice: SpeakOptions::default(),
        }
    }
}

/// The prompt being made.
struct Prompt {
    turn: u64,
    text: String,
    speech: Speech,
    /// Samples sent so far at the synthesis rate, to place word timings.
    samples: u64,
    words: Vec<WordTime>,
}

/// The state of one call's flow.
struct Call {
    run: FlowRun,
    started: Instant,
    recognition: Option<Recognition>,
    /// Prompts waiting their turn.
    says: VecDeque<String>,
    prompt: Option<Prompt>,
    /// The last turn the flow said, until it was heard or cut.
    last_said: Option<u64>,
    hang_up: Option<String>,
    listening: bool,
}

impl Call {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

fn facts(info: &CallInfo) -> CallFacts {
    CallFacts {
        from: info.from.clone(),
        to: info.to.clone(),
        direction: info.direction.as_str().to_owned(),
        campaign: info.campaign.clone(),
        metadata: info.metadata.as_object().cloned().unwrap_or_default(),
    }
}

/// Resolves with the prompt's next chunk, or never when nothing is being said.
async fn next_chunk(
    prompt: &mut Option<Prompt>,
) -> Option<Result<crate::providers::espeak::SpeechChunk, crate::providers::espeak::TtsError>> {
    match prompt {
        Some(prompt) => prompt.speech.next().await,
        None => std::future::pending().await,
    }
}

/// Resolves with the recognizer's next result, or never without one.
async fn next_heard(
    recognition: &mut Option<Recognition>,
) -> Option<crate::providers::pocketsphinx::Heard> {
    match recognition {
        Some(recognition) => recognition.next().await,
        None => std::future::pending().await,
    }
}

#[async_trait::async_trait]
impl Agent for FlowAgent {
    fn caller_audio_rate(&self) -> Option<Rate> {
        self.stt.as_ref().map(|_| Rate::Hz8000)
    }

    async fn run(self: Box<Self>, mut io: AgentIo) {
        // The first event is always `Started`.
        let info = loop {
            match io.next().await {
                Some(Input::Event(Event::Started(info))) => break info,
                Some(_) => continue,
                None => return,
            }
        };
        let recognition = match &self.stt {
            Some(stt) => match stt.open() {
                Ok(recognition) => Some(recognition),
                Err(error) => {
                    // Counted by the recognizers (`voxgate_stt_refused_total`).
                    info!(%error, "no speech recognizer for this call: DTMF only");
                    None
                }
            },
            None => None,
        };
        let started = Instant::now();
        let (run, actions) = FlowRun::start(Arc::clone(&self.flow), facts(&info), 0);
        let mut call = Call {
            run,
            started,
            recognition,
            says: VecDeque::new(),
            prompt: None,
            last_said: None,
            hang_up: None,
            listening: false,
        };
        let turn_taking = TurnConfig {
            interruption: self.flow.interruption(),
            ..TurnConfig::default()
        };
        if io.send(Command::TurnTaking(turn_taking)).await.is_err() {
            return;
        }
        if self.act(&mut io, &mut call, actions).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let outcome = tokio::select! {
                input = io.next() => match input {
                    None | Some(Input::Event(Event::Ending)) => return,
                    Some(input) => self.on_input(&mut io, &mut call, input).await,
                },
                chunk = next_chunk(&mut call.prompt) => self.on_chunk(&mut io, &mut call, chunk).await,
                heard = next_heard(&mut call.recognition) => match heard {
                    Some(heard) => self.on_heard(&mut io, &mut call, heard).await,
                    None => {
                        call.recognition = None;
                        Ok(())
                    }
                },
                _ = tick.tick() => {
                    let actions = call.run.tick(call.now_ms());
                    self.act(&mut io, &mut call, actions).await
                }
            };
            if outcome.is_err() {
                return;
            }
        }
    }
}

impl FlowAgent {
    async fn on_input(
        &self,
        io: &mut AgentIo,
        call: &mut Call,
        input: Input,
    ) -> Result<(), SessionGone> {
        let now_ms = call.now_ms();
        match input {
            Input::Audio(frame) => {
                if call.listening
                    && let Some(recognition) = &call.recognition
                {
                    recognition.push(frame.at_ms, frame.samples());
                }
                Ok(())
            }
            Input::Event(Event::Dtmf { digit, .. }) => {
                let actions = call.run.dtmf(digit, now_ms);
                self.act(io, call, actions).await
            }
            Input::Event(Event::SpeechStarted { .. }) => {
                call.run.caller_spoke(now_ms);
                Ok(())
            }
            Input::Event(Event::EndOfTurn { .. }) => {
                if call.listening
                    && let Some(recognition) = &call.recognition
                {
                    recognition.end_utterance();
                }
                Ok(())
            }
            Input::Event(Event::BargeIn { .. }) => {
                // The prompt being made is cut: drop its synthesis and what waits.
                call.prompt = None;
                call.says.clear();
                Ok(())
            }
            Input::Event(Event::Playout(
                Progress::Heard { turn, .. }
                | Progress::Cut { turn, .. }
                | Progress::Unsent { turn },
            )) if call.last_said == Some(turn) && call.prompt.is_none() && call.says.is_empty() => {
                call.last_said = None;
                let actions = call.run.prompt_finished(now_ms);
                self.act(io, call, actions).await
            }
            Input::Event(_) => Ok(()),
        }
    }

    async fn on_heard(
        &self,
        io: &mut AgentIo,
        call: &mut Call,
        heard: crate::providers::pocketsphinx::Heard,
    ) -> Result<(), SessionGone> {
        debug!(text = %heard.text, is_final = heard.is_final, listening = call.listening, "recogniser result");
        if heard.text.trim().is_empty() {
            return Ok(());
        }
        io.send(Command::CallerText {
            text: heard.text.clone(),
            is_final: heard.is_final,
            at: Instant::now(),
        })
        .await?;
        if !heard.is_final || !call.listening {
            return Ok(());
        }
        debug!(text = %heard.text, "heard");
        let actions = call.run.words(&heard.text, call.now_ms());
        self.act(io, call, actions).await
    }

    async fn on_chunk(
        &self,
        io: &mut AgentIo,
        call: &mut Call,
        chunk: Option<
            Result<crate::providers::espeak::SpeechChunk, crate::providers::espeak::TtsError>,
        >,
    ) -> Result<(), SessionGone> {
        let Some(prompt) = call.prompt.as_mut() else {
            return Ok(());
        };
        match chunk {
            Some(Ok(chunk)) => {
                let rate_hz = u64::from(chunk.rate.hz());
                for mark in &chunk.words {
                    prompt.words.push(WordTime {
                        byte_offset: mark.char_offset,
                        len: mark.len,
                        start_ms: mark.at_sample * 1_000 / rate_hz,
                    });
                }
                prompt.samples += chunk.samples.len() as u64;
                io.send(Command::Audio {
                    turn: prompt.turn,
                    rate: chunk.rate,
                    samples: chunk.samples,
                })
                .await
            }
            end => {
                if let Some(Err(error)) = end {
                    warn!(%error, text = %prompt.text, "text-to-speech failed mid-prompt");
                }
                let prompt = call.prompt.take().expect("a prompt is being made");
                if !prompt.words.is_empty() {
                    io.send(Command::Words {
                        turn: prompt.turn,
                        words: prompt.words,
                    })
                    .await?;
                }
                io.send(Command::CloseTurn { turn: prompt.turn }).await?;
                self.next_prompt(io, call).await
            }
        }
    }

    /// Starts the next waiting prompt, if none is being made; once every prompt is made,
    /// a hang-up the flow asked for goes to the session (which ends the call once they
    /// were heard).
    async fn next_prompt(&self, io: &mut AgentIo, call: &mut Call) -> Result<(), SessionGone> {
        while call.prompt.is_none() {
            let Some(text) = call.says.pop_front() else {
                if let Some(reason) = call.hang_up.take() {
                    io.send(Command::HangUp { reason }).await?;
                }
                return Ok(());
            };
            let turn = io.next_turn();
            io.send(Command::OpenTurn {
                turn,
                text: text.clone(),
                decided: Instant::now(),
                asked: None,
            })
            .await?;
            call.last_said = Some(turn);
            match self.tts.speak(&text, &self.voice) {
                Ok(speech) => {
                    call.prompt = Some(Prompt {
                        turn,
                        text,
                        speech,
                        samples: 0,
                        words: Vec::new(),
                    })
                }
                Err(error) => {
                    warn!(%error, "text-to-speech refused the prompt");
                    io.send(Command::CloseTurn { turn }).await?;
                }
            }
        }
        Ok(())
    }

    /// Carries out what the flow asked for.
    async fn act(
        &self,
        io: &mut AgentIo,
        call: &mut Call,
        actions: Vec<Action>,
    ) -> Result<(), SessionGone> {
        for action in actions {
            match action {
                Action::Say { text, .. } => call.says.push_back(text),
                Action::Listen { words, .. } => {
                    call.listening = true;
                    if let Some(recognition) = &call.recognition {
                        recognition.expect(&words);
                    }
                }
                Action::StopListening => {
                    call.listening = false;
                    if let Some(recognition) = &call.recognition {
                        recognition.expect(&[]);
                    }
                }
                Action::SetSlot { name, value } => {
                    io.send(Command::SetSlot { name, value }).await?
                }
                Action::HangUp { reason } => call.hang_up = Some(reason),
            }
        }
        self.next_prompt(io, call).await
    }
}
