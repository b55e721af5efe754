//! Cuts a language model's token stream into pieces a text-to-speech can say well.
//!
//! A piece ends at a sentence end (`.`, `!`, `?`, `…` followed by a space, or a line
//! break), except after a known abbreviation (`Mr.`, `e.g.`) or inside a number (`3.5`).
//! The answer's first piece is flushed early, at the first clause break (`,`, `;`, `:`,
//! a dash) once it holds [`FIRST_CLAUSE_MIN`] characters, so speech starts while the model
//! is still writing the sentence. A piece that reaches [`MAX_PIECE`] characters without
//! a break is cut at its last space. Pure and synchronous: no clock, no I/O.

/// The fewest characters of a first piece flushed at a clause break.
pub const FIRST_CLAUSE_MIN: usize = 12;
/// The most characters a piece holds before it is cut at a space.
pub const MAX_PIECE: usize = 250;

/// Words after which a period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "no", "approx",
    "inc", "ltd", "co", "a.m", "p.m",
];

/// The splitter's state over one answer.
#[derive(Debug, Default)]
pub struct Speakable {
    pending: String,
    pieces_out: usize,
}

impl Speakable {
    /// A splitter at the start of an answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the model's next text; returns the pieces it completes, in order.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.pending.push_str(text);
        let mut pieces = Vec::new();
        while let Some(end) = self.next_break() {
            let rest = self.pending.split_off(end);
            let piece = std::mem::replace(&mut self.pending, rest);
            self.pending = self.pending.trim_start().to_owned();
            let piece = piece.trim();
            if !piece.is_empty() {
                pieces.push(piece.to_owned());
                self.pieces_out += 1;
            }
        }
        pieces
    }

    /// The answer is complete: what is left, if anything.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| {
            self.pieces_out += 1;
            rest.to_owned()
        })
    }

    /// The byte index a piece ends at, if `pending` holds a whole one.
    fn next_break(&self) -> Option<usize> {
        let text = &self.pending;
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let first = self.pieces_out == 0;
        for (i, &(at, c)) in chars.iter().enumerate() {
            let next = chars.get(i + 1).map(|&(_, c)| c);
            let end = at + c.len_utf8();
            match c {
                '\n' => return Some(end),
                '.' | '!' | '?' | '…' => {
                    // Only a following space proves the sentence ended.
                    if !next.is_some_and(char::is_whitespace) {
                        continue;
                    }
                    if c == '.' && (after_abbreviation(&text[..at]) || after_digit_run(&text[..at]))
                    {
                        continue;
                    }
                    return Some(end);
                }
                ',' | ';' | ':' | '—' | '–'
                    if first
                        && next.is_some_and(char::is_whitespace)
                        && text[..at].chars().count() >= FIRST_CLAUSE_MIN =>
                {
                    return Some(end);
                }
                _ => {}
            }
            if i + 1 >= MAX_PIECE {
                return Some(text[..end].rfind(' ').map_or(end, |space| space + 1));
            }
        }
        None
    }
}

/// Whether `before` (the text up to a period) ends in an abbreviation.
fn after_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    ABBREVIATIONS.contains(&word.as_str()) || (word.len() == 1 && word != "i")
}

/// Whether the piece so far is only a number: a list marker (`1. First`), not a sentence.
fn after_digit_run(before: &str) -> bool {
    let word = before.rsplit(char::is_whitespace).next().unwrap_or("");
    !word.is_empty()
        && word.chars().all(|c| c.is_ascii_digit())
        && word.len() == before.trim_start().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(tokens: &[&str]) -> Vec<String> {
        let mut s = Speakable::new();
        let mut out: Vec<String> = tokens.iter().flat_map(|t| s.push(t)).collect();
        out.extend(s.finish());
        out
    }

    #[test]
    fn the_first_clause_goes_early_then_whole_sentences() {
        let tokens = [
            "Sure",
            ", I can",
            " help you with",
            " that, and",
            " more. ",
            "Our offer",
            " starts",
            " at 3.5 percent",
            ", which",
            " is low. Okay?",
        ];
        assert_eq!(
            split(&tokens),
            [
                "Sure, I can help you with that,",
                "and more.",
                "Our offer starts at 3.5 percent, which is low.",
                "Okay?",
            ]
        );
    }

    #[test]
    fn a_short_opening_waits_for_more() {
        assert_eq!(split(&["Hi, ", "there. Yes."]), ["Hi, there.", "Yes."]);
    }

    #[test]
    fn abbreviations_and_numbers_do_not_end_sentences() {
        assert_eq!(
            split(&["Dr. Smith will call at 5.30 p", ".m. today. ", "Thanks!"]),
            ["Dr. Smith will call at 5.30 p.m. today.", "Thanks!"]
        );
    }

    #[test]
    fn pieces_arrive_while_the_model_writes() {
        let mut s = Speakable::new();
        assert!(s.push("Hello there").is_empty());
        assert_eq!(s.push(". How"), ["Hello there."]);
        assert_eq!(s.push(" are"), Vec::<String>::new());
        assert_eq!(s.push(" you? I"), ["How are you?"]);
        assert_eq!(s.finish().as_deref(), Some("I"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_run_without_breaks_is_cut_at_a_space() {
        let long = "word ".repeat(100);
        let pieces = split(&[&long]);
        assert!(pieces.len() >= 2, "{pieces:?}");
        assert!(pieces.iter().all(|p| p.chars().count() <= MAX_PIECE));
        assert_eq!(pieces.join(" "), long.trim());
    }

    #[test]
    fn line_breaks_end_pieces_and_unicode_is_kept_whole() {
        assert_eq!(
            split(&["Café au lait\n", "Crème brûlée… ", "fin"]),
            ["Café au lait", "Crème brûlée…", "fin"]
        );
    }
}
