//! One recogniser: a loaded pocketsphinx decoder, the grammar of what it listens for, and
//! its utterances, in safe Rust over the `ffi` bindings.
//!
//! Audio comes in as 8 kHz telephone frames and is widened to the 16 kHz model's rate by
//! zero-stuffing (spectral folding: the 0–4 kHz band is mirrored into 4–8 kHz). On the
//! fixtures that beat a clean sinc upsampler (whose empty 4–8 kHz band the model reads as
//! missing fricatives) and decoding at 8 kHz with the 16 kHz model; see the README section
//! "Offline speech: pocketsphinx" for the numbers.
//!
//! What it listens for is a JSGF grammar of the expected phrases as alternatives, one per
//! utterance, which measured far better on short answers than keyword spotting. Words the
//! dictionary lacks are left out, so a grammar always loads.
//!
//! A decoder is loaded once (about 0.02 s and 5 MB: the acoustic model, with an empty
//! dictionary that [`Decoder::expect`] fills from the shared [`Lexicon`]) and reused for
//! call after call; it must never be loaded per call, nor used from two threads. [`Decoder::process`] never allocates once the frame buffer exists; finals
//! allocate their text.

use std::path::Path;
use std::sync::Arc;

use super::ffi::RawDecoder;
use super::lexicon::Lexicon;

/// Caller frames are 20 ms at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// pocketsphinx counts 100 frames a second.
const MS_PER_FRAME: u64 = 10;

/// What one utterance decoded to: its words, and where each lies in the utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The words, space-separated.
    pub text: String,
    /// Each word and its first and last millisecond from the utterance's first kept frame
    /// (see [`Decoder::kept_ms`]).
    pub words: Vec<(String, u64, u64)>,
}

/// A loaded decoder.
pub struct Decoder {
    raw: RawDecoder,
    lexicon: Arc<Lexicon>,
    /// The widened frame, reused.
    wide: Vec<i16>,
    /// Which of the two search names holds the current grammar.
    search: Option<&'static str>,
    in_utterance: bool,
}

/// Why a decoder could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

impl Decoder {
    /// The dictionary file in a model folder.
    pub fn dictionary(model_dir: &Path) -> std::path::PathBuf {
        model_dir.join("cmudict-en-us.dict")
    }

    /// Loads the en-us acoustic model from `model_dir` (the folder holding `en-us/` and
    /// `cmudict-en-us.dict`); words come from `lexicon`.
    pub fn load(model_dir: &Path, lexicon: Arc<Lexicon>) -> Result<Self, LoadError> {
        let hmm = model_dir.join("en-us");
        for needed in [
            hmm.join("mdef"),
            hmm.join("feat.params"),
            Self::dictionary(model_dir),
        ] {
            if !needed.is_file() {
                return Err(LoadError(format!(
                    "pocketsphinx model missing {} (is pocketsphinx-en-us installed, and \
                     pocketsphinx.model_dir right?)",
                    needed.display()
                )));
            }
        }
        let Some(hmm_text) = hmm.to_str() else {
            return Err(LoadError(format!(
                "pocketsphinx model_dir {} is not UTF-8",
                model_dir.display()
            )));
        };
        let raw =
            RawDecoder::new(&[("-hmm", hmm_text), ("-dict", "/dev/null")]).ok_or_else(|| {
                LoadError(format!(
                    "pocketsphinx could not load the model in {}",
                    model_dir.display()
                ))
            })?;
        Ok(Self {
            raw,
            lexicon,
            wide: vec![0; FRAME_SAMPLES * 2],
            search: None,
            in_utterance: false,
        })
    }

    /// Listens for `phrases` (lowercase words separated by spaces) from the next
    /// utterance on; any utterance under way is dropped. Returns the phrases kept: those
    /// whose every word the dictionary knows. None kept = not listening.
    pub fn expect(&mut self, phrases: &[String]) -> Vec<String> {
        self.abandon();
        let kept: Vec<String> = phrases
            .iter()
            .map(|p| normalise(p))
            .filter(|p| !p.is_empty() && p.split(' ').all(|w| self.learn(w)))
            .collect();
        let old = self.search.take();
        if !kept.is_empty() {
            let name = if old == Some("expect_a") {
                "expect_b"
            } else {
                "expect_a"
            };
            let jsgf = format!(
                "#JSGF V1.0;\ngrammar expect;\npublic <expect> = {};\n",
                kept.join(" | ")
            );
            if self.raw.use_jsgf(name, &jsgf) {
                self.search = Some(name);
            }
        }
        if let Some(old) = old.filter(|old| Some(*old) != self.search) {
            self.raw.drop_search(old);
        }
        if self.search.is_some() {
            kept
        } else {
            Vec::new()
        }
    }

    /// Makes sure the decoder's dictionary has `word`; false if the lexicon lacks it.
    fn learn(&mut self, word: &str) -> bool {
        if self.raw.knows(word) {
            return true;
        }
        let lexicon = Arc::clone(&self.lexicon);
        let Some(pronunciations) = lexicon.get(word) else {
            return false;
        };
        let mut added = false;
        for (i, phones) in pronunciations.iter().enumerate() {
            let name = if i == 0 {
                word.to_owned()
            } else {
                format!("{word}({})", i + 1)
            };
            added |= self.raw.add_word(&name, phones);
        }
        added
    }

    /// Whether a grammar is set.
    pub fn listening(&self) -> bool {
        self.search.is_some()
    }

    /// Decodes one 8 kHz frame ([`FRAME_SAMPLES`] samples; other lengths are refused),
    /// starting an utterance if none is under way. Returns whether the decoder's VAD hears
    /// speech now.
    pub fn process(&mut self, frame: &[i16]) -> bool {
        if frame.len() != FRAME_SAMPLES || !self.listening() {
            return false;
        }
        if !self.in_utterance {
            if !self.raw.start_utt() {
                return false;
            }
            self.in_utterance = true;
        }
        for (pair, &sample) in self.wide.chunks_exact_mut(2).zip(frame) {
            pair[0] = sample;
            pair[1] = 0;
        }
        self.raw.process_raw(&self.wide) && self.raw.in_speech()
    }

    /// Writes the best guess so far in the utterance under way into `out` (reusing its
    /// capacity); false, and `out` empty, when there is none.
    pub fn partial(&mut self, out: &mut String) -> bool {
        if !self.in_utterance {
            out.clear();
            return false;
        }
        self.raw.hyp_into(out) && !out.is_empty()
    }

    /// Ends the utterance under way and returns what it decoded to, if anything.
    pub fn finish(&mut self) -> Option<Decoded> {
        if !std::mem::take(&mut self.in_utterance) || !self.raw.end_utt() {
            return None;
        }
        let text = self.raw.hyp().filter(|h| !h.is_empty())?;
        let segments = self.raw.segments();
        // Segment frames count from the start of the decoder's stream, not the utterance:
        // the first segment (silence included) starts at the utterance's first kept frame.
        let first = segments.first().map_or(0, |s| s.start_frame);
        let ms = |frame: i32| u64::try_from(frame - first).unwrap_or(0) * MS_PER_FRAME;
        let words = segments
            .into_iter()
            .filter(|s| !is_filler(&s.word))
            .map(|s| {
                let start = ms(s.start_frame);
                let end = ms(s.end_frame + 1);
                (base_word(&s.word).to_owned(), start, end.max(start))
            })
            .collect();
        Some(Decoded { text, words })
    }

    /// Drops the utterance under way, if any, so the decoder is ready for another call.
    pub fn abandon(&mut self) {
        if std::mem::take(&mut self.in_utterance) {
            self.raw.end_utt();
        }
    }

    /// Audio the decoder has kept in the utterance under way, in ms. Its VAD drops the
    /// silence before speech, so read at the moment speech is declared, this says how far
    /// back the utterance's first kept frame lies.
    pub fn kept_ms(&mut self) -> u64 {
        u64::try_from(self.raw.n_frames()).unwrap_or(0) * MS_PER_FRAME
    }
}

/// Lowercase words of `a-z`, digits, `'` and `-`, single-spaced; anything else (which
/// JSGF would read as syntax) makes the phrase empty.
fn normalise(phrase: &str) -> String {
    let lower = phrase.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let clean = words.iter().all(|w| {
        w.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '\'' || c == '-')
    });
    if clean {
        words.join(" ")
    } else {
        String::new()
    }
}

/// Silence and noise entries (`<sil>`, `<s>`, `[NOISE]`, `+um+`).
fn is_filler(word: &str) -> bool {
    word.starts_with('<') || word.starts_with('[') || word.starts_with('+') || word.is_empty()
}

/// `word(2)` (an alternative pronunciation) → `word`.
fn base_word(word: &str) -> &str {
    word.split_once('(').map_or(word, |(base, _)| base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_that_jsgf_would_read_as_syntax_are_refused() {
        assert_eq!(normalise("  Yes  Please "), "yes please");
        assert_eq!(normalise("don't"), "don't");
        assert_eq!(normalise("yes | no"), "");
        assert_eq!(normalise("<rule>"), "");
        assert_eq!(normalise("a;b"), "");
        assert_eq!(base_word("two(2)"), "two");
        assert!(is_filler("<sil>") && is_filler("[NOISE]") && !is_filler("yes"));
    }
}
