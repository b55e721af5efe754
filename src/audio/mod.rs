//! Synchronous audio primitives for the per-frame hot path.
//!
//! Nothing in here uses tokio, locks or logging inside a per-frame call; every stage
//! allocates what it needs in its constructor and reuses it afterwards.

pub mod config;
pub mod frame;
pub mod g711;
pub mod pipeline;
pub mod resample;
pub mod vad;
