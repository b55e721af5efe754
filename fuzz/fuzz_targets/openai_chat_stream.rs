//! Any bytes as an OpenAI-compatible chat stream, split at any point: events or one error,
//! never a panic; one end (`Done` or an error) at most, last; a tool call only with a name
//! of at most 64 characters and an id of at most 256.
#![no_main]

use std::collections::VecDeque;

use libfuzzer_sys::fuzz_target;
use voxgate::providers::api::ChatEvent;
use voxgate::providers::openai::chat::{ChatDecoder, MAX_TOOL_ID, MAX_TOOL_NAME};
use voxgate::providers::openai::sse::SseReader;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where the bytes are split in two reads.
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(bytes.len());
    let mut decoder = ChatDecoder::new();
    let mut out = VecDeque::new();
    let over = decoder.feed(&bytes[..at], &mut out) || decoder.feed(&bytes[at..], &mut out);
    if !over {
        decoder.end(&mut out);
    }
    // At most one end (`Done` or an error), and nothing after it.
    let ends: Vec<usize> = (0..out.len())
        .filter(|&i| matches!(out[i], Err(_) | Ok(ChatEvent::Done(_))))
        .collect();
    assert!(ends.len() <= 1, "{out:?}");
    if let Some(&end) = ends.first() {
        assert_eq!(end, out.len() - 1, "{out:?}");
    }
    for event in &out {
        if let Ok(ChatEvent::ToolCall(call)) = event {
            assert!(!call.name.is_empty());
            assert!(call.name.chars().count() <= MAX_TOOL_NAME);
            assert!(call.id.chars().count() <= MAX_TOOL_ID);
        }
    }

    // The bare SSE reader on the same bytes, one byte at a time, agrees with one read.
    let mut whole = Vec::new();
    let a = SseReader::new().feed(bytes, |d| whole.push(d.to_owned()));
    let mut reader = SseReader::new();
    let mut bytewise = Vec::new();
    let mut b = Ok(());
    for byte in bytes {
        b = reader.feed(std::slice::from_ref(byte), |d| bytewise.push(d.to_owned()));
        if b.is_err() {
            break;
        }
    }
    if a.is_ok() && b.is_ok() {
        assert_eq!(whole, bytewise);
    }
});
