//! Call recording: a stereo WAV per call (left = caller, right = agent) written off the
//! audio path, kept readable through crashes, then finalized, optionally encoded, uploaded
//! and announced through [`publish::RecordingAnnouncer`] to whoever subscribes (the server
//! wires the control plane, which reports `call.recording_ready`).
//!
//! This module must never block or delay the audio path: frames reach the writer through
//! bounded queues and a full queue drops (and counts) rather than waits.

pub mod config;
pub mod timeline;
pub mod wav;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

/// A recording the writer has finalized: a complete, valid WAV file on local disk, ready
/// to be encoded, uploaded and announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRecording {
    /// The backend's call id.
    pub call_id: String,
    /// The finalized stereo WAV file.
    pub path: PathBuf,
    /// The recording's length (both channels are this long).
    pub duration: Duration,
    /// Samples per second per channel (8,000 or 16,000).
    pub sample_rate: u32,
}

pub mod encode;
pub mod publish;
pub mod publish_config;
pub mod retention;
pub mod target;
pub mod upload;
