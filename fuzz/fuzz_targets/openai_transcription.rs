//! OpenAI-compatible `verbose_json` and `json` transcription answers of any content: a
//! transcript or an error, never a panic; utterances in start order, never blank.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::providers::openai::transcribe::{parse_json, parse_verbose_json};

fuzz_target!(|data: &[u8]| {
    if let Ok(transcript) = parse_json(data) {
        assert!(transcript.utterances.len() <= 1);
        assert!(transcript.utterances.iter().all(|u| !u.text.is_empty()));
    }
    if let Ok(transcript) = parse_verbose_json(data) {
        for pair in transcript.utterances.windows(2) {
            assert!(pair[0].start_ms <= pair[1].start_ms);
        }
        for utterance in &transcript.utterances {
            assert!(utterance.end_ms >= utterance.start_ms);
            assert!(!utterance.text.is_empty());
        }
    }
});
