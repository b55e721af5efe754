//! Log lines that untrusted input cannot forge.
//!
//! Call ids, phone numbers, DTMF digits, stream ids and callback fields come from the
//! network and reach log fields. A CR/LF in one of them would start a new, real-looking
//! line; an ANSI escape would recolour or erase the terminal; a bidi override (U+202E)
//! would make a line read backwards. Rather than trusting every call site to remember,
//! the subscriber's field formatter escapes every field value: control characters and
//! bidi controls are written as `\n`, `\r`, `\t` or `\u{..}`, so one event is always
//! one line.
//!
//! Formatting happens only for a line that is written (never per frame: the media path
//! does not log per frame), so the extra buffer per line is not on the hot path.

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// A field formatter: the default `name=value` layout with every value escaped.
#[derive(Debug, Default)]
pub struct EscapedFields {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut plain = String::new();
        self.inner.format_fields(Writer::new(&mut plain), fields)?;
        write_escaped(&mut writer, &plain)
    }
}

/// Writes `text` with every control character and bidi control escaped.
pub fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if needs_escape(c) => write!(out, "\\u{{{:x}}}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// Control characters (C0, DEL, C1), line and paragraph separators, and the Unicode
/// bidi controls that reorder how a line reads.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2028}' | '\u{2029}'
            | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Installs the process's log subscriber (`RUST_LOG`-style `filter`) with escaped fields.
pub fn init(filter: tracing_subscriber::EnvFilter) {
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(EscapedFields::default())
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        write_escaped(&mut out, text).unwrap();
        out
    }

    #[test]
    fn nothing_untrusted_can_start_a_line_recolour_or_reverse_it() {
        assert_eq!(escaped("a\r\nINFO forged"), "a\\r\\nINFO forged");
        assert_eq!(escaped("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escaped("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escaped("nul\0"), "nul\\u{0}");
        assert_eq!(escaped("line\u{2028}sep"), "line\\u{2028}sep");
        assert_eq!(
            escaped("call-7 +15550001 ünïcode ✓"),
            "call-7 +15550001 ünïcode ✓"
        );
    }

    #[test]
    fn every_field_of_a_real_event_is_escaped() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields::default())
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call", call_id = %"x\nERROR forged");
            let _entered = span.enter();
            tracing::info!(digit = %"1\r\n", from = ?"\u{202e}", "dtmf");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "one event, one line: {text:?}");
        assert!(text.contains("x\\nERROR forged"), "{text}");
        assert!(text.contains("digit=1\\r\\n"), "{text}");
    }
}
