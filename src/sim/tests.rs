//! End-to-end tests of the simulator against a fake voxgate (see `tests/fake.rs`), split
//! by what they check: the answer request, the stream and callbacks, the phone, the
//! per-turn figures, load.
//!
//! The fake acts on media chunk numbers, so what it does is tied to the simulated clock;
//! checks on timing allow a few ticks for scheduling on a busy machine. Speed is ≥ 5 except
//! where real-time pacing is what is tested.

mod answer;
mod cli;
mod fake;
mod figures;
mod hangup;
mod load;
mod phone;
mod records;
mod stream;

use std::time::{Duration, Instant};

use fake::{Action, Fake, FakeConfig};
use serde_json::Value;

use super::*;
use crate::audio::g711;
use crate::telephony::plivo::signature::SignatureError;
use crate::telephony::plivo::stream::MediaFormat;

/// Lateness allowed on the simulated clock for scheduling on a busy machine (5 ticks, 20 ms
/// of real time at speed 5). Deliveries can only be late, never early.
const SLACK: f64 = 100.0;

const TOKEN: &str = "MjA2YjNlYzktNDdlMC00YzBhLWI5";

/// A tone at about −12 dBFS, 8 kHz, starting at its peak (so speech starts at sample 0).
fn tone(ms: usize, hz: f64) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).cos()) as i16)
        .collect()
}

fn config(fake: &Fake, script: Vec<CallerStep>, speed: f64) -> SimConfig {
    let mut cfg = SimConfig::new(fake.base(), script);
    cfg.speed = speed;
    cfg
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Messages the simulator sent, parsed, in order.
fn received(fake: &Fake) -> Vec<Value> {
    fake.seen().received.iter().map(|t| json(t)).collect()
}

fn events<'a>(messages: &'a [Value], event: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["event"] == event).collect()
}

/// Index of the first tick whose heard frame is not silent.
fn first_loud_tick(heard: &[i16]) -> Option<usize> {
    heard
        .chunks(160)
        .position(|f| f.iter().any(|s| s.unsigned_abs() > 100))
}
