//! A finalized WAV recording → an Ogg Opus file (RFC 7845), for when `format = "opus"`.
//!
//! The stream is what every Ogg Opus player expects: an `OpusHead` page (channel count,
//! pre-skip, input rate), an `OpusTags` page, then one Opus packet per 20 ms of input
//! with 48 kHz granule positions. Pre-skip is the encoder's lookahead and the last page's
//! granule position trims the padding of the final frame, so a decoder returns exactly
//! as many samples as the WAV held.
//!
//! It must never load the whole recording: it reads 20 ms at a time and holds at most one
//! Ogg page (≤ [`PACKETS_PER_PAGE`] packets), whatever the call's length. It never leaves
//! a partial output behind: it writes `<output>.part` and renames it when complete.
//! CPU-bound and blocking: async callers run it on `spawn_blocking`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use audiopus::coder::Encoder;
use audiopus::{Application, Channels, SampleRate};
use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use thiserror::Error;

/// Length of one Opus frame.
pub const FRAME_MS: u32 = 20;
/// Packets per Ogg page: one page per second of audio keeps pages small and seekable.
pub const PACKETS_PER_PAGE: u64 = 50;
/// Opus always counts granule positions at 48 kHz (RFC 7845 §4).
const GRANULE_RATE: u64 = 48_000;
/// The largest packet libopus produces for a 20 ms frame is far below this (RFC 6716
/// allows at most 1275 bytes per frame).
const MAX_PACKET_BYTES: usize = 4_000;
/// Written into `OpusTags` as the vendor string.
const VENDOR: &str = concat!("voxgate ", env!("CARGO_PKG_VERSION"));

/// Why a recording could not be encoded. Every variant is final for that file: the
/// caller keeps (and uploads) the WAV instead.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The input is not a readable WAV file (bad header, truncated data).
    #[error("not a readable WAV file: {0}")]
    Wav(#[from] hound::Error),
    /// A WAV that Opus cannot take as it is.
    #[error("unsupported WAV for Opus: {0}")]
    Unsupported(String),
    /// libopus refused.
    #[error("opus encoder: {0}")]
    Opus(#[from] audiopus::Error),
    /// Writing the output failed.
    #[error("writing the Ogg Opus file: {0}")]
    Io(#[from] std::io::Error),
}

/// What was encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Samples per channel read from the WAV.
    pub samples: u64,
    /// The WAV's sample rate (also stored in `OpusHead` as the input rate).
    pub sample_rate: u32,
    /// Playback length: `samples / sample_rate`.
    pub duration: Duration,
    /// Opus packets written.
    pub packets: u64,
    /// Pre-skip, in 48 kHz samples.
    pub pre_skip: u16,
}

/// The `.opus` file next to `wav` (same stem).
pub fn opus_path(wav: &Path) -> PathBuf {
    wav.with_extension("opus")
}

/// Encodes the WAV file at `input` into an Ogg Opus file at `output`, atomically: on
/// error nothing is left at `output` (nor at `<output>.part`).
pub fn encode_file(input: &Path, output: &Path) -> Result<Encoded, EncodeError> {
    let mut part = output.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let result = (|| {
        let reader = BufReader::new(File::open(input)?);
        let mut writer = BufWriter::new(File::create(&part)?);
        let encoded = encode(reader, &mut writer, rand::random())?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&part, output)?;
        Ok(encoded)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Encodes a WAV (16-bit integer PCM, 1 or 2 channels, 8/12/16/24/48 kHz) read from `wav`
/// into an Ogg Opus stream with bitstream serial `serial`, written to `out`.
pub fn encode<R: Read, W: Write>(wav: R, out: W, serial: u32) -> Result<Encoded, EncodeError> {
    let reader = hound::WavReader::new(wav)?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(EncodeError::Unsupported(format!(
            "{}-bit {:?} samples (need 16-bit integer PCM)",
            spec.bits_per_sample, spec.sample_format
        )));
    }
    let channels = match spec.channels {
        1 => Channels::Mono,
        2 => Channels::Stereo,
        n => {
            return Err(EncodeError::Unsupported(format!(
                "{n} channels (need 1 or 2)"
            )));
        }
    };
    let rate = match spec.sample_rate {
        8_000 => SampleRate::Hz8000,
        12_000 => SampleRate::Hz12000,
        16_000 => SampleRate::Hz16000,
        24_000 => SampleRate::Hz24000,
        48_000 => SampleRate::Hz48000,
        other => {
            return Err(EncodeError::Unsupported(format!(
                "{other} Hz (need 8, 12, 16, 24 or 48 kHz)"
            )));
        }
    };
    let encoder = Encoder::new(rate, channels, Application::Voip)?;
    let input_rate = u64::from(spec.sample_rate);
    let scale = GRANULE_RATE / input_rate;
    let lookahead = u64::from(encoder.lookahead()?);
    let pre_skip = u16::try_from(lookahead * scale)
        .map_err(|_| EncodeError::Unsupported("encoder lookahead too long".into()))?;

    let mut ogg = PacketWriter::new(out);
    ogg.write_packet(
        opus_head(spec.channels as u8, pre_skip, spec.sample_rate),
        serial,
        PacketWriteEndInfo::EndPage,
        0,
    )?;
    ogg.write_packet(opus_tags(), serial, PacketWriteEndInfo::EndPage, 0)?;

    let channel_count = usize::from(spec.channels);
    let frame = spec.sample_rate as usize * FRAME_MS as usize / 1000;
    let mut pcm = vec![0i16; frame * channel_count];
    let mut packet = vec![0u8; MAX_PACKET_BYTES];
    let mut samples_in = reader.into_samples::<i16>();
    // Interleaved samples read; a trailing half frame (odd count in a stereo file) is
    // dropped like any decoder would.
    let mut read = 0u64;
    let mut exhausted = false;
    let mut encoded_frames = 0u64;
    // One packet is held back so the last one can close the stream with the final
    // granule position.
    let mut pending: Option<(Vec<u8>, u64)> = None;
    loop {
        let mut filled = 0;
        if !exhausted {
            while filled < pcm.len() {
                match samples_in.next() {
                    Some(sample) => {
                        pcm[filled] = sample?;
                        filled += 1;
                    }
                    None => {
                        exhausted = true;
                        break;
                    }
                }
            }
            read += filled as u64;
        }
        pcm[filled..].fill(0);
        let samples = read / channel_count as u64;
        // Enough frames once the decoder's output, minus pre-skip, covers every sample.
        if exhausted
            && filled == 0
            && encoded_frames > 0
            && encoded_frames * frame as u64 >= samples + lookahead
        {
            break;
        }
        let len = encoder.encode(&pcm, &mut packet)?;
        encoded_frames += 1;
        if let Some((data, granule)) = pending.take() {
            let end = if (encoded_frames - 1).is_multiple_of(PACKETS_PER_PAGE) {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            ogg.write_packet(data, serial, end, granule)?;
        }
        pending = Some((
            packet[..len].to_vec(),
            encoded_frames * frame as u64 * scale,
        ));
    }
    let samples = read / channel_count as u64;
    if let Some((data, _)) = pending.take() {
        // End trimming (RFC 7845 §4.4): the last granule position says how many decoded
        // samples are real.
        let last = u64::from(pre_skip) + samples * scale;
        ogg.write_packet(data, serial, PacketWriteEndInfo::EndStream, last)?;
    }
    let mut out = ogg.into_inner();
    out.flush()?;
    Ok(Encoded {
        samples,
        sample_rate: spec.sample_rate,
        duration: Duration::from_secs_f64(samples as f64 / input_rate as f64),
        packets: encoded_frames,
        pre_skip,
    })
}

/// The identification header (RFC 7845 §5.1), channel mapping family 0.
fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(channels);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family: mono or stereo, no table
    head
}

/// The comment header (RFC 7845 §5.2): vendor string, no user comments.
fn opus_tags() -> Vec<u8> {
    let mut tags = Vec::with_capacity(16 + VENDOR.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
    tags.extend_from_slice(VENDOR.as_bytes());
    tags.extend_from_slice(&0u32.to_le_bytes());
    tags
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn wav(spec: hound::WavSpec, frames: usize) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut bytes, spec).unwrap();
        for i in 0..frames * usize::from(spec.channels) {
            match spec.bits_per_sample {
                16 => writer.write_sample((i % 1000) as i16).unwrap(),
                _ => writer.write_sample(i as i32 % 1000).unwrap(),
            }
        }
        writer.finalize().unwrap();
        bytes.into_inner()
    }

    fn spec(channels: u16, sample_rate: u32, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    /// Splits an Ogg stream into (header type, granule position, segment count) per page.
    fn pages(ogg: &[u8]) -> Vec<(u8, u64, u8)> {
        let mut pages = Vec::new();
        let mut at = 0;
        while at < ogg.len() {
            assert_eq!(&ogg[at..at + 4], b"OggS", "page at {at}");
            let kind = ogg[at + 5];
            let granule = u64::from_le_bytes(ogg[at + 6..at + 14].try_into().unwrap());
            let segments = ogg[at + 26];
            let body: usize = ogg[at + 27..at + 27 + usize::from(segments)]
                .iter()
                .map(|&s| usize::from(s))
                .sum();
            pages.push((kind, granule, segments));
            at += 27 + usize::from(segments) + body;
        }
        pages
    }

    #[test]
    fn a_stereo_call_becomes_an_rfc7845_stream_with_exact_end_trimming() {
        // 2.51 s at 8 kHz: not a whole number of 20 ms frames.
        let frames = 20_080;
        let mut ogg = Vec::new();
        let encoded = encode(Cursor::new(wav(spec(2, 8_000, 16), frames)), &mut ogg, 7).unwrap();
        assert_eq!(encoded.samples, frames as u64);
        assert_eq!(encoded.duration, Duration::from_millis(2_510));
        assert_eq!(&ogg[28..36], b"OpusHead");
        assert_eq!(ogg[28 + 9], 2, "channel count");
        assert_eq!(
            u32::from_le_bytes(ogg[28 + 12..28 + 16].try_into().unwrap()),
            8_000,
            "input rate"
        );
        let pages = pages(&ogg);
        assert_eq!(pages[0].0, 0x02, "first page: beginning of stream");
        assert_eq!(
            (pages[0].1, pages[1].1),
            (0, 0),
            "header pages have granule 0"
        );
        let (last_kind, last_granule, _) = *pages.last().unwrap();
        assert_eq!(last_kind & 0x04, 0x04, "last page: end of stream");
        assert_eq!(
            last_granule,
            u64::from(encoded.pre_skip) + frames as u64 * 6,
            "end trimming leaves exactly the input's samples"
        );
        // Granule positions never go back.
        let granules: Vec<u64> = pages.iter().map(|p| p.1).collect();
        assert!(granules.windows(2).all(|w| w[0] <= w[1]), "{granules:?}");
        // Every sample plus the encoder's lookahead is covered by the packets sent.
        assert!(encoded.packets * 960 >= u64::from(encoded.pre_skip) + frames as u64 * 6);
        assert!(pages.len() >= 2 + (encoded.packets / PACKETS_PER_PAGE) as usize);
    }

    #[test]
    fn an_empty_recording_is_still_a_valid_stream_of_length_zero() {
        let mut ogg = Vec::new();
        let encoded = encode(Cursor::new(wav(spec(2, 16_000, 16), 0)), &mut ogg, 1).unwrap();
        assert_eq!((encoded.samples, encoded.duration), (0, Duration::ZERO));
        let last = *pages(&ogg).last().unwrap();
        assert_eq!(last.1, u64::from(encoded.pre_skip));
    }

    #[test]
    fn refuses_what_opus_cannot_take() {
        for (spec, want) in [
            (spec(2, 44_100, 16), "44100 Hz"),
            (spec(3, 8_000, 16), "3 channels"),
            (spec(2, 8_000, 24), "24-bit"),
        ] {
            let error = encode(Cursor::new(wav(spec, 10)), Vec::new(), 1).unwrap_err();
            assert!(
                matches!(error, EncodeError::Unsupported(_)) && error.to_string().contains(want),
                "{error}"
            );
        }
        let error = encode(
            Cursor::new(b"RIFF\x10\0\0\0WAVEjunk".to_vec()),
            Vec::new(),
            1,
        );
        assert!(matches!(error, Err(EncodeError::Wav(_))), "{error:?}");
    }

    proptest::proptest! {
        #[test]
        fn damaged_recordings_are_an_error_or_a_stream_never_a_panic(
            at in 0usize..2_000,
            byte: u8,
            cut in 0usize..2_000,
        ) {
            let mut bytes = wav(spec(2, 8_000, 16), 400);
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut.max(1));
            let mut out = Vec::new();
            if encode(Cursor::new(bytes), &mut out, 1).is_ok() {
                proptest::prop_assert_eq!(&out[28..36], b"OpusHead");
            }
        }
    }

    #[test]
    fn a_truncated_file_leaves_no_output_behind() {
        let dir = std::env::temp_dir().join(format!("voxgate-encode-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("c1.wav");
        let bytes = wav(spec(2, 8_000, 16), 8_000);
        std::fs::write(&input, &bytes[..bytes.len() / 2 + 1]).unwrap();
        let output = opus_path(&input);
        assert!(encode_file(&input, &output).is_err());
        assert!(!output.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no .part left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
