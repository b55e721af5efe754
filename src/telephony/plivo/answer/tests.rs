use super::*;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A deliberately separate, naive unescape, so the writer is not checked only against
/// this module's own parser.
fn naive_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#9;", "\t")
        .replace("&#10;", "\n")
        .replace("&#13;", "\r")
        .replace("&amp;", "&")
}

/// The raw text between `<Stream …>` and `</Stream>`.
fn raw_stream_text(xml: &str) -> &str {
    let open = xml.find("<Stream").unwrap();
    let start = open + xml[open..].find('>').unwrap() + 1;
    let end = xml.find("</Stream>").unwrap();
    &xml[start..end]
}

/// Every `&` starts one of the entities the writer uses.
fn ampersands_are_entities(xml: &str) -> bool {
    xml.match_indices('&').all(|(i, _)| {
        [
            "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#9;", "&#10;", "&#13;",
        ]
        .iter()
        .any(|entity| xml[i..].starts_with(entity))
    })
}

fn simple(url: &str) -> StreamXml<'_> {
    StreamXml {
        stream_url: url,
        content_type: CONTENT_TYPE_MULAW_8K,
        status_callback_url: None,
        extra_headers: None,
        stream_timeout_secs: None,
    }
}

#[test]
fn stream_url_maps_schemes_and_keeps_prefix() {
    assert_eq!(
        stream_url("https://media.example.net", "/plivo/ws", "abc"),
        "wss://media.example.net/plivo/ws?call_id=abc"
    );
    assert_eq!(
        stream_url("http://127.0.0.1:8080", "/ws", "abc"),
        "ws://127.0.0.1:8080/ws?call_id=abc"
    );
    assert_eq!(
        stream_url("https://h/voxgate", "/ws", "abc"),
        "wss://h/voxgate/ws?call_id=abc"
    );
    assert_eq!(
        stream_url("HTTPS://h/", "/ws", "abc"),
        "wss://h/ws?call_id=abc"
    );
    assert_eq!(
        stream_url("https://h", "/ws?tenant=7", "abc"),
        "wss://h/ws?tenant=7&call_id=abc"
    );
}

#[test]
fn call_id_with_special_characters_survives() {
    let call_id = "a b&c=d/é+%?#\"<'>";
    let url = stream_url("https://h", "/ws", call_id);
    assert_eq!(
        url,
        "wss://h/ws?call_id=a%20b%26c%3Dd%2F%C3%A9%2B%25%3F%23%22%3C%27%3E"
    );
    let query = url.split_once('?').unwrap().1;
    assert_eq!(parse_query(query), pairs(&[("call_id", call_id)]));

    // And through the XML and back.
    let xml = stream_response(&simple(&url));
    let ParsedStream::Stream(stream) = parse_stream_response(&xml).unwrap() else {
        panic!("not a stream: {xml}")
    };
    assert_eq!(stream.url, url);
    let query = stream.url.split_once('?').unwrap().1;
    assert_eq!(parse_query(query), pairs(&[("call_id", call_id)]));
}

#[test]
fn stream_response_is_the_documented_shape() {
    let xml = stream_response(&StreamXml {
        stream_url: "wss://h/ws?call_id=1",
        content_type: CONTENT_TYPE_MULAW_8K,
        status_callback_url: Some("https://h/plivo/stream-status"),
        extra_headers: None,
        stream_timeout_secs: None,
    });
    assert_eq!(
        xml,
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
            r#"<Stream bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000" "#,
            r#"statusCallbackUrl="https://h/plivo/stream-status" statusCallbackMethod="POST">"#,
            r#"wss://h/ws?call_id=1</Stream></Response>"#
        )
    );
    let bare = stream_response(&simple("wss://h/ws"));
    assert!(!bare.contains("statusCallback"), "{bare}");
    assert!(!bare.contains("streamTimeout"), "{bare}");
    assert!(!bare.contains("extraHeaders"), "{bare}");
}

#[test]
fn stream_response_escapes_text_and_every_attribute() {
    let url = "wss://h/ws?call=abc&tenant=7&q=<x>\"'";
    let xml = stream_response(&StreamXml {
        stream_url: url,
        content_type: "audio/x-l16;rate=16000&\"",
        status_callback_url: Some("https://h/cb?a=1&b='2'"),
        extra_headers: Some("k1=v<1>,k2=\"v&2\""),
        stream_timeout_secs: Some(3600),
    });
    assert!(
        xml.contains("wss://h/ws?call=abc&amp;tenant=7&amp;q=&lt;x&gt;&quot;&apos;"),
        "{xml}"
    );
    assert!(ampersands_are_entities(&xml), "{xml}");
    assert_eq!(naive_unescape(raw_stream_text(&xml)), url);
    // Only delimiters are raw quotes: the declaration's 4, then 2 per attribute.
    let attribute_quotes = xml.matches('"').count();
    assert_eq!(attribute_quotes, 4 + 2 * 7, "{xml}");
    assert_eq!(xml.matches('<').count(), 5, "{xml}");

    let ParsedStream::Stream(stream) = parse_stream_response(&xml).unwrap() else {
        panic!("not a stream: {xml}")
    };
    assert_eq!(
        stream,
        StreamElement {
            url: url.into(),
            content_type: Some("audio/x-l16;rate=16000&\"".into()),
            bidirectional: true,
            keep_call_alive: true,
            status_callback_url: Some("https://h/cb?a=1&b='2'".into()),
            status_callback_method: Some("POST".into()),
            extra_headers: Some("k1=v<1>,k2=\"v&2\"".into()),
            stream_timeout_secs: Some(3600),
        }
    );
}

#[test]
fn characters_xml_cannot_hold_are_dropped_and_whitespace_kept() {
    let xml = stream_response(&StreamXml {
        extra_headers: Some("a\tb\nc\rd\0e\u{1b}f\u{ffff}g"),
        ..simple("wss://h/ws")
    });
    assert!(
        xml.contains(r#"extraHeaders="a&#9;b&#10;c&#13;defg""#),
        "{xml}"
    );
    let ParsedStream::Stream(stream) = parse_stream_response(&xml).unwrap() else {
        panic!("not a stream")
    };
    assert_eq!(stream.extra_headers.as_deref(), Some("a\tb\nc\rdefg"));
}

#[test]
fn refusal_is_a_hangup_with_reason() {
    assert_eq!(
        refusal_response(Refusal::Busy),
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup reason="busy"/></Response>"#
    );
    for reason in [Refusal::Busy, Refusal::Rejected] {
        assert_eq!(
            parse_stream_response(&refusal_response(reason)).unwrap(),
            ParsedStream::Refused {
                reason: Some(reason.as_str().into())
            }
        );
    }
    assert_eq!(
        parse_stream_response("<Response><Hangup></Hangup></Response>").unwrap(),
        ParsedStream::Refused { reason: None }
    );
}

#[test]
fn parses_plivo_style_indented_documents() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- from the reference, §1.3 -->
<Response>
  <Stream bidirectional = 'true' keepCallAlive="true"
          contentType="audio/x-mulaw;rate=8000"
          statusCallbackUrl="https://media.example.net/plivo/stream-status"
          statusCallbackMethod="POST" audioTrack="inbound">
      wss://media.example.net/plivo/ws?call=abc&amp;tenant=7&#x26;x=&#38;
  </Stream >
</Response>
"#;
    let ParsedStream::Stream(stream) = parse_stream_response(xml).unwrap() else {
        panic!("not a stream")
    };
    assert_eq!(
        stream.url,
        "wss://media.example.net/plivo/ws?call=abc&tenant=7&x=&"
    );
    assert!(stream.bidirectional && stream.keep_call_alive);
    assert_eq!(stream.content_type.as_deref(), Some(CONTENT_TYPE_MULAW_8K));
    assert_eq!(stream.stream_timeout_secs, None);

    let ParsedStream::Stream(defaults) =
        parse_stream_response("<Response><Stream>ws://h/ws</Stream></Response>").unwrap()
    else {
        panic!("not a stream")
    };
    assert!(!defaults.bidirectional && !defaults.keep_call_alive);
    assert_eq!(defaults.content_type, None);
}

#[test]
fn garbage_documents_are_errors_not_panics() {
    let garbage = [
        "",
        " ",
        "<",
        ">",
        "<?xml",
        "<!--",
        "<Response",
        "<Response/>",
        "<Response></Response>",
        "<Response><Stream/></Response>",
        "<Response><Stream>   </Stream></Response>",
        "<Response><Stream>wss://h</Stream>",
        "<Response><Stream>wss://h</Strea></Response>",
        "<Response><Stream>wss://h</StreamX></Response>",
        "<Response><Stream>wss://h&amp</Stream></Response>",
        "<Response><Stream>wss://h&nbsp;</Stream></Response>",
        "<Response><Stream>&#0;</Stream></Response>",
        "<Response><Stream>&#x110000;</Stream></Response>",
        "<Response><Stream>&#xD800;</Stream></Response>",
        "<Response><Stream>&#+5;</Stream></Response>",
        "<Response><Stream>&#99999999999999999999;</Stream></Response>",
        "<Response><Stream a=\"1\" a=\"2\">x</Stream></Response>",
        "<Response><Stream a=1>x</Stream></Response>",
        "<Response><Stream a=\"1>x</Stream></Response>",
        "<Response><Stream a=\"<\">x</Stream></Response>",
        "<Response><Stream a=\"1\"b=\"2\">x</Stream></Response>",
        "<Response><Stream bidirectional=\"yes\">x</Stream></Response>",
        "<Response><Stream streamTimeout=\"-1\">x</Stream></Response>",
        "<Response><Speak>hi</Speak></Response>",
        "<Response><Stream>x</Stream><Hangup/></Response>",
        "<Response><Hangup/></Response>trailing",
        "<Other><Hangup/></Other>",
        "<Response><Stream>\0</Stream></Response>",
        "<Response><Stream>é\u{1}</Stream></Response>",
        "\u{feff}\u{feff}<Response/>",
        "<Response><ü>x</ü></Response>",
        "<Response><Stream ü=\"1\">x</Stream></Response>",
        "<Response><Stream =\"1\">x</Stream></Response>",
    ];
    for xml in garbage {
        assert!(parse_stream_response(xml).is_err(), "{xml:?}");
    }
    // Every prefix of a real document, cut at any character.
    let xml = stream_response(&StreamXml {
        status_callback_url: Some("https://h/cb?a=1&b=2"),
        ..simple("wss://h/ws?call_id=é&x=1")
    });
    for (i, _) in xml.char_indices() {
        assert!(parse_stream_response(&xml[..i]).is_err(), "{:?}", &xml[..i]);
    }
    assert!(parse_stream_response(&xml).is_ok());

    let huge = format!(
        "<Response><Stream>{}</Stream></Response>",
        "a".repeat(MAX_XML_BYTES)
    );
    assert_eq!(parse_stream_response(&huge), Err(AnswerError::XmlTooLarge));
    let many = format!(
        "<Response><Stream {}>x</Stream></Response>",
        (0..40)
            .map(|i| format!("a{i}=\"\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(
        parse_stream_response(&many),
        Err(AnswerError::MalformedXml("too many attributes"))
    );
    assert_eq!(AnswerError::MalformedXml("x").kind(), "malformed_xml");
}

#[test]
fn get_request_reads_fields_from_the_query() {
    let query = parse_query(
        "?CallUUID=3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36&From=%2B14155550100&To=14155550199\
         &Direction=inbound&CallStatus=ringing&X-PH-Tenant=7&call_id=c-1",
    );
    let request = AnswerRequest::from_params(&query, &[]).unwrap();
    assert_eq!(request.call_uuid, "3e82ae9d-2c78-4d85-b1a4-6eae7dbafb36");
    assert_eq!(request.from, "+14155550100");
    assert_eq!(request.to, "14155550199");
    assert_eq!(request.direction, "inbound");
    assert_eq!(request.call_status, "ringing");
    assert_eq!(request.call_id.as_deref(), Some("c-1"));
    assert_eq!(request.params, query);
}

#[test]
fn post_request_reads_fields_from_the_form_and_call_id_from_the_query() {
    let form = parse_form(
        b"CallUUID=u-1&From=%2B14155550100&To=sip%3Aa%40b.c&Direction=outbound\
          &CallStatus=in-progress&SessionStart=2020-04-08+11%3A34%3A33.238707&call_id=forged",
    );
    let query = parse_query("call_id=c%2F2");
    let request = AnswerRequest::from_params(&query, &form).unwrap();
    assert_eq!(request.call_uuid, "u-1");
    assert_eq!(request.from, "+14155550100");
    assert_eq!(request.to, "sip:a@b.c");
    assert_eq!(request.direction, "outbound");
    assert_eq!(request.call_status, "in-progress");
    assert_eq!(request.call_id.as_deref(), Some("c/2"));
    assert_eq!(request.params, form);
    assert!(
        request
            .params
            .contains(&("SessionStart".into(), "2020-04-08 11:34:33.238707".into()))
    );

    // Fields missing from the form come from the query; absent ones are empty.
    let request = AnswerRequest::from_params(
        &pairs(&[("To", "q"), ("call_id", "")]),
        &pairs(&[("CallUUID", "u")]),
    )
    .unwrap();
    assert_eq!(request.to, "q");
    assert_eq!(request.from, "");
    assert_eq!(request.call_id, None);
}

#[test]
fn missing_or_malformed_call_uuid_is_an_error() {
    let cases = [
        (vec![], vec![], AnswerError::MissingCallUuid),
        (
            pairs(&[("From", "1")]),
            pairs(&[("To", "2")]),
            AnswerError::MissingCallUuid,
        ),
        (
            vec![],
            pairs(&[("CallUUID", "")]),
            AnswerError::MissingCallUuid,
        ),
        (
            vec![],
            pairs(&[("CallUUID", "../../Call")]),
            AnswerError::InvalidCallUuid,
        ),
        (
            vec![],
            pairs(&[("CallUUID", "é")]),
            AnswerError::InvalidCallUuid,
        ),
        (
            vec![],
            vec![("CallUUID".into(), "a".repeat(65))],
            AnswerError::InvalidCallUuid,
        ),
    ];
    for (query, form, expected) in cases {
        assert_eq!(AnswerRequest::from_params(&query, &form), Err(expected));
    }
    assert_eq!(AnswerError::MissingCallUuid.kind(), "missing_call_uuid");
}

#[test]
fn form_and_query_decoding() {
    assert_eq!(
        parse_form(b"a=x+y&b=x%20y&c&&d=%zz&e=%FF"),
        pairs(&[
            ("a", "x y"),
            ("b", "x y"),
            ("c", ""),
            ("d", "%zz"),
            ("e", "\u{fffd}")
        ])
    );
    assert_eq!(parse_query("?a=1&a=2"), pairs(&[("a", "1"), ("a", "2")]));
    assert_eq!(parse_query(""), vec![]);
}
