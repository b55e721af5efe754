//! G.711 µ-law and A-law ↔ linear PCM16 (ITU-T G.711).
//!
//! Conventions (the tests in this file check both against committed tables made by
//! `fixtures/g711/make_g711_tables.py`):
//!
//! - **Decode** gives the values sox and Python's `audioop` give (Sun's tables; they agree):
//!   µ-law spans ±32124, A-law ±32256.
//! - **Encode** follows the ITU-T G.191 reference (`ulaw_compress` / `alaw_compress`): the
//!   14 (µ-law) or 13 (A-law) most significant bits of the sample, with the one's
//!   complement of negative values, no rounding. Encoders in the wild differ at segment
//!   edges: `audioop` differs from G.191 on 508 negative values for µ-law, sox (which
//!   rounds) on about 510; a difference there is one quantisation step, never more.
//!
//! Budget: no allocation, no panic. Callers give the output slice; decode tables are
//! built at compile time, encode is a few integer operations per sample.

use thiserror::Error;

/// The only way a G.711 conversion can fail: the output slice is too short.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("output holds {output} samples, input has {input}")]
pub struct OutputTooShort {
    /// Samples in the input.
    pub input: usize,
    /// Room in the output.
    pub output: usize,
}

/// µ-law code → PCM16, the classic Sun formula that sox and `audioop` use.
const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = (((u & 0x0F) as i32) << 3) + 0x84;
    let t = t << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// A-law code → PCM16, the classic Sun formula that sox and `audioop` use.
const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Builds a 256-entry decode table at compile time (const fns cannot call through pointers).
macro_rules! decode_table {
    ($decode:ident) => {{
        let mut table = [0i16; 256];
        let mut i = 0;
        while i < 256 {
            table[i] = $decode(i as u8);
            i += 1;
        }
        table
    }};
}

static ULAW_DECODE: [i16; 256] = decode_table!(ulaw_to_linear);
static ALAW_DECODE: [i16; 256] = decode_table!(alaw_to_linear);

/// Decodes one µ-law code.
#[inline]
pub fn ulaw_to_pcm(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Decodes one A-law code.
#[inline]
pub fn alaw_to_pcm(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// Encodes one sample to µ-law, per G.191's `ulaw_compress`.
#[inline]
pub fn pcm_to_ulaw(pcm: i16) -> u8 {
    // One's complement of negatives, keep 14 MSBs, add the bias of 33.
    let magnitude = if pcm < 0 { !pcm } else { pcm } as i32;
    let biased = ((magnitude >> 2) + 33).min(0x1FFF);
    // Segment number 1..=8: one more than the bit length of `biased >> 6`.
    let segment = 33 - ((biased >> 6) as u32).leading_zeros() as i32;
    let high = 8 - segment;
    let low = 0x0F - ((biased >> segment) & 0x0F);
    let code = ((high << 4) | low) as u8;
    if pcm >= 0 { code | 0x80 } else { code }
}

/// Encodes one sample to A-law, per G.191's `alaw_compress`.
#[inline]
pub fn pcm_to_alaw(pcm: i16) -> u8 {
    // One's complement of negatives, keep 12 magnitude bits (13 with the sign).
    let mut ix = (if pcm < 0 { !pcm } else { pcm } as i32) >> 4;
    if ix > 15 {
        // Exponent 1..=7 from the bit length; mantissa is the next four bits.
        let exponent = 28 - (ix as u32).leading_zeros() as i32;
        ix = (exponent << 4) + ((ix >> (exponent - 1)) - 16);
    }
    let code = if pcm >= 0 { ix | 0x80 } else { ix } as u8;
    code ^ 0x55
}

fn check(input: usize, output: usize) -> Result<(), OutputTooShort> {
    if output < input {
        Err(OutputTooShort { input, output })
    } else {
        Ok(())
    }
}

/// Decodes µ-law `input` into the first `input.len()` samples of `output`.
pub fn decode_ulaw(input: &[u8], output: &mut [i16]) -> Result<(), OutputTooShort> {
    check(input.len(), output.len())?;
    for (out, &code) in output[..input.len()].iter_mut().zip(input) {
        *out = ULAW_DECODE[code as usize];
    }
    Ok(())
}

/// Decodes A-law `input` into the first `input.len()` samples of `output`.
pub fn decode_alaw(input: &[u8], output: &mut [i16]) -> Result<(), OutputTooShort> {
    check(input.len(), output.len())?;
    for (out, &code) in output[..input.len()].iter_mut().zip(input) {
        *out = ALAW_DECODE[code as usize];
    }
    Ok(())
}

/// Encodes `input` to µ-law into the first `input.len()` bytes of `output`.
pub fn encode_ulaw(input: &[i16], output: &mut [u8]) -> Result<(), OutputTooShort> {
    check(input.len(), output.len())?;
    for (out, &pcm) in output[..input.len()].iter_mut().zip(input) {
        *out = pcm_to_ulaw(pcm);
    }
    Ok(())
}

/// Encodes `input` to A-law into the first `input.len()` bytes of `output`.
pub fn encode_alaw(input: &[i16], output: &mut [u8]) -> Result<(), OutputTooShort> {
    check(input.len(), output.len())?;
    for (out, &pcm) in output[..input.len()].iter_mut().zip(input) {
        *out = pcm_to_alaw(pcm);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/g711/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn decode_table(name: &str) -> Vec<i16> {
        fixture(name)
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn ulaw_decode_matches_sox_and_audioop_for_all_codes() {
        let expected = decode_table("ulaw_decode.i16");
        let codes: Vec<u8> = (0..=255).collect();
        let mut out = [0i16; 256];
        decode_ulaw(&codes, &mut out).unwrap();
        assert_eq!(out.as_slice(), expected.as_slice());
        assert_eq!((out[0], out[0x7F], out[0xFF]), (-32124, 0, 0));
    }

    #[test]
    fn alaw_decode_matches_sox_and_audioop_for_all_codes() {
        let expected = decode_table("alaw_decode.i16");
        let codes: Vec<u8> = (0..=255).collect();
        let mut out = [0i16; 256];
        decode_alaw(&codes, &mut out).unwrap();
        assert_eq!(out.as_slice(), expected.as_slice());
        assert_eq!((out[0x55], out[0xD5], out[0xAA]), (-8, 8, 32256));
    }

    fn assert_encode_matches(
        table: &str,
        encode: fn(&[i16], &mut [u8]) -> Result<(), OutputTooShort>,
    ) {
        let expected = fixture(table);
        assert_eq!(expected.len(), 65_536);
        let pcm: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut out = vec![0u8; pcm.len()];
        encode(&pcm, &mut out).unwrap();
        let wrong: Vec<i16> = pcm
            .iter()
            .zip(out.iter().zip(&expected))
            .filter(|(_, (a, b))| a != b)
            .map(|(p, _)| *p)
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "{table}: first PCM values that differ from G.191: {wrong:?}"
        );
    }

    #[test]
    fn ulaw_encode_matches_g191_for_all_pcm16() {
        assert_encode_matches("ulaw_encode.u8", encode_ulaw);
    }

    #[test]
    fn alaw_encode_matches_g191_for_all_pcm16() {
        assert_encode_matches("alaw_encode.u8", encode_alaw);
    }

    #[test]
    fn decode_then_encode_is_identity_on_codes() {
        // Every code decodes to a value that encodes back to the same code, except
        // µ-law's negative zero (0x7F), which G.191 folds to positive zero (0xFF).
        for code in 0..=255u8 {
            let back = pcm_to_ulaw(ulaw_to_pcm(code));
            assert!(
                back == code || (code == 0x7F && back == 0xFF),
                "µ-law {code:#04x} -> {back:#04x}"
            );
            assert_eq!(pcm_to_alaw(alaw_to_pcm(code)), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn short_output_is_an_error_not_a_panic() {
        let mut out = [0i16; 3];
        assert_eq!(
            decode_ulaw(&[0; 4], &mut out),
            Err(OutputTooShort {
                input: 4,
                output: 3
            })
        );
        assert_eq!(
            decode_alaw(&[0; 4], &mut out),
            Err(OutputTooShort {
                input: 4,
                output: 3
            })
        );
        let mut bytes = [0u8; 1];
        assert!(encode_ulaw(&[0; 2], &mut bytes).is_err());
        assert!(encode_alaw(&[0; 2], &mut bytes).is_err());
        // A longer output is fine: only the first input.len() samples are written.
        let mut wide = [7i16; 4];
        decode_ulaw(&[0xFF, 0xFF], &mut wide).unwrap();
        assert_eq!(wide, [0, 0, 7, 7]);
    }
}
