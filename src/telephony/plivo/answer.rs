//! The answer URL (reference §1): reading Plivo's answer request, writing the `<Stream>`
//! document that connects the call to voxgate's media WebSocket (or the `<Hangup>` that
//! refuses it), and reading those documents back for the simulator.
//!
//! Invariants and what this module must never do:
//! - every byte of the request is hostile: parsing never panics, and a missing or
//!   malformed `CallUUID` is an error, never an empty id (an empty UUID in Plivo's hangup
//!   API hangs up every call on the account);
//! - every attribute and text written into XML is escaped, so no input can break the
//!   document (an unescaped `&` turns the call into Plivo error 8011);
//! - it never checks signatures (see `signature`), never reads configuration and never
//!   bounds the request body: the HTTP layer does both before calling in;
//! - [`parse_stream_response`] reads only the small documents this module writes (a
//!   prolog, `<Response>`, one `<Stream>` or `<Hangup>`, comments and whitespace); it is
//!   not a general XML parser and refuses anything else with an error.

use thiserror::Error;

#[cfg(test)]
mod tests;

/// The `contentType` voxgate asks for: 8 kHz μ-law, which is what the phone network
/// carries anyway.
pub const CONTENT_TYPE_MULAW_8K: &str = "audio/x-mulaw;rate=8000";

/// Largest XML document [`parse_stream_response`] reads, in bytes (Plivo's own limit).
pub const MAX_XML_BYTES: usize = 100 * 1024;

/// Most attributes one element may carry in [`parse_stream_response`].
const MAX_ATTRIBUTES: usize = 32;

/// Longest `CallUUID` accepted, in bytes (Plivo's are 36-character UUIDs).
const MAX_CALL_UUID_BYTES: usize = 64;

/// Why an answer request or a Plivo XML document was rejected. For a request the caller
/// answers with a [`refusal_response`]; for a document (simulator) the test call fails.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AnswerError {
    /// The request has no `CallUUID`, or an empty one.
    #[error("answer request has no CallUUID")]
    MissingCallUuid,
    /// The `CallUUID` is too long or has characters other than ASCII letters, digits, `-`.
    #[error("answer request has a malformed CallUUID")]
    InvalidCallUuid,
    /// The XML document is over [`MAX_XML_BYTES`].
    #[error("XML document over {MAX_XML_BYTES} bytes")]
    XmlTooLarge,
    /// The XML document is not one this module writes; the text says where it went wrong.
    #[error("malformed Plivo XML: {0}")]
    MalformedXml(&'static str),
}

impl AnswerError {
    /// A fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingCallUuid => "missing_call_uuid",
            Self::InvalidCallUuid => "invalid_call_uuid",
            Self::XmlTooLarge => "xml_too_large",
            Self::MalformedXml(_) => "malformed_xml",
        }
    }
}

/// The media WebSocket URL for a call: `public_url` (`https://host[/prefix]`, no trailing
/// slash) with `https://` → `wss://` and `http://` → `ws://`, then `path`, then
/// `call_id=<call_id percent-encoded>` as a query parameter.
pub fn stream_url(public_url: &str, path: &str, call_id: &str) -> String {
    let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(public_url, "https://") {
        ("wss://", rest)
    } else if let Some(rest) = strip_prefix_ignore_case(public_url, "http://") {
        ("ws://", rest)
    } else {
        ("", public_url)
    };
    let rest = match rest.strip_suffix('/') {
        Some(trimmed) if path.starts_with('/') => trimmed,
        _ => rest,
    };
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut url = String::with_capacity(public_url.len() + path.len() + 9 + call_id.len() * 3);
    url.push_str(scheme);
    url.push_str(rest);
    url.push_str(path);
    url.push(separator);
    url.push_str("call_id=");
    percent_encode_into(&mut url, call_id);
    url
}

/// What goes into the `<Stream>` element of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamXml<'a> {
    /// The WebSocket URL Plivo connects to (see [`stream_url`]).
    pub stream_url: &'a str,
    /// The audio format, e.g. [`CONTENT_TYPE_MULAW_8K`].
    pub content_type: &'a str,
    /// Where Plivo POSTs stream lifecycle events, if anywhere.
    pub status_callback_url: Option<&'a str>,
    /// `extraHeaders`, echoed back in the `start` message (Plivo logs them: no secrets).
    pub extra_headers: Option<&'a str>,
    /// `streamTimeout` in seconds; Plivo's default (24 h) when `None`.
    pub stream_timeout_secs: Option<u32>,
}

/// The answer document that streams the call to voxgate: one bidirectional, keep-alive
/// `<Stream>` with every attribute and the URL XML-escaped.
pub fn stream_response(x: &StreamXml<'_>) -> String {
    let mut out = String::with_capacity(320 + x.stream_url.len());
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Stream"#);
    push_attribute(&mut out, "bidirectional", "true");
    push_attribute(&mut out, "keepCallAlive", "true");
    push_attribute(&mut out, "contentType", x.content_type);
    if let Some(secs) = x.stream_timeout_secs {
        push_attribute(&mut out, "streamTimeout", &secs.to_string());
    }
    if let Some(url) = x.status_callback_url {
        push_attribute(&mut out, "statusCallbackUrl", url);
        push_attribute(&mut out, "statusCallbackMethod", "POST");
    }
    if let Some(headers) = x.extra_headers {
        push_attribute(&mut out, "extraHeaders", headers);
    }
    out.push('>');
    escape_into(&mut out, x.stream_url);
    out.push_str("</Stream></Response>");
    out
}

/// Why a call is refused at the answer URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// voxgate is at capacity: the caller hears busy.
    Busy,
    /// The request is bad (unsigned, malformed, unknown call).
    Rejected,
}

impl Refusal {
    /// Plivo's `<Hangup reason>` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Rejected => "rejected",
        }
    }
}

/// The answer document that refuses a call: `<Response><Hangup reason="…"/></Response>`.
pub fn refusal_response(reason: Refusal) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup reason="{}"/></Response>"#,
        reason.as_str()
    )
}

/// The fields of Plivo's answer-URL request that voxgate uses, plus all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRequest {
    /// Plivo's id for this call leg; non-empty ASCII letters, digits and `-`.
    pub call_uuid: String,
    /// `From` (empty if absent).
    pub from: String,
    /// `To` (empty if absent).
    pub to: String,
    /// `Direction`: `inbound` or `outbound` (empty if absent).
    pub direction: String,
    /// `CallStatus`, e.g. `ringing` or `in-progress` (empty if absent).
    pub call_status: String,
    /// voxgate's own id from the answer URL's `?call_id=` (outbound calls), if non-empty.
    pub call_id: Option<String>,
    /// Every field as received, decoded: the form body when it has any field (a POST),
    /// otherwise the query (a GET). For a POST these are the signature's params.
    pub params: Vec<(String, String)>,
}

impl AnswerRequest {
    /// Reads the request from its decoded query and form body. Each field is taken from
    /// the form if there, else from the query, so GET and POST both work; `call_id` is
    /// read from the query only. Unknown fields are kept in `params`, never refused.
    pub fn from_params(
        query: &[(String, String)],
        form: &[(String, String)],
    ) -> Result<AnswerRequest, AnswerError> {
        let field = |name: &str| {
            first(form, name)
                .or_else(|| first(query, name))
                .unwrap_or("")
                .to_owned()
        };
        let call_uuid = field("CallUUID");
        if call_uuid.is_empty() {
            return Err(AnswerError::MissingCallUuid);
        }
        if call_uuid.len() > MAX_CALL_UUID_BYTES
            || !call_uuid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(AnswerError::InvalidCallUuid);
        }
        Ok(AnswerRequest {
            call_uuid,
            from: field("From"),
            to: field("To"),
            direction: field("Direction"),
            call_status: field("CallStatus"),
            call_id: first(query, "call_id")
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            params: if form.is_empty() {
                query.to_vec()
            } else {
                form.to_vec()
            },
        })
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into `(key, value)` pairs in order
/// (`+` and `%XX` decoded, invalid UTF-8 replaced). The caller has bounded the body.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Decodes a URL query string (a leading `?` is allowed) like [`parse_form`].
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// A Plivo answer document as read back by [`parse_stream_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedStream {
    /// The call is to be streamed.
    Stream(StreamElement),
    /// The call is hung up (`<Hangup>`); `reason` is its `reason` attribute if any.
    Refused {
        /// `busy`, `rejected`, … as written.
        reason: Option<String>,
    },
}

/// A `<Stream>` element, attributes and URL unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamElement {
    /// The WebSocket URL (the element's text, surrounding whitespace removed).
    pub url: String,
    /// `contentType`, if set.
    pub content_type: Option<String>,
    /// `bidirectional` (Plivo's default `false` when absent).
    pub bidirectional: bool,
    /// `keepCallAlive` (Plivo's default `false` when absent).
    pub keep_call_alive: bool,
    /// `statusCallbackUrl`, if set.
    pub status_callback_url: Option<String>,
    /// `statusCallbackMethod`, if set.
    pub status_callback_method: Option<String>,
    /// `extraHeaders`, if set.
    pub extra_headers: Option<String>,
    /// `streamTimeout` in seconds, if set.
    pub stream_timeout_secs: Option<u32>,
}

/// Reads an answer document of the shape this module writes: `<Response>` holding one
/// `<Stream>` or one `<Hangup>`. Anything else is an error; no input panics.
pub fn parse_stream_response(xml: &str) -> Result<ParsedStream, AnswerError> {
    if xml.len() > MAX_XML_BYTES {
        return Err(AnswerError::XmlTooLarge);
    }
    let mut doc = Cursor { rest: xml };
    doc.prolog()?;
    let root = doc.start_tag()?;
    if root.name != "Response" {
        return Err(malformed("root element is not Response"));
    }
    if root.empty {
        return Err(malformed("empty Response"));
    }
    doc.skip_misc()?;
    let element = doc.start_tag()?;
    let parsed = match element.name {
        "Stream" => {
            if element.empty {
                return Err(malformed("Stream has no URL"));
            }
            let url = doc.text()?;
            doc.end_tag("Stream")?;
            let url = url.trim_matches(is_xml_space);
            if url.is_empty() {
                return Err(malformed("Stream has no URL"));
            }
            ParsedStream::Stream(StreamElement {
                url: url.to_owned(),
                content_type: element.attribute("contentType"),
                bidirectional: element.flag("bidirectional")?,
                keep_call_alive: element.flag("keepCallAlive")?,
                status_callback_url: element.attribute("statusCallbackUrl"),
                status_callback_method: element.attribute("statusCallbackMethod"),
                extra_headers: element.attribute("extraHeaders"),
                stream_timeout_secs: element
                    .attribute("streamTimeout")
                    .map(|secs| secs.parse().map_err(|_| malformed("bad streamTimeout")))
                    .transpose()?,
            })
        }
        "Hangup" => {
            if !element.empty {
                doc.skip_misc()?;
                doc.end_tag("Hangup")?;
            }
            ParsedStream::Refused {
                reason: element.attribute("reason"),
            }
        }
        _ => return Err(malformed("expected Stream or Hangup")),
    };
    doc.skip_misc()?;
    doc.end_tag("Response")?;
    doc.skip_misc()?;
    if !doc.rest.is_empty() {
        return Err(malformed("content after Response"));
    }
    Ok(parsed)
}

fn malformed(what: &'static str) -> AnswerError {
    AnswerError::MalformedXml(what)
}

fn first<'p>(pairs: &'p [(String, String)], name: &str) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so the value reads back
/// the same under any query decoder (no `+`-for-space ambiguity).
fn percent_encode_into(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// Appends ` name="value"` with the value escaped.
fn push_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

/// XML-escapes `value` for both text and attribute values. Tab, newline and carriage
/// return become character references (a parser would turn them into spaces in an
/// attribute); characters XML 1.0 cannot hold at all (other controls, U+FFFE, U+FFFF)
/// are dropped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
}

/// XML 1.0's `Char` production (Rust `char`s are never surrogates).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{fffd}' | '\u{10000}'..)
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')
}

/// Reverses [`escape_into`]: the five named entities and numeric references. In an
/// attribute, literal tab/newline/CR become spaces, as an XML parser normalizes them.
fn unescape(raw: &str, attribute: bool) -> Result<String, AnswerError> {
    let mut out = String::with_capacity(raw.len());
    let push_literal = |out: &mut String, text: &str| -> Result<(), AnswerError> {
        for c in text.chars() {
            if !is_xml_char(c) {
                return Err(malformed("character not allowed in XML"));
            }
            out.push(if attribute && is_xml_space(c) { ' ' } else { c });
        }
        Ok(())
    };
    let mut rest = raw;
    while let Some((literal, after)) = rest.split_once('&') {
        push_literal(&mut out, literal)?;
        let (entity, tail) = after
            .split_once(';')
            .ok_or_else(|| malformed("unterminated entity"))?;
        out.push(match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => char_reference(entity)?,
        });
        rest = tail;
    }
    push_literal(&mut out, rest)?;
    Ok(out)
}

/// `#123` or `#x7B` (without `&` and `;`) as the character it names.
fn char_reference(entity: &str) -> Result<char, AnswerError> {
    let bad = || malformed("unknown entity");
    let number = entity.strip_prefix('#').ok_or_else(bad)?;
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    if digits.is_empty() || digits.len() > 8 || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u32::from_str_radix(digits, radix)
        .ok()
        .and_then(char::from_u32)
        .filter(|c| is_xml_char(*c))
        .ok_or_else(bad)
}

/// A start tag: its name, unescaped attributes, and whether it was `<… />`.
struct Tag<'a> {
    name: &'a str,
    attributes: Vec<(&'a str, String)>,
    empty: bool,
}

impl Tag<'_> {
    fn attribute(&self, name: &str) -> Option<String> {
        self.attributes
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    }

    /// A boolean attribute: `true`/`false`, `false` when absent.
    fn flag(&self, name: &str) -> Result<bool, AnswerError> {
        match self.attribute(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(malformed("boolean attribute neither true nor false")),
        }
    }
}

/// What is left of the document. Every step slices only at positions found by searching
/// for ASCII characters, so it cannot split a UTF-8 sequence.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    /// An optional byte-order mark, `<?xml …?>` declaration, comments and whitespace.
    fn prolog(&mut self) -> Result<(), AnswerError> {
        self.rest = self.rest.strip_prefix('\u{feff}').unwrap_or(self.rest);
        if let Some(after) = self.rest.strip_prefix("<?xml") {
            let (_, rest) = after
                .split_once("?>")
                .ok_or_else(|| malformed("unterminated XML declaration"))?;
            self.rest = rest;
        }
        self.skip_misc()
    }

    /// Whitespace and comments.
    fn skip_misc(&mut self) -> Result<(), AnswerError> {
        loop {
            self.rest = self.rest.trim_start_matches(is_xml_space);
            let Some(after) = self.rest.strip_prefix("<!--") else {
                return Ok(());
            };
            let (_, rest) = after
                .split_once("-->")
                .ok_or_else(|| malformed("unterminated comment"))?;
            self.rest = rest;
        }
    }

    fn start_tag(&mut self) -> Result<Tag<'a>, AnswerError> {
        let after = self
            .rest
            .strip_prefix('<')
            .ok_or_else(|| malformed("expected an element"))?;
        let (name, mut rest) = split_name(after);
        if name.is_empty() {
            return Err(malformed("expected an element name"));
        }
        let mut attributes: Vec<(&'a str, String)> = Vec::new();
        loop {
            let trimmed = rest.trim_start_matches(is_xml_space);
            if let Some(tail) = trimmed.strip_prefix("/>") {
                self.rest = tail;
                return Ok(Tag {
                    name,
                    attributes,
                    empty: true,
                });
            }
            if let Some(tail) = trimmed.strip_prefix('>') {
                self.rest = tail;
                return Ok(Tag {
                    name,
                    attributes,
                    empty: false,
                });
            }
            if trimmed.len() == rest.len() {
                return Err(malformed("expected whitespace before an attribute"));
            }
            let (key, tail) = split_name(trimmed);
            if key.is_empty() {
                return Err(malformed("expected an attribute name"));
            }
            let tail = tail
                .trim_start_matches(is_xml_space)
                .strip_prefix('=')
                .ok_or_else(|| malformed("expected = after an attribute name"))?
                .trim_start_matches(is_xml_space);
            let quote = match tail.chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return Err(malformed("attribute value not quoted")),
            };
            let (raw, tail) = tail[1..]
                .split_once(quote)
                .ok_or_else(|| malformed("unterminated attribute value"))?;
            if raw.contains('<') {
                return Err(malformed("< in an attribute value"));
            }
            if attributes.iter().any(|(existing, _)| *existing == key) {
                return Err(malformed("duplicate attribute"));
            }
            if attributes.len() == MAX_ATTRIBUTES {
                return Err(malformed("too many attributes"));
            }
            attributes.push((key, unescape(raw, true)?));
            rest = tail;
        }
    }

    fn end_tag(&mut self, name: &str) -> Result<(), AnswerError> {
        self.rest = self
            .rest
            .strip_prefix("</")
            .and_then(|rest| rest.strip_prefix(name))
            .map(|rest| rest.trim_start_matches(is_xml_space))
            .and_then(|rest| rest.strip_prefix('>'))
            .ok_or_else(|| malformed("expected a matching end tag"))?;
        Ok(())
    }

    /// Character data up to the next `<`, unescaped.
    fn text(&mut self) -> Result<String, AnswerError> {
        let end = self
            .rest
            .find('<')
            .ok_or_else(|| malformed("unterminated element"))?;
        let (raw, rest) = self.rest.split_at(end);
        self.rest = rest;
        unescape(raw, false)
    }
}

/// Splits off a leading XML name (ASCII letters, digits, `_ - : .`).
fn split_name(s: &str) -> (&str, &str) {
    let len = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
    s.split_at(len)
}
