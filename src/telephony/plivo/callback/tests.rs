use super::*;
use crate::telephony::plivo::answer::{parse_form, parse_query};

const UUID: &str = "0b7c1d7e-4b6a-4f0e-9a44-2f3c5d9e1a10";
const STREAM: &str = "5e2f8a90-1c3d-4e5f-8a7b-9c0d1e2f3a4b";

/// A recorded-shape Plivo body from `fixtures/plivo/`, decoded.
fn fixture(name: &str) -> Vec<(String, String)> {
    let path = format!("{}/fixtures/plivo/{name}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_form(&body)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn hangup(query: &str, form: &[(&str, &str)]) -> Hangup {
    let callback =
        Callback::from_params(CallbackKind::Hangup, &parse_query(query), &pairs(form)).unwrap();
    match callback.event {
        CallbackEvent::Hangup(hangup) => hangup,
        other => panic!("not a hangup: {other:?}"),
    }
}

#[test]
fn a_hangup_reads_status_cause_and_duration() {
    let form = fixture("hangup.form");
    let query = parse_query("call_id=backend-7");
    let callback = Callback::from_params(CallbackKind::Hangup, &query, &form).unwrap();
    assert_eq!(
        callback,
        Callback {
            call_id: "backend-7".into(),
            call_uuid: Some(UUID.into()),
            idempotency_key: format!("hangup:{UUID}"),
            event: CallbackEvent::Hangup(Hangup {
                status: CallStatus::Completed,
                cause: Some("Normal Hangup".into()),
                duration_secs: Some(42),
            }),
        }
    );
    assert_eq!(callback.kind(), CallbackKind::Hangup);

    let busy = Callback::from_params(CallbackKind::Hangup, &[], &fixture("hangup_busy.form"));
    let busy = busy.unwrap();
    assert_eq!(
        busy.call_id, UUID,
        "CallUUID names the call without ?call_id="
    );
    let CallbackEvent::Hangup(busy) = busy.event else {
        panic!("not a hangup")
    };
    assert_eq!(busy.status, CallStatus::Busy);
    assert_eq!(busy.cause.as_deref(), Some("Busy Line"));
    assert_eq!(busy.duration_secs, Some(0));
}

#[test]
fn a_hangup_keeps_todays_defaults() {
    let bare = hangup("", &[("CallUUID", "u")]);
    assert_eq!(
        bare,
        Hangup {
            status: CallStatus::Completed,
            cause: None,
            duration_secs: None,
        },
        "no CallStatus means completed"
    );
    let empty = hangup(
        "",
        &[("CallUUID", "u"), ("CallStatus", ""), ("Duration", "")],
    );
    assert_eq!(empty.status, CallStatus::Completed);
    assert_eq!(empty.duration_secs, None);

    let raw_cause = hangup(
        "",
        &[
            ("CallUUID", "u"),
            ("HangupCauseName", ""),
            ("HangupCause", "NORMAL_CLEARING"),
            ("Duration", " 17 "),
        ],
    );
    assert_eq!(raw_cause.cause.as_deref(), Some("NORMAL_CLEARING"));
    assert_eq!(raw_cause.duration_secs, Some(17), "Duration is trimmed");
    for bad in ["-3", "4.5", "forty", "99999999999999999999999"] {
        let h = hangup("", &[("CallUUID", "u"), ("Duration", bad)]);
        assert_eq!(h.duration_secs, None, "{bad:?} is no duration");
    }
}

#[test]
fn call_status_and_stream_event_read_every_documented_value_and_keep_the_rest() {
    for text in [
        "ringing",
        "in-progress",
        "completed",
        "no-answer",
        "busy",
        "cancel",
        "timeout",
        "failed",
    ] {
        let status = CallStatus::from_plivo(text);
        assert!(!matches!(status, CallStatus::Other(_)), "{text}");
        assert_eq!(status.as_str(), text);
    }
    for text in ["early-media", "Completed", " busy"] {
        assert_eq!(CallStatus::from_plivo(text), CallStatus::Other(text.into()));
        assert_eq!(CallStatus::from_plivo(text).as_str(), text);
    }
    for text in [
        "StartStream",
        "StopStream",
        "DroppedStream",
        "DegradedStream",
        "started",
        "stopped",
        "failed",
    ] {
        let event = StreamEvent::from_plivo(text);
        assert!(!matches!(event, StreamEvent::Other(_)), "{text}");
        assert_eq!(event.to_string(), text);
    }
    let new = StreamEvent::from_plivo("PausedStream");
    assert_eq!(new, StreamEvent::Other("PausedStream".into()));
    assert!(!new.is_trouble());
    let trouble: Vec<_> = ["DroppedStream", "DegradedStream", "failed"]
        .map(StreamEvent::from_plivo)
        .into_iter()
        .filter(StreamEvent::is_trouble)
        .collect();
    assert_eq!(trouble.len(), 3);
    assert!(!StreamEvent::StartStream.is_trouble());
}

#[test]
fn a_ring_names_its_call() {
    let callback = Callback::from_params(
        CallbackKind::Ring,
        &parse_query("?call_id=b-1"),
        &fixture("ring.form"),
    )
    .unwrap();
    assert_eq!(
        callback,
        Callback {
            call_id: "b-1".into(),
            call_uuid: Some(UUID.into()),
            idempotency_key: format!("ring:{UUID}"),
            event: CallbackEvent::Ring,
        }
    );
}

#[test]
fn a_stream_status_reads_its_event_and_stream() {
    let form = fixture("stream_status.form");
    let query = parse_query("call_id=b-2");
    let callback = Callback::from_params(CallbackKind::StreamStatus, &query, &form).unwrap();
    assert_eq!(
        callback,
        Callback {
            call_id: "b-2".into(),
            call_uuid: Some(UUID.into()),
            idempotency_key: format!("stream:{STREAM}:StartStream:2024-05-02 10:15:01"),
            event: CallbackEvent::StreamStatus(StreamStatus {
                stream_id: Some(STREAM.into()),
                event: Some(StreamEvent::StartStream),
            }),
        }
    );
    let bare = Callback::from_params(
        CallbackKind::StreamStatus,
        &query,
        &pairs(&[("Event", "Whatever")]),
    )
    .unwrap();
    assert_eq!(bare.call_uuid, None);
    assert_eq!(bare.idempotency_key, "stream::Whatever:");
    assert_eq!(
        bare.event,
        CallbackEvent::StreamStatus(StreamStatus {
            stream_id: None,
            event: Some(StreamEvent::Other("Whatever".into())),
        })
    );
}

#[test]
fn the_call_is_the_first_non_empty_call_id_else_call_uuid() {
    let form = pairs(&[("CallUUID", "u-1"), ("CallUUID", "u-2")]);
    let read = |query: &str| {
        Callback::from_params(CallbackKind::Ring, &parse_query(query), &form)
            .unwrap()
            .call_id
    };
    assert_eq!(read(""), "u-1", "the first CallUUID counts");
    assert_eq!(read("call_id="), "u-1", "an empty call_id names nothing");
    assert_eq!(read("call_id=&call_id=b%20c"), "b c");
    assert_eq!(read("other=1&call_id=x"), "x");
}

#[test]
fn a_callback_that_names_no_call_is_an_error() {
    for kind in [
        CallbackKind::Hangup,
        CallbackKind::Ring,
        CallbackKind::StreamStatus,
    ] {
        for (query, form) in [
            ("", pairs(&[])),
            (
                "call_id=",
                pairs(&[("CallUUID", ""), ("Event", "StartStream")]),
            ),
            ("callid=x", pairs(&[("CallUuid", "y")])),
        ] {
            let error = Callback::from_params(kind, &parse_query(query), &form).unwrap_err();
            assert_eq!(error, CallbackError::MissingCallId(kind));
            assert_eq!(error.kind(), "missing_call_id");
            assert!(error.to_string().starts_with(kind.as_str()), "{error}");
        }
    }
    // A call id alone is enough: the key then has an empty CallUUID, as before.
    let only_id = Callback::from_params(CallbackKind::Hangup, &parse_query("call_id=b"), &[]);
    assert_eq!(only_id.unwrap().idempotency_key, "hangup:");
}

#[test]
fn hostile_bytes_never_panic() {
    let bodies: [&[u8]; 5] = [
        b"CallUUID=%FF%FE&Duration=%00&HangupCauseName=%E2%82",
        b"&&&===&CallUUID&Event",
        b"CallUUID=\xff\xfe&StreamID=\xc3",
        b"Duration=18446744073709551616&CallUUID=x",
        b"",
    ];
    for body in bodies {
        let form = parse_form(body);
        for kind in [
            CallbackKind::Hangup,
            CallbackKind::Ring,
            CallbackKind::StreamStatus,
        ] {
            if let Ok(callback) = Callback::from_params(kind, &[], &form) {
                assert!(!callback.call_id.is_empty());
                assert_eq!(callback.kind(), kind);
            }
        }
    }
}
