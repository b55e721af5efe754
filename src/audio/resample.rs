//! Stand-in until the rubato converters land (same API).
#![allow(missing_docs, dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Hz8000,
    Hz16000,
    Hz22050,
    Hz24000,
    Hz44100,
    Hz48000,
}
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ResampleError {
    #[error("bad")]
    Bad,
}
pub struct Resampler {
    n_in: usize,
    n_out: usize,
}
impl Resampler {
    pub fn new(from: Rate, to: Rate) -> Result<Self, ResampleError> {
        Ok(match (from, to) {
            (Rate::Hz8000, Rate::Hz16000) => Self {
                n_in: 160,
                n_out: 320,
            },
            (Rate::Hz16000, Rate::Hz8000) => Self {
                n_in: 320,
                n_out: 160,
            },
            _ => return Err(ResampleError::Bad),
        })
    }
    pub fn input_chunk(&self) -> usize {
        self.n_in
    }
    pub fn output_chunk(&self) -> usize {
        self.n_out
    }
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) -> Result<usize, ResampleError> {
        if input.len() != self.n_in || output.len() < self.n_out {
            return Err(ResampleError::Bad);
        }
        for i in 0..self.n_out {
            output[i] = input[i * self.n_in / self.n_out];
        }
        Ok(self.n_out)
    }
    pub fn reset(&mut self) {}
}
