//! Any bytes as a Deepgram live-stream message (as text when UTF-8) and as a pre-recorded
//! answer: an event, nothing or an error, never a panic; times never wrap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::providers::api::SttEvent;
use voxgate::providers::deepgram::batch::parse_batch;
use voxgate::providers::deepgram::parse_server_message;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(Some(SttEvent::Transcript {
            text,
            from_finalize,
            ..
        })) = parse_server_message(text)
    {
        // Empty transcripts reach the agent only as the answer to a Finalize.
        assert!(!text.is_empty() || from_finalize);
    }
    if let Ok(transcript) = parse_batch(data) {
        // Sorted by start, no empty text.
        assert!(
            transcript
                .utterances
                .windows(2)
                .all(|w| w[0].start_ms <= w[1].start_ms)
        );
        assert!(transcript.utterances.iter().all(|u| !u.text.is_empty()));
    }
});
