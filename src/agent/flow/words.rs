//! Hearing an expected word in what the caller said: case-insensitive, on word boundaries,
//! with synonyms ("yeah" is "yes").
//!
//! Text is cut into lowercase alphanumeric tokens, so punctuation and case never matter and
//! "no" is not heard inside "know" or "I don't know". A phrase matches where its tokens
//! appear in a row. When several expected words are heard, the one said first wins (then
//! the longer phrase, then the one listed first).

use std::collections::BTreeMap;

/// Built-in spoken forms of the commonest answers.
const BUILT_IN: &[(&str, &[&str])] = &[
    (
        "yes",
        &[
            "yeah",
            "yep",
            "yup",
            "sure",
            "correct",
            "okay",
            "ok",
            "of course",
            "absolutely",
            "certainly",
            "affirmative",
            "please do",
        ],
    ),
    (
        "no",
        &[
            "nope",
            "nah",
            "no thanks",
            "negative",
            "not really",
            "not interested",
        ],
    ),
];

/// `text` as lowercase alphanumeric tokens.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Every spoken form of `word`: itself, the built-in synonyms and the flow's own.
pub fn forms(word: &str, synonyms: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut all = vec![word.to_owned()];
    let lower = word.trim().to_lowercase();
    for (key, more) in BUILT_IN {
        if *key == lower {
            all.extend(more.iter().map(|s| (*s).to_owned()));
        }
    }
    for (key, more) in synonyms {
        if key.trim().to_lowercase() == lower {
            all.extend(more.iter().cloned());
        }
    }
    all
}

/// Where `phrase`'s tokens first appear in a row in `heard`.
fn position(heard: &[String], phrase: &[String]) -> Option<usize> {
    if phrase.is_empty() || phrase.len() > heard.len() {
        return None;
    }
    heard.windows(phrase.len()).position(|w| w == phrase)
}

/// The expected word (as written in `expected`) heard first in `text`, by any of its forms.
pub fn best_match<'a>(
    text: &str,
    expected: &[&'a str],
    synonyms: &BTreeMap<String, Vec<String>>,
) -> Option<&'a str> {
    let heard = tokens(text);
    let mut best: Option<(usize, std::cmp::Reverse<usize>, usize)> = None;
    let mut found = None;
    for (order, word) in expected.iter().enumerate() {
        for form in forms(word, synonyms) {
            let phrase = tokens(&form);
            let Some(at) = position(&heard, &phrase) else {
                continue;
            };
            let rank = (at, std::cmp::Reverse(phrase.len()), order);
            if best.is_none_or(|b| rank < b) {
                best = Some(rank);
                found = Some(*word);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hear<'a>(text: &str, expected: &[&'a str]) -> Option<&'a str> {
        best_match(text, expected, &BTreeMap::new())
    }

    #[test]
    fn words_match_on_boundaries_ignoring_case_and_punctuation() {
        assert_eq!(hear("Yes, please!", &["yes", "no"]), Some("yes"));
        assert_eq!(hear("I don't know", &["yes", "no"]), None);
        assert_eq!(hear("PARIS.", &["London", "Paris"]), Some("Paris"));
        assert_eq!(
            hear("new york please", &["York", "New York"]),
            Some("New York")
        );
    }

    #[test]
    fn synonyms_count_as_the_word() {
        assert_eq!(hear("yeah sure", &["yes", "no"]), Some("yes"));
        assert_eq!(hear("nope", &["yes", "no"]), Some("no"));
        assert_eq!(hear("not really", &["yes", "no"]), Some("no"));
        let flow = BTreeMap::from([("London".to_owned(), vec!["the capital".to_owned()])]);
        assert_eq!(
            best_match("um the capital I guess", &["Paris", "London"], &flow),
            Some("London")
        );
    }

    #[test]
    fn the_word_said_first_wins() {
        assert_eq!(hear("no, wait, yes", &["yes", "no"]), Some("no"));
        assert_eq!(hear("", &["yes"]), None);
        assert_eq!(hear("yes", &[""]), None);
    }
}
