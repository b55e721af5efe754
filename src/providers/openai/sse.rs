//! A server-sent-events reader: bytes as they arrive in, each event's `data` out.
//!
//! Follows the WHATWG event-stream rules a chat stream uses: lines end in `\n`, `\r\n` or
//! `\r`; `data:` lines (one optional space after the colon) join with `\n`; a blank line
//! dispatches the event; `:` comments and other fields (`event`, `id`, `retry`) are
//! ignored; an event with no `data` dispatches nothing. Bytes may split anywhere, even
//! inside a UTF-8 character or a `\r\n`.
//!
//! Written here rather than taken from a crate because a hostile or broken server must not
//! grow memory without bound: a line longer than [`MAX_EVENT`] (or an event whose data
//! grows past it) is an error, not a bigger buffer. Never panics on any input (fuzzed:
//! `fuzz/fuzz_targets/sse.rs`).

/// The most bytes one event's data may hold.
pub const MAX_EVENT: usize = 1024 * 1024;

/// Why the stream cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event grew past [`MAX_EVENT`].
    #[error("an event is larger than {MAX_EVENT} bytes")]
    TooLarge,
    /// An event's data is not UTF-8.
    #[error("an event is not UTF-8")]
    NotUtf8,
}

/// The reader's state between chunks of bytes.
#[derive(Debug, Default)]
pub struct SseReader {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The last byte was `\r`: a `\n` right after it ends nothing.
    after_cr: bool,
}

impl SseReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `bytes`, calling `event` with each complete event's data, in order. After an
    /// error the stream is unusable.
    pub fn feed(&mut self, bytes: &[u8], mut event: impl FnMut(&str)) -> Result<(), SseError> {
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => self.end_line(&mut event)?,
                _ => {
                    if self.line.len() >= MAX_EVENT {
                        return Err(SseError::TooLarge);
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, event: &mut impl FnMut(&str)) -> Result<(), SseError> {
        if self.line.is_empty() {
            if self.has_data {
                let data = std::str::from_utf8(&self.data).map_err(|_| SseError::NotUtf8)?;
                event(data);
            }
            self.data.clear();
            self.has_data = false;
            return Ok(());
        }
        let (field, value) = match self.line.iter().position(|&b| b == b':') {
            Some(0) => ("".as_bytes(), &[][..]),
            Some(at) => {
                let value = &self.line[at + 1..];
                (&self.line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&self.line[..], &[][..]),
        };
        if field == b"data" {
            if self.data.len() + value.len() + 1 > MAX_EVENT {
                return Err(SseError::TooLarge);
            }
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        self.line.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Result<Vec<String>, SseError> {
        let mut reader = SseReader::new();
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, |data| out.push(data.to_owned()))?;
        }
        Ok(out)
    }

    #[test]
    fn reads_a_chat_stream() {
        let stream = b"data: {\"a\":1}\n\n: keep-alive comment\n\ndata: [DONE]\n\n";
        assert_eq!(events(&[stream]).unwrap(), ["{\"a\":1}", "[DONE]"]);
    }

    #[test]
    fn bytes_may_split_anywhere() {
        let stream = "event: x\r\nid: 3\r\ndata: héllo\r\ndata:world\r\n\r\ndata: 2\r\r".as_bytes();
        let whole = events(&[stream]).unwrap();
        assert_eq!(whole, ["héllo\nworld", "2"]);
        for split in 0..stream.len() {
            let (a, b) = stream.split_at(split);
            assert_eq!(events(&[a, b]).unwrap(), whole, "split at {split}");
        }
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(events(&bytewise).unwrap(), whole);
    }

    #[test]
    fn events_without_data_and_unfinished_events_dispatch_nothing() {
        assert!(events(&[b"event: ping\n\nid: 1\n\n"]).unwrap().is_empty());
        assert!(events(&[b"data: half"]).unwrap().is_empty());
        assert_eq!(events(&[b"data\n\n"]).unwrap(), [""]);
    }

    #[test]
    fn a_huge_line_is_an_error_not_a_bigger_buffer() {
        let big = vec![b'x'; MAX_EVENT + 1];
        assert_eq!(events(&[b"data: ", &big]), Err(SseError::TooLarge));
        let line = vec![b'y'; MAX_EVENT / 2];
        let mut many = Vec::new();
        for _ in 0..3 {
            many.extend_from_slice(b"data: ");
            many.extend_from_slice(&line[..line.len() - 10]);
            many.push(b'\n');
        }
        assert_eq!(events(&[&many]), Err(SseError::TooLarge));
        assert_eq!(events(&[b"data: \xff\xfe\n\n"]), Err(SseError::NotUtf8));
    }
}
