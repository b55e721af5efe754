use super::*;

fn fixture(name: &str) -> String {
    let path = format!("{}/fixtures/plivo/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const STREAM: &str = "5e2f8a90-1c3d-4e5f-8a7b-9c0d1e2f3a4b";

#[test]
fn start_reads_ids_format_and_extra_headers() {
    let text = fixture("start.json");
    let Inbound::Start(start) = parse_inbound(&text).unwrap() else {
        panic!("not a start")
    };
    assert_eq!(start.start.call_id, "0b7c1d7e-4b6a-4f0e-9a44-2f3c5d9e1a10");
    assert_eq!(start.start.stream_id, STREAM);
    assert_eq!(start.start.tracks, ["inbound"]);
    assert_eq!(start.media_format().unwrap(), MediaFormat::MuLaw8k);
    let headers = parse_extra_headers(start.extra_headers.as_deref().unwrap());
    assert_eq!(
        headers,
        [("tenant".into(), "7".into()), ("lang".into(), "en".into())]
    );

    let text = fixture("start_l16_16k.json");
    let Inbound::Start(start) = parse_inbound(&text).unwrap() else {
        panic!("not a start")
    };
    assert_eq!(start.media_format().unwrap(), MediaFormat::L16At16k);
}

#[test]
fn media_formats_are_mapped_and_unknown_ones_refused() {
    assert_eq!(
        MediaFormat::from_plivo("audio/x-mulaw", 8000),
        Some(MediaFormat::MuLaw8k)
    );
    assert_eq!(
        MediaFormat::from_plivo("audio/x-l16", 8000),
        Some(MediaFormat::L16At8k)
    );
    assert_eq!(
        MediaFormat::from_plivo("audio/x-l16;rate=16000", 16000),
        Some(MediaFormat::L16At16k)
    );
    assert_eq!(
        MediaFormat::from_plivo("audio/x-l16;rate=8000", 16000),
        None
    );
    assert_eq!(MediaFormat::from_plivo("audio/x-mulaw", 16000), None);
    assert_eq!(MediaFormat::from_plivo("audio/opus", 48000), None);

    let text = fixture("start.json")
        .replace("audio/x-mulaw", "audio/x-l16")
        .replace("8000", "24000");
    let Inbound::Start(start) = parse_inbound(&text).unwrap() else {
        panic!("not a start")
    };
    let err = start.media_format().unwrap_err();
    assert_eq!(err.kind(), "unsupported_format");
}

#[test]
fn media_parses_without_copying_and_decodes_its_payload() {
    let text = fixture("media.json");
    let Inbound::Media(media) = parse_inbound(&text).unwrap() else {
        panic!("not media")
    };
    assert!(
        matches!(media.media.payload, Cow::Borrowed(_)),
        "payload was copied"
    );
    assert_eq!(media.stream_id, STREAM);
    assert_eq!((media.media.timestamp, media.media.chunk), (820, 41));
    assert_eq!(media.sequence_number, Some(42));

    let mut scratch = [0u8; 1024];
    let mut pcm = [0i16; 320];
    let n = decode_payload(
        &media.media.payload,
        MediaFormat::MuLaw8k,
        &mut scratch,
        &mut pcm,
    )
    .unwrap();
    assert_eq!(n, 160);
    assert_eq!(&pcm[..2], &[0, 0]); // 0xFF is µ-law zero
    assert_eq!(&pcm[80..82], &[0, -32124]); // 0x7F, 0x00
}

#[test]
fn l16_payload_is_little_endian_and_must_be_whole_samples() {
    let mut scratch = [0u8; 64];
    let mut pcm = [0i16; 8];
    // 0x0102 little-endian = 258; 0xFFFF = -1
    let payload = BASE64.encode([0x02, 0x01, 0xFF, 0xFF]);
    assert_eq!(
        decode_payload(&payload, MediaFormat::L16At8k, &mut scratch, &mut pcm),
        Ok(2)
    );
    assert_eq!(&pcm[..2], &[258, -1]);

    let odd = BASE64.encode([1, 2, 3]);
    let err = decode_payload(&odd, MediaFormat::L16At16k, &mut scratch, &mut pcm).unwrap_err();
    assert_eq!(err, PayloadError::PartialSample(3));
    assert_eq!(err.kind(), "partial_sample");
}

#[test]
fn bad_payloads_are_errors() {
    let mut scratch = [0u8; 64];
    let mut pcm = [0i16; 8];
    for bad in ["not base64!", "////A", "=AAA"] {
        let err = decode_payload(bad, MediaFormat::MuLaw8k, &mut scratch, &mut pcm).unwrap_err();
        assert_eq!(err, PayloadError::Base64, "{bad:?}");
    }
    let err = decode_payload("", MediaFormat::MuLaw8k, &mut scratch, &mut pcm).unwrap_err();
    assert_eq!((err, err.kind()), (PayloadError::Empty, "empty_payload"));
    // More samples than the output holds.
    let long = BASE64.encode([0xFFu8; 9]);
    let err = decode_payload(&long, MediaFormat::MuLaw8k, &mut scratch, &mut pcm).unwrap_err();
    assert_eq!(err, PayloadError::TooLarge);
    // More bytes than the scratch holds.
    let huge = BASE64.encode([0xFFu8; 100]);
    let err =
        decode_payload(&huge, MediaFormat::MuLaw8k, &mut scratch, &mut [0i16; 200]).unwrap_err();
    assert_eq!(err, PayloadError::TooLarge);
}

#[test]
fn payload_round_trips_through_encode() {
    let samples: Vec<i16> = (0..160).map(|i| (i * 97 - 8000) as i16).collect();
    for format in [MediaFormat::L16At8k, MediaFormat::MuLaw8k] {
        let (mut scratch, mut text) = (Vec::new(), String::new());
        encode_payload(&samples, format, &mut scratch, &mut text);
        let mut bytes = [0u8; 400];
        let mut back = [0i16; 160];
        assert_eq!(
            decode_payload(&text, format, &mut bytes, &mut back),
            Ok(160)
        );
        if format == MediaFormat::L16At8k {
            assert_eq!(back.as_slice(), samples.as_slice());
        } else {
            for (a, b) in back.iter().zip(&samples) {
                // µ-law keeps ~13 bits of magnitude: error within one quantisation step.
                assert!(
                    (a - b).unsigned_abs() <= (b.unsigned_abs() >> 4) + 8,
                    "{a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn dtmf_played_cleared_and_stop_parse() {
    let text = fixture("dtmf.json");
    let Inbound::Dtmf(dtmf) = parse_inbound(&text).unwrap() else {
        panic!("not dtmf")
    };
    assert_eq!((dtmf.dtmf.digit.as_str(), dtmf.dtmf.timestamp), ("5", 1940));
    for key in ["0", "9", "*", "#", "A", "D"] {
        let text = format!(r#"{{"event":"dtmf","streamId":"s","dtmf":{{"digit":"{key}"}}}}"#);
        assert!(parse_inbound(&text).is_ok(), "{key}");
    }
    for bad in [
        "",
        "12",
        "E",
        "a",
        r"1\r\nINFO forged",
        r"\u001b[31m",
        r"\u202e",
    ] {
        let text = format!(r#"{{"event":"dtmf","streamId":"s","dtmf":{{"digit":"{bad}"}}}}"#);
        let error = parse_inbound(&text).unwrap_err();
        assert_eq!(error.kind(), "missing_or_invalid_field", "{bad:?}");
    }

    for (file, name) in [("playedStream.json", "turn-12"), ("played.json", "turn-13")] {
        let text = fixture(file);
        let Inbound::PlayedStream(played) = parse_inbound(&text).unwrap() else {
            panic!("{file}: not playedStream")
        };
        assert_eq!(played.name, name);
    }
    let text = fixture("played.json");
    let Inbound::PlayedStream(played) = parse_inbound(&text).unwrap() else {
        panic!()
    };
    assert_eq!(
        played.sequence_number,
        Some(311),
        "sequenceNumber sent as a string"
    );

    let text = fixture("clearedAudio.json");
    assert!(
        matches!(parse_inbound(&text).unwrap(), Inbound::ClearedAudio(c) if c.stream_id == STREAM)
    );
    let text = fixture("stop.json");
    assert!(
        matches!(parse_inbound(&text).unwrap(), Inbound::Stop(s) if s.reason.as_deref() == Some("call hangup"))
    );
}

#[test]
fn unknown_events_are_a_variant_not_an_error() {
    let text = fixture("unknown.json");
    assert_eq!(
        parse_inbound(&text).unwrap(),
        Inbound::Unknown {
            event: "muteStream".into()
        }
    );
}

#[test]
fn malformed_messages_are_errors_with_a_kind() {
    let cases = [
        ("", "malformed_json"),
        ("{", "malformed_json"),
        ("not json", "malformed_json"),
        ("[1,2]", "malformed_json"),
        ("42", "malformed_json"),
        ("null", "malformed_json"),
        (r#""media""#, "malformed_json"),
        ("  [1]", "malformed_json"),
        (r#"{"sequenceNumber":1}"#, "missing_or_invalid_field"),
        (r#"{"event":7}"#, "missing_or_invalid_field"),
        (
            r#"{"event":"media","streamId":"s"}"#,
            "missing_or_invalid_field",
        ),
        (
            r#"{"event":"media","streamId":"s","media":{"timestamp":"1","chunk":1}}"#,
            "missing_or_invalid_field",
        ),
        (
            r#"{"event":"media","streamId":"s","media":{"timestamp":"x","chunk":1,"payload":""}}"#,
            "missing_or_invalid_field",
        ),
        (
            r#"{"event":"media","media":{"timestamp":"1","chunk":1,"payload":""}}"#,
            "missing_or_invalid_field",
        ),
        (
            r#"{"event":"start","start":{"callId":"c"}}"#,
            "missing_or_invalid_field",
        ),
        (
            r#"{"event":"playedStream","streamId":"s"}"#,
            "missing_or_invalid_field",
        ),
        (r#"{"event":"dtmf","dtmf":"5"}"#, "missing_or_invalid_field"),
    ];
    for (text, kind) in cases {
        let err = parse_inbound(text).unwrap_err();
        assert_eq!(err.kind(), kind, "{text:?}: {err}");
    }
}

#[test]
fn messages_over_64_kib_are_refused_before_parsing() {
    let payload = "A".repeat(MAX_MESSAGE_BYTES);
    let text = format!(
        r#"{{"event":"media","streamId":"s","media":{{"timestamp":"0","chunk":1,"payload":"{payload}"}}}}"#
    );
    let err = parse_inbound(&text).unwrap_err();
    assert!(matches!(err, ParseError::TooLarge(n) if n == text.len()));
    assert_eq!(err.kind(), "too_large");
    assert!(parse_outbound(&text).is_err());
}

#[test]
fn escaped_strings_still_parse() {
    // Some JSON encoders escape '/' in base64; the payload is then copied, not borrowed.
    let text = r#"{"event":"media","streamId":"s","media":{"track":"inbound","timestamp":20,"chunk":"2","payload":"\/\/\/\/"}}"#;
    let Inbound::Media(media) = parse_inbound(text).unwrap() else {
        panic!()
    };
    assert_eq!(media.media.payload, "////");
    assert_eq!((media.media.timestamp, media.media.chunk), (20, 2));
}

#[test]
fn outbound_messages_serialize_as_plivo_expects() {
    let play = Outbound::PlayAudio {
        media: PlayMedia {
            content_type: "audio/x-mulaw".into(),
            sample_rate: 8000,
            payload: "f39/fn5+fX18e3p5".into(),
        },
        stream_id: STREAM.into(),
    };
    let cases = [
        (play, "playAudio.json"),
        (
            Outbound::Checkpoint {
                stream_id: STREAM.into(),
                name: "turn-12".into(),
            },
            "checkpoint.json",
        ),
        (
            Outbound::ClearAudio {
                stream_id: STREAM.into(),
            },
            "clearAudio.json",
        ),
        (Outbound::SendDtmf { dtmf: "12#".into() }, "sendDTMF.json"),
    ];
    for (message, file) in cases {
        let expected: serde_json::Value = serde_json::from_str(&fixture(file)).unwrap();
        let actual: serde_json::Value = serde_json::from_str(&message.to_json()).unwrap();
        assert_eq!(actual, expected, "{file}");
        assert_eq!(parse_outbound(&fixture(file)).unwrap(), message, "{file}");
    }
}

#[test]
fn inbound_messages_round_trip_for_the_simulator() {
    for file in [
        "start.json",
        "media.json",
        "dtmf.json",
        "playedStream.json",
        "clearedAudio.json",
        "stop.json",
    ] {
        let text = fixture(file);
        let message = parse_inbound(&text).unwrap();
        let again = serde_json::to_string(&message).unwrap();
        assert_eq!(parse_inbound(&again).unwrap(), message, "{file}");
    }
}

#[test]
fn extra_headers_parse_in_every_documented_shape() {
    let expected = [
        ("a".to_owned(), "1".to_owned()),
        ("b".to_owned(), "x y".to_owned()),
    ];
    assert_eq!(parse_extra_headers("a=1,b=x y"), expected);
    assert_eq!(parse_extra_headers("a=1;b=x y"), expected);
    assert_eq!(parse_extra_headers(r#"{"a":1,"b":"x y"}"#), expected);
    assert!(parse_extra_headers("").is_empty());
    assert!(parse_extra_headers("junk,=5").is_empty());
}
