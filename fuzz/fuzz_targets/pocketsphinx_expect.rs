//! Any bytes as a pronunciation dictionary, and as the phrases a call expects (one per
//! line) handed to a real pocketsphinx decoder: never a panic or a crash, and the grammar
//! keeps only phrases of plain words (anything JSGF would read as syntax is left out).
//! The decoder half needs Debian's pocketsphinx-en-us model; without it only the
//! dictionary parser runs.
#![no_main]

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use voxgate::providers::pocketsphinx::config::DEFAULT_MODEL_DIR;
use voxgate::providers::pocketsphinx::decoder::{Decoder, FRAME_SAMPLES};
use voxgate::providers::pocketsphinx::lexicon::Lexicon;

fn decoder() -> Option<&'static Mutex<Decoder>> {
    static DECODER: OnceLock<Option<Mutex<Decoder>>> = OnceLock::new();
    DECODER
        .get_or_init(|| {
            let model = Path::new(DEFAULT_MODEL_DIR);
            let lexicon = Lexicon::read(&Decoder::dictionary(model)).ok()?;
            Decoder::load(model, Arc::new(lexicon)).ok().map(Mutex::new)
        })
        .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lexicon = Lexicon::parse(&text);
    let _ = lexicon.len();

    let Some(decoder) = decoder() else {
        return;
    };
    let mut decoder = decoder.lock().unwrap_or_else(|e| e.into_inner());
    let phrases: Vec<String> = text.lines().map(str::to_owned).collect();
    let kept = decoder.expect(&phrases);
    for phrase in &kept {
        assert!(
            phrase.chars().all(|c| c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, ' ' | '\'' | '-')),
            "{phrase:?}"
        );
    }
    assert_eq!(decoder.listening(), !kept.is_empty());
    // A frame through whatever grammar resulted, and an end: no crash.
    let frame: Vec<i16> = data
        .iter()
        .map(|&b| i16::from(b) << 6)
        .cycle()
        .take(FRAME_SAMPLES)
        .collect();
    if frame.len() == FRAME_SAMPLES {
        decoder.process(&frame);
    }
    let _ = decoder.finish();
});
