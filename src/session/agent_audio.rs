//! The agent's audio, at whatever rate its text-to-speech makes, brought to the 8 kHz
//! playout works in.
//!
//! An agent sends chunks of any length at any of the audio core's rates; the resampler
//! takes exactly one 20 ms frame per call, so input waits here until a frame is whole. At
//! the end of a turn the last part frame is padded with silence and one more silent frame
//! pushes the filter's delay out, so the turn's last syllable is not lost.
//!
//! Never: allocates after the first turn at a rate (the buffers are sized once per rate),
//! or holds more than one frame of input.

use crate::audio::resample::{Rate, ResampleError, Resampler};

/// Converts one call's agent audio to 8 kHz.
#[derive(Default)]
pub(super) struct AgentAudio {
    resampler: Option<Resampler>,
    pending: Vec<i16>,
    out: Vec<i16>,
}

impl AgentAudio {
    /// Converts `samples` at `rate` and hands the 8 kHz result to `sink`, in pieces.
    /// Audio at a new rate first finishes what the old rate left.
    pub(super) fn push(
        &mut self,
        rate: Rate,
        samples: &[i16],
        mut sink: impl FnMut(&[i16]),
    ) -> Result<(), ResampleError> {
        if rate == Rate::Hz8000 {
            self.finish(&mut sink)?;
            sink(samples);
            return Ok(());
        }
        if self.resampler.as_ref().map(Resampler::input_rate) != Some(rate) {
            self.finish(&mut sink)?;
            let resampler = Resampler::new(rate, Rate::Hz8000)?;
            self.pending = Vec::with_capacity(resampler.input_chunk());
            self.out = vec![0; resampler.output_chunk() + 8];
            self.resampler = Some(resampler);
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        let chunk = resampler.input_chunk();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (chunk - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == chunk {
                let n = resampler.process(&self.pending, &mut self.out)?;
                self.pending.clear();
                sink(&self.out[..n]);
            }
        }
        Ok(())
    }

    /// The turn is over: converts what waits (padded with silence) and the filter's delay,
    /// then resets for the next turn.
    pub(super) fn finish(&mut self, mut sink: impl FnMut(&[i16])) -> Result<(), ResampleError> {
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        let chunk = resampler.input_chunk();
        let tail = !self.pending.is_empty();
        if tail {
            self.pending.resize(chunk, 0);
            let n = resampler.process(&self.pending, &mut self.out)?;
            sink(&self.out[..n]);
        }
        if tail || resampler.delay_samples() > 0 {
            self.pending.clear();
            self.pending.resize(chunk, 0);
            let n = resampler.process(&self.pending, &mut self.out)?;
            sink(&self.out[..n.min(resampler.delay_samples())]);
        }
        self.pending.clear();
        resampler.reset();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, ms: u32) -> Vec<i16> {
        let n = rate * ms / 1_000;
        (0..n)
            .map(|i| {
                let t = i as f64 / rate as f64;
                (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn odd_sized_chunks_at_22050_come_out_as_8k_audio_of_the_same_length() {
        let mut audio = AgentAudio::default();
        let input = tone(22_050, 500);
        let mut out = Vec::new();
        for piece in input.chunks(1_000) {
            audio
                .push(Rate::Hz22050, piece, |s| out.extend_from_slice(s))
                .unwrap();
        }
        audio.finish(|s| out.extend_from_slice(s)).unwrap();
        // 500 ms → 4000 samples, padded up to whole frames plus the filter's delay.
        assert!(
            (4_000..=4_000 + 160 + 40).contains(&out.len()),
            "{}",
            out.len()
        );
        let rms = (out[400..3_600]
            .iter()
            .map(|&s| (s as f64).powi(2))
            .sum::<f64>()
            / 3_200.0)
            .sqrt();
        assert!(rms > 4_000.0, "the tone survives: rms {rms}");
    }

    #[test]
    fn eight_khz_passes_through_and_a_rate_change_flushes_first() {
        let mut audio = AgentAudio::default();
        let mut out = Vec::new();
        audio
            .push(Rate::Hz16000, &tone(16_000, 30), |s| {
                out.extend_from_slice(s)
            })
            .unwrap();
        assert_eq!(out.len(), 160, "one whole 20 ms frame so far");
        audio
            .push(Rate::Hz8000, &[7; 100], |s| out.extend_from_slice(s))
            .unwrap();
        assert!(out.len() >= 320 + 100, "the 10 ms left over came out first");
        assert_eq!(&out[out.len() - 100..], &[7; 100]);
    }
}
