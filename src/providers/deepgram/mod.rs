//! Deepgram: live speech to text over its WebSocket ([`live`]) and pre-recorded
//! transcription of a call's recording ([`batch`]), sharing one `[deepgram]` section
//! ([`config`]) and the wire messages of the live stream ([`messages`]).
//!
//! Owns: the `/v1/listen` protocol both ways (query, control messages, results, close
//! reasons, error bodies). Never: logs or formats the API key (it goes only into the
//! `Authorization: Token …` header), sends an empty audio frame (Deepgram takes it for the
//! end of the stream), or reads an unbounded message or body.

pub mod batch;
pub mod config;
pub mod live;
pub mod messages;

pub use batch::DeepgramBatch;
pub use config::{DeepgramConfig, RawDeepgram};
pub use live::DeepgramLive;
pub use messages::parse_server_message;

/// The provider's name in logs, errors and metrics.
pub const PROVIDER: &str = "deepgram";
