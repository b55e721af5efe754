//! G.711 decoders on any bytes and any output size; encode(decode(x)) == x for A-law.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::audio::g711;

fuzz_target!(|data: &[u8]| {
    let Some((&room, codes)) = data.split_first() else { return };
    let mut pcm = vec![0i16; room as usize * 4];
    let ulaw = g711::decode_ulaw(codes, &mut pcm);
    assert_eq!(ulaw.is_ok(), codes.len() <= pcm.len());
    if g711::decode_alaw(codes, &mut pcm).is_ok() {
        let mut back = vec![0u8; codes.len()];
        g711::encode_alaw(&pcm[..codes.len()], &mut back).unwrap();
        assert_eq!(back, codes);
    }
});
