//! OpenAI-compatible `verbose_json` transcription answers of any content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::providers::openai::transcribe::parse_verbose_json;

fuzz_target!(|data: &[u8]| {
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
