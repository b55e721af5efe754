//! The stereo WAV file of one recording, and the repair of files a crash left behind.
//!
//! A recording is written as `NAME.wav.part` with hound (16-bit PCM, left = caller, right =
//! agent) through a small buffer, and its header is rewritten at least every
//! [`FLUSH_EVERY_MS`] of audio, so a crash leaves a readable file missing at most that
//! much. [`WavSink::finalize`] fixes the header and renames it to `NAME.wav`. A `.part`
//! found at start-up is repaired ([`repair`]): its RIFF and data sizes are set from the file's
//! length, a torn last sample dropped, and it is renamed like a finished one.
//!
//! A file being written holds an exclusive advisory lock (`flock`) from creation until it
//! has been renamed; the kernel drops it when the process dies. Repair skips a locked file,
//! so an instance starting on a recordings folder another live instance writes to leaves
//! that instance's recordings alone.
//!
//! Never: holds more than the write buffer and the resampler state in memory, or trusts a
//! header it reads back ([`plan_repair`] takes any bytes).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::config::RecordingRate;
use super::timeline::BLOCK;
use crate::audio::resample::{Rate, Resampler};

/// The header is rewritten (and the buffer flushed) after this much audio.
pub const FLUSH_EVERY_MS: u64 = 500;
/// Bytes buffered before a write reaches the file (128 ms of 8 kHz stereo, 64 ms at 16 kHz).
pub const WRITE_BUFFER: usize = 4 * 1024;
/// The suffix of a recording still being written.
pub const PART_SUFFIX: &str = ".part";
/// Header bytes read when repairing a file (hound writes 44 or 68).
const HEADER_READ: usize = 4_096;

/// Why a recording could not be written or repaired.
#[derive(Debug, Error)]
pub enum WavError {
    /// The file system refused.
    #[error("recording file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// hound refused (bad spec, file too long).
    #[error("recording file {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: hound::Error,
    },
    /// A file to repair is locked by a live process (or was finished meanwhile): it is not
    /// left behind.
    #[error("{path} is being written by another process")]
    Busy {
        /// The file.
        path: PathBuf,
    },
    /// A file to repair is not a WAV file voxgate could have written.
    #[error("cannot repair {path}: {reason}")]
    Unrepairable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
}

impl WavError {
    /// A fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Wav { .. } => "wav",
            Self::Busy { .. } => "busy",
            Self::Unrepairable { .. } => "unrepairable",
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WavError + '_ {
    move |source| WavError::Io {
        path: path.to_owned(),
        source,
    }
}

fn wav(path: &Path) -> impl FnOnce(hound::Error) -> WavError + '_ {
    move |source| WavError::Wav {
        path: path.to_owned(),
        source,
    }
}

/// 8 kHz → 16 kHz for both channels, in whole blocks.
struct Upsample {
    caller: Resampler,
    agent: Resampler,
    caller_out: Box<[i16]>,
    agent_out: Box<[i16]>,
}

/// One recording being written.
pub struct WavSink {
    writer: hound::WavWriter<BufWriter<File>>,
    /// A second handle on the file, holding its lock until the rename (best effort: `None`
    /// where the file system has no locks).
    lock: Option<File>,
    part: PathBuf,
    sample_rate: u32,
    upsample: Option<Upsample>,
    /// Samples per channel written since the header was last rewritten.
    unflushed: u64,
    flush_every: u64,
}

impl WavSink {
    /// Creates `part` (which must not exist) for a stereo recording at `rate`.
    pub fn create(part: PathBuf, rate: RecordingRate) -> Result<Self, WavError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(io(&part))?;
        // Held through a second handle until the rename; none where the file system has
        // no locks.
        let lock = match file.try_lock() {
            Ok(()) => file.try_clone().ok(),
            Err(_) => None,
        };
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate.hz(),
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file), spec)
            .map_err(wav(&part))?;
        let upsample = match rate {
            RecordingRate::Hz8000 => None,
            RecordingRate::Hz16000 => {
                let make = || Resampler::new(Rate::Hz8000, Rate::Hz16000);
                let (caller, agent) = match (make(), make()) {
                    (Ok(c), Ok(a)) => (c, a),
                    _ => {
                        return Err(WavError::Unrepairable {
                            path: part,
                            reason: "no 8 kHz → 16 kHz resampler",
                        });
                    }
                };
                let out = caller.output_chunk();
                Some(Upsample {
                    caller,
                    agent,
                    caller_out: vec![0; out].into_boxed_slice(),
                    agent_out: vec![0; out].into_boxed_slice(),
                })
            }
        };
        Ok(Self {
            writer,
            lock,
            part,
            sample_rate: rate.hz(),
            upsample,
            unflushed: 0,
            flush_every: u64::from(rate.hz()) * FLUSH_EVERY_MS / 1_000,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.part
    }

    /// Samples per second per channel.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Appends one block of 8 kHz audio per channel; rewrites the header when due.
    /// Returns the bytes appended.
    pub fn write_block(&mut self, caller: &[i16], agent: &[i16]) -> Result<u64, WavError> {
        let (caller, agent) = match self.upsample.as_mut() {
            None => (caller, agent),
            Some(up) if caller.len() == BLOCK && agent.len() == BLOCK => {
                let n = up
                    .caller
                    .process(caller, &mut up.caller_out)
                    .unwrap_or_default();
                let m = up
                    .agent
                    .process(agent, &mut up.agent_out)
                    .unwrap_or_default();
                (&up.caller_out[..n], &up.agent_out[..m.min(n)])
            }
            Some(_) => return Ok(0),
        };
        let n = caller.len().min(agent.len());
        let mut samples = self.writer.get_i16_writer(2 * n as u32);
        for (&c, &a) in caller[..n].iter().zip(&agent[..n]) {
            samples.write_sample(c);
            samples.write_sample(a);
        }
        samples.flush().map_err(wav(&self.part))?;
        self.unflushed += n as u64;
        if self.unflushed >= self.flush_every {
            self.flush()?;
        }
        Ok(4 * n as u64)
    }

    /// Rewrites the header and pushes buffered audio to the file.
    pub fn flush(&mut self) -> Result<(), WavError> {
        self.unflushed = 0;
        self.writer.flush().map_err(wav(&self.part))
    }

    /// Finishes the file and renames it from `NAME.wav.part` to `NAME.wav`; returns the final
    /// path and the recording's length.
    pub fn finalize(self) -> Result<(PathBuf, Duration), WavError> {
        let frames = self.writer.duration();
        let rate = self.sample_rate;
        let part = self.part;
        self.writer.finalize().map_err(wav(&part))?;
        let done = finished_path(&part);
        std::fs::rename(&part, &done).map_err(io(&part))?;
        drop(self.lock);
        Ok((done, frames_duration(frames.into(), rate)))
    }
}

/// Whether `path` still names the open `file`.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

/// `NAME.wav.part` → `NAME.wav`.
pub fn finished_path(part: &Path) -> PathBuf {
    let text = part.as_os_str().to_string_lossy();
    PathBuf::from(text.strip_suffix(PART_SUFFIX).unwrap_or(&text).to_owned())
}

fn frames_duration(frames: u64, rate: u32) -> Duration {
    Duration::from_micros(frames * 1_000_000 / u64::from(rate.max(1)))
}

/// What [`plan_repair`] found: the sizes to write back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairPlan {
    /// The file's length after the repair (a torn last sample frame dropped).
    pub file_len: u64,
    /// The RIFF chunk size (file length − 8).
    pub riff_size: u32,
    /// Where the data chunk's size field is.
    pub data_size_offset: u64,
    /// The data chunk's size.
    pub data_size: u32,
    /// Channels × bytes per sample.
    pub block_align: u16,
    /// Samples per second per channel.
    pub sample_rate: u32,
}

impl RepairPlan {
    /// The repaired recording's length.
    pub fn duration(&self) -> Duration {
        let frames = u64::from(self.data_size) / u64::from(self.block_align.max(1));
        frames_duration(frames, self.sample_rate)
    }
}

/// Reads a WAV header (any bytes) and the file's length, and says what sizes make the file
/// whole: every complete sample frame after the data chunk's start is kept.
pub fn plan_repair(header: &[u8], file_len: u64) -> Result<RepairPlan, &'static str> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(header.get(at..at + 4)?.try_into().ok()?))
    };
    if header.get(0..4) != Some(b"RIFF") || header.get(8..12) != Some(b"WAVE") {
        return Err("not a RIFF/WAVE file");
    }
    let mut at = 12usize;
    let mut format: Option<(u16, u32)> = None;
    loop {
        let id = header
            .get(at..at + 4)
            .ok_or("no data chunk in the header")?;
        let size = u32_at(at + 4).ok_or("truncated chunk header")?;
        let body = at + 8;
        if id == b"data" {
            let (block_align, sample_rate) = format.ok_or("data before fmt")?;
            let start = body as u64;
            if file_len < start {
                return Err("file shorter than its header");
            }
            let available = (file_len - start).min(u64::from(u32::MAX) - start);
            let data = available - available % u64::from(block_align);
            let file_len = start + data;
            return Ok(RepairPlan {
                file_len,
                riff_size: u32::try_from(file_len - 8).map_err(|_| "file too long")?,
                data_size_offset: start - 4,
                data_size: u32::try_from(data).map_err(|_| "file too long")?,
                block_align,
                sample_rate,
            });
        }
        if id == b"fmt " {
            let field = |off: usize| header.get(body + off..body + off + 2);
            let tag = field(0).ok_or("truncated fmt chunk")?;
            let rate = u32_at(body + 4).ok_or("truncated fmt chunk")?;
            let align = field(12).ok_or("truncated fmt chunk")?;
            let bits = field(14).ok_or("truncated fmt chunk")?;
            let (tag, align, bits) = (
                u16::from_le_bytes([tag[0], tag[1]]),
                u16::from_le_bytes([align[0], align[1]]),
                u16::from_le_bytes([bits[0], bits[1]]),
            );
            // PCM, or WAVE_FORMAT_EXTENSIBLE (hound's choice for some specs).
            if !(tag == 1 || tag == 0xFFFE) || bits != 16 || align == 0 || rate == 0 {
                return Err("not 16-bit PCM");
            }
            format = Some((align, rate));
        }
        // Chunks are padded to an even length.
        let next = body
            .checked_add(size as usize)
            .and_then(|n| n.checked_add(size as usize & 1))
            .ok_or("chunk size overflows")?;
        if next > header.len() {
            return Err("no data chunk in the header");
        }
        at = next;
    }
}

/// Repairs `NAME.wav.part` left by a crash and renames it to `NAME.wav`. Returns the final
/// path, the recording's length and its sample rate; [`WavError::Busy`] when a live process
/// holds the file (or has just finished it).
pub fn repair(part: &Path) -> Result<(PathBuf, Duration, u32), WavError> {
    let busy = || WavError::Busy {
        path: part.to_owned(),
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(part) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(busy()),
        Err(error) => return Err(io(part)(error)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(busy()),
        // No locks on this file system: one instance per folder, as before locks.
        Err(TryLockError::Error(_)) => {}
    }
    // Opened just before its writer renamed it and let go: it is finished, not left.
    if !same_file(&file, part) {
        return Err(busy());
    }
    let file_len = file.metadata().map_err(io(part))?.len();
    let mut header = Vec::with_capacity(HEADER_READ);
    (&mut file)
        .take(HEADER_READ as u64)
        .read_to_end(&mut header)
        .map_err(io(part))?;
    let plan = plan_repair(&header, file_len).map_err(|reason| WavError::Unrepairable {
        path: part.to_owned(),
        reason,
    })?;
    file.set_len(plan.file_len).map_err(io(part))?;
    file.seek(SeekFrom::Start(4)).map_err(io(part))?;
    file.write_all(&plan.riff_size.to_le_bytes())
        .map_err(io(part))?;
    file.seek(SeekFrom::Start(plan.data_size_offset))
        .map_err(io(part))?;
    file.write_all(&plan.data_size.to_le_bytes())
        .map_err(io(part))?;
    file.sync_all().map_err(io(part))?;
    drop(file);
    let done = finished_path(part);
    std::fs::rename(part, &done).map_err(io(part))?;
    Ok((done, plan.duration(), plan.sample_rate))
}

#[cfg(test)]
mod tests;
