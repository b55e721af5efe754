//! The control plane: one call id, the call state machine, and durable delivery of every
//! lifecycle event to the queue (Redis) and the backend (HTTP).
//!
//! Contracts (DESIGN.md, "Control plane contracts"): `call_id` is the backend's id and is
//! never generated in its place; a state change and its event are stored in one
//! transaction (outbox); delivery is at-least-once with an idempotency key per event, in
//! order per call; a terminal state is final and reported once.

pub mod config;
pub mod deliver;
pub mod lifecycle;
pub mod model;
pub mod plane;
pub mod reconcile;
pub mod service;
pub mod sinks;
pub mod store;
