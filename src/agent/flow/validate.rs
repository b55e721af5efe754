//! Loading one flow: TOML → schema → checks → a [`Flow`] the engine can run without
//! meeting a missing node, a broken template or a dead end.
//!
//! Checks, in the order an operator would fix them: the schema (unknown keys, types), top-level
//! values, each node (templates, references, ask and branch keys), then the graph: every
//! node reachable from `start`, and a hang-up reachable from every node (no dead end, no loop
//! without a way out). The first problem found is returned, naming the file, the node and
//! the reason. It must never panic on any text.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::error::{FLOW_LEVEL, FlowError};
use super::file::{AskFile, BranchFile, FlowFile, NodeFile};
use super::template;
use crate::agent::turn::Interruption;

/// `max_call_secs` allowed: ten seconds to four hours.
pub const MAX_CALL_SECS: std::ops::RangeInclusive<u64> = 10..=14_400;
/// `ask.timeout_secs` and `silence.after_secs` allowed.
const WAIT_SECS: std::ops::RangeInclusive<u64> = 1..=600;
/// `ask.max_digits` allowed.
const MAX_DIGITS: std::ops::RangeInclusive<usize> = 1..=32;
/// `ask.reprompts` and `silence.max_times` allowed.
const MAX_REPEATS: u32 = 10;
/// Keys a phone can send.
const DTMF_KEYS: &str = "0123456789*#ABCD";

/// A flow that passed every check.
#[derive(Debug)]
pub struct Flow {
    pub(super) name: String,
    pub(super) file: String,
    pub(super) spec: FlowFile,
}

impl Flow {
    /// The flow's name (`flow = "..."` on a call).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it was loaded from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// What lets the caller cut its prompts off.
    pub fn interruption(&self) -> Interruption {
        self.spec.interruption
    }

    /// The longest a call may last.
    pub fn max_call_secs(&self) -> u64 {
        self.spec.max_call_secs
    }

    /// The node names, sorted.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.spec.nodes.keys().map(String::as_str)
    }
}

/// Parses and checks the flow in `toml_text`; `name` names it in errors and is its name
/// unless the file sets one.
pub fn parse_flow(name: &str, toml_text: &str) -> Result<Flow, FlowError> {
    parse_file(name, name, toml_text)
}

/// As [`parse_flow`], with errors naming `file` and `default_name` used when the text has no `name`.
pub(super) fn parse_file(file: &str, default_name: &str, text: &str) -> Result<Flow, FlowError> {
    let spec: FlowFile = toml::from_str(text).map_err(|e| FlowError::Syntax {
        file: file.to_owned(),
        reason: e.to_string().trim_end().to_owned(),
    })?;
    let check = Check { file, spec: &spec };
    let name = spec.name.clone().unwrap_or_else(|| default_name.to_owned());
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > 64 {
        return Err(check.invalid(FLOW_LEVEL, "name must be 1 to 64 characters"));
    }
    check.top_level()?;
    for (id, node) in &spec.nodes {
        check.node(id, node)?;
    }
    check.graph()?;
    Ok(Flow {
        name,
        file: file.to_owned(),
        spec,
    })
}

struct Check<'a> {
    file: &'a str,
    spec: &'a FlowFile,
}

impl Check<'_> {
    fn invalid(&self, node: &str, reason: impl Into<String>) -> FlowError {
        FlowError::Invalid {
            file: self.file.to_owned(),
            node: node.to_owned(),
            reason: reason.into(),
        }
    }

    fn template(&self, node: &str, key: &str, source: &str) -> Result<(), FlowError> {
        template::check(source).map_err(|reason| FlowError::Template {
            file: self.file.to_owned(),
            node: node.to_owned(),
            key: key.to_owned(),
            reason,
        })
    }

    fn reference(&self, node: &str, key: &str, target: &str) -> Result<(), FlowError> {
        if self.spec.nodes.contains_key(target) {
            return Ok(());
        }
        Err(FlowError::UnknownNode {
            file: self.file.to_owned(),
            node: node.to_owned(),
            key: key.to_owned(),
            target: target.to_owned(),
        })
    }

    fn top_level(&self) -> Result<(), FlowError> {
        let spec = self.spec;
        if spec.nodes.is_empty() {
            return Err(FlowError::Empty {
                file: self.file.to_owned(),
            });
        }
        if !MAX_CALL_SECS.contains(&spec.max_call_secs) {
            return Err(self.invalid(
                FLOW_LEVEL,
                format!(
                    "max_call_secs = {} is outside {}..={}",
                    spec.max_call_secs,
                    MAX_CALL_SECS.start(),
                    MAX_CALL_SECS.end()
                ),
            ));
        }
        self.reference(FLOW_LEVEL, "start", &spec.start)?;
        if let Some(silence) = &spec.silence {
            if !WAIT_SECS.contains(&silence.after_secs) {
                return Err(self.invalid(
                    FLOW_LEVEL,
                    format!(
                        "silence.after_secs = {} is outside 1..=600",
                        silence.after_secs
                    ),
                ));
            }
            if silence.max_times > MAX_REPEATS {
                return Err(self.invalid(
                    FLOW_LEVEL,
                    format!(
                        "silence.max_times = {} is above {MAX_REPEATS}",
                        silence.max_times
                    ),
                ));
            }
            self.template(FLOW_LEVEL, "silence.say", &silence.say)?;
            if let Some(goodbye) = &silence.goodbye {
                self.template(FLOW_LEVEL, "silence.goodbye", goodbye)?;
            }
        }
        for (word, forms) in &spec.synonyms {
            if forms.iter().chain([word]).any(|f| f.trim().is_empty()) {
                return Err(self.invalid(FLOW_LEVEL, format!("synonyms.{word}: empty word")));
            }
        }
        Ok(())
    }

    fn node(&self, id: &str, node: &NodeFile) -> Result<(), FlowError> {
        if id.trim().is_empty() {
            return Err(self.invalid(id, "a node needs a name"));
        }
        if let Some(say) = &node.say {
            self.template(id, "say", say)?;
        }
        for (slot, value) in &node.set {
            if slot.trim().is_empty() {
                return Err(self.invalid(id, "set: a slot needs a name"));
            }
            self.template(id, &format!("set.{slot}"), value)?;
        }
        let targets = [
            ("next", &node.next),
            ("else", &node.otherwise),
            ("no_match", &node.no_match),
            ("no_input", &node.no_input),
        ];
        for (key, target) in targets {
            if let Some(target) = target {
                self.reference(id, key, target)?;
            }
        }
        for (i, branch) in node.on.iter().enumerate() {
            self.reference(id, &format!("on[{i}].go"), &branch.go)?;
            self.branch(id, i, branch, node.ask.as_ref())?;
        }
        if node.hangup {
            if node.ask.is_some() || !node.on.is_empty() || targets.iter().any(|(_, t)| t.is_some())
            {
                return Err(self.invalid(
                    id,
                    "hangup = true ends the call here: remove ask, on, next, else, no_match and no_input",
                ));
            }
            return Ok(());
        }
        match &node.ask {
            Some(ask) => self.ask(id, node, ask),
            None if node.next.is_none() && node.otherwise.is_none() => Err(FlowError::NoEnd {
                file: self.file.to_owned(),
                node: id.to_owned(),
                reason: "dead end: no next or else, and not hangup = true".into(),
            }),
            None if node.no_match.is_some() || node.no_input.is_some() => {
                Err(self.invalid(id, "no_match and no_input need an ask"))
            }
            None => Ok(()),
        }
    }

    fn ask(&self, id: &str, node: &NodeFile, ask: &AskFile) -> Result<(), FlowError> {
        let branch_words = node.on.iter().any(|b| b.words.is_some());
        if !ask.dtmf && !ask.speech && ask.words.is_empty() && !branch_words {
            return Err(FlowError::AskWithoutInput {
                file: self.file.to_owned(),
                node: id.to_owned(),
            });
        }
        if ask.words.iter().any(|w| w.trim().is_empty()) {
            return Err(self.invalid(id, "ask.words: empty word"));
        }
        if ask.dtmf && !MAX_DIGITS.contains(&ask.max_digits) {
            return Err(self.invalid(
                id,
                format!("ask.max_digits = {} is outside 1..=32", ask.max_digits),
            ));
        }
        if let Some(secs) = ask.timeout_secs {
            if !WAIT_SECS.contains(&secs) {
                return Err(
                    self.invalid(id, format!("ask.timeout_secs = {secs} is outside 1..=600"))
                );
            }
            if node.no_input.is_none() && node.otherwise.is_none() {
                return Err(self.invalid(
                    id,
                    "ask.timeout_secs needs no_input or else: where to go when the caller says nothing",
                ));
            }
        }
        if ask.reprompts > MAX_REPEATS {
            return Err(self.invalid(
                id,
                format!("ask.reprompts = {} is above {MAX_REPEATS}", ask.reprompts),
            ));
        }
        if let Some(reprompt) = &ask.reprompt {
            self.template(id, "ask.reprompt", reprompt)?;
        }
        if ask.slot.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(self.invalid(id, "ask.slot: a slot needs a name"));
        }
        if node.on.is_empty() && node.next.is_none() {
            return Err(self.invalid(
                id,
                "an ask needs on branches or next: where an answer leads",
            ));
        }
        Ok(())
    }

    fn branch(
        &self,
        id: &str,
        i: usize,
        branch: &BranchFile,
        ask: Option<&AskFile>,
    ) -> Result<(), FlowError> {
        let kinds = [
            branch.digits.is_some(),
            branch.words.is_some(),
            branch.slot.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(self.invalid(
                id,
                format!("on[{i}] needs exactly one of digits, words or slot"),
            ));
        }
        if branch.slot.is_some() != branch.value.is_some() {
            return Err(self.invalid(id, format!("on[{i}]: slot and value go together")));
        }
        if let Some(digits) = &branch.digits {
            if digits.is_empty() || !digits.chars().all(|c| DTMF_KEYS.contains(c)) {
                return Err(self.invalid(
                    id,
                    format!("on[{i}].digits = {digits:?}: keys are 0-9, *, #, A-D"),
                ));
            }
            if !ask.is_some_and(|a| a.dtmf) {
                return Err(self.invalid(
                    id,
                    format!("on[{i}] matches digits but ask.dtmf is not set"),
                ));
            }
        }
        if let Some(words) = &branch.words {
            if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
                return Err(self.invalid(id, format!("on[{i}].words: empty word")));
            }
            if ask.is_none() {
                return Err(
                    self.invalid(id, format!("on[{i}] matches words but the node has no ask"))
                );
            }
        }
        Ok(())
    }

    fn graph(&self) -> Result<(), FlowError> {
        let nodes = &self.spec.nodes;
        let edges: BTreeMap<&str, Vec<&str>> = nodes
            .iter()
            .map(|(id, node)| (id.as_str(), successors(node)))
            .collect();
        let reachable = walk([self.spec.start.as_str()], |id| {
            edges.get(id).cloned().unwrap_or_default()
        });
        if let Some(lost) = nodes.keys().find(|id| !reachable.contains(id.as_str())) {
            return Err(FlowError::Unreachable {
                file: self.file.to_owned(),
                node: lost.clone(),
            });
        }
        let mut into: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (&from, tos) in &edges {
            for &to in tos {
                into.entry(to).or_default().push(from);
            }
        }
        let ends = nodes
            .iter()
            .filter(|(_, node)| node.hangup)
            .map(|(id, _)| id.as_str());
        let can_end = walk(ends, |id| into.get(id).cloned().unwrap_or_default());
        if let Some(stuck) = nodes.keys().find(|id| !can_end.contains(id.as_str())) {
            return Err(FlowError::NoEnd {
                file: self.file.to_owned(),
                node: stuck.clone(),
                reason: "no hangup node can be reached from here (a loop with no way out?)".into(),
            });
        }
        Ok(())
    }
}

/// The nodes a node can lead to.
fn successors(node: &NodeFile) -> Vec<&str> {
    [&node.next, &node.otherwise, &node.no_match, &node.no_input]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .chain(node.on.iter().map(|b| b.go.as_str()))
        .collect()
}

/// Every node reached from `from` by `step`.
fn walk<'a>(
    from: impl IntoIterator<Item = &'a str>,
    step: impl Fn(&str) -> Vec<&'a str>,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = from.into_iter().collect();
    while let Some(id) = queue.pop_front() {
        if seen.insert(id) {
            queue.extend(step(id));
        }
    }
    seen
}
