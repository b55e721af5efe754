//! Why a flow could not be loaded: each error names the file, and the node when there is
//! one, so the operator can fix the flow without reading voxgate's code.

use thiserror::Error;

/// A flow file or folder that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlowError {
    /// The folder or a file in it could not be read.
    #[error("{file}: cannot read: {reason}")]
    Unreadable {
        /// The file or folder.
        file: String,
        /// The I/O error.
        reason: String,
    },
    /// The text is not TOML or does not fit the flow schema (unknown key, wrong type).
    #[error("{file}: {reason}")]
    Syntax {
        /// The file.
        file: String,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// The flow has no nodes.
    #[error("{file}: the flow has no nodes")]
    Empty {
        /// The file.
        file: String,
    },
    /// A node (or `start`) names a node that does not exist.
    #[error("{file}: node {node:?}: {key} = {target:?} is not a node of this flow")]
    UnknownNode {
        /// The file.
        file: String,
        /// The node whose key names it (`(flow)` for `start`).
        node: String,
        /// The key (`next`, `on[2].go`, `start`).
        key: String,
        /// The missing node's name.
        target: String,
    },
    /// No path from `start` leads to the node.
    #[error("{file}: node {node:?}: unreachable from the start node")]
    Unreachable {
        /// The file.
        file: String,
        /// The node.
        node: String,
    },
    /// From the node, no path leads to a hang-up: a dead end or a loop with no way out.
    #[error("{file}: node {node:?}: {reason}")]
    NoEnd {
        /// The file.
        file: String,
        /// The node.
        node: String,
        /// Dead end or loop.
        reason: String,
    },
    /// A template does not parse.
    #[error("{file}: node {node:?}: {key} is not a valid template: {reason}")]
    Template {
        /// The file.
        file: String,
        /// The node (`(flow)` for `silence`).
        node: String,
        /// The key (`say`, `ask.reprompt`, `set.city`).
        key: String,
        /// The template engine's message.
        reason: String,
    },
    /// An `ask` that accepts no kind of input.
    #[error(
        "{file}: node {node:?}: ask accepts no input: set dtmf = true, words = [...] or speech = true"
    )]
    AskWithoutInput {
        /// The file.
        file: String,
        /// The node.
        node: String,
    },
    /// Any other value out of range or keys that do not fit together.
    #[error("{file}: node {node:?}: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// The node (`(flow)` for a top-level key).
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// Two files define flows of one name.
    #[error("{file}: a flow named {name:?} is already defined by {other}")]
    Duplicate {
        /// The file.
        file: String,
        /// The flow's name.
        name: String,
        /// The file that defined it first.
        other: String,
    },
}

/// What errors name as the node for a top-level key.
pub(super) const FLOW_LEVEL: &str = "(flow)";
