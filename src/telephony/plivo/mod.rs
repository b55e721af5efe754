//! Plivo: answer XML, typed callbacks, signatures, the audio-stream WebSocket messages, REST.

pub mod answer;
pub mod callback;
pub mod config;
pub mod rest;
pub mod seen;
pub mod signature;
pub mod stream;
