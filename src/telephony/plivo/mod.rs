//! Plivo: answer XML, signatures, the audio-stream WebSocket messages, REST.

pub mod answer;
pub mod config;
pub mod rest;
pub mod seen;
pub mod signature;
pub mod stream;
