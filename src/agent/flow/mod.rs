//! Scripted flows: a call driven by a TOML script instead of an LLM.
//!
//! A flow is a graph of nodes. Each node may set slots, say something (a minijinja
//! template over the call's facts and slots), ask for an answer (key presses, expected
//! words, or any speech), branch on the answer, and hang up. `examples/flows/demo.toml` is
//! the shipped example and the reference for the format.
//!
//! - `file.rs` — the TOML schema (unknown keys refused);
//! - `validate.rs` — the checks at load: every reference, every template, no unreachable
//!   node, no path without an end;
//! - `template.rs` — prompt rendering (a missing value is empty, never an error);
//! - `words.rs` — hearing expected words, with synonyms;
//! - `run.rs` — [`FlowRun`], the per-call engine: pure, driven by a millisecond clock;
//! - `library.rs` — [`Flows`], the set of flows an instance offers.
//!
//! Nothing here does I/O except [`Flows::load`] reading flow files, and nothing here may
//! panic on any flow text or any caller input.

mod error;
mod file;
mod library;
mod run;
pub mod template;
mod validate;
mod words;

pub use error::FlowError;
pub use file::{AskFile, BranchFile, FlowFile, NodeFile, SilenceFile};
pub use library::{DEMO, DEMO_TOML, Flows, MAX_FILE_BYTES};
pub use run::{Action, CallFacts, FlowRun, MAX_HOPS, reasons};
pub use template::{TemplateData, render as render_template};
pub use validate::{Flow, MAX_CALL_SECS, parse_flow};

#[cfg(test)]
mod tests;
