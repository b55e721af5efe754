//! The LLM agent: a hosted speech-to-text, chat model and text-to-speech in one
//! conversation, set up per [`profile`] and run per call by [`run`].
//!
//! [`speakable`] cuts the model's tokens into pieces the voice can start saying while the
//! model still writes; [`tools`] are what the model may do besides talking.

pub mod profile;
pub mod run;
pub mod setup;
pub mod speakable;
pub mod tools;

pub use profile::{Profile, Profiles};
pub use run::{LlmAgent, LlmSetup};
