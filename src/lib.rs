//! voxgate: a real-time voice media gateway for telephony voice agents on Plivo.
//!
//! The crate mirrors the flow of a call (see `DESIGN.md`): [`telephony`] speaks Plivo's
//! protocol, [`audio`] holds the synchronous hot-path primitives (G.711, frames,
//! resampling, VAD, the DSP worker pipeline), [`config`] assembles the typed configuration
//! from the sections each module owns (their errors are a [`setting::InvalidSetting`]),
//! [`http`] serves Plivo's routes, [`server`] wires
//! them into `voxgate serve`, [`session`] runs each call's media socket, and [`sim`]
//! plays Plivo's side for tests, benches and load. [`retry`] times every retry.
//! [`ids`] names calls and streams between modules, [`http`] routes Plivo's requests and
//! the `/v1` API, [`server`] is the composition root that builds and wires everything into
//! `voxgate serve`, [`session`] runs each call's media socket, and [`sim`] plays Plivo's
//! side for tests, benches and load.

#![forbid(unsafe_code)]

pub mod agent;
pub mod audio;
pub mod config;
pub mod control;
pub mod http;
pub mod ids;
pub mod logs;
pub mod recording;
pub mod retry;
pub mod server;
pub mod session;
pub mod setting;
pub mod sim;
pub mod telemetry;
pub mod telephony;
