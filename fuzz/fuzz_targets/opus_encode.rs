//! Any bytes as a recording to encode to Ogg Opus: a clear error or a stream, never a
//! panic; a stream always starts with the OpusHead page.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::recording::encode;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if encode::encode(std::io::Cursor::new(data), &mut out, 1).is_ok() {
        assert_eq!(&out[..4], b"OggS");
        assert_eq!(&out[28..36], b"OpusHead");
    }
});
