//! Providers: the speech and LLM adapters an agent talks to, each behind a small API of
//! its own (speak text, recognise audio, complete a chat).
//!
//! A provider owns its engine or connection and its own `[section]` of configuration; it
//! knows nothing of calls, sessions or Plivo. It must never block the caller's task: work
//! happens on the provider's own threads or sockets and comes back through bounded channels.

pub mod api;
pub mod deepgram;
pub mod elevenlabs;
pub mod espeak;
pub mod openai;
pub mod pocketsphinx;
