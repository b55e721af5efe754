//! The pronunciation dictionary, read once and shared by every decoder.
//!
//! A decoder loaded with the whole 134 k-word CMU dictionary takes about 27 MB and 0.27 s;
//! loaded with none and given only the words its grammar uses, about 5 MB and 0.02 s. So
//! the dictionary is parsed here once, and each decoder is handed the few pronunciations it
//! needs when [`super::Recognition::expect`] names them.
//!
//! The file is the model's own (trusted, read at start), in CMU format: `word PH ON ES`,
//! alternatives as `word(2) …`, `#` comments. Lines that do not fit are skipped, never a
//! panic.

use std::collections::HashMap;
use std::path::Path;

/// Words and their pronunciations (ARPAbet phones, space-separated), first listed first.
#[derive(Debug, Default)]
pub struct Lexicon {
    words: HashMap<String, Vec<String>>,
}

impl Lexicon {
    /// Reads a CMU-format dictionary file.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// Parses CMU-format dictionary text.
    pub fn parse(text: &str) -> Self {
        let mut words: HashMap<String, Vec<String>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            let Some((word, phones)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            let base = word.split_once('(').map_or(word, |(base, _)| base);
            let phones = phones.split_whitespace().collect::<Vec<_>>().join(" ");
            if base.is_empty() || phones.is_empty() {
                continue;
            }
            words.entry(base.to_owned()).or_default().push(phones);
        }
        Self { words }
    }

    /// The pronunciations of `word`, if it is known.
    pub fn get(&self, word: &str) -> Option<&[String]> {
        self.words.get(word).map(Vec::as_slice)
    }

    /// How many words it knows.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether it knows no word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternatives_join_their_word_and_bad_lines_are_skipped() {
        let lexicon =
            Lexicon::parse("zero Z IH R OW\nzero(2)  Z IY R OW # comment\n\nlonely\n(2) AH\n");
        assert_eq!(
            lexicon.get("zero"),
            Some(&["Z IH R OW".to_owned(), "Z IY R OW".to_owned()][..])
        );
        assert_eq!(lexicon.get("lonely"), None);
        assert_eq!(lexicon.len(), 1);
    }
}
