//! The Plivo-faithful call simulator and load generator: a client that plays Plivo's side
//! of a call against a voxgate server, so calls can be tested, measured and load-tested
//! without a phone.
//!
//! One call ([`run_call`]): fetch the answer URL as Plivo does (signed form POST, or GET),
//! read the `<Stream>`, open its WebSocket with a signed upgrade, send `start` and then one
//! `media` message per 20 ms on an absolute clock while a simulated phone plays whatever the
//! server sends back (`playAudio`, `checkpoint` → `playedStream`, `clearAudio` →
//! `clearedAudio`), then close and post the stream status and hangup callbacks. The caller
//! follows a script of [`CallerStep`]s. The [`CallReport`] holds what the caller heard and
//! sent, a timeline, per-turn figures (response latency, gaps, barge-in timing) and counts.
//! Many calls: [`run_load`].
//!
//! The call may end on either side: the caller's script ends or hangs up, or the gateway
//! hangs up (closes the media socket, or `DELETE`s the call on the REST emulator
//! [`plivo_rest`]); the report says who ([`HungUpBy`]) and which steps a hang-up skipped.
//!
//! Layout: `config` (settings), `script` (caller steps and their runner), `script_file`
//! (TOML caller scripts), `phone` (playout buffer and markers), `wire` (WebSocket
//! reader/writer), `callbacks` (HTTP requests), `call` (the clock and the order of a
//! call), `analysis` (figures), `report`, `record` (the server's call record, read after
//! the call), `table` (per-turn tables), `load`, `cli` (flags; the only place with
//! `anyhow`).
//!
//! The simulator is a client and a test tool: it speaks only the protocol types of
//! [`crate::telephony::plivo`], and it must never depend on the server's internals, so it
//! sees voxgate exactly as Plivo does.

mod analysis;
mod call;
mod callbacks;
pub mod cli;
mod config;
mod error;
mod load;
pub mod phone;
pub mod plivo_rest;
pub mod record;
mod report;
pub mod script;
pub mod script_file;
mod table;
mod wire;

pub use call::run_call;
pub use config::{AnswerMethod, MAX_SPEED, SimConfig, StreamConnect, Timeouts};
pub use error::SimError;
pub use load::{LoadConfig, LoadReport, MAX_CALLS, Percentiles, RecordCounts, run_load};
pub use phone::Phone;
pub use report::{
    AgentTurn, CallReport, CallbackResult, ClockStats, Counts, Detail, EndReason, Event, EventKind,
    GapTotals, HungUpBy, ProtocolError, TurnEnd, TurnFigures, write_wav,
};
pub use script::{CallerStep, ScriptError, audio_step, load_ulaw, load_wav};

#[cfg(test)]
mod tests;
