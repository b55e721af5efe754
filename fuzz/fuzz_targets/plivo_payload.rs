//! Base64 media payloads of any content and length, into buffers of any size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::telephony::plivo::stream::{MediaFormat, decode_payload};

fuzz_target!(|data: &[u8]| {
    let Some((&sizes, rest)) = data.split_first() else { return };
    let Ok(payload) = std::str::from_utf8(rest) else { return };
    let mut scratch = vec![0u8; (sizes & 0x0F) as usize * 64];
    let mut pcm = vec![0i16; (sizes >> 4) as usize * 40];
    for format in [MediaFormat::MuLaw8k, MediaFormat::L16At8k, MediaFormat::L16At16k] {
        if let Ok(n) = decode_payload(payload, format, &mut scratch, &mut pcm) {
            assert!(n <= pcm.len());
        }
    }
});
