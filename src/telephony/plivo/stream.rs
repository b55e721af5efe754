//! Plivo's audio-stream WebSocket messages (reference §2), both directions.
//!
//! Inbound text frames are parsed by [`parse_inbound`]: a size check, a pass that reads
//! only the event name, then one that parses the named event's struct. A `media` message parses without allocating (strings are borrowed unless JSON
//! escapes force a copy); its payload is decoded by [`decode_payload`] into buffers the
//! caller owns. Events this module does not know parse to [`Inbound::Unknown`], never to an
//! error, so a new Plivo event cannot break a live call.
//!
//! Every error says what was wrong in a fixed [`ParseError::kind`] label (for metrics) and
//! is a reason to drop that one message, never to panic or to end the call.
//!
//! Outbound messages ([`Outbound`]) are serde structs serialized with serde_json, never
//! hand-built JSON. The simulator uses the same types from the other side, so every
//! message type both serializes and parses.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::audio::g711;

/// Largest WebSocket message accepted, in bytes (Plivo's own limit).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why an inbound message was rejected. The caller drops the message and counts it.
#[derive(Debug, Error)]
pub enum ParseError {
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// Valid or not, the text is not a JSON object (`[1,2]`, `null`, `"media"`).
    #[error("message is not a JSON object")]
    NotAnObject,
    /// Not JSON, or a known event with a field missing or mistyped.
    #[error("malformed {event} message: {source}")]
    Malformed {
        /// The event being parsed (`"message"` when the envelope itself was bad).
        event: &'static str,
        /// What serde_json found.
        source: serde_json::Error,
    },
    /// `start.mediaFormat` names an encoding and rate voxgate does not take.
    #[error("unsupported media format {encoding:?} at {sample_rate} Hz")]
    UnsupportedFormat {
        /// `mediaFormat.encoding` as sent.
        encoding: String,
        /// `mediaFormat.sampleRate` as sent.
        sample_rate: u32,
    },
}

impl ParseError {
    /// A fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too_large",
            Self::NotAnObject => "malformed_json",
            Self::Malformed { source, .. } if source.is_data() => "missing_or_invalid_field",
            Self::Malformed { .. } => "malformed_json",
            Self::UnsupportedFormat { .. } => "unsupported_format",
        }
    }
}

/// Why a media payload could not be turned into samples. The caller drops the frame.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// Not valid standard base64.
    #[error("payload is not valid base64")]
    Base64,
    /// The decoded bytes are not a whole number of samples (odd-length L16).
    #[error("payload of {0} bytes is not a whole number of 16-bit samples")]
    PartialSample(usize),
    /// The payload holds more than the caller's buffers can take.
    #[error("payload too large for the frame buffer")]
    TooLarge,
    /// The payload holds no audio at all.
    #[error("payload is empty")]
    Empty,
}

impl PayloadError {
    /// A fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Base64 => "bad_base64",
            Self::PartialSample(_) => "partial_sample",
            Self::TooLarge => "payload_too_large",
            Self::Empty => "empty_payload",
        }
    }
}

/// The audio encoding of a stream, read from `start.mediaFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFormat {
    /// `audio/x-mulaw` at 8 kHz: one byte per sample.
    MuLaw8k,
    /// `audio/x-l16` at 8 kHz: signed 16-bit little-endian.
    L16At8k,
    /// `audio/x-l16` at 16 kHz: signed 16-bit little-endian.
    L16At16k,
}

impl MediaFormat {
    /// Maps Plivo's `encoding` (a `;rate=` suffix is tolerated) and `sampleRate`.
    pub fn from_plivo(encoding: &str, sample_rate: u32) -> Option<Self> {
        let mut parts = encoding.split(';');
        let base = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        for param in parts {
            if let Some(rate) = param.trim().strip_prefix("rate=")
                && rate.parse::<u32>().ok() != Some(sample_rate)
            {
                return None;
            }
        }
        match (base.as_str(), sample_rate) {
            ("audio/x-mulaw", 8_000) => Some(Self::MuLaw8k),
            ("audio/x-l16", 8_000) => Some(Self::L16At8k),
            ("audio/x-l16", 16_000) => Some(Self::L16At16k),
            _ => None,
        }
    }

    /// Samples per second.
    pub fn sample_rate(self) -> u32 {
        match self {
            Self::MuLaw8k | Self::L16At8k => 8_000,
            Self::L16At16k => 16_000,
        }
    }

    /// Bytes per sample on the wire.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Self::MuLaw8k => 1,
            Self::L16At8k | Self::L16At16k => 2,
        }
    }

    /// The `contentType` and `sampleRate` of a `playAudio` in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::MuLaw8k => "audio/x-mulaw",
            Self::L16At8k | Self::L16At16k => "audio/x-l16",
        }
    }
}

/// Decodes a base64 `payload` in `format` into `out`, using `scratch` for the raw bytes.
/// Returns the number of samples written. Allocates nothing.
pub fn decode_payload(
    payload: &str,
    format: MediaFormat,
    scratch: &mut [u8],
    out: &mut [i16],
) -> Result<usize, PayloadError> {
    let bytes = match BASE64.decode_slice(payload.as_bytes(), scratch) {
        Ok(n) => &scratch[..n],
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => return Err(PayloadError::TooLarge),
        Err(base64::DecodeSliceError::DecodeError(_)) => return Err(PayloadError::Base64),
    };
    if bytes.is_empty() {
        return Err(PayloadError::Empty);
    }
    match format {
        MediaFormat::MuLaw8k => {
            g711::decode_ulaw(bytes, out).map_err(|_| PayloadError::TooLarge)?;
            Ok(bytes.len())
        }
        MediaFormat::L16At8k | MediaFormat::L16At16k => {
            if bytes.len() % 2 != 0 {
                return Err(PayloadError::PartialSample(bytes.len()));
            }
            let samples = bytes.len() / 2;
            let out = out.get_mut(..samples).ok_or(PayloadError::TooLarge)?;
            for (sample, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *sample = i16::from_le_bytes([pair[0], pair[1]]);
            }
            Ok(samples)
        }
    }
}

/// Encodes samples in `format` as a base64 payload appended to `out`.
pub fn encode_payload(
    samples: &[i16],
    format: MediaFormat,
    scratch: &mut Vec<u8>,
    out: &mut String,
) {
    scratch.clear();
    match format {
        MediaFormat::MuLaw8k => scratch.extend(samples.iter().map(|&s| g711::pcm_to_ulaw(s))),
        MediaFormat::L16At8k | MediaFormat::L16At16k => {
            scratch.extend(samples.iter().flat_map(|s| s.to_le_bytes()))
        }
    }
    BASE64.encode_string(&scratch[..], out);
}

/// A number Plivo sends sometimes as a JSON number, sometimes as a string (`"820"`).
/// A visitor, not an untagged enum: untagged enums buffer their input and allocate.
fn flexible_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Flexible;
    impl de::Visitor<'_> for Flexible {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a non-negative integer, as a number or a string")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
            Ok(n)
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
            s.trim()
                .parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(s), &self))
        }
    }
    d.deserialize_any(Flexible)
}

fn flexible_u64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    flexible_u64(d).map(Some)
}

fn stringify_u64<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

/// `start`: sent once, right after connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    /// Plivo's message counter, from 1.
    #[serde(
        default,
        deserialize_with = "flexible_u64_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    /// The stream's details.
    pub start: StartBody,
    /// Contents of `<Stream extraHeaders>`, top level; see [`parse_extra_headers`].
    #[serde(
        default,
        rename = "extra_headers",
        skip_serializing_if = "Option::is_none"
    )]
    pub extra_headers: Option<String>,
}

/// The body of `start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartBody {
    /// The call's `CallUUID`.
    pub call_id: String,
    /// The stream's id, needed in `checkpoint` and `clearAudio`.
    pub stream_id: String,
    /// The account's auth id.
    #[serde(default)]
    pub account_id: String,
    /// Tracks streamed, e.g. `["inbound"]`.
    #[serde(default)]
    pub tracks: Vec<String>,
    /// The audio encoding; read the codec from here.
    pub media_format: MediaFormatWire,
}

/// `start.mediaFormat` as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormatWire {
    /// e.g. `audio/x-mulaw`.
    pub encoding: String,
    /// e.g. 8000.
    #[serde(deserialize_with = "flexible_u64")]
    pub sample_rate: u64,
}

impl Start {
    /// The stream's audio format, or why it is not one voxgate takes.
    pub fn media_format(&self) -> Result<MediaFormat, ParseError> {
        let wire = &self.start.media_format;
        let rate = u32::try_from(wire.sample_rate).unwrap_or(u32::MAX);
        MediaFormat::from_plivo(&wire.encoding, rate).ok_or_else(|| ParseError::UnsupportedFormat {
            encoding: wire.encoding.clone(),
            sample_rate: rate,
        })
    }
}

/// `media`: one frame of caller audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Media<'a> {
    /// Plivo's message counter.
    #[serde(
        default,
        deserialize_with = "flexible_u64_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    /// The stream this frame belongs to.
    #[serde(borrow)]
    pub stream_id: Cow<'a, str>,
    /// The frame.
    #[serde(borrow)]
    pub media: MediaBody<'a>,
}

/// The body of `media`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaBody<'a> {
    /// `inbound` (or `outbound` with other track settings).
    #[serde(borrow, default)]
    pub track: Cow<'a, str>,
    /// Milliseconds since the stream started (sent as a string).
    #[serde(deserialize_with = "flexible_u64", serialize_with = "stringify_u64")]
    pub timestamp: u64,
    /// Chunk counter, from 1.
    #[serde(deserialize_with = "flexible_u64")]
    pub chunk: u64,
    /// Base64 of raw audio in the stream's format.
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

/// `dtmf`: the caller pressed a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dtmf {
    /// Plivo's message counter.
    #[serde(
        default,
        deserialize_with = "flexible_u64_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    /// The stream.
    #[serde(default)]
    pub stream_id: String,
    /// The key press.
    pub dtmf: DtmfBody,
}

/// The body of `dtmf`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DtmfBody {
    /// One key: `0-9`, `*`, `#`, `A-D`. Anything else makes the message
    /// `missing_or_invalid_field` (it never reaches a log or the journal).
    #[serde(deserialize_with = "dtmf_digit")]
    pub digit: String,
    /// e.g. `inbound`.
    #[serde(default)]
    pub track: String,
    /// Milliseconds since the stream started.
    #[serde(
        default,
        deserialize_with = "flexible_u64",
        serialize_with = "stringify_u64"
    )]
    pub timestamp: u64,
}

/// `playedStream` (also sent as `played`): the audio before a checkpoint was heard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayedStream {
    /// Plivo's message counter.
    #[serde(
        default,
        deserialize_with = "flexible_u64_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    /// The stream.
    #[serde(default)]
    pub stream_id: String,
    /// The checkpoint's name.
    pub name: String,
}

/// `clearedAudio`: Plivo dropped the queued audio after a `clearAudio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearedAudio {
    /// Plivo's message counter.
    #[serde(
        default,
        deserialize_with = "flexible_u64_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    /// The stream.
    #[serde(default)]
    pub stream_id: String,
}

/// `stop`: not reliably sent; the socket closing is the real end of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stop {
    /// Plivo's message counter.
    #[serde(
        default,
        deserialize_with = "flexible_u64_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    /// The stream.
    #[serde(default)]
    pub stream_id: String,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A message Plivo sends on the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Inbound<'a> {
    /// The stream's first message.
    Start(Start),
    /// A frame of caller audio.
    Media(Media<'a>),
    /// A key press.
    Dtmf(Dtmf),
    /// A checkpoint was played (`playedStream` or `played`).
    PlayedStream(PlayedStream),
    /// Queued audio was cleared.
    ClearedAudio(ClearedAudio),
    /// The stream stopped.
    Stop(Stop),
    /// An event voxgate does not know; logged and ignored.
    #[serde(skip)]
    Unknown {
        /// The event's name.
        event: Cow<'a, str>,
    },
}

/// The first pass: only the event name.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
}

/// Whether `c` is a key Plivo reports in `dtmf.digit`.
pub fn is_dtmf_key(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

fn dtmf_digit<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let digit = Cow::<'de, str>::deserialize(deserializer)?;
    let mut chars = digit.chars();
    match (chars.next(), chars.next()) {
        (Some(key), None) if is_dtmf_key(key) => Ok(digit.into_owned()),
        _ => Err(serde::de::Error::custom(
            "dtmf.digit must be one key: 0-9, *, #, A-D",
        )),
    }
}

fn body<'a, T: Deserialize<'a>>(text: &'a str, event: &'static str) -> Result<T, ParseError> {
    serde_json::from_str(text).map_err(|source| ParseError::Malformed { event, source })
}

/// Parses one inbound text frame. Unknown events are [`Inbound::Unknown`], not errors.
pub fn parse_inbound(text: &str) -> Result<Inbound<'_>, ParseError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge(text.len()));
    }
    if !text.trim_start().starts_with('{') {
        return Err(ParseError::NotAnObject);
    }
    // First pass reads only `event` (other fields are skipped); the second parses the
    // named event's struct.
    let envelope: Envelope<'_> = body(text, "message")?;
    Ok(match envelope.event.as_ref() {
        "media" => Inbound::Media(body(text, "media")?),
        "start" => Inbound::Start(body(text, "start")?),
        "dtmf" => Inbound::Dtmf(body(text, "dtmf")?),
        "playedStream" | "played" => Inbound::PlayedStream(body(text, "playedStream")?),
        "clearedAudio" => Inbound::ClearedAudio(body(text, "clearedAudio")?),
        "stop" => Inbound::Stop(body(text, "stop")?),
        _ => Inbound::Unknown {
            event: envelope.event,
        },
    })
}

/// Parses `extra_headers` defensively: a JSON object, or `k=v` pairs split on `,` or `;`.
pub fn parse_extra_headers(raw: &str) -> Vec<(String, String)> {
    let raw = raw.trim();
    if raw.starts_with('{')
        && let Ok(map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw)
    {
        return map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
    }
    raw.split([',', ';'])
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// The media of a `playAudio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayMedia<'a> {
    /// `audio/x-mulaw` or `audio/x-l16`, no `;rate=`.
    #[serde(borrow)]
    pub content_type: Cow<'a, str>,
    /// 8000 or 16000, sent as a number.
    pub sample_rate: u32,
    /// Base64 of raw audio.
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

/// A message voxgate sends on a bidirectional stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Outbound<'a> {
    /// Queue audio to play to the caller.
    PlayAudio {
        /// The audio.
        #[serde(borrow)]
        media: PlayMedia<'a>,
        /// The stream (optional for Plivo; always sent).
        #[serde(borrow)]
        stream_id: Cow<'a, str>,
    },
    /// Ask for a `playedStream` once everything queued so far has played.
    Checkpoint {
        /// The stream.
        #[serde(borrow)]
        stream_id: Cow<'a, str>,
        /// Echoed back in `playedStream`.
        #[serde(borrow)]
        name: Cow<'a, str>,
    },
    /// Drop everything queued (barge-in).
    ClearAudio {
        /// The stream.
        #[serde(borrow)]
        stream_id: Cow<'a, str>,
    },
    /// Play DTMF digits into the call.
    #[serde(rename = "sendDTMF")]
    SendDtmf {
        /// Digits `0-9*#A-D`.
        #[serde(borrow)]
        dtmf: Cow<'a, str>,
    },
}

impl Outbound<'_> {
    /// The JSON text frame for this message.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs to a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parses a message voxgate sent (used by the simulator, which plays Plivo's side).
pub fn parse_outbound(text: &str) -> Result<Outbound<'_>, ParseError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge(text.len()));
    }
    body(text, "outbound")
}

#[cfg(test)]
mod tests;
