//! The flow file's schema: what a TOML flow may say, as serde types.
//!
//! Every table refuses unknown keys, so a misspelt key is an error at load rather than a
//! prompt that silently never plays. These types only describe the text; the graph checks
//! live in `validate.rs` and the meaning of each key at run time in `run.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::agent::turn::Interruption;

/// A whole flow file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    /// The flow's name (default: the file's name without `.toml`).
    pub name: Option<String>,
    /// The node the call starts at.
    pub start: String,
    /// The longest a call may last before the flow hangs up (default 600).
    #[serde(default = "default_max_call_secs")]
    pub max_call_secs: u64,
    /// What lets the caller cut a prompt off (`none`, `vad`, `stt`, `both`; default `vad`).
    #[serde(default)]
    pub interruption: Interruption,
    /// What to say when the caller stays silent.
    pub silence: Option<SilenceFile>,
    /// Extra spoken forms of expected words: `{ london = ["the capital"] }`.
    #[serde(default)]
    pub synonyms: BTreeMap<String, Vec<String>>,
    /// The nodes, by name.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeFile>,
}

fn default_max_call_secs() -> u64 {
    600
}

/// `[silence]`: follow-ups when the caller says nothing while the flow waits for an answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceFile {
    /// Seconds of silence before a follow-up.
    pub after_secs: u64,
    /// Follow-ups before the flow gives up and hangs up (default 2).
    #[serde(default = "default_max_times")]
    pub max_times: u32,
    /// The follow-up (a template).
    pub say: String,
    /// Said before hanging up after the last follow-up (a template; default none).
    pub goodbye: Option<String>,
}

fn default_max_times() -> u32 {
    2
}

/// `[nodes.NAME]`: one step of the conversation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// What the flow says on entering the node (a template).
    pub say: Option<String>,
    /// Whether the caller may cut `say` off (default: unless the flow's interruption is `none`).
    pub interruptible: Option<bool>,
    /// Slots set on entering the node, before `say`: values are templates.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Wait for the caller's answer.
    pub ask: Option<AskFile>,
    /// Branches, tried in order after an answer (or on entry, for a node without `ask`).
    #[serde(default)]
    pub on: Vec<BranchFile>,
    /// Where to go when no branch matched but the answer was one the ask accepts, or after
    /// `say` for a node without `ask`.
    pub next: Option<String>,
    /// Where to go when nothing else applies: no answer, or one that matched nothing.
    #[serde(rename = "else")]
    pub otherwise: Option<String>,
    /// Where to go when the answers matched nothing (after the reprompts); default `else`.
    pub no_match: Option<String>,
    /// Where to go when the caller gave no answer (after the reprompts); default `else`.
    pub no_input: Option<String>,
    /// Hang up after `say` (the goodbye).
    #[serde(default)]
    pub hangup: bool,
}

/// `ask`: what answer the node waits for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskFile {
    /// Accept key presses.
    #[serde(default)]
    pub dtmf: bool,
    /// Key presses that complete an answer (default 1).
    #[serde(default = "default_max_digits")]
    pub max_digits: usize,
    /// The key that ends an answer early (default `#`).
    #[serde(default = "default_finish_on")]
    pub finish_on: char,
    /// Spoken words or phrases the ask expects (each also heard by its synonyms).
    #[serde(default)]
    pub words: Vec<String>,
    /// Accept any spoken answer (stored whole in `slot`).
    #[serde(default)]
    pub speech: bool,
    /// Seconds to wait for an answer once the prompt was heard (default: no timeout; the
    /// flow's `silence` follow-ups still apply).
    pub timeout_secs: Option<u64>,
    /// How many times to ask again after no answer or no match (default 1).
    #[serde(default = "default_reprompts")]
    pub reprompts: u32,
    /// What to say when asking again (a template; default: the node's `say`).
    pub reprompt: Option<String>,
    /// The slot that stores the answer: the expected word heard, the digits, or the speech.
    pub slot: Option<String>,
}

fn default_max_digits() -> usize {
    1
}

fn default_finish_on() -> char {
    '#'
}

fn default_reprompts() -> u32 {
    1
}

/// One entry of `on`: a match and the node it leads to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchFile {
    /// Matches these exact key presses (`"1"`, `"42"`).
    pub digits: Option<String>,
    /// Matches any of these words or phrases (or their synonyms).
    pub words: Option<Vec<String>>,
    /// Matches when this slot holds `value` (ignoring case).
    pub slot: Option<String>,
    /// The value `slot` must hold.
    pub value: Option<String>,
    /// The node to go to.
    pub go: String,
}
