//! Any text frame Plivo (or anyone) sends: parse, and for media decode the payload in
//! every format. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::telephony::plivo::stream::{Inbound, MediaFormat, decode_payload, parse_extra_headers, parse_inbound, parse_outbound};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_outbound(text);
    match parse_inbound(text) {
        Ok(Inbound::Media(media)) => {
            let mut scratch = [0u8; 1024];
            let mut pcm = [0i16; 640];
            for format in [MediaFormat::MuLaw8k, MediaFormat::L16At8k, MediaFormat::L16At16k] {
                let _ = decode_payload(&media.media.payload, format, &mut scratch, &mut pcm);
            }
        }
        Ok(Inbound::Start(start)) => {
            let _ = start.media_format();
            if let Some(headers) = &start.extra_headers {
                let _ = parse_extra_headers(headers);
            }
        }
        _ => {}
    }
});
