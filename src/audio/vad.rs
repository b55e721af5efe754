//! Stand-in until webrtc-vad lands (same API).
#![allow(missing_docs, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    SpeechStarted { onset_ms: u64, at_ms: u64 },
    SpeechEnded { end_ms: u64, at_ms: u64 },
}
#[derive(Debug, Clone, Copy, Default)]
pub struct VadConfig {
    pub mode: VadMode,
    pub start_ms: u32,
    pub hangover_ms: u32,
}
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum VadError {
    #[error("bad")]
    Bad,
}
pub struct VoiceDetector {
    speaking: bool,
    quiet: u32,
    last: u64,
}
impl VoiceDetector {
    pub fn new(_cfg: VadConfig) -> Result<Self, VadError> {
        Ok(Self {
            speaking: false,
            quiet: 0,
            last: 0,
        })
    }
    pub fn process(&mut self, frame: &[i16], ts: u64) -> Result<Option<VadEvent>, VadError> {
        if frame.len() != 160 {
            return Err(VadError::Bad);
        }
        let loud = frame.iter().any(|s| s.unsigned_abs() > 1000);
        if loud {
            self.quiet = 0;
            self.last = ts;
            if !self.speaking {
                self.speaking = true;
                return Ok(Some(VadEvent::SpeechStarted {
                    onset_ms: ts,
                    at_ms: ts,
                }));
            }
        } else if self.speaking {
            self.quiet += 20;
            if self.quiet >= 200 {
                self.speaking = false;
                return Ok(Some(VadEvent::SpeechEnded {
                    end_ms: self.last + 20,
                    at_ms: ts,
                }));
            }
        }
        Ok(None)
    }
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }
    pub fn reset(&mut self) {
        self.speaking = false
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VadMode {
    Quality,
    LowBitrate,
    #[default]
    Aggressive,
    VeryAggressive,
}
impl TryFrom<u8> for VadMode {
    type Error = VadError;
    fn try_from(v: u8) -> Result<Self, VadError> {
        Ok(match v {
            0 => Self::Quality,
            1 => Self::LowBitrate,
            2 => Self::Aggressive,
            3 => Self::VeryAggressive,
            _ => return Err(VadError::Bad),
        })
    }
}
impl From<VadMode> for u8 {
    fn from(m: VadMode) -> u8 {
        m as u8
    }
}
impl VadConfig {
    pub fn validate(&self) -> Result<(), VadError> {
        Ok(())
    }
}
