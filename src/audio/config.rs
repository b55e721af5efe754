//! The `[audio]` configuration section: the DSP pipeline's queues and threads and the
//! VAD's settings, read from the file and turned into a [`PipelineConfig`].
//!
//! It only defaults and checks values; the pipeline and the detector stay plain data and
//! never see the file. Like the rest of `audio`, it never touches tokio.

use serde::{Deserialize, Serialize};

use super::pipeline::PipelineConfig;
use super::vad::VadMode;
use crate::setting::{InvalidSetting, invalid};

/// A queue longer than this (a minute of 20 ms frames) is a backlog, not a queue.
const MAX_QUEUE_FRAMES: usize = 3_000;

/// `[audio]` in the file: every key optional, unknown keys refused.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudio {
    /// DSP worker threads; 0 = one per core.
    pub workers: Option<usize>,
    /// Frames (20 ms each) a call may queue towards its worker.
    pub input_queue_frames: Option<usize>,
    /// Frames each output queue of a call holds.
    pub output_queue_frames: Option<usize>,
    /// webrtc-vad aggressiveness, 0 (least) to 3 (most).
    pub vad_mode: Option<u8>,
    /// Voiced time before speech is declared started, ms.
    pub vad_start_ms: Option<u32>,
    /// Unvoiced time before speech is declared ended, ms.
    pub vad_hangover_ms: Option<u32>,
}

impl RawAudio {
    /// Checks every value and fills in the defaults.
    pub fn validate(self) -> Result<PipelineConfig, InvalidSetting> {
        let defaults = PipelineConfig::default();
        let mut vad = defaults.vad;
        if let Some(ms) = self.vad_start_ms {
            vad.start_ms = ms;
        }
        if let Some(ms) = self.vad_hangover_ms {
            vad.hangover_ms = ms;
        }
        if let Some(mode) = self.vad_mode {
            vad.mode = VadMode::try_from(mode)
                .map_err(|_| invalid("audio.vad_mode", format!("{mode} is not 0, 1, 2 or 3")))?;
        }
        vad.validate()
            .map_err(|e| invalid("audio.vad_*", e.to_string()))?;
        Ok(PipelineConfig {
            workers: self.workers.unwrap_or(defaults.workers),
            input_capacity: queue(
                "audio.input_queue_frames",
                self.input_queue_frames,
                defaults.input_capacity,
            )?,
            output_capacity: queue(
                "audio.output_queue_frames",
                self.output_queue_frames,
                defaults.output_capacity,
            )?,
            pool_capacity: defaults.pool_capacity,
            vad,
        })
    }
}

/// The file's form of a validated pipeline (the pool size is not a setting).
impl From<&PipelineConfig> for RawAudio {
    fn from(config: &PipelineConfig) -> Self {
        // Destructured so a new setting cannot be left out of the printed configuration.
        let PipelineConfig {
            workers,
            input_capacity,
            output_capacity,
            pool_capacity: _,
            vad,
        } = *config;
        Self {
            workers: Some(workers),
            input_queue_frames: Some(input_capacity),
            output_queue_frames: Some(output_capacity),
            vad_mode: Some(vad.mode.into()),
            vad_start_ms: Some(vad.start_ms),
            vad_hangover_ms: Some(vad.hangover_ms),
        }
    }
}

fn queue(key: &'static str, value: Option<usize>, default: usize) -> Result<usize, InvalidSetting> {
    match value {
        Some(0) => Err(invalid(key, "must be at least 1")),
        Some(n) if n > MAX_QUEUE_FRAMES => Err(invalid(
            key,
            "more than a minute of frames is not a queue, it is a backlog",
        )),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}
