//! One call through a flow: the engine that turns the caller's key presses, words, silence
//! and the passing of time into [`Action`]s.
//!
//! It is pure: no I/O, no clock of its own (every method takes `now_ms`), no task. The owner
//! carries the actions out (speak, listen, hang up) and reports back: a prompt heard to its
//! end, a key, a final transcript, the caller speaking, and a tick every few hundred ms.
//!
//! Its rhythm: one `Say` at a time. After a `Say` the engine waits for
//! [`FlowRun::prompt_finished`] before it goes on, so an ask's timeout and the silence
//! follow-ups count from when the caller heard the question, never from when it was queued.
//! An ask listens from the start of its question, so the caller may answer over it.
//! It must never panic or loop: a node chain without speech is cut after [`MAX_HOPS`] nodes,
//! and every call ends by `max_call_secs` at the latest.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::file::{AskFile, BranchFile, NodeFile};
use super::template::{self, TemplateData};
use super::validate::Flow;
use super::words;
use crate::agent::turn::Interruption;

/// Nodes passed through without speaking before the engine decides the flow loops.
pub const MAX_HOPS: usize = 64;

/// Why a flow hung up (`Action::HangUp::reason`).
pub mod reasons {
    /// A `hangup = true` node said its goodbye.
    pub const COMPLETED: &str = "completed";
    /// The call reached the flow's `max_call_secs`.
    pub const MAX_CALL: &str = "max_call_secs";
    /// The caller stayed silent through every follow-up.
    pub const SILENCE: &str = "silence";
    /// No answer after the reprompts, and the node says nowhere to go.
    pub const NO_INPUT: &str = "no_input";
    /// No matching answer after the reprompts, and the node says nowhere to go.
    pub const NO_MATCH: &str = "no_match";
    /// Nodes led to nodes without ever speaking or asking.
    pub const LOOP: &str = "flow_loop";
}

/// What the flow knows about the call before it starts.
#[derive(Debug, Clone, Default)]
pub struct CallFacts {
    /// The caller's number.
    pub from: String,
    /// The number called.
    pub to: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The campaign, if the call belongs to one.
    pub campaign: Option<String>,
    /// The call's metadata (`POST /v1/calls`).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// What the flow asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Speak `text`; report [`FlowRun::prompt_finished`] when it was heard (or cut).
    Say {
        /// What to say.
        text: String,
        /// Whether the caller may cut it off (barge-in).
        interruptible: bool,
    },
    /// Pass the caller's answers to the flow from now on (replacing any earlier `Listen`).
    Listen {
        /// Key presses are answers.
        dtmf: bool,
        /// Key presses that complete an answer.
        max_digits: usize,
        /// Words and phrases the flow expects, with their synonyms (empty: any speech, or
        /// none if `dtmf` only); a keyword spotter listens for these.
        words: Vec<String>,
    },
    /// No answer is expected any more.
    StopListening,
    /// A slot was filled (for the call record).
    SetSlot {
        /// The slot.
        name: String,
        /// Its value.
        value: String,
    },
    /// End the call.
    HangUp {
        /// Why ([`reasons`]).
        reason: String,
    },
}

/// What the engine waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// A `Say` is playing; what comes once it was heard.
    Speaking(Then),
    /// The current node's ask waits for an answer, until `deadline_ms` if it has a timeout.
    Asking { deadline_ms: Option<u64> },
    /// The flow hung up.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Then {
    /// Wait for the answer to the current node's ask.
    Ask,
    /// Enter this node.
    Go(String),
    /// Hang up for this reason.
    HangUp(&'static str),
}

/// An answer to an ask.
enum Input {
    Digits(String),
    Words(String),
}

/// Why an ask did not get an answer it could use.
#[derive(Clone, Copy)]
enum Miss {
    NoInput,
    NoMatch,
}

/// One call's progress through a flow.
#[derive(Debug)]
pub struct FlowRun {
    flow: Arc<Flow>,
    facts: CallFacts,
    slots: BTreeMap<String, String>,
    node: String,
    state: State,
    started_ms: u64,
    /// Reprompts spent at the current node.
    tries: u32,
    /// Keys pressed toward the current answer.
    digits: String,
    listening: bool,
    /// When the caller was last heard, or the flow last finished speaking.
    quiet_since_ms: u64,
    /// Silence follow-ups said since the caller was last heard.
    follow_ups: u32,
}

impl FlowRun {
    /// Starts `flow` for a call at `now_ms`: the first node's actions.
    pub fn start(flow: Arc<Flow>, facts: CallFacts, now_ms: u64) -> (Self, Vec<Action>) {
        let start = flow.spec.start.clone();
        let mut run = Self {
            flow,
            facts,
            slots: BTreeMap::new(),
            node: start.clone(),
            state: State::Done,
            started_ms: now_ms,
            tries: 0,
            digits: String::new(),
            listening: false,
            quiet_since_ms: now_ms,
            follow_ups: 0,
        };
        let mut out = Vec::new();
        run.enter(start, now_ms, &mut out);
        (run, out)
    }

    /// The last `Say` was heard to its end (or cut off): go on.
    pub fn prompt_finished(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let State::Speaking(then) = &self.state else {
            return out;
        };
        let then = then.clone();
        self.quiet_since_ms = now_ms;
        match then {
            Then::Ask => self.state = self.asking(now_ms),
            Then::Go(node) => self.enter(node, now_ms, &mut out),
            Then::HangUp(reason) => self.hang_up(reason, &mut out),
        }
        out
    }

    /// The caller pressed `digit`.
    pub fn dtmf(&mut self, digit: char, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let flow = Arc::clone(&self.flow);
        let Some((node, ask)) = self.current_ask(&flow).filter(|(_, ask)| ask.dtmf) else {
            return out;
        };
        self.caller_spoke(now_ms);
        if digit == ask.finish_on {
            if !self.digits.is_empty() {
                let digits = std::mem::take(&mut self.digits);
                self.answer(node, ask, Input::Digits(digits), now_ms, &mut out);
            }
        } else if digit.is_ascii_digit() || "*#ABCD".contains(digit) {
            self.digits.push(digit);
            if self.digits.len() >= ask.max_digits {
                let digits = std::mem::take(&mut self.digits);
                self.answer(node, ask, Input::Digits(digits), now_ms, &mut out);
            }
        }
        out
    }

    /// A final transcript of the caller's turn.
    pub fn words(&mut self, text: &str, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let flow = Arc::clone(&self.flow);
        let Some((node, ask)) = self.current_ask(&flow) else {
            return out;
        };
        if !ask.speech && expected_words(node, ask).is_empty() {
            return out;
        }
        if text.trim().is_empty() {
            return out;
        }
        self.caller_spoke(now_ms);
        self.answer(node, ask, Input::Words(text.to_owned()), now_ms, &mut out);
        out
    }

    /// The caller is speaking: the silence follow-ups start over, and an ask's timeout
    /// waits for what the caller is saying.
    pub fn caller_spoke(&mut self, now_ms: u64) {
        self.quiet_since_ms = now_ms;
        self.follow_ups = 0;
        if let State::Asking { deadline_ms } = self.state {
            self.state = State::Asking {
                deadline_ms: deadline_ms.map(|d| d.max(self.asking_deadline(now_ms).unwrap_or(d))),
            };
        }
    }

    /// Time passed: the call's length limit, an ask's timeout, the silence follow-ups.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Done {
            return out;
        }
        let max_ms = self.flow.spec.max_call_secs.saturating_mul(1_000);
        if now_ms.saturating_sub(self.started_ms) >= max_ms {
            self.hang_up(reasons::MAX_CALL, &mut out);
            return out;
        }
        let State::Asking { deadline_ms } = self.state else {
            return out;
        };
        let flow = Arc::clone(&self.flow);
        if deadline_ms.is_some_and(|d| now_ms >= d) {
            if let Some((node, ask)) = self.current_ask(&flow) {
                if self.digits.is_empty() {
                    self.miss(node, ask, Miss::NoInput, now_ms, &mut out);
                } else {
                    let digits = std::mem::take(&mut self.digits);
                    self.answer(node, ask, Input::Digits(digits), now_ms, &mut out);
                }
            }
            return out;
        }
        if let Some(silence) = &flow.spec.silence
            && now_ms.saturating_sub(self.quiet_since_ms)
                >= silence.after_secs.saturating_mul(1_000)
        {
            if self.follow_ups < silence.max_times {
                self.follow_ups += 1;
                let text = self.render(&silence.say);
                self.say_then(text, Then::Ask, now_ms, &mut out);
            } else {
                self.stop_listening(&mut out);
                let goodbye = silence
                    .goodbye
                    .as_deref()
                    .map(|g| self.render(g))
                    .unwrap_or_default();
                self.say_then(goodbye, Then::HangUp(reasons::SILENCE), now_ms, &mut out);
            }
        }
        out
    }

    /// The slots filled so far.
    pub fn slots(&self) -> &BTreeMap<String, String> {
        &self.slots
    }

    /// The current node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether the flow hung up.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The flow this call runs.
    pub fn flow(&self) -> &Arc<Flow> {
        &self.flow
    }

    /// The current node and its ask, while an answer is expected.
    fn current_ask<'f>(&self, flow: &'f Flow) -> Option<(&'f NodeFile, &'f AskFile)> {
        if !self.listening || self.state == State::Done {
            return None;
        }
        let node = flow.spec.nodes.get(&self.node)?;
        Some((node, node.ask.as_ref()?))
    }

    fn asking_deadline(&self, now_ms: u64) -> Option<u64> {
        let ask = self.flow.spec.nodes.get(&self.node)?.ask.as_ref()?;
        Some(now_ms.saturating_add(ask.timeout_secs?.saturating_mul(1_000)))
    }

    fn asking(&mut self, now_ms: u64) -> State {
        self.quiet_since_ms = now_ms;
        State::Asking {
            deadline_ms: self.asking_deadline(now_ms),
        }
    }

    /// Enters `id` and every node after it that does not speak or ask.
    fn enter(&mut self, mut id: String, now_ms: u64, out: &mut Vec<Action>) {
        let flow = Arc::clone(&self.flow);
        for _ in 0..MAX_HOPS {
            let Some(node) = flow.spec.nodes.get(&id) else {
                // Validation makes this impossible; end the call rather than panic.
                self.hang_up(reasons::LOOP, out);
                return;
            };
            self.node = id;
            self.tries = 0;
            self.digits.clear();
            for (slot, value) in &node.set {
                let value = self.render(value);
                self.set_slot(slot, value, out);
            }
            let text = node
                .say
                .as_deref()
                .map(|s| self.render(s))
                .unwrap_or_default();
            if node.hangup {
                self.stop_listening(out);
                self.say_then(text, Then::HangUp(reasons::COMPLETED), now_ms, out);
                return;
            }
            if let Some(ask) = &node.ask {
                if !text.is_empty() {
                    out.push(self.say(node, text.clone()));
                }
                out.push(listen(&flow, node, ask));
                self.listening = true;
                self.state = if text.is_empty() {
                    self.asking(now_ms)
                } else {
                    State::Speaking(Then::Ask)
                };
                return;
            }
            self.stop_listening(out);
            let Some(next) = self.route(node, None, None) else {
                self.hang_up(reasons::LOOP, out);
                return;
            };
            if !text.is_empty() {
                out.push(self.say(node, text));
                self.state = State::Speaking(Then::Go(next));
                return;
            }
            id = next;
        }
        self.hang_up(reasons::LOOP, out);
    }

    /// The caller answered the current ask.
    fn answer(
        &mut self,
        node: &NodeFile,
        ask: &AskFile,
        input: Input,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let flow = Arc::clone(&self.flow);
        let (value, word) = match &input {
            Input::Digits(digits) => (Some(digits.clone()), None),
            Input::Words(text) => {
                let expected = expected_words(node, ask);
                match words::best_match(text, &expected, &flow.spec.synonyms) {
                    Some(word) => (Some(word.to_owned()), Some(word)),
                    None if ask.speech => (Some(text.trim().to_owned()), None),
                    None => (None, None),
                }
            }
        };
        if let (Some(slot), Some(value)) = (&ask.slot, &value) {
            self.set_slot(slot, value.clone(), out);
        }
        let digits = match &input {
            Input::Digits(d) => Some(d.as_str()),
            Input::Words(_) => None,
        };
        let target = node
            .on
            .iter()
            .find(|b| self.branch_matches(b, digits, word))
            .map(|b| b.go.clone())
            .or_else(|| value.and(node.next.clone()));
        match target {
            Some(next) => {
                self.stop_listening(out);
                self.enter(next, now_ms, out);
            }
            None => self.miss(node, ask, Miss::NoMatch, now_ms, out),
        }
    }

    /// No usable answer: ask again, or go where the node says.
    fn miss(
        &mut self,
        node: &NodeFile,
        ask: &AskFile,
        miss: Miss,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        self.digits.clear();
        if self.tries < ask.reprompts {
            self.tries += 1;
            let source = ask
                .reprompt
                .as_deref()
                .or(node.say.as_deref())
                .unwrap_or("");
            let text = self.render(source);
            self.say_then(text, Then::Ask, now_ms, out);
            return;
        }
        let (target, reason) = match miss {
            Miss::NoInput => (node.no_input.as_ref(), reasons::NO_INPUT),
            Miss::NoMatch => (node.no_match.as_ref(), reasons::NO_MATCH),
        };
        self.stop_listening(out);
        match target.or(node.otherwise.as_ref()) {
            Some(next) => self.enter(next.clone(), now_ms, out),
            None => self.hang_up(reason, out),
        }
    }

    /// Where a node without an ask leads: its first matching slot branch, else `next`, else `else`.
    fn route(&self, node: &NodeFile, digits: Option<&str>, word: Option<&str>) -> Option<String> {
        node.on
            .iter()
            .find(|b| self.branch_matches(b, digits, word))
            .map(|b| b.go.clone())
            .or_else(|| node.next.clone())
            .or_else(|| node.otherwise.clone())
    }

    fn branch_matches(
        &self,
        branch: &BranchFile,
        digits: Option<&str>,
        word: Option<&str>,
    ) -> bool {
        if let Some(want) = &branch.digits {
            return digits == Some(want.as_str());
        }
        if let Some(want) = &branch.words {
            return word
                .is_some_and(|w| want.iter().any(|x| x.trim().eq_ignore_ascii_case(w.trim())));
        }
        match (&branch.slot, &branch.value) {
            (Some(slot), Some(value)) => self
                .slots
                .get(slot)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(value.trim())),
            _ => false,
        }
    }

    /// Says `text` and then does `then`; with nothing to say, does `then` at once.
    fn say_then(&mut self, text: String, then: Then, now_ms: u64, out: &mut Vec<Action>) {
        if text.is_empty() {
            match then {
                Then::Ask => self.state = self.asking(now_ms),
                Then::Go(node) => self.enter(node, now_ms, out),
                Then::HangUp(reason) => self.hang_up(reason, out),
            }
            return;
        }
        let interruptible = self.flow.spec.interruption != Interruption::None;
        let interruptible = self
            .flow
            .spec
            .nodes
            .get(&self.node)
            .and_then(|n| n.interruptible)
            .unwrap_or(interruptible);
        out.push(Action::Say {
            text,
            interruptible,
        });
        self.state = State::Speaking(then);
    }

    fn say(&self, node: &NodeFile, text: String) -> Action {
        Action::Say {
            text,
            interruptible: node
                .interruptible
                .unwrap_or(self.flow.spec.interruption != Interruption::None),
        }
    }

    fn set_slot(&mut self, slot: &str, value: String, out: &mut Vec<Action>) {
        out.push(Action::SetSlot {
            name: slot.to_owned(),
            value: value.clone(),
        });
        self.slots.insert(slot.to_owned(), value);
    }

    fn stop_listening(&mut self, out: &mut Vec<Action>) {
        if self.listening {
            self.listening = false;
            out.push(Action::StopListening);
        }
    }

    fn hang_up(&mut self, reason: &str, out: &mut Vec<Action>) {
        self.stop_listening(out);
        out.push(Action::HangUp {
            reason: reason.to_owned(),
        });
        self.state = State::Done;
    }

    /// `source` rendered for this call; a template that fails at run time says nothing.
    fn render(&self, source: &str) -> String {
        let data = TemplateData {
            from: &self.facts.from,
            to: &self.facts.to,
            direction: &self.facts.direction,
            campaign: self.facts.campaign.as_deref(),
            metadata: &self.facts.metadata,
            slots: &self.slots,
        };
        template::render(source, &data).unwrap_or_default()
    }
}

/// The words an ask expects: its own, then those of its branches.
fn expected_words<'f>(node: &'f NodeFile, ask: &'f AskFile) -> Vec<&'f str> {
    let mut all: Vec<&str> = ask.words.iter().map(String::as_str).collect();
    for word in node.on.iter().filter_map(|b| b.words.as_ref()).flatten() {
        if !all.iter().any(|w| w.eq_ignore_ascii_case(word)) {
            all.push(word);
        }
    }
    all
}

fn listen(flow: &Flow, node: &NodeFile, ask: &AskFile) -> Action {
    let mut heard: Vec<String> = Vec::new();
    for word in expected_words(node, ask) {
        for form in words::forms(word, &flow.spec.synonyms) {
            if !heard.iter().any(|h| h.eq_ignore_ascii_case(&form)) {
                heard.push(form);
            }
        }
    }
    Action::Listen {
        dtmf: ask.dtmf,
        max_digits: if ask.dtmf { ask.max_digits } else { 0 },
        words: heard,
    }
}
