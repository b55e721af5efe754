//! The stream-input socket's messages: what voxgate sends (init, text, end) and what the
//! server answers (audio with character alignment, the final message, errors), plus the
//! conversion of character alignment into timed words.
//!
//! Pure and allocation-bounded by its input: no I/O, no clocks. [`parse_server_message`] is
//! the one parser of server bytes (fuzzed: `fuzz/fuzz_targets/elevenlabs_message.rs`); it
//! never panics. What a caller does with its errors: [`MessageError::Malformed`] is counted
//! and skipped, [`MessageError::BadAudio`] ends the utterance with a protocol error.
//!
//! Casing: the server's fields are camelCase (`isFinal`, `normalizedAlignment`,
//! `charStartTimesMs`); snake_case spellings are accepted too (providers.md §6.2 reports
//! both).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::providers::api::SpokenWord;
use crate::providers::api::ws::seconds_to_ms;

/// Most characters of one word kept (a longer run without spaces is cut, its times kept).
const MAX_WORD_CHARS: usize = 64;

// ----- client → server ------------------------------------------------------------------

/// The first message of a socket: one space of text, the voice settings and the schedule.
/// The key goes in the `xi-api-key` header, never here.
#[derive(Debug, Serialize)]
pub struct InitMessage<'a> {
    /// Exactly `" "`.
    pub text: &'static str,
    /// The voice.
    pub voice_settings: VoiceSettings,
    /// When generations start.
    pub generation_config: GenerationConfig<'a>,
}

/// Voice settings of the init message.
#[derive(Debug, Serialize)]
pub struct VoiceSettings {
    /// 0–1.
    pub stability: f32,
    /// 0–1.
    pub similarity_boost: f32,
    /// 0.7–1.2.
    pub speed: f32,
}

/// Generation settings of the init message.
#[derive(Debug, Serialize)]
pub struct GenerationConfig<'a> {
    /// Characters buffered before each generation.
    pub chunk_length_schedule: &'a [u16],
}

/// A piece of text (`text` ends in one space) or, with `text` empty, the end of input.
#[derive(Debug, Serialize)]
pub struct TextMessage<'a> {
    /// The text; `""` ends the input.
    pub text: &'a str,
    /// Generate everything buffered now and keep the socket (§6.1); absent on the end.
    /// The agent's pieces are whole clauses or sentences, so each is flushed: waiting for
    /// the chunk schedule would hold a short first clause until the next one comes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush: Option<bool>,
}

impl<'a> TextMessage<'a> {
    /// A piece of text, to be spoken now.
    pub fn flushed(text: &'a str) -> Self {
        Self {
            text,
            flush: Some(true),
        }
    }

    /// The end of input (`{"text":""}`).
    pub fn end() -> Self {
        Self {
            text: "",
            flush: None,
        }
    }
}

/// `piece` as the socket takes it: trailing whitespace replaced by one space; `None` for a
/// blank piece (sending `""` would end the stream).
pub fn text_piece(piece: &str) -> Option<String> {
    let piece = piece.trim_end();
    if piece.trim_start().is_empty() {
        None
    } else {
        Some(format!("{piece} "))
    }
}

// ----- server → client ------------------------------------------------------------------

/// Which characters a chunk of audio speaks and when, ms from the chunk's start.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Alignment {
    /// The characters (one per entry).
    #[serde(default)]
    pub chars: Vec<String>,
    /// Each character's start, ms from the chunk's start.
    #[serde(default, alias = "char_start_times_ms")]
    #[serde(rename = "charStartTimesMs")]
    pub char_start_times_ms: Vec<f64>,
    /// Each character's length, ms.
    #[serde(default, alias = "char_durations_ms")]
    #[serde(rename = "charDurationsMs")]
    pub char_durations_ms: Vec<f64>,
}

/// A server message, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// A chunk of audio (the output format's bytes, decoded from base64 and otherwise
    /// untouched) with its alignment, if the server sent one; `is_final` when the same
    /// message also ends the generation.
    Audio {
        /// The audio bytes.
        audio: Vec<u8>,
        /// The original text's alignment, else the normalized text's.
        alignment: Option<Alignment>,
        /// This message also ends the generation.
        is_final: bool,
    },
    /// The generation is complete: no more audio follows.
    Final,
    /// The server reports an error (it closes the socket next).
    Error {
        /// Its `error` code and `message`, as `code: message`.
        message: String,
    },
}

/// Why a server message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or JSON of none of the known shapes: count and skip it.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// `audio` is not base64: the audio cannot be trusted, end the utterance.
    #[error("audio is not base64")]
    BadAudio,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    audio: Option<String>,
    #[serde(default, rename = "isFinal", alias = "is_final")]
    is_final: Option<bool>,
    // Values, read on their own: an alignment of an unexpected shape costs the words of
    // its chunk, never the chunk's audio.
    #[serde(default)]
    alignment: Option<serde_json::Value>,
    #[serde(
        default,
        rename = "normalizedAlignment",
        alias = "normalized_alignment"
    )]
    normalized_alignment: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<serde_json::Value>,
}

/// Parses one text frame of the server.
pub fn parse_server_message(text: &[u8]) -> Result<ServerMessage, MessageError> {
    let wire: Wire =
        serde_json::from_slice(text).map_err(|_| MessageError::Malformed("not a JSON object"))?;
    if wire.error.is_some() {
        let as_text = |v: &Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let message = match (as_text(&wire.error), as_text(&wire.message)) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => "error".to_owned(),
        };
        return Ok(ServerMessage::Error { message });
    }
    let is_final = wire.is_final == Some(true);
    match wire.audio.as_deref() {
        Some(audio) if !audio.is_empty() => {
            let audio = STANDARD.decode(audio).map_err(|_| MessageError::BadAudio)?;
            Ok(ServerMessage::Audio {
                audio,
                alignment: [wire.alignment, wire.normalized_alignment]
                    .into_iter()
                    .flatten()
                    .find_map(|v| serde_json::from_value(v).ok()),
                is_final,
            })
        }
        _ if is_final => Ok(ServerMessage::Final),
        _ => Err(MessageError::Malformed("no audio, isFinal or error")),
    }
}

/// Turns the character alignment of successive chunks into words timed from the
/// utterance's start. A word may span chunks: it is given out with the chunk it ends in
/// (or by [`WordTimer::finish`]), timed from its first character.
#[derive(Debug, Default)]
pub struct WordTimer {
    word: String,
    chars: usize,
    start_ms: u64,
    end_ms: u64,
}

impl WordTimer {
    /// A timer with no word in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// The words `alignment` completes, for a chunk that starts `offset_ms` into the
    /// utterance. Entries beyond the shortest of its three lists are ignored; negative or
    /// non-finite times count as 0.
    pub fn push(&mut self, alignment: &Alignment, offset_ms: u64) -> Vec<SpokenWord> {
        let mut words = Vec::new();
        let entries = alignment
            .chars
            .iter()
            .zip(&alignment.char_start_times_ms)
            .zip(&alignment.char_durations_ms);
        for ((text, &start), &duration) in entries {
            if text.chars().all(char::is_whitespace) {
                words.extend(self.finish());
                continue;
            }
            let start = offset_ms.saturating_add(ms(start));
            let end = start.saturating_add(ms(duration));
            if self.chars == 0 {
                self.start_ms = start;
            }
            for c in text.chars() {
                if self.chars < MAX_WORD_CHARS {
                    self.word.push(c);
                    self.chars += 1;
                }
            }
            self.end_ms = self.end_ms.max(end);
        }
        words
    }

    /// The word in progress, if any (at the end of the utterance).
    pub fn finish(&mut self) -> Option<SpokenWord> {
        if self.word.is_empty() {
            return None;
        }
        let word = SpokenWord {
            text: std::mem::take(&mut self.word),
            start_ms: self.start_ms,
            end_ms: self.end_ms.max(self.start_ms),
        };
        self.chars = 0;
        self.end_ms = 0;
        Some(word)
    }
}

/// A time in ms from the wire as a whole number of ms (negative, NaN → 0; huge values
/// saturate, and every sum with them saturates too).
fn ms(value: f64) -> u64 {
    seconds_to_ms(value / 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alignment(text: &str, start: f64, each: f64) -> Alignment {
        let n = text.chars().count();
        Alignment {
            chars: text.chars().map(String::from).collect(),
            char_start_times_ms: (0..n).map(|i| start + i as f64 * each).collect(),
            char_durations_ms: vec![each; n],
        }
    }

    #[test]
    fn the_client_messages_are_the_documented_json() {
        let init = InitMessage {
            text: " ",
            voice_settings: VoiceSettings {
                stability: 0.5,
                similarity_boost: 0.75,
                speed: 1.0,
            },
            generation_config: GenerationConfig {
                chunk_length_schedule: &[50],
            },
        };
        assert_eq!(
            serde_json::to_string(&init).unwrap(),
            r#"{"text":" ","voice_settings":{"stability":0.5,"similarity_boost":0.75,"speed":1.0},"generation_config":{"chunk_length_schedule":[50]}}"#
        );
        let end = TextMessage::end();
        assert_eq!(serde_json::to_string(&end).unwrap(), r#"{"text":""}"#);
        assert_eq!(
            serde_json::to_string(&TextMessage::flushed("Hi. ")).unwrap(),
            r#"{"text":"Hi. ","flush":true}"#
        );
        assert_eq!(
            text_piece("Sure, I can help.").as_deref(),
            Some("Sure, I can help. ")
        );
        assert_eq!(text_piece("Hi  \n").as_deref(), Some("Hi "));
        assert_eq!(text_piece(" \t "), None);
    }

    #[test]
    fn audio_alignment_final_and_errors_parse() {
        let msg = br#"{"audio":"AAH/","isFinal":null,"normalizedAlignment":{"chars":["H"],"charStartTimesMs":[0],"charDurationsMs":[40]},"alignment":{"chars":["h"],"charStartTimesMs":[1],"charDurationsMs":[2]}}"#;
        let ServerMessage::Audio {
            audio,
            alignment,
            is_final,
        } = parse_server_message(msg).unwrap()
        else {
            panic!()
        };
        assert_eq!(audio, [0x00, 0x01, 0xff]);
        assert_eq!(alignment.unwrap().chars, ["h"]);
        assert!(!is_final);
        let odd = br#"{"audio":"AA==","alignment":{"chars":[null]},"normalizedAlignment":5}"#;
        let Ok(ServerMessage::Audio {
            alignment: None,
            audio,
            ..
        }) = parse_server_message(odd)
        else {
            panic!()
        };
        assert_eq!(audio, [0]);
        let snake = br#"{"audio":"AA==","normalized_alignment":{"chars":["a"],"char_start_times_ms":[0],"char_durations_ms":[5]}}"#;
        let Ok(ServerMessage::Audio {
            alignment: Some(a), ..
        }) = parse_server_message(snake)
        else {
            panic!()
        };
        assert_eq!(a.char_durations_ms, [5.0]);
        assert_eq!(
            parse_server_message(br#"{"isFinal":true}"#),
            Ok(ServerMessage::Final)
        );
        assert_eq!(
            parse_server_message(br#"{"is_final":true,"audio":null}"#),
            Ok(ServerMessage::Final)
        );
        assert_eq!(
            parse_server_message(
                br#"{"message":"Have not received a new text input","error":"input_timeout_exceeded","code":1008}"#
            ),
            Ok(ServerMessage::Error {
                message: "input_timeout_exceeded: Have not received a new text input".into()
            })
        );
        assert_eq!(
            parse_server_message(br#"{"audio":"!!"}"#),
            Err(MessageError::BadAudio)
        );
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            b"{}",
            br#"{"audio":""}"#,
            br#"{"audio":5}"#,
        ] {
            assert!(
                matches!(parse_server_message(bad), Err(MessageError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn words_are_timed_across_chunks() {
        let mut timer = WordTimer::new();
        // "Hi wor" | "ld. " with 10 ms characters; the second chunk starts 60 ms in.
        let first = timer.push(&alignment("Hi wor", 0.0, 10.0), 0);
        assert_eq!(
            first,
            [SpokenWord {
                text: "Hi".into(),
                start_ms: 0,
                end_ms: 20
            }]
        );
        let second = timer.push(&alignment("ld. ", 0.0, 10.0), 60);
        assert_eq!(
            second,
            [SpokenWord {
                text: "world.".into(),
                start_ms: 30,
                end_ms: 90
            }]
        );
        assert_eq!(timer.finish(), None);
        assert!(timer.push(&alignment("end", 5.0, 10.0), 100).is_empty());
        assert_eq!(
            timer.finish(),
            Some(SpokenWord {
                text: "end".into(),
                start_ms: 105,
                end_ms: 135
            })
        );
    }

    #[test]
    fn hostile_alignment_is_bounded() {
        let mut timer = WordTimer::new();
        let bad = Alignment {
            chars: vec!["a".into(), "b".into(), "c".into()],
            char_start_times_ms: vec![f64::NAN, -5.0],
            char_durations_ms: vec![f64::INFINITY, 1e300, 3.0],
        };
        assert!(timer.push(&bad, u64::MAX).is_empty());
        let word = timer.finish().unwrap();
        assert_eq!(word.text, "ab");
        assert!(word.end_ms >= word.start_ms);
        let long = "x".repeat(10_000);
        timer.push(&alignment(&long, 0.0, 1.0), 0);
        assert_eq!(timer.finish().unwrap().text.len(), MAX_WORD_CHARS);
    }
}
