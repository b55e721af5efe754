//! Deepgram's live-stream messages, both ways: what we send (`KeepAlive`, `Finalize`,
//! `CloseStream`) and the pure parse of what the server sends into [`SttEvent`]s.
//!
//! [`parse_server_message`] never panics on any input. It returns `Ok(None)` for messages
//! an agent has no use for (`Metadata`, types we do not know, empty interim transcripts)
//! and `Err` for text that is not Deepgram's protocol; the live task counts those and
//! skips them, they never end a stream. Times arrive as seconds (f64) and leave as whole
//! ms: negative, NaN or absurd values saturate instead of wrapping.

use serde::{Deserialize, Serialize};

use crate::providers::api::{SttEvent, SttWord};

/// A control message to the server (sent as a text frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    /// "Still here": keeps a stream without audio open.
    KeepAlive,
    /// Flush buffered audio into final results; the socket stays open.
    Finalize,
    /// Finish the audio sent, send the last results and `Metadata`, then close.
    CloseStream,
}

impl ClientMessage {
    /// The message's JSON text.
    pub fn to_json(self) -> String {
        // A fieldless, internally tagged enum always serializes.
        serde_json::to_string(&self).unwrap_or_default()
    }
}

/// Why a server message was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Deepgram message: {0}")]
pub struct BadMessage(String);

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ServerMessage {
    Results(Results),
    SpeechStarted {
        #[serde(default)]
        timestamp: f64,
    },
    UtteranceEnd {
        #[serde(default)]
        last_word_end: f64,
    },
    Metadata,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Results {
    #[serde(default)]
    start: f64,
    #[serde(default)]
    duration: f64,
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    speech_final: bool,
    #[serde(default)]
    from_finalize: bool,
    #[serde(default)]
    channel: Channel,
}

#[derive(Deserialize, Default)]
struct Channel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    confidence: f64,
    #[serde(default)]
    words: Vec<Word>,
}

#[derive(Deserialize)]
struct Word {
    #[serde(default)]
    word: String,
    #[serde(default)]
    punctuated_word: Option<String>,
    #[serde(default)]
    start: f64,
    #[serde(default)]
    end: f64,
    #[serde(default)]
    confidence: f64,
}

/// Seconds as whole ms (saturating: NaN and negatives are 0); shared with the other
/// streaming adapters.
pub use crate::providers::api::ws::seconds_to_ms;

/// One server text message as what the agent should hear of it: `Ok(Some(event))`,
/// `Ok(None)` when there is nothing to report (metadata, an unknown type, an empty
/// transcript that does not answer a `Finalize`), or `Err` when it is not Deepgram's JSON.
pub fn parse_server_message(text: &str) -> Result<Option<SttEvent>, BadMessage> {
    let message: ServerMessage =
        serde_json::from_str(text).map_err(|e| BadMessage(e.to_string()))?;
    Ok(match message {
        ServerMessage::Results(results) => transcript(results),
        ServerMessage::SpeechStarted { timestamp } => Some(SttEvent::SpeechStarted {
            at_ms: seconds_to_ms(timestamp),
        }),
        ServerMessage::UtteranceEnd { last_word_end } => Some(SttEvent::UtteranceEnd {
            last_word_end_ms: seconds_to_ms(last_word_end),
        }),
        ServerMessage::Metadata | ServerMessage::Other => None,
    })
}

fn transcript(results: Results) -> Option<SttEvent> {
    let best = results.channel.alternatives.into_iter().next();
    let (text, confidence, words) = match best {
        Some(alt) => (alt.transcript, alt.confidence, alt.words),
        None => (String::new(), 0.0, Vec::new()),
    };
    if text.trim().is_empty() && !results.from_finalize {
        return None;
    }
    let words = words
        .into_iter()
        .map(|w| SttWord {
            text: match w.punctuated_word {
                Some(p) if !p.is_empty() => p,
                _ => w.word,
            },
            start_ms: seconds_to_ms(w.start),
            end_ms: seconds_to_ms(w.end),
            confidence: w.confidence as f32,
        })
        .collect();
    Some(SttEvent::Transcript {
        text: text.trim().to_owned(),
        is_final: results.is_final,
        speech_final: results.speech_final,
        from_finalize: results.from_finalize,
        start_ms: seconds_to_ms(results.start),
        end_ms: seconds_to_ms(results.start + results.duration),
        words,
        confidence: confidence as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_are_the_documented_json() {
        assert_eq!(
            ClientMessage::KeepAlive.to_json(),
            r#"{"type":"KeepAlive"}"#
        );
        assert_eq!(ClientMessage::Finalize.to_json(), r#"{"type":"Finalize"}"#);
        assert_eq!(
            ClientMessage::CloseStream.to_json(),
            r#"{"type":"CloseStream"}"#
        );
    }

    #[test]
    fn a_final_result_keeps_punctuation_and_ms() {
        let text = r#"{"type":"Results","channel_index":[0,1],"duration":1.2,"start":3.4,"is_final":true,"speech_final":true,"from_finalize":false,
 "channel":{"alternatives":[{"transcript":"yes please","confidence":0.98,"words":[
   {"word":"yes","start":3.5,"end":3.8,"confidence":0.99,"punctuated_word":"Yes"},
   {"word":"please","start":3.9,"end":4.4,"confidence":0.97}]}]},
 "metadata":{"request_id":"6f2c","model_uuid":"1d3f","model_info":{"name":"general-nova-3","version":"x","arch":"nova-3"}}}"#;
        let Some(SttEvent::Transcript {
            text,
            is_final,
            speech_final,
            from_finalize,
            start_ms,
            end_ms,
            words,
            ..
        }) = parse_server_message(text).unwrap()
        else {
            panic!("not a transcript");
        };
        assert_eq!(text, "yes please");
        assert!(is_final && speech_final && !from_finalize);
        assert_eq!((start_ms, end_ms), (3_400, 4_600));
        assert_eq!(words[0].text, "Yes");
        assert_eq!(words[1].text, "please");
        assert_eq!((words[1].start_ms, words[1].end_ms), (3_900, 4_400));
    }

    #[test]
    fn vad_events_and_noise() {
        assert_eq!(
            parse_server_message(r#"{"type":"SpeechStarted","channel":[0,1],"timestamp":3.42}"#),
            Ok(Some(SttEvent::SpeechStarted { at_ms: 3_420 }))
        );
        assert_eq!(
            parse_server_message(r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":4.4}"#),
            Ok(Some(SttEvent::UtteranceEnd {
                last_word_end_ms: 4_400
            }))
        );
        assert_eq!(
            parse_server_message(r#"{"type":"Metadata","request_id":"r","duration":2.0}"#),
            Ok(None)
        );
        assert_eq!(
            parse_server_message(r#"{"type":"Whatever","x":1}"#),
            Ok(None)
        );
        let empty = r#"{"type":"Results","start":1,"duration":1,"is_final":true,"speech_final":false,"from_finalize":false,"channel":{"alternatives":[{"transcript":"","confidence":0,"words":[]}]}}"#;
        assert_eq!(parse_server_message(empty), Ok(None));
        let answer = empty.replace(r#""from_finalize":false"#, r#""from_finalize":true"#);
        assert!(matches!(
            parse_server_message(&answer),
            Ok(Some(SttEvent::Transcript { from_finalize: true, ref text, .. })) if text.is_empty()
        ));
        assert!(parse_server_message("not json").is_err());
        assert!(parse_server_message(r#"{"no_type":1}"#).is_err());
        assert!(parse_server_message(r#"{"type":"Results","start":"soon"}"#).is_err());
    }

    #[test]
    fn odd_times_saturate() {
        let odd = r#"{"type":"Results","start":-3,"duration":1e300,"is_final":true,"speech_final":false,"from_finalize":false,"channel":{"alternatives":[{"transcript":"x","confidence":1,"words":[]}]}}"#;
        let Ok(Some(SttEvent::Transcript {
            start_ms, end_ms, ..
        })) = parse_server_message(odd)
        else {
            panic!("not a transcript");
        };
        assert_eq!((start_ms, end_ms), (0, u64::MAX));
    }
}
