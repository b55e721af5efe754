//! OpenAI-compatible whole (`stream: false`) chat answers of any content: an answer or an
//! error, never a panic; a tool call always has an id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::providers::openai::complete::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = parse(data) {
        assert!(answer.tool_calls.iter().all(|call| !call.id.is_empty()));
    }
});
