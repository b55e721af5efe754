//! ElevenLabs stream-input server messages of any content: parsed, and their alignment
//! turned into timed words across chunks at any offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::providers::elevenlabs::messages::{ServerMessage, WordTimer, parse_server_message};

fuzz_target!(|data: &[u8]| {
    let Some((&offset, message)) = data.split_first() else {
        return;
    };
    let mut timer = WordTimer::new();
    // The same message twice: the second chunk starts where the first ended (or far out).
    for offset_ms in [u64::from(offset) * 40, u64::MAX - u64::from(offset)] {
        if let Ok(ServerMessage::Audio {
            audio, alignment, ..
        }) = parse_server_message(message)
        {
            assert!(!audio.is_empty());
            if let Some(alignment) = alignment {
                for word in timer.push(&alignment, offset_ms) {
                    assert!(word.end_ms >= word.start_ms);
                    assert!(!word.text.is_empty());
                }
            }
        }
    }
    if let Some(word) = timer.finish() {
        assert!(word.end_ms >= word.start_ms);
    }
});
