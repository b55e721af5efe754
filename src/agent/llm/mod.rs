//! The LLM agent's parts: a hosted speech-to-text, chat model and text-to-speech in one
//! conversation.
//!
//! So far: [`speakable`], which cuts the model's tokens into pieces the text-to-speech
//! can start saying while the model is still writing. The agent itself (profiles, tools,
//! barge-in with providers, fallbacks) is issue 13's open part.

pub mod speakable;
