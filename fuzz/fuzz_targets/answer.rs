//! Any bytes as an answer request (form body, query) and as a Plivo XML document: never a
//! panic. The same bytes as a call id and as `<Stream>` fields must round-trip through
//! `stream_url`, `stream_response` and `parse_stream_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::telephony::plivo::answer::{
    AnswerRequest, MAX_XML_BYTES, ParsedStream, StreamXml, parse_form, parse_query,
    parse_stream_response, stream_response, stream_url,
};

fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{fffd}' | '\u{10000}'..)
}

fuzz_target!(|data: &[u8]| {
    // The request side: bytes as a body, text as a query, both into an AnswerRequest.
    let form = parse_form(data);
    let text = String::from_utf8_lossy(data);
    let (query_text, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let query = parse_query(query_text);
    if let Ok(request) = AnswerRequest::from_params(&query, &form) {
        assert!(!request.call_uuid.is_empty());
    }

    // The document side.
    let _ = parse_stream_response(&text);

    // Round trips.
    let url = stream_url("https://h/base", "/ws", rest);
    let (_, url_query) = url.split_once('?').unwrap_or_default();
    assert_eq!(
        parse_query(url_query),
        [("call_id".to_owned(), rest.to_owned())]
    );

    let fields: Vec<&str> = rest.splitn(3, '\u{0}').collect();
    let extra = fields.get(1).copied();
    let callback = fields.get(2).copied();
    let xml = stream_response(&StreamXml {
        stream_url: fields[0],
        content_type: query_text,
        status_callback_url: callback,
        extra_headers: extra,
        stream_timeout_secs: Some(data.len() as u32),
    });
    let kept = |s: &str| s.chars().filter(|c| xml_char(*c)).collect::<String>();
    let expected_url = kept(fields[0]);
    let expected_url = expected_url.trim_matches([' ', '\t', '\n', '\r']);
    match parse_stream_response(&xml) {
        Ok(ParsedStream::Stream(stream)) => {
            assert_eq!(stream.url, expected_url);
            assert_eq!(stream.content_type, Some(kept(query_text)));
            assert_eq!(stream.extra_headers, extra.map(kept));
            assert_eq!(stream.status_callback_url, callback.map(kept));
            assert_eq!(stream.stream_timeout_secs, Some(data.len() as u32));
            assert!(stream.bidirectional && stream.keep_call_alive);
        }
        Ok(other) => panic!("stream_response read back as {other:?}"),
        Err(_) => assert!(expected_url.is_empty() || xml.len() > MAX_XML_BYTES),
    }
});
