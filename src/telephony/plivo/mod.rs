//! Plivo: answer XML, signatures, the audio-stream WebSocket messages, REST.

pub mod signature;
pub mod stream;
