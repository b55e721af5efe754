//! voxgate: a real-time voice media gateway for telephony voice agents on Plivo.
//!
//! The crate mirrors the flow of a call (see `DESIGN.md`). Its modules, lowest first;
//! each depends only on those above it in this list, except the last two: [`server`], the
//! composition root, knows them all and takes the assembled [`config::Config`], which
//! is built from every module's own section (the server's `[http]` too).
//!
//! | module | owns |
//! |---|---|
//! | [`ids`] | `CallId`, `StreamId`, `Direction`: the names passed between modules |
//! | [`setting`] | the error every config section reports a bad key with |
//! | [`retry`] | the one backoff timer: capped exponential, full jitter, `Retry-After` floor, budgets |
//! | [`logs`] | the log subscriber, whose fields untrusted text cannot forge |
//! | [`telemetry`] | every metric name and the Prometheus recorder |
//! | [`audio`] | G.711, frames, resampling, VAD, the DSP worker pipeline: synchronous, no tokio |
//! | [`telephony`] | Plivo: answer XML, typed callbacks, signatures, WebSocket messages, REST |
//! | [`agent`] | what answers the caller (today `echo`) |
//! | [`providers`] | speech and language engines, each behind a small API (offline STT: pocketsphinx) |
//! | [`recording`] | the in-call WAV writer, then encode, upload, retention |
//! | [`session`] | one live call: transport, media intake, conversation, playout, media clock, the call registry |
//! | [`control`] | the call state machine, outbox, sinks, reconcile |
//! | [`http`] | axum routes only: Plivo's webhooks and socket, `/v1`, ops |
//! | [`sim`] | a Plivo-faithful call simulator and load generator |
//! | [`config`] | assembles file + environment + flags into each module's own section |
//! | [`server`] | the composition root: builds everything, owns start-up and shutdown, bounds connections |

// `deny`, not `forbid`: FFI modules (providers::pocketsphinx::ffi) allow it locally,
// each `unsafe` block with a SAFETY comment.
#![deny(unsafe_code)]

pub mod agent;
pub mod audio;
pub mod config;
pub mod control;
pub mod http;
pub mod ids;
pub mod logs;
pub mod providers;
pub mod recording;
pub mod retry;
pub mod server;
pub mod session;
pub mod setting;
pub mod sim;
pub mod telemetry;
pub mod telephony;
