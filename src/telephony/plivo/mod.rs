//! Plivo: answer XML, typed callbacks, signatures, the audio-stream WebSocket messages, REST.

pub mod answer;
pub mod callback;
pub mod rest;
pub mod signature;
pub mod stream;
